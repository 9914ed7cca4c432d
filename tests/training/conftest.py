"""Fixtures of the trainer tests: a toy export, a tiny random LLM, and a config over them."""

import pytest


@pytest.fixture(scope="session")
def toy_export(tmp_path_factory):
    from synthetic.toy_shapes import make_samples, write_shards

    d = tmp_path_factory.mktemp("toy_export")
    write_shards(make_samples(48, 32, seed=0), d, shard_size=12)
    return d


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    pytest.importorskip("transformers")
    from synthetic.toy_shapes import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny_llm"), hidden=32)


def debug_config(toy_export, tiny_llm, out_dir, lr: float = 1e-3, steps: int = 4, log_every: int = 2) -> dict:
    """A valid TrainConfig dict for the debug DiT in pixel space over the toy export."""
    return {
        "model": {"preset": "debug"},
        "text": {"llm": str(tiny_llm), "refiner_layers": 1, "glyph": {"t5": {"d_model": 32, "d_kv": 8, "d_ff": 64,
                                                                             "num_layers": 1, "num_heads": 4}}},
        "data": {"sources": {"toy": {"path": str(toy_export)}}, "batch_size": 4},
        "vae": {"path": "pixel"},
        "optim": {"lr": lr},
        "run": {"out_dir": str(out_dir), "steps": steps, "log_every": log_every, "sample_steps": 2,
                "sample_prompts": ["一个红色的圆", "a red circle"]},
    }


@pytest.fixture
def train_config(toy_export, tiny_llm, tmp_path):
    """A valid TrainConfig dict for the debug DiT in pixel space; tests edit what they need."""
    return debug_config(toy_export, tiny_llm, tmp_path / "run")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads contend and run ~10x slower."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def base_pipeline(toy_export, tiny_llm, tmp_path_factory):
    """A trained-a-little debug pipeline (non-zero outputs), the base that post-training stages start from."""
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    out = tmp_path_factory.mktemp("base")
    tr = Trainer(TrainConfig.model_validate(debug_config(toy_export, tiny_llm, out, lr=3e-3, steps=16, log_every=100)))
    tr.run()
    return tr.export()


@pytest.fixture
def stage_config(toy_export, base_pipeline, tmp_path):
    """A post-training config over `base_pipeline`: text and VAE come from the base; tests set `stage`."""
    return {
        "model": {"init_from": str(base_pipeline)},
        "data": {"sources": {"toy": {"path": str(toy_export)}}, "batch_size": 4},
        "optim": {"lr": 1e-3},
        "run": {"out_dir": str(tmp_path / "stage"), "steps": 2, "log_every": 1, "sample_steps": 2},
    }


def trained_like(model, seed: int = 1):
    """`model` with every weight perturbed (in place), so zero-initialised paths are live: an init-only model
    hides bugs, since a branch that outputs 0 agrees with anything."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def random_inputs(dit, n: int = 3, seed: int = 0, text_len: int = 5):
    """(x, t, text, mask, pooled) of random DiT inputs at 8x8 latents; row 0's last text tokens are padding."""
    import torch

    g = torch.Generator().manual_seed(seed)
    c = dit.config
    x = torch.randn(n, c.in_channels, 8, 8, generator=g)
    text = torch.randn(n, text_len, c.text_dim, generator=g)
    mask = torch.ones(n, text_len, dtype=torch.bool)
    mask[0, 3:] = False
    return x, torch.rand(n, generator=g), text, mask, torch.randn(n, c.text_dim, generator=g)


VMIX_PAIRS = [{"positive": ["soft light", "柔光"], "negative": ["flat light", "平光"]}]
