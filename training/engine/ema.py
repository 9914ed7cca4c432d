"""Exponential moving average of the trainable weights (fp32 shadow copies)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def clean(name: str) -> str:
    """A parameter name without wrapper prefixes (activation checkpointing, compile), as saved."""
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


class EMA:
    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {clean(n): p.detach().float().clone() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for n, p in module.named_parameters():
            if clean(n) in self.shadow:
                self.shadow[clean(n)].lerp_(p.detach().float(), 1 - self.decay)

    @contextlib.contextmanager
    def applied(self, module: nn.Module):
        """Use the EMA weights inside the block (for samples), then put the live weights back."""
        live = {n: p.detach().clone() for n, p in module.named_parameters() if clean(n) in self.shadow}
        with torch.no_grad():
            for n, p in module.named_parameters():
                if n in live:
                    p.copy_(self.shadow[clean(n)].to(p.dtype))
        try:
            yield module
        finally:
            with torch.no_grad():
                for n, p in module.named_parameters():
                    if n in live:
                        p.copy_(live[n])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.shadow = state["decay"], {k: v.clone() for k, v in state["shadow"].items()}
