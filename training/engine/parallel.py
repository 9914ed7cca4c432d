"""Parallelism and memory savers applied to a model from outside it (torchtitan style).

Order matters as in torchtitan: activation checkpointing, then compile, then FSDP2 sharding, each per block.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

ATTENTION_KERNELS = ("auto", "cudnn", "flash", "efficient", "math")


def blocks(model: nn.Module) -> list[tuple[nn.ModuleList, int]]:
    return [(lst, i) for lst in (model.double_blocks, model.single_blocks) for i in range(len(lst))]


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in backward instead of storing them."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for lst, i in blocks(model):
        lst[i] = checkpoint_wrapper(lst[i], preserve_rng_state=False)


def apply_compile(model: nn.Module) -> None:
    """torch.compile each block: blocks repeat, so one compiled graph serves them all (fast warm-up)."""
    for lst, i in blocks(model):
        lst[i].compile(dynamic=False)  # in place: parameter names (and checkpoints) stay the same


def apply_fsdp(model: nn.Module, conditioner: nn.Module | None = None, bf16: bool = True) -> None:
    """Shard parameters over all ranks with FSDP2: the DiT per block then whole, the conditioner as its own unit.

    The conditioner's trainable parts (refiner, mapper, type embeddings) are sharded too: FSDP is what
    reduces their gradients across ranks. Its frozen encoders are left out (ignored_params) and stay
    whole on every rank: they need no gradient sync, and HF models return hidden states as usual.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else torch.float32, reduce_dtype=torch.float32)
    for lst, i in blocks(model):
        fully_shard(lst[i], mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    if conditioner is not None:
        frozen = {p for p in conditioner.parameters() if not p.requires_grad}
        fully_shard(conditioner, mp_policy=mp, ignored_params=frozen)


def attention_kernel(name: str):
    """Context that makes scaled_dot_product_attention try kernel `name` first ('auto': torch's own order).

    The others stay allowed behind it, in torch's order, so a shape or mask the first cannot take (flash
    takes no mask) still runs. torch.compile picks the kernel when it traces: enter this before the first step.
    """
    if name not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel {name!r}; choose one of {ATTENTION_KERNELS}")
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    rest = [b for k, b in order.items() if k != name]
    return sdpa_kernel([order[name], *rest], set_priority=True)
