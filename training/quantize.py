"""Quantization of a pipeline part by part, and the fake quantization of quantization-aware fine-tuning (QAT).

Parts (QuantConfig): the attention and MLP Linears of the DiT's blocks (not the adaLN modulation named in
`keep`, nor the embeddings and proj_out, which lie outside the blocks); the frozen text encoders (the LLM and the
glyph T5; their small trained refiner and mapper stay); the VAE's Linears. Backends: torchao (int8 weight-only,
int8 dynamic, and fp8 on CUDA GPUs of compute capability >= 8.9), or torch's own dynamic int8
(torch.ao.quantization.quantize_dynamic, fbgemm kernels on CPU; deprecated upstream in favour of torchao).

Quantized weights are torchao tensor subclasses that safetensors cannot hold, so a pipeline keeps its full
precision weights on disk and records how to quantize them (pipeline.json `quant`); loading quantizes. Rounding the
same weights is deterministic, so the loaded model is the one that was measured.
"""

from __future__ import annotations

import io
import logging

import torch
from torch import nn

from training.config import QuantConfig

log = logging.getLogger(__name__)

FP8 = ("fp8_weight", "fp8_dynamic")


def require_torchao():
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise ImportError("quantization needs torchao: pip install 'sluice[quant]' (or set quant.backend=torch for "
                          "torch's own dynamic int8 on CPU)") from None
    return torchao


def check_device(mode: str, part: str, device: torch.device) -> None:
    """fp8 needs a CUDA GPU of compute capability >= 8.9 (Ada, Hopper); say so before anything is changed."""
    if mode not in FP8:
        return
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise ValueError(f"quant.{part}={mode} needs a CUDA GPU of compute capability >= 8.9 (Ada, Hopper), and "
                         f"this part is on {device}: use int8_dynamic or int8_weight here")


def in_blocks(keep: list[str]):
    """filter(module, fqn): Linears inside the DiT's blocks, except the modules named in `keep`."""

    def use(module: nn.Module, fqn: str) -> bool:
        if not isinstance(module, nn.Linear) or not fqn.startswith(("double_blocks.", "single_blocks.")):
            return False
        return not any(f".{name}." in f".{fqn}." for name in keep)

    return use


def linears(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


def torchao_config(mode: str):
    from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig,
                                      Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig)

    return {"int8_weight": Int8WeightOnlyConfig, "int8_dynamic": Int8DynamicActivationInt8WeightConfig,
            "fp8_weight": Float8WeightOnlyConfig, "fp8_dynamic": Float8DynamicActivationFloat8WeightConfig}[mode]()


def quantize_module(module: nn.Module, mode: str, backend: str, use, part: str) -> int:
    """Quantize the Linears of `module` that `use(module, fqn)` picks, in place; returns how many."""
    picked = [fqn for fqn, m in module.named_modules() if use(m, fqn)]
    if mode == "none" or not picked:
        return 0
    device = next(module.parameters()).device
    check_device(mode, part, device)
    if backend == "torch":
        if mode != "int8_dynamic" or device.type != "cpu":
            raise ValueError(f"quant.{part}={mode} on {device}: quant.backend=torch is torch's dynamic int8 on CPU "
                             "only; use quant.backend=torchao, or int8_dynamic on CPU")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # per-channel weights as torchao's (and QAT's); activations per tensor, the one dynamic mode fbgemm has
        quantize_dynamic(module, {fqn: per_channel_dynamic_qconfig for fqn in picked}, dtype=torch.qint8,
                         inplace=True)
        return len(picked)
    require_torchao()
    from torchao.quantization import quantize_

    quantize_(module, torchao_config(mode), filter_fn=use)
    return len(picked)


def check_config(cfg: QuantConfig, dit: nn.Module, has_vae_weights: bool) -> None:
    """Refuse, before any part is changed, a config that names nothing to quantize."""
    names = {n for n, _ in dit.named_modules()}
    missing = [k for k in cfg.keep if not any(n == k or n.endswith("." + k) for n in names)]
    if missing:
        raise ValueError(f"quant.keep {missing} name no module of this DiT; use names such as mod, mod_img, "
                         "mod_txt, qkv, lin1 (or leave keep out for the default)")
    if cfg.vae != "none" and not has_vae_weights:
        raise ValueError(f"quant.vae={cfg.vae}: this pipeline's VAE is pixel space and has no weights; set "
                         "quant.vae=none")


def quantize_pipeline(pipe, cfg: QuantConfig) -> dict[str, int]:
    """Quantize the pipeline's parts in place as `cfg` says; returns the quantized Linears per part."""
    vae_params = list(pipe.vae.parameters())
    check_config(cfg, pipe.dit, bool(vae_params))
    for part, mode, m in (("dit", cfg.dit, pipe.dit), ("text", cfg.text, pipe.cond), ("vae", cfg.vae, pipe.vae)):
        if next(m.parameters(), None) is not None:
            check_device(mode, part, next(m.parameters()).device)
    counts = {"dit": quantize_module(pipe.dit, cfg.dit, cfg.backend, in_blocks(cfg.keep), "dit")}
    text = 0
    for enc in text_encoders(pipe.cond):
        text += quantize_module(enc, cfg.text, cfg.backend, linears, "text")
    counts["text"] = text
    counts["vae"] = quantize_module(pipe.vae, cfg.vae, cfg.backend, linears, "vae") if vae_params else 0
    log.info("quantized Linears per part: %s (%s)", counts, cfg.model_dump())
    return counts


def text_encoders(cond: nn.Module) -> list[nn.Module]:
    """The frozen encoders of a conditioner: the LLM and, when there is one, the glyph T5."""
    out = [cond.llm.llm]
    if cond.glyph is not None:
        out.append(cond.glyph.t5)
    return out


def state_bytes(module: nn.Module) -> int:
    """Bytes of the module's weights as torch.save writes them (quantized tensors at their packed size)."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return len(buf.getvalue())


def part_bytes(pipe) -> dict[str, int]:
    """Bytes per part: the DiT, the frozen text encoders, the VAE (0 in pixel space)."""
    return {"dit": state_bytes(pipe.dit), "text": sum(state_bytes(m) for m in text_encoders(pipe.cond)),
            "vae": state_bytes(pipe.vae) if list(pipe.vae.parameters()) else 0}


# ---- QAT --------------------------------------------------------------------------------------------------

def qat_configs(mode: str):
    """(activation, weight) fake-quantize configs close to torchao's int8 configs: per-channel symmetric int8
    weights, as served; per-token int8 activations (int8_dynamic only) asymmetric, because torchao's fake
    quantizer has no symmetric per-token mode (serving rounds them symmetric: one bit of range apart)."""
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    weight = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    act = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False) if mode == "int8_dynamic" else None
    return act, weight


def prepare_qat(dit: nn.Module, cfg: QuantConfig) -> int:
    """Swap the DiT's block Linears (as quantization would pick them) for fake-quantized ones; returns how many.
    Parameter names stay, so the optimizer, EMA and checkpoints see the same weights."""
    require_torchao()
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    check_config(cfg, dit, True)
    use = in_blocks(cfg.keep)
    n = sum(use(m, f) for f, m in dit.named_modules())
    act, weight = qat_configs(cfg.dit)
    quantize_(dit, QATConfig(activation_config=act, weight_config=weight, step="prepare"), filter_fn=use)
    log.info("QAT: %d DiT Linears train under %s fake quantization", n, cfg.dit)
    return n


def has_fake_quant(module: nn.Module) -> bool:
    return any(type(m).__name__ == "FakeQuantizedLinear" for m in module.modules())


def strip_fake_quant(module: nn.Module) -> nn.Module:
    """Plain Linears again (same weights), in place: what a pipeline saves after QAT."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(module, QATConfig(step="convert"), filter_fn=lambda m, f: type(m).__name__ == "FakeQuantizedLinear")
    return module
