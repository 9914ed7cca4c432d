"""What a stage trains: the base DiT in full, through LoRA, or not at all; the conditioner or not; a VMix
adapter or not. Applied to the built models before parallelism wraps them, so the loop only ever sees
parameters that do or do not require gradients. Also the frozen reference an objective may compare with."""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext

from torch import nn

from training.config import TrainConfig

log = logging.getLogger(__name__)


def apply_stage(cfg: TrainConfig, dit: nn.Module, conditioner: nn.Module):
    """Freeze, add LoRA and build the VMix adapter as `cfg.stage` says; returns the VMix module or None."""
    stage = cfg.stage
    if stage.base == "lora":
        from training.models.adapters import add_lora

        add_lora(dit, stage.lora)
    elif stage.base == "frozen":
        dit.requires_grad_(False)
    if stage.qat is not None:  # before the EMA and optimizer see the parameters (fake quantizers keep their names)
        from training.quantize import prepare_qat

        prepare_qat(dit, stage.qat)
    if stage.conditioner == "frozen":
        conditioner.requires_grad_(False)
    vmix = None
    if stage.vmix is not None:
        from training.models.adapters import build_vmix

        vmix = build_vmix(stage.vmix, dit, conditioner.llm)
    if cfg.model.adapter_from:
        from training.models.adapters import continue_adapter

        continue_adapter(cfg.model.adapter_from, stage, dit, vmix, conditioner)
    return vmix


def trainable_counts(nets: nn.ModuleDict) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameters per top-level module, for the log and the tests."""
    return {name: (sum(p.numel() for p in m.parameters() if p.requires_grad), sum(p.numel() for p in m.parameters()))
            for name, m in nets.items()}


class Reference:
    """The model the stage started from, frozen: the base without its LoRA (no copy needed), or, when the
    base itself trains, a copy taken before the first step. Only kept when an objective term needs it."""

    def __init__(self, cfg: TrainConfig, dit: nn.Module):
        self.copy = None
        self.lora = cfg.stage.base == "lora"
        if cfg.stage.base == "full":
            self.copy = copy.deepcopy(dit).requires_grad_(False).eval()
            log.info("kept a frozen copy of the DiT as the reference (the base trains in full)")

    def model(self, dit: nn.Module) -> nn.Module:
        return self.copy if self.copy is not None else dit

    def context(self, dit: nn.Module):
        if self.lora:
            from training.models.adapters import lora_disabled

            return lora_disabled(dit)
        return nullcontext()


def needs_reference(cfg: TrainConfig) -> bool:
    if "tscd" in cfg.objective.terms:  # distils the reference: it is the teacher
        return True
    guard = "reward_feedback" in cfg.objective.terms and cfg.objective.feedback.guard.max_ratio is not None
    return "diffusion_dpo" in cfg.objective.terms or guard
