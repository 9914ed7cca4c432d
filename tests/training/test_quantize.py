"""Quantization per part (torchao int8; torch's own dynamic int8), bad configs, and quantization-aware training."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


def _sqnr(ref, x):
    return float(10 * torch.log10((ref ** 2).mean() / ((ref - x) ** 2).mean()))


def _weight_kind(module):
    return type(module.weight).__name__


@pytest.mark.parametrize("dit,backend", [("int8_weight", "torchao"), ("int8_dynamic", "torchao"),
                                         ("int8_dynamic", "torch")])
def test_a_quantized_pipeline_loads_and_samples_close_to_full_precision(base_pipeline, dit, backend):
    from training.config import QuantConfig
    from training.pipeline import Pipeline
    from training.quantize import part_bytes

    full = Pipeline.load(base_pipeline)
    ref = full.latents(["a red circle", "一个蓝色的方块"], 16, 16, steps=4, seed=1)
    before = part_bytes(full)
    text = "none" if backend == "torch" else "int8_weight"
    q = Pipeline.load(base_pipeline, quant=QuantConfig(dit=dit, text=text, backend=backend))
    blk = q.dit.double_blocks[0]
    if backend == "torchao":
        assert _weight_kind(blk.qkv_img.qkv) == "Int8Tensor" and _weight_kind(q.dit.single_blocks[0].lin2) == "Int8Tensor"
        assert _weight_kind(q.cond.llm.llm.layers[0].self_attn.q_proj) == "Int8Tensor"
    else:
        assert type(blk.qkv_img.qkv).__module__.startswith("torch.ao.nn.quantized")
    # kept in full precision: the adaLN modulation (quant.keep) and everything outside the blocks
    assert type(blk.mod_img.weight) is torch.nn.Parameter and type(q.dit.proj_out.weight) is torch.nn.Parameter
    assert type(q.dit.x_embed.weight) is torch.nn.Parameter
    out = q.latents(["a red circle", "一个蓝色的方块"], 16, 16, steps=4, seed=1)
    assert _sqnr(ref, out) > 25, _sqnr(ref, out)
    assert part_bytes(q)["dit"] < before["dit"]
    assert len(q(["a red circle"], 16, 16, steps=2)) == 1
    with pytest.raises(ValueError, match="save the full-precision one"):
        q.save(base_pipeline.parent / "nope")


def test_bad_quantization_configs_fail_with_the_fix(base_pipeline, tmp_path):
    from typer.testing import CliRunner

    from training.cli import app
    from training.config import QuantConfig
    from training.pipeline import Pipeline

    fp8 = "compute capability >= 8.9 .* use int8_dynamic or int8_weight"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=fp8):
            Pipeline.load(base_pipeline, quant=QuantConfig(dit="fp8_dynamic"))
    with pytest.raises(ValueError, match="quant.keep \\['ada'\\] name no module.*leave keep out"):
        Pipeline.load(base_pipeline, quant=QuantConfig(keep=["ada"]))
    with pytest.raises(ValueError, match="pixel space and has no weights; set quant.vae=none"):
        Pipeline.load(base_pipeline, quant=QuantConfig(vae="int8_weight"))
    with pytest.raises(ValueError, match="backend=torch is torch's dynamic int8 on CPU only"):
        Pipeline.load(base_pipeline, quant=QuantConfig(dit="int8_weight", backend="torch"))
    run = CliRunner().invoke
    res = run(app, ["generate", "-m", str(base_pipeline), "-p", "a red circle", "--quant", "dit=int4",
                    "-o", str(tmp_path)])
    assert res.exit_code == 2 and "--quant is invalid" in res.output and "dit" in res.output
    res = run(app, ["generate", "-m", str(base_pipeline), "-p", "a red circle", "--quant", "int8", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "part=mode" in res.output
    res = run(app, ["generate", "-m", str(base_pipeline), "-p", "a red circle", "--quant", "dit=int8_weight",
                    "--width", "16", "--height", "16", "--steps", "2", "-o", str(tmp_path / "ok")])
    assert res.exit_code == 0, res.output


def test_qat_trains_under_fake_quantization_and_exports_a_pipeline_that_loads_quantized(stage_config):
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline

    stage_config["stage"] = {"name": "qat_int8", "base": "full", "conditioner": "frozen",
                             "qat": {"dit": "int8_dynamic", "text": "int8_weight"}}
    tr = Trainer(_cfg(stage_config))
    fake = [n for n, m in tr.dit.named_modules() if type(m).__name__ == "FakeQuantizedLinear"]
    assert "double_blocks.0.qkv_img.qkv" in fake and not any("mod" in n.rsplit(".", 1)[-1] for n in fake)
    before = {n: p.detach().clone() for n, p in tr.dit.named_parameters()}
    tr.run()
    assert any(not torch.equal(before[n], p) for n, p in tr.dit.named_parameters() if n in before)
    folder = tr.export()
    meta = json.loads((folder / "pipeline.json").read_text())
    assert meta["quant"]["dit"] == "int8_dynamic"
    pipe = Pipeline.load(folder)  # quantized as recorded
    assert pipe.quantized and _weight_kind(pipe.dit.double_blocks[0].qkv_img.qkv) == "Int8Tensor"
    assert len(pipe(["a red circle"], 16, 16, steps=2)) == 1


def test_qat_needs_the_base_to_train_in_full(stage_config):
    stage_config["stage"] = {"name": "qat", "base": "lora", "conditioner": "frozen", "qat": {"dit": "int8_weight"}}
    with pytest.raises(ValueError, match="set stage.base=full"):
        _cfg(stage_config)
    stage_config["stage"] = {"name": "qat", "base": "full", "conditioner": "frozen", "qat": {"dit": "fp8_dynamic"}}
    with pytest.raises(ValueError, match="use int8_dynamic or int8_weight"):
        _cfg(stage_config)


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)),
                    reason="fp8 needs a CUDA GPU of compute capability >= 8.9")
def test_fp8_dynamic_on_a_gpu_stays_close(base_pipeline):
    from training.config import QuantConfig
    from training.pipeline import Pipeline

    full = Pipeline.load(base_pipeline, device="cuda")
    ref = full.latents(["a red circle"], 16, 16, steps=4, seed=1)
    q = Pipeline.load(base_pipeline, device="cuda", quant=QuantConfig(dit="fp8_dynamic", text="fp8_weight"))
    assert _sqnr(ref, q.latents(["a red circle"], 16, 16, steps=4, seed=1)) > 20
