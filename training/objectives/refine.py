"""The refiner's objective and sampler: rectified flow restricted to the low-noise window t in [0, t_max].

The refiner sees the clean image's degraded, upsampled version as its condition (`source`, added to each token
by a zero-initialised embedding, training/models/dit.py `as_refiner`); the batch makes it
(training/data/degrade.py). Training draws t in [0, t_max] only, as SDXL's refiner trains on the low-noise
levels its `denoising_start` hands it. Sampling starts at t_max from the condition noised to that level,
x = (1 - t_max) cond + t_max eps, and integrates to t = 0 with Euler steps: the refiner keeps the layout of
its input (which lies within the noise of t_max) and redraws the detail. One step is the model's estimate of
the clean image's mean given the condition; more steps draw sharper detail that is its own, not the mean.
objective.refiner.path = bridge trains on the path from x0 to that very start (`refine_path`), so what the
model sees in training is what the sampler hands it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training.objectives.flow_matching import interpolate, sample_t, velocity_target


def refine_t(n: int, objective, generator: torch.Generator, device) -> torch.Tensor:
    """n training timesteps in [t_min, t_max]: objective.timesteps' distribution on [0, 1], moved into the window."""
    u = sample_t(n, objective.timesteps, generator, mean=objective.logit_mean, std=objective.logit_std)
    r = objective.refiner
    return (r.t_min + (r.t_max - r.t_min) * u).to(device)


class Refine:
    """Flow matching of the clean image on [t_min, t_max], with the model conditioned on its degraded version."""

    def __init__(self, cfg):
        check_same_window(cfg)

    def __call__(self, inp):
        from training.objectives.base import TermOut

        if inp.x0_src is None:
            raise ValueError("objective.terms.refine needs condition images in every batch; they are made when the "
                             "stage's objective.terms holds refine (training/engine/loop.py build_data)")
        t = refine_t(inp.x0.shape[0], inp.objective, inp.generator, inp.x0.device)
        noise = torch.randn(inp.x0.shape, generator=inp.generator).to(inp.x0.device, inp.x0.dtype)
        r = inp.objective.refiner
        x_t = refine_path(inp.x0, inp.x0_src, noise, t, r)
        out = inp.velocity(x_t, t)  # the DiT's output; the velocity closure holds the condition
        if r.predict == "residual":  # x0_hat = cond + out: the x0 loss, no division by t
            losses = ((inp.x0_src + out.float() - inp.x0.float()) ** 2).flatten(1).mean(1)
        else:
            target = velocity_target(inp.x0, noise) if r.path == "flow" else (x_t - inp.x0) / _col(t, x_t)
            losses = ((out.float() - target.float()) ** 2).flatten(1).mean(1)
            if r.loss == "x0":
                losses = losses * t.float() ** 2  # |(x_t - t v_pred) - x0|^2 = t^2 |v_pred - v|^2
        loss = losses.mean()
        return TermOut(loss, {"refine_loss": loss.item()}, losses, t)


def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def refine_path(x0: torch.Tensor, source: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                refiner) -> torch.Tensor:
    """x_t (B, C, H, W) on refiner.path: the flow's (1 - t) x0 + t eps, or the bridge from x0 to the sampler's
    start (1 - t_max) source + t_max eps, whose noise is t eps at every t."""
    x_t = interpolate(x0, noise, t)
    if refiner.path == "flow":
        return x_t
    return x_t + _col(t / refiner.t_max * (1 - refiner.t_max), x0) * (source - x0)


def as_velocity(out: torch.Tensor, x: torch.Tensor, t: torch.Tensor, source: torch.Tensor,
                predict: str) -> torch.Tensor:
    """The velocity the DiT's output `out` (B, C, H, W) stands for under objective.refiner.predict."""
    if predict == "velocity":
        return out
    return (x - source - out) / _col(t, x)  # x0_hat = source + out; v = (x - x0_hat) / t


def check_same_window(cfg) -> None:
    """A stage that goes on from a refiner (stage 2's texture model) must keep its scale, t window, output meaning
    and path: the sampler reads them from the refiner's pipeline.json, and the guidance mixes both models' outputs."""
    import json
    from pathlib import Path

    init = cfg.model.init_from
    meta = Path(init or "", "pipeline.json")
    dit = Path(init or "", "transformer", "config.json")
    if not init or not meta.is_file() or not dit.is_file() or not json.loads(dit.read_text()).get("refine_source"):
        return
    theirs = json.loads(meta.read_text()).get("objective", {}).get("refiner") or {}
    r = cfg.objective.refiner
    want = {"t_max": theirs.get("t_max"), "degrade.scale": (theirs.get("degrade") or {}).get("scale"),
            "predict": theirs.get("predict"), "path": theirs.get("path")}
    have = {"t_max": r.t_max, "degrade.scale": r.degrade.scale, "predict": r.predict, "path": r.path}
    diff = sorted(k for k in want if want[k] is not None and want[k] != have[k])
    if diff:
        raise ValueError(f"objective.refiner {diff} differ from the refiner this stage starts from ({init}: "
                         f"{want}); set them as that refiner's pipeline.json says")


@torch.no_grad()
def refine_sample(velocity: Callable, source: torch.Tensor, noise: torch.Tensor, t_start: float,
                  steps: int) -> torch.Tensor:
    """Euler from the condition `source` (B, C, H, W) noised to t_start down to t = 0; -> latents (B, C, H, W).

    velocity(x, t) is the refiner under its condition (and guidance); the grid is uniform in [0, t_start]."""
    if not 0 < t_start <= 1 or steps < 1:
        raise ValueError(f"strength {t_start} must lie in (0, 1] and steps {steps} be >= 1")
    x = interpolate(source, noise.to(source.dtype), torch.full((source.shape[0],), t_start, device=source.device))
    grid = torch.linspace(t_start, 0.0, steps + 1).tolist()
    for t0, t1 in zip(grid[:-1], grid[1:]):
        x = x + (t1 - t0) * velocity(x, torch.full((x.shape[0],), t0, device=x.device))
    return x
