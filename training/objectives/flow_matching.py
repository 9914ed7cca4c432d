"""Rectified flow (flow matching): t=0 is data, t=1 is noise; x_t = (1-t) x0 + t eps; target v = eps - x0.

Timesteps are drawn logit-normal (default), uniform or "mode" (SD3), then moved by the resolution-dependent
shift t' = a t / (1 + (a-1) t) with a = base_shift * sqrt(tokens / ref_tokens). The same `shift_for` is used by
the training loss and by the Euler sampler, so training and sampling see the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

TIMESTEP_MODES = ("logit_normal", "uniform", "mode")


def sample_t(n: int, mode: str = "logit_normal", generator: torch.Generator | None = None, mean: float = 0.0,
             std: float = 1.0, mode_scale: float = 1.29, device="cpu") -> torch.Tensor:
    """n timesteps in (0, 1) before the shift (fp32)."""
    if mode == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator) * std + mean).to(device)
    u = torch.rand(n, generator=generator)
    if mode == "uniform":
        return u.to(device)
    if mode == "mode":
        return (1 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)).clamp(0, 1).to(device)
    raise ValueError(f"unknown timestep mode {mode!r}; choose one of {TIMESTEP_MODES}")


def shift_for(tokens: int, base_shift: float = 1.0, ref_tokens: int = 256) -> float:
    """Resolution-dependent shift a = base_shift * sqrt(tokens / ref_tokens) (SD3: more pixels, more noise)."""
    return base_shift * math.sqrt(tokens / ref_tokens)


def apply_shift(t: torch.Tensor, a: float) -> torch.Tensor:
    """Monotone map of [0, 1] onto itself with 0 -> 0 and 1 -> 1; a > 1 moves mass towards noise."""
    return a * t / (1 + (a - 1) * t)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def per_sample_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared velocity error per sample: (B,), fp32."""
    return ((pred.float() - velocity_target(x0, noise).float()) ** 2).flatten(1).mean(1)


def bucket_losses(t: torch.Tensor, losses: torch.Tensor, buckets: int = 4) -> dict[str, tuple[float, int]]:
    """Loss summed and counted per timestep bucket (t in [k/b, (k+1)/b)), for logging loss by t."""
    idx = (t.detach().float().clamp(0, 1 - 1e-6) * buckets).long()
    out = {}
    for k in range(buckets):
        sel = idx == k
        if sel.any():
            out[f"t{k / buckets:.2f}-{(k + 1) / buckets:.2f}"] = (float(losses.detach()[sel].sum()), int(sel.sum()))
    return out


def training_loss(model_fn: Callable, x0: torch.Tensor, generator: torch.Generator, mode: str = "logit_normal",
                  base_shift: float = 1.0, ref_tokens: int = 256, patch: int = 2, **tkw):
    """Draw t and noise, shift t for this resolution, and return (mean loss, per-sample losses, t)."""
    b, _, h, w = x0.shape
    a = shift_for((h // patch) * (w // patch), base_shift, ref_tokens)
    t = apply_shift(sample_t(b, mode, generator, **tkw), a).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    pred = model_fn(interpolate(x0, noise, t), t)
    losses = per_sample_loss(pred, x0, noise)
    return losses.mean(), losses, t


def sigmas(steps: int, a: float) -> torch.Tensor:
    """The sampling grid from t=1 to t=0 (steps+1 points), shifted exactly as in training."""
    return apply_shift(torch.linspace(1.0, 0.0, steps + 1), a)


@torch.no_grad()
def euler_sample(model_fn: Callable, noise: torch.Tensor, steps: int = 30, base_shift: float = 1.0,
                 ref_tokens: int = 256, patch: int = 2, cfg_scale: float = 1.0,
                 uncond_fn: Callable | None = None) -> torch.Tensor:
    """Integrate dx/dt = v from t=1 (noise) to t=0 with Euler steps; CFG v = v_u + s (v_c - v_u)."""
    _, _, h, w = noise.shape
    grid = sigmas(steps, shift_for((h // patch) * (w // patch), base_shift, ref_tokens))
    x = noise
    for t0, t1 in zip(grid[:-1], grid[1:]):
        tt = torch.full((x.shape[0],), float(t0), device=x.device)
        v = model_fn(x, tt)
        if uncond_fn is not None and cfg_scale != 1.0:
            vu = uncond_fn(x, tt)
            v = vu + cfg_scale * (v - vu)
        x = x + (float(t1) - float(t0)) * v
    return x


def shifted_t(n: int, x0: torch.Tensor, generator: torch.Generator, objective, patch: int) -> torch.Tensor:
    """n training timesteps drawn as objective config says and shifted for x0's resolution."""
    _, _, h, w = x0.shape
    a = shift_for((h // patch) * (w // patch), objective.base_shift, objective.ref_tokens)
    return apply_shift(sample_t(n, objective.timesteps, generator, mean=objective.logit_mean,
                                std=objective.logit_std), a).to(x0.device)


def flow_matching_term(inp):
    """The rectified-flow loss on the batch's (preferred) images: pre-training, CT and SFT on positives."""
    from training.objectives.base import TermOut

    o = inp.objective
    loss, losses, t = training_loss(lambda x, t: inp.velocity(x, t), inp.x0, inp.generator, o.timesteps,
                                    o.base_shift, o.ref_tokens, inp.patch, mean=o.logit_mean, std=o.logit_std)
    return TermOut(loss, {"flow_loss": loss.item()}, losses, t)
