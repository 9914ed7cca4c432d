"""The resolution-dependent timestep shift is one function of the token count in training and in sampling."""

import pytest

torch = pytest.importorskip("torch")


def test_trainer_and_pipeline_shift_by_the_same_function_of_tokens(train_config, monkeypatch):
    from training.config import TrainConfig
    from training.engine.loop import Trainer
    from training.objectives import flow_matching as fm

    train_config["objective"] = {"base_shift": 1.5, "ref_tokens": 16}  # a != 1 at every size used here
    tr = Trainer(TrainConfig.model_validate(train_config))
    seen = []
    real = fm.apply_shift
    monkeypatch.setattr(fm, "apply_shift", lambda t, a: seen.append(a) or real(t, a))
    p = tr.dit.config.patch_size
    batch = next(iter(tr.data))
    _, _, h, w = batch["pixels"].shape
    tr.loss(batch)
    trained = seen.pop()
    tr.pipeline().latents(["a red circle"], w, h, steps=2, cfg_scale=1.0)
    sampled = seen.pop()
    tr.pipeline().latents(["a red circle"], 2 * w, h, steps=2, cfg_scale=1.0)
    wider = seen.pop()
    assert trained == sampled == pytest.approx(fm.shift_for((h // p) * (w // p), 1.5, 16)) and trained > 1.5
    assert wider == pytest.approx(trained * 2 ** 0.5)  # twice the tokens: sqrt(2) more shift, in sampling too
    torch.testing.assert_close(fm.sigmas(4, sampled), real(torch.linspace(1, 0, 5), trained))
