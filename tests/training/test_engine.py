"""The training loop: it learns one batch, resumes exactly, logs MFU inputs, and the CLI trains and generates."""

import pytest

torch = pytest.importorskip("torch")

from tests.training.conftest import trained_like  # noqa: E402


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


def test_loss_falls_when_overfitting_one_batch(train_config):
    from training.engine.loop import Trainer

    train_config["text"]["drop_text"] = train_config["text"]["drop_glyph"] = 0.0
    tr = Trainer(_cfg(train_config))
    batch = next(iter(tr.data))
    x0 = tr.vae.encode(batch["pixels"])
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x0.shape, generator=g), torch.rand(len(x0), generator=g)

    def fixed_loss():  # the same noise and t every time, so the curve shows learning, not sampling luck
        from training.objectives.flow_matching import interpolate, per_sample_loss

        text, mask, pooled = tr.cond(batch["captions"])
        return per_sample_loss(tr.dit(interpolate(x0, noise, t), t, text, mask, pooled), x0, noise).mean()

    first = fixed_loss().item()
    for _ in range(60):
        loss = fixed_loss()
        tr.opt.zero_grad()
        loss.backward()
        tr.opt.step()
    assert fixed_loss().item() < 0.35 * first


def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(train_config, tmp_path):
    from training.engine.loop import Trainer

    train_config["run"]["out_dir"] = str(tmp_path / "straight")
    straight = Trainer(_cfg(train_config)).run(steps=6)
    train_config["run"]["out_dir"] = str(tmp_path / "split")
    first = Trainer(_cfg(train_config)).run(steps=3)  # writes a checkpoint at step 3
    resumed = Trainer(_cfg(train_config))
    assert resumed.step == 3
    second = resumed.run(steps=6)
    assert first == straight[:3]
    assert second == straight[3:]  # bit for bit: weights, optimiser, EMA, data position and RNG all restored
    torch.testing.assert_close(resumed.ema.shadow, Trainer(_cfg({**train_config, "run": {
        **train_config["run"], "out_dir": str(tmp_path / "straight")}})).ema.shadow, rtol=0, atol=0)


def test_flops_are_counted_and_scale_with_tokens(train_config):
    from training.engine.loop import Trainer
    from training.engine.metrics import mfu

    tr = Trainer(_cfg(train_config))
    batch = next(iter(tr.data))
    f = tr.step_flops(batch)
    big = dict(batch, pixels=torch.nn.functional.interpolate(batch["pixels"], scale_factor=2))
    assert f > 0 and tr.step_flops(big) > 3 * f  # 4x the image tokens: more than 3x the FLOPs
    assert mfu(f, 1.0, None) is None and mfu(10**12, 1.0, 2.0) == pytest.approx(0.5)


def test_bad_config_fails_with_the_key(train_config):
    from training.config import load_train_config
    from plumbing.config import ConfigError
    import yaml

    train_config["optim"]["lr"] = -1
    del train_config["data"]
    path = train_config["run"]["out_dir"] + ".yaml"
    with open(path, "w") as f:
        yaml.safe_dump(train_config, f)
    with pytest.raises(ConfigError) as e:
        load_train_config(path)
    assert "optim.lr" in str(e.value) and "data" in str(e.value)


@pytest.mark.slow
def test_cli_trains_then_generates(train_config, tmp_path, run_cli):
    import yaml

    path = tmp_path / "train.yaml"
    train_config["run"]["steps"] = 2
    path.write_text(yaml.safe_dump(train_config, allow_unicode=True))
    one = {"OMP_NUM_THREADS": "1"}  # a shared 2-core machine: two threads contend
    r = run_cli("train", "--config", str(path), "--set", "run.log_every=1", env=one)
    assert r.returncode == 0, r.stderr[-3000:]
    pipe = tmp_path / "run" / "pipeline"
    assert (pipe / "transformer" / "config.json").is_file() and list((tmp_path / "run" / "samples").glob("*.png"))
    r = run_cli("generate", "--model", str(pipe), "-p", "一个蓝色的正方形", "-p", 'the word "CAT"', "--width", "32",
                "--height", "32", "--steps", "2", "--out", str(tmp_path / "gen"), env=one)
    assert r.returncode == 0, r.stderr[-3000:]
    from PIL import Image

    assert [Image.open(p).size for p in sorted((tmp_path / "gen").glob("*.png"))] == [(32, 32), (32, 32)]
    bad = run_cli("generate", "--model", str(tmp_path), "-p", "x")
    assert bad.returncode == 2 and "pipeline.json" in bad.stderr


def test_activation_checkpointing_from_outside_keeps_outputs_and_gradients():
    from training.engine.parallel import apply_activation_checkpointing
    from training.models.dit import preset

    def grads(model):
        g = torch.Generator().manual_seed(0)
        x, t = torch.randn(2, 4, 16, 16, generator=g), torch.rand(2, generator=g)
        text, pooled = torch.randn(2, 5, 32, generator=g), torch.randn(2, 32, generator=g)
        out = model(x, t, text, torch.ones(2, 5, dtype=torch.bool), pooled)
        out.square().mean().backward()
        return out.detach(), {n.replace("_checkpoint_wrapped_module.", ""): p.grad for n, p in model.named_parameters()}

    plain = trained_like(preset("debug"), seed=0)
    wrapped = preset("debug")
    wrapped.load_state_dict(plain.state_dict())
    apply_activation_checkpointing(wrapped)
    assert "_checkpoint_wrapped_module" in next(n for n, _ in wrapped.named_parameters() if "blocks" in n)
    assert set(wrapped.state_dict()) == set(plain.state_dict())  # checkpoints keep their key names
    (o1, g1), (o2, g2) = grads(plain), grads(wrapped)
    torch.testing.assert_close(o1, o2)
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], atol=1e-6, rtol=1e-5)


def test_latent_cache_stores_then_reads_back(tmp_path):
    from training.models.vae import LatentCache

    class Counting(torch.nn.Module):
        calls = 0

        def encode(self, x):
            Counting.calls += 1
            return x * 2

    cache, vae, x = LatentCache(tmp_path / "lat"), Counting(), torch.randn(2, 3, 8, 8)
    a = cache.encode(vae, x, ["a", "b"], (8, 8))
    b = cache.encode(vae, torch.zeros_like(x), ["a", "b"], (8, 8))  # a hit never encodes again
    assert Counting.calls == 1 and torch.equal(a, b) and len(list((tmp_path / "lat").glob("*.pt"))) == 2
    cache.encode(vae, x, ["a", "b"], (16, 16))  # another size is another latent
    assert Counting.calls == 2


def test_bf16_autocast_step_is_finite(train_config):
    from training.engine.loop import Trainer

    train_config["run"]["precision"] = "bf16"
    tr = Trainer(_cfg(train_config))
    m = tr.train_step(next(iter(tr.data)))
    assert torch.isfinite(torch.tensor(m["loss"])) and m["grad_norm"] > 0


def test_every_shipped_stage_config_is_validated_by_a_test():
    """Each YAML in training/configs is loaded, with the paths it requires, by
    test_post_training.test_shipped_stage_configs_validate_once_their_paths_are_given."""
    from pathlib import Path

    from tests.training.test_post_training import SHIPPED_CONFIGS

    shipped = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))
    assert shipped == sorted(SHIPPED_CONFIGS)