"""The refiner: degradations, the zero-initialised condition path, the low-noise objective and sampler, texture
selection and guidance, the refiner pipeline and its commands."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.training.conftest import random_inputs, trained_like  # noqa: E402


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


def _photo(seed=0, size=32):
    """A smooth-plus-detail RGB image (gradients and a few edges), uint8 (size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([120 + 100 * xx, 80 + 120 * yy, 200 - 150 * xx * yy], -1)
    img[size // 4:size // 2, size // 3:] = rng.integers(0, 255, 3)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


# ---- degradations -------------------------------------------------------------------------------------------

def test_degradations_are_a_function_of_id_and_seed_only():
    from training.data.degrade import DegradeConfig, condition, degrade

    cfg, hr = DegradeConfig(), _photo()
    a = [degrade(hr, f"id{i}", 7, cfg) for i in range(12)]
    np.random.seed(123)  # global RNG state must not matter; nor the order in which samples are degraded
    torch.manual_seed(5)
    b = [degrade(hr, f"id{i}", 7, cfg) for i in reversed(range(12))][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == (16, 16, 3) and x.dtype == np.uint8 for x in a)
    assert len({x.tobytes() for x in a}) == 12  # every id its own degradation
    assert not np.array_equal(degrade(hr, "id0", 8, cfg), a[0])  # and every seed
    c = condition(hr, "id0", 7, cfg)
    assert c.shape == hr.shape and np.array_equal(c, condition(hr, "id0", 7, cfg))


def test_degradations_are_the_same_in_another_process():
    from training.data.degrade import DegradeConfig, condition

    code = ("import hashlib, numpy as np; from tests.training.test_refiner import _photo; "
            "from training.data.degrade import DegradeConfig, condition; "
            "print(hashlib.sha1(b''.join(condition(_photo(), f'k{i}', 3, DegradeConfig()).tobytes() "
            "for i in range(6))).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = hashlib.sha1(b"".join(condition(_photo(), f"k{i}", 3, DegradeConfig()).tobytes() for i in range(6)))
    assert out.stdout.strip() == here.hexdigest()


def test_every_step_of_the_second_order_model_is_drawn_and_degrades():
    from PIL import Image

    from training.data.degrade import DegradeConfig, degrade

    cfg, hr = DegradeConfig(), _photo(1)
    ops = set()
    for i in range(200):
        log = []
        degrade(hr, f"s{i}", 0, cfg, log)
        ops |= {op.split("(")[0] for op in log}
        assert any(op.startswith("first.jpeg") for op in log)  # round 1 always ends in a JPEG
    assert ops == {"first.blur", "first.resize", "first.gaussian", "first.poisson", "first.jpeg", "second.blur",
                   "second.resize", "second.gaussian", "second.poisson", "second.jpeg", "sinc"}
    cleans = [degrade(hr, f"s{i}", 0, cfg.model_copy(update={"clean_prob": 0.3})) for i in range(100)]
    plain = np.asarray(Image.fromarray(hr).resize((16, 16), Image.Resampling.BICUBIC))
    clean = sum(np.abs(c.astype(int) - plain).max() <= 1 for c in cleans)
    assert 15 <= clean <= 45  # clean_prob: only the bicubic resize (float, so within a level of uint8 Pillow)
    # with nothing drawn (no blur, noise 0, JPEG 100, no second round, no sinc) the condition is a plain resize
    quiet = DegradeConfig(first={"blur_prob": 0, "resize_probs": (0, 0, 1), "gaussian_noise_prob": 1,
                                 "noise_sigma": (0, 0), "jpeg_quality": (100, 100)}, second_prob=0, sinc_prob=0)
    lr = degrade(hr, "q", 0, quiet).astype(float)
    area = hr.reshape(16, 2, 16, 2, 3).mean((1, 3))
    assert np.abs(lr - area).mean() < 6  # JPEG at 100 and the resize filter's taps, no more
    loud = np.abs(degrade(hr, "q", 0, cfg).astype(float) - area).mean()
    assert loud > np.abs(lr - area).mean()


def test_blur_is_an_exact_convolution_and_its_kernel_rotates():
    from training.data.degrade import convolve, gaussian_kernel

    rng = np.random.default_rng(0)
    k = gaussian_kernel(0.8, 2.0, 0.4, 9)
    assert abs(k.sum() - 1) < 1e-12
    assert np.allclose(gaussian_kernel(0.8, 2.0, 0.4 + np.pi / 2, 9), gaussian_kernel(2.0, 0.8, 0.4, 9))
    img = rng.random((13, 11, 3))
    p = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    direct = np.stack([[(p[i:i + 9, j:j + 9] * k[::-1, ::-1, None]).sum((0, 1)) for j in range(11)]
                       for i in range(13)])
    np.testing.assert_allclose(convolve(img, k), direct, atol=1e-10)


def test_bad_degradation_settings_fail_with_the_key():
    from pydantic import ValidationError

    from training.data.degrade import DegradeConfig, degrade

    with pytest.raises(ValidationError, match="resize_range"):
        DegradeConfig(first={"resize_range": (1.2, 1.5)})
    with pytest.raises(ValidationError, match="jpeg_quality"):
        DegradeConfig(second={"jpeg_quality": (90, 120)})
    with pytest.raises(ValueError, match="RGB uint8"):
        degrade(np.zeros((8, 8), np.uint8), "k", 0, DegradeConfig())


def test_a_refiner_batch_carries_each_images_condition(toy_export):
    from training.data.buckets import BucketBatches
    from training.data.degrade import DegradeConfig, condition
    from training.data.shards import list_shards

    def first(seed):
        return next(iter(BucketBatches({"toy": (list_shards(toy_export), 1.0)}, 4, seed=seed, multiple=4,
                                       degrade=DegradeConfig())))

    def uint8(t):
        return ((t + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    a, b = first(0), first(0)
    assert a["pixels_src"].shape == a["pixels"].shape and bool(a["has_src"].all())
    assert torch.equal(a["pixels_src"], b["pixels_src"])
    assert (a["pixels_src"] - a["pixels"]).abs().mean() > 0.01
    for seed, batch in ((0, a), (1, first(1))):  # each row is its (key, run.seed)'s condition, and no other's
        for hr, key, cond in zip(uint8(batch["pixels"]), batch["ids"], uint8(batch["pixels_src"])):
            assert np.array_equal(cond, condition(hr, key, seed, DegradeConfig()))
            assert not np.array_equal(cond, condition(hr, key, 1 - seed, DegradeConfig()))


# ---- texture data: a source filter on stage-1 signals ---------------------------------------------------------

@pytest.fixture(scope="module")
def texture_export(tmp_path_factory):
    """Toy shapes with stage-1 signals: every other one sharp and without flat areas (texture)."""
    from synthetic.toy_shapes import make_samples, write_shards

    samples = make_samples(32, 32, seed=5)
    for i, (_, meta) in enumerate(samples):
        rich = i % 2 == 0
        meta["signals"] = {"q_sharpness": 120.0 if rich else 12.0, "q_flat_frac": 0.01 if rich else 0.8}
        meta["toy"]["rich"] = rich
    d = tmp_path_factory.mktemp("texture_export")
    write_shards(samples, d, shard_size=8)
    return d


def test_max_signals_keeps_texture_rich_samples_only(texture_export):
    from training.config import SourceConfig
    from training.data.buckets import BucketBatches
    from training.data.filters import SampleFilter, source_filter
    from training.data.shards import iter_shard, list_shards

    f = source_filter(SourceConfig(path="x", min_signals={"q_sharpness": 60}, max_signals={"q_flat_frac": 0.05}))
    assert f.active and f({"signals": {"q_sharpness": 61, "q_flat_frac": 0.05}})
    assert not f({"signals": {"q_sharpness": 61, "q_flat_frac": 0.06}})
    assert not f({"signals": {"q_sharpness": 61, "q_flat_frac": float("nan")}})  # unknown is not texture
    assert not f({"signals": {"q_sharpness": 61}})
    assert not SampleFilter(max_signals=(("q_flat_frac", 0.5),))({"signals": {"q_flat_frac": 0.8}})
    rich = {s.key for sh in list_shards(texture_export) for s in iter_shard(sh) if s.meta["toy"]["rich"]}
    batches = iter(BucketBatches({"texture": (list_shards(texture_export), 1.0)}, 4, multiple=4,
                                 filters={"texture": f}))
    seen = {k for _ in range(6) for k in next(batches)["ids"]}
    assert seen and seen <= rich


# ---- the model: a zero-initialised condition path -------------------------------------------------------------

def test_a_refiner_at_init_equals_its_base_bit_for_bit_and_reads_its_condition_once_trained():
    from training.models.dit import as_edit_model, as_refiner, preset

    base = trained_like(preset("debug", in_channels=3))
    refiner = as_refiner(base)
    assert as_refiner(refiner) is refiner
    x, t, text, mask, pooled = random_inputs(base, 2)
    cond = torch.randn_like(x)
    with torch.no_grad():
        want = base(x, t, text, mask, pooled)
        assert torch.equal(refiner(x, t, text, mask, pooled, source=cond), want)
        assert torch.equal(refiner(x, t, text, mask, pooled), want)  # no condition at all: the base
        refiner.source_embed.weight.normal_(0, 0.05)
        rows = torch.tensor([True, False])
        got = refiner(x, t, text, mask, pooled, source=cond, source_rows=rows)
        assert torch.equal(got[1], want[1]) and not torch.equal(got[0], want[0])
    with pytest.raises(ValueError, match="edit model"):
        as_refiner(as_edit_model(base))


def test_the_condition_is_pixel_aligned_token_by_token():
    from training.models.dit import as_refiner, preset

    refiner = as_refiner(preset("debug", in_channels=3))
    with torch.no_grad():
        refiner.source_embed.weight.normal_(0, 0.1)
    x, t, text, mask, pooled = random_inputs(refiner, 1)
    seen = {}
    hook = refiner.double_blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("img", a[0].clone()))
    cond = torch.zeros_like(x)
    with torch.no_grad():
        refiner(x, t, text, mask, pooled, source=cond)
        before = seen.pop("img")
        cond[:, :, 2:4, 4:6] = 1.0  # one patch (patch 2) of the condition: token (row 1, col 2)
        refiner(x, t, text, mask, pooled, source=cond)
    hook.remove()
    changed = (seen["img"] - before).abs().sum(-1)[0].reshape(4, 4) > 0  # (grid h, grid w) of 8x8 / patch 2
    assert changed.nonzero().tolist() == [[1, 2]]


def test_a_refiner_stage_starts_at_its_base_and_its_gradient_reaches_the_condition_path(stage_config,
                                                                                        base_pipeline):
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline

    stage_config["objective"] = {"terms": {"refine": 1.0}}
    stage_config["stage"] = {"name": "refiner", "base": "full", "conditioner": "frozen"}
    tr = Trainer(_cfg(stage_config))
    base = Pipeline.load(base_pipeline).dit
    assert tr.dit.config.refine_source and not base.config.refine_source
    x, t, text, mask, pooled = random_inputs(base, 2)
    with torch.no_grad():
        assert torch.equal(tr.dit(x, t, text, mask, pooled, source=torch.randn_like(x)), base(x, t, text, mask, pooled))
    batch = next(iter(tr.data))
    assert "pixels_src" in batch
    loss, losses, ts, metrics = tr.loss(batch)
    loss.backward()
    assert tr.dit.source_embed.weight.grad.abs().sum() > 0 and "refine_loss" in metrics
    assert float(ts.max()) <= 0.35  # the default window


def test_the_timesteps_never_leave_the_window():
    from training.config import ObjectiveConfig
    from training.objectives.refine import refine_t

    g = torch.Generator().manual_seed(0)
    for mode in ("uniform", "logit_normal", "mode"):
        obj = ObjectiveConfig(timesteps=mode, refiner={"t_max": 0.3})
        t = refine_t(4096, obj, g, "cpu")
        assert float(t.min()) >= 0 and float(t.max()) <= 0.3 and float(t.max()) > 0.2
        low = refine_t(4096, ObjectiveConfig(timesteps=mode, refiner={"t_max": 0.3, "t_min": 0.1}), g, "cpu")
        assert float(low.min()) >= 0.1 and float(low.max()) <= 0.3
        one = refine_t(64, ObjectiveConfig(timesteps=mode, refiner={"t_max": 0.3, "t_min": 0.3}), g, "cpu")
        torch.testing.assert_close(one, torch.full((64,), 0.3))  # a one-step refiner trains at t_max only
    with pytest.raises(ValueError, match="t_min=0.4 must not exceed"):
        ObjectiveConfig(refiner={"t_max": 0.3, "t_min": 0.4})


def test_the_sampler_with_an_oracle_velocity_lands_on_the_clean_image():
    from training.objectives.refine import refine_sample

    g = torch.Generator().manual_seed(0)
    src, clean, noise = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))

    def oracle(target):  # the exact velocity of the straight path through x towards `target`
        return lambda x, t: (x - target) / t[:, None, None, None]

    for steps in (1, 3):
        torch.testing.assert_close(refine_sample(oracle(src), src, noise, 0.5, steps), src)  # nothing to redraw
        torch.testing.assert_close(refine_sample(oracle(clean), src, noise, 0.4, steps), clean)
    with pytest.raises(ValueError, match="strength"):
        refine_sample(oracle(src), src, noise, 1.5, 2)


def test_the_bridge_path_runs_from_the_clean_image_to_the_samplers_start_in_a_straight_line():
    from training.config import RefinerConfig
    from training.objectives.refine import refine_path, refine_sample

    r = RefinerConfig(t_max=0.4, path="bridge")
    g = torch.Generator().manual_seed(1)
    x0, src, noise = (torch.randn(3, 3, 8, 8, generator=g) for _ in range(3))
    at = lambda t: refine_path(x0, src, noise, torch.full((3,), t), r)  # noqa: E731
    torch.testing.assert_close(at(0.0), x0)
    torch.testing.assert_close(at(0.4), 0.6 * src + 0.4 * noise)  # what refine_sample starts from
    v = (at(0.4) - x0) / 0.4
    for t in (0.05, 0.2, 0.3):  # straight: one velocity all the way, and the noise level at t is t
        torch.testing.assert_close((at(t) - x0) / t, v)
        torch.testing.assert_close(at(t) - refine_path(x0, src, torch.zeros_like(noise), torch.full((3,), t), r),
                                   t * noise)
    for steps in (1, 3):  # the exact velocity on it takes the sampler to x0 in any number of steps
        torch.testing.assert_close(refine_sample(lambda x, t: v, src, noise, 0.4, steps), x0)
    flow = refine_path(x0, src, noise, torch.full((3,), 0.3), RefinerConfig(t_max=0.4))
    torch.testing.assert_close(flow, 0.7 * x0 + 0.3 * noise)  # the flow path ignores the condition


def test_a_residual_refiner_from_scratch_starts_as_the_upsampler_and_learns_the_clean_image(train_config):
    from PIL import Image

    from training.data.degrade import upsample
    from training.engine.loop import Trainer
    from training.objectives.refine import as_velocity
    from training.refiner import Refiner

    train_config["objective"] = {"terms": {"refine": 1.0}, "refiner": {"predict": "residual", "loss": "x0"}}
    tr = Trainer(_cfg(train_config))
    refiner = Refiner(tr.pipeline())
    small = [Image.fromarray(_photo(3, 16)), Image.fromarray(_photo(5, 12))]
    for steps in (1, 3):  # a fresh DiT outputs 0: every step lands on the condition, whatever the noise
        got = refiner.refine(small, steps=steps, seed=steps)
        want = [upsample(im, (im.width * 2, im.height * 2)) for im in small]
        assert all(np.abs(np.asarray(g, int) - np.asarray(w, int)).max() <= 1 for g, w in zip(got, want))
    batch = next(iter(tr.data))
    loss, _, _, _ = tr.loss(batch)  # at init the loss is the condition's own error
    x0, cond = batch["pixels"], batch["pixels_src"]
    torch.testing.assert_close(loss, ((cond - x0) ** 2).mean(), rtol=1e-5, atol=1e-6)
    # the velocity it stands for lands on cond + out from any x_t in one Euler step
    (x, src, out), t = (torch.randn(1, 3, 4, 4) for _ in range(3)), torch.full((1,), 0.3)
    torch.testing.assert_close(x - 0.3 * as_velocity(out, x, t, src, "residual"), src + out)
    with pytest.raises(ValueError, match="loss=x0"):
        _cfg({**train_config, "objective": {"terms": {"refine": 1.0}, "refiner": {"predict": "residual"}}})
    bridge = refiner.settings.model_copy(update={"path": "bridge"})
    refiner.pipe.objective = refiner.pipe.objective.model_copy(update={"refiner": bridge})
    with pytest.raises(ValueError, match=r"strength 0.5 is above this refiner's t_max 0.35.*bridge path"):
        refiner.refine(small, strength=0.5)
    assert refiner.refine(small, strength=0.2)[0].size == (32, 32)  # below t_max it starts as before


def test_stage_configs_that_cannot_work_fail_before_training(stage_config, tmp_path):
    from pydantic import ValidationError

    stage_config["objective"] = {"terms": {"refine": 1.0}}
    stage_config["model"]["edit"] = True
    with pytest.raises(ValidationError, match="model.edit=false"):
        _cfg(stage_config)
    with pytest.raises(ValidationError, match="t_max"):
        _cfg({**stage_config, "model": {"init_from": stage_config["model"]["init_from"]},
              "objective": {"terms": {"refine": 1.0}, "refiner": {"t_max": 0}}})


# ---- the refiner pipeline, texture guidance and the commands ------------------------------------------------

@pytest.fixture(scope="module")
def refiner_runs(tmp_path_factory, toy_export, texture_export, base_pipeline, tiny_llm):
    """A stage-1 refiner trained a few steps from the base, and a stage-2 texture LoRA over it."""
    from training.engine.loop import train

    out = tmp_path_factory.mktemp("refiner")
    common = {"optim": {"lr": 3e-3, "ema_decay": 0.0},
              "objective": {"terms": {"refine": 1.0}, "refiner": {"t_max": 0.5, "steps": 2}}}
    run = {"steps": 3, "log_every": 1, "sample_steps": 2}
    stage1 = train(_cfg({**common, "model": {"init_from": str(base_pipeline)},
                         "data": {"sources": {"toy": {"path": str(toy_export)}}, "batch_size": 4},
                         "run": {**run, "out_dir": str(out / "stage1")},
                         "stage": {"name": "refiner", "conditioner": "frozen"}}))
    stage2 = train(_cfg({**common, "model": {"init_from": str(stage1)},
                         "data": {"sources": {"tex": {"path": str(texture_export),
                                                      "max_signals": {"q_flat_frac": 0.05}}}, "batch_size": 4},
                         "run": {**run, "out_dir": str(out / "stage2")},
                         "stage": {"name": "refiner_texture", "base": "lora", "conditioner": "frozen",
                                   "lora": {"rank": 4}}}))
    return stage1, stage2


def test_the_refiner_pipeline_loads_and_upsamples_by_its_scale(refiner_runs):
    from PIL import Image

    from training.refiner import Refiner

    refiner = Refiner.load(refiner_runs[0])
    assert refiner.scale == 2 and refiner.settings.steps == 2
    small = [Image.fromarray(_photo(0, 16)), Image.fromarray(_photo(1, 12)), Image.fromarray(_photo(2, 16))]
    out = refiner.refine(small, ["a red circle", "", "一个红色的圆"], seed=3)
    assert [im.size for im in out] == [(32, 32), (24, 24), (32, 32)]
    again = refiner.refine(small, ["a red circle", "", "一个红色的圆"], seed=3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out, again))
    alone = refiner.refine(small[:1], ["a red circle"], seed=3)  # image i's noise is (seed, i), whatever the batch
    assert np.abs(np.asarray(alone[0], int) - np.asarray(out[0], int)).max() <= 1  # batched matmuls may round
    assert not np.array_equal(np.asarray(refiner.refine(small[:1], ["a red circle"], seed=4)[0]), np.asarray(out[0]))
    # the refined image keeps the input's layout: closer to its upsampling than to another image's
    up = np.asarray(small[0].resize((32, 32), Image.Resampling.BICUBIC), float)
    other = np.asarray(small[2].resize((32, 32), Image.Resampling.BICUBIC), float)
    got = np.asarray(out[0], float)
    assert np.abs(got - up).mean() < np.abs(got - other).mean()


def test_texture_guidance_mixes_the_two_velocities_as_documented(refiner_runs):
    from PIL import Image

    from training.refiner import Refiner

    stage1, texture = refiner_runs
    plain = Refiner.load(stage1)
    images = [Image.fromarray(_photo(4, 16))]
    want = plain.refine(images, seed=1)
    off = Refiner.load(stage1, texture=texture, texture_scale=0.0)
    assert np.array_equal(np.asarray(off.refine(images, seed=1)[0]), np.asarray(want[0]))  # w=0: the refiner
    full = Refiner.load(stage1, texture=texture, texture_scale=1.0)
    assert not np.array_equal(np.asarray(full.refine(images, seed=1)[0]), np.asarray(want[0]))
    # w=2: v_refiner + 2 (v_texture - v_refiner), checked on the velocities themselves
    two = Refiner.load(stage1, texture=texture, texture_scale=2.0)
    x = torch.randn(1, 3, 32, 32)
    src, t = torch.randn(1, 3, 32, 32), torch.full((1,), 0.3)
    cond = two.pipe.cond(["a red circle"])
    with torch.no_grad():
        v_tex = full.velocity(cond, src)(x, t)
        v_ref = off.velocity(cond, src)(x, t)
        torch.testing.assert_close(two.velocity(cond, src)(x, t), v_ref + 2 * (v_tex - v_ref))
    with pytest.raises(ValueError, match="needs a texture model"):
        Refiner.load(stage1, texture_scale=1.5)


def test_bad_refiner_inputs_fail_with_what_to_fix(refiner_runs, base_pipeline, tmp_path):
    from PIL import Image

    from training.models.dit import DiT
    from training.refiner import Refiner

    with pytest.raises(ValueError, match="not a refiner"):
        Refiner.load(base_pipeline)
    (tmp_path / "vmix").mkdir()
    (tmp_path / "vmix" / "adapter.json").write_text('{"lora": null, "vmix": {"pairs": []}}')
    with pytest.raises(ValueError, match="not a texture model"):
        Refiner.load(refiner_runs[0], texture=tmp_path / "vmix")
    refiner = Refiner.load(refiner_runs[0])
    refiner.pipe.dit = DiT.from_config(refiner.pipe.dit.config, patch_size=4)  # a refiner with patch 4
    assert refiner.pipe.dit.config.refine_source
    with pytest.raises(ValueError, match=r"15x15 image refines to 30x30.*multiple of 2"):
        refiner.refine([Image.fromarray(_photo(0, 16)), Image.fromarray(_photo(0, 15))])
    with pytest.raises(ValueError, match="one per image"):
        refiner.refine([Image.fromarray(_photo(0, 16))], ["a", "b"])


def test_refine_and_generate_refiner_commands(refiner_runs, base_pipeline, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from sluice.cli import app

    stage1, texture = refiner_runs
    runner = CliRunner()
    src = tmp_path / "in.png"
    Image.fromarray(_photo(0, 16)).save(src)
    res = runner.invoke(app, ["refine", "-m", str(stage1), "-i", str(src), "-o", str(tmp_path / "o.png"),
                              "--texture", str(texture), "--texture-scale", "1.5", "--steps", "1"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "o.png").size == (32, 32)
    Image.fromarray(_photo(1, 12)).save(tmp_path / "in2.png")
    res = runner.invoke(app, ["refine", "-m", str(stage1), "-i", str(src), "-i", str(tmp_path / "in2.png"),
                              "-p", "a red circle", "-o", str(tmp_path / "many")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "many" / "in2.refined.png").size == (24, 24)

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    res = runner.invoke(app, ["refine", "-m", str(stage1), "-i", str(bad), "-o", str(tmp_path / "b.png")])
    assert res.exit_code == 2 and "cannot read input image" in res.output and "PNG or JPEG" in res.output
    res = runner.invoke(app, ["refine", "-m", str(base_pipeline), "-i", str(src), "-o", str(tmp_path / "b.png")])
    assert res.exit_code == 2 and "not a refiner" in res.output
    res = runner.invoke(app, ["refine", "-m", str(stage1), "--texture", str(stage1), "-i", str(src),
                              "-o", str(tmp_path / "b.png")])
    assert res.exit_code == 2 and "adapter.json" in res.output

    gen = tmp_path / "gen"
    res = runner.invoke(app, ["generate", "-m", str(base_pipeline), "-p", "a red circle", "-o", str(gen),
                              "--width", "16", "--height", "16", "--steps", "2", "--refiner", str(stage1)])
    assert res.exit_code == 0, res.output
    pngs = sorted(gen.glob("*.png"))
    assert len(pngs) == 1 and Image.open(pngs[0]).size == (32, 32)
    assert "+refiner:" in (gen / "generated.jsonl").read_text()
    res = runner.invoke(app, ["generate", "-m", str(base_pipeline), "-p", "x", "-o", str(gen),
                              "--texture", str(texture)])
    assert res.exit_code == 2 and "--refiner" in res.output


def test_stage_two_must_keep_the_refiners_window(refiner_runs, texture_export, tmp_path):
    from training.engine.loop import Trainer

    cfg = _cfg({"model": {"init_from": str(refiner_runs[0])},
                "data": {"sources": {"tex": {"path": str(texture_export)}}, "batch_size": 4},
                "objective": {"terms": {"refine": 1.0}, "refiner": {"t_max": 0.3}},
                "run": {"out_dir": str(tmp_path / "x"), "steps": 1},
                "stage": {"name": "refiner_texture", "base": "lora", "conditioner": "frozen"}})
    with pytest.raises(ValueError, match=r"objective.refiner \['t_max'\]"):
        Trainer(cfg)
    bridge = cfg.model_copy(update={"objective": cfg.objective.model_copy(update={
        "refiner": cfg.objective.refiner.model_copy(update={"t_max": 0.5, "path": "bridge"})})})
    with pytest.raises(ValueError, match=r"objective.refiner \['path'\]"):  # the sampler would follow the flow
        Trainer(bridge)
