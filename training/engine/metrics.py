"""Throughput and MFU from counted FLOPs (torch.utils.flop_counter), never from a formula guess."""

from __future__ import annotations

from collections.abc import Callable

import torch

# dense bf16 peak TFLOP/s per GPU, by a substring of the device name (spec sheets, SXM parts)
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn (forward and whatever backward it runs), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, configured: float | None = None) -> float | None:
    if configured:
        return configured
    if device.type != "cuda":
        return None  # no meaningful peak for a shared CPU: report achieved TFLOP/s only
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def mfu(flops_per_step: int, seconds: float, peak: float | None, world: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all ranks (flops_per_step counted per rank)."""
    if not peak or seconds <= 0:
        return None
    return flops_per_step / seconds / (peak * 1e12)
