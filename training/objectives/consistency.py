"""Trajectory-segmented consistency distillation (TSCD, Hyper-SD arXiv 2404.13686) for rectified flow.

The teacher's ODE is solved as the pipeline samples it: Euler with CFG on the shifted grid of N = solver_steps
intervals from t=1 (noise) to t=0 (data). That grid is cut into k segments at the indices that are multiples of
N/k. The student f(x_t, t -> s) = x_t + (s - t) v_student(x_t, t) jumps from any x_t to the end s of its segment
in one evaluation; at t = s it is the identity (the consistency boundary condition) by construction. Per sample:

1. a grid index n, t = grid[n], noise -> x_t = (1 - t) x0 + t eps;
2. one teacher Euler step with CFG: x^ = x_t + (grid[n+1] - t) (v_u + w (v_c - v_u));
3. target: the stop-gradient student from x^ to the same segment end, x^ + (s - grid[n+1]) v_student(x^);
   when grid[n+1] is the segment end, the target is the teacher's step itself;
4. loss: d(f(x_t, t -> s), target), l2 or Huber, per sample.

Consistency is asked only inside each segment, so a k-segment student samples in k jumps: k model evaluations
and no CFG (the teacher's guidance is distilled in), against the teacher's 2 per step. k lowers phase by phase
(8 -> 4 -> 2 -> 1, objective.tscd.schedule), each phase going on from the previous weights, and the student
exported after a phase records its k (pipeline.json `sampler`) - Hyper-SD ships one student per step count too.
Target network: the stop-gradient student itself (as PCM and the LCM-LoRA scripts), no EMA copy; no adversarial
term (Hyper-SD adds one for the lowest step counts).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training.objectives.flow_matching import apply_shift, interpolate, shift_for, sigmas


def phase_ends(schedule) -> list[int]:
    """The training step at which each phase ends (the last one runs on: its end is where the schedule says)."""
    ends, total = [], 0
    for phase in schedule:
        total += phase.steps
        ends.append(total)
    return ends


def segments_at(schedule, step: int) -> int:
    """k for the training step `step` (0-based): the first phase whose end lies after it, else the last."""
    for phase, end in zip(schedule, phase_ends(schedule)):
        if step < end:
            return phase.segments
    return schedule[-1].segments


def boundaries(k: int, n: int) -> list[int]:
    """Grid indices of the k segments' boundaries on an n-interval grid: 0, n/k, ..., n."""
    if n % k:
        raise ValueError(f"{k} segments do not fit a {n}-step grid; use a solver grid divisible by k")
    return [i * (n // k) for i in range(k + 1)]


def segment_end(idx: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """(B,) long: the grid index where the segment holding interval `idx` (grid[idx] -> grid[idx+1]) ends."""
    size = n // k
    return (idx // size + 1) * size


def jump(x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x_t moved to time s along velocity v: x + (s - t) v; t, s (B,)."""
    d = (s - t).view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return x + d * v


def guided(cond_fn: Callable, null_fn: Callable, x: torch.Tensor, t: torch.Tensor, w: float) -> torch.Tensor:
    """CFG velocity v_u + w (v_c - v_u), in the order euler_sample computes it."""
    v = cond_fn(x, t)
    if w == 1.0:
        return v
    vu = null_fn(x, t)
    return vu + w * (v - vu)


def tscd_pair(student: Callable, teacher: Callable, teacher_null: Callable, x0: torch.Tensor, noise: torch.Tensor,
              idx: torch.Tensor, grid: torch.Tensor, k: int, w: float):
    """(student jump, target, teacher step x^, t, segment end s) for grid intervals `idx` (B,).

    student, teacher, teacher_null: (x, t) -> velocity; grid: (N+1,) from 1 to 0."""
    n = len(grid) - 1
    t, t_next = grid[idx], grid[idx + 1]  # (B,)
    s = grid[segment_end(idx, k, n)]  # (B,)
    x_t = interpolate(x0, noise, t)  # (B, C, H, W)
    with torch.no_grad():
        x_hat = jump(x_t, t, t_next, guided(teacher, teacher_null, x_t, t, w))  # one teacher Euler step
        at_end = (t_next == s).view(-1, *([1] * (x0.dim() - 1)))
        target = torch.where(at_end, x_hat, jump(x_hat, t_next, s, student(x_hat, t_next)))
    pred = jump(x_t, t, s, student(x_t, t))
    return pred, target, x_hat, t, s


def distance(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2", c: float = 0.001) -> torch.Tensor:
    """Per-sample distance (B,), fp32: mean squared error, or the pseudo-Huber sqrt(d^2 + c^2) - c."""
    d = (pred.float() - target.float()) ** 2
    if kind == "huber":
        d = torch.sqrt(d + c * c) - c
    return d.flatten(1).mean(1)


class TSCD:
    """The `tscd` objective term: consistency inside the current phase's k segments against the teacher (the
    frozen reference the stage started from, guided against the empty prompt)."""

    def __init__(self, cfg):
        self.cfg = cfg.objective.tscd

    def __call__(self, inp):
        from training.objectives.base import TermOut

        if inp.reference is None or inp.reference_null is None:
            raise ValueError("tscd distils the frozen reference (the teacher); the trainer keeps it when the term "
                             "is in objective.terms")
        c, x0 = self.cfg, inp.x0
        b, _, h, w = x0.shape
        k, n = segments_at(c.schedule, inp.step), c.solver_steps
        a = shift_for((h // inp.patch) * (w // inp.patch), inp.objective.base_shift, inp.objective.ref_tokens)
        grid = sigmas(n, a).to(x0.device)
        idx = torch.randint(0, n, (b,), generator=inp.generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=inp.generator).to(x0.device, x0.dtype)
        pred, target, _, t, _ = tscd_pair(inp.velocity, inp.reference, inp.reference_null, x0, noise, idx, grid, k,
                                          c.cfg_scale)
        losses = distance(pred, target, c.loss, c.huber_c)
        loss = losses.mean()
        return TermOut(loss, {"tscd_loss": loss.item(), "tscd_segments": float(k)}, losses, t)


def student_sampler(cfg, step: int) -> dict | None:
    """pipeline.json's `sampler` for a model trained to `step` by this config: the TSCD student's segments, or
    None when the stage does not distil (the Euler sampler)."""
    if "tscd" not in cfg.objective.terms:
        return None
    c = cfg.objective.tscd
    return {"kind": "tscd", "segments": segments_at(c.schedule, max(step - 1, 0)), "solver_steps": c.solver_steps,
            "cfg_scale": c.cfg_scale}


def student_grid(steps: int, solver_steps: int, a: float) -> torch.Tensor:
    """Where a student sampling in `steps` jumps: the segment boundaries of the training grid (steps + 1 points,
    1 -> 0), so each jump is one it was trained on; a count that does not divide the grid gets the plain grid."""
    full = sigmas(solver_steps, a)
    if solver_steps % steps == 0:
        return full[boundaries(steps, solver_steps)]
    return apply_shift(torch.linspace(1.0, 0.0, steps + 1), a)


@torch.no_grad()
def segment_sample(model_fn: Callable, noise: torch.Tensor, steps: int, solver_steps: int, base_shift: float = 1.0,
                   ref_tokens: int = 256, patch: int = 2, cfg_scale: float = 1.0,
                   uncond_fn: Callable | None = None) -> torch.Tensor:
    """A TSCD student's sampler: from t=1 jump segment boundary to boundary, one evaluation each (two with CFG,
    which a distilled student does not need: cfg_scale 1)."""
    _, _, h, w = noise.shape
    grid = student_grid(steps, solver_steps, shift_for((h // patch) * (w // patch), base_shift, ref_tokens))
    x = noise
    for t0, t1 in zip(grid[:-1], grid[1:]):
        t = torch.full((x.shape[0],), float(t0), device=x.device)
        s = torch.full((x.shape[0],), float(t1), device=x.device)
        v = guided(model_fn, uncond_fn, x, t, cfg_scale) if uncond_fn is not None else model_fn(x, t)
        x = jump(x, t, s, v)
    return x
