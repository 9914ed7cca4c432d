"""Reward feedback learning: ReFL (Xu et al. 2023) and DRaFT-K (Clark et al. 2023) in the rectified-flow form.

From noise, the trained model is rolled out as the sampler runs it (the shifted Euler grid, CFG against the
empty prompt) for the batch's prompts. No graph is kept until a start index drawn from the last `window` steps;
from there `grad_steps` (K) model evaluations keep theirs, the last predicting x0 = x_t - t v. The prediction
is decoded through the frozen VAE and scored by the stage's reward models; the loss is their weighted sum
(-r, or relu(margin - r)), so gradients reach the trainable weights through the last K steps only, never the
reward models or the VAE. K=1 with a window of late steps is ReFL; window = K is DRaFT-K (K=1: DRaFT-1).

ReFL alone drifts (zai-org/ImageReward#24, #34): put the `flow_matching` term on real data in the same stage.
The guard watches that anchor: the trained model's flow loss on the batch's real images over the frozen
reference's, on the same noisy inputs (an EMA ratio); above `guard.max_ratio` the reward loss is scaled down
(or feedback stops), and the metrics say so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from training.objectives.flow_matching import interpolate, per_sample_loss, shift_for, shifted_t, sigmas

log = logging.getLogger(__name__)


def rollout(guided: Callable, noise: torch.Tensor, grid: torch.Tensor, start: int, grad_steps: int,
            cfg_scale: float, rows: torch.Tensor | None = None, trace: list | None = None) -> torch.Tensor:
    """x0 predicted from `noise` (B, C, H, W) along `grid` (steps+1 points, t=1 -> 0), with the graph kept for
    the `grad_steps` model evaluations from index `start` on. `trace` (tests) gets (index, grad enabled) per call."""
    x = noise
    with torch.no_grad():
        for j in range(start):
            t0, t1 = float(grid[j]), float(grid[j + 1])
            if trace is not None:
                trace.append((j, torch.is_grad_enabled()))
            x = x + (t1 - t0) * guided(x, torch.full((len(x),), t0, device=x.device), cfg_scale, rows)
    x = x.detach()
    for j in range(start, start + grad_steps):
        t0, t1 = float(grid[j]), float(grid[j + 1])
        if trace is not None:
            trace.append((j, torch.is_grad_enabled()))
        v = guided(x, torch.full((len(x),), t0, device=x.device), cfg_scale, rows)
        if j == start + grad_steps - 1:
            return x - t0 * v  # the x0 the model predicts at this step (exact Euler to t=0 on the last step)
        x = x + (t1 - t0) * v
    raise ValueError("grad_steps must be >= 1")


def reward_loss(rewards: dict, specs: dict, pixels: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, dict]:
    """(weighted loss, {reward/<name>: mean}) over the rows each reward applies to (NaN rows left out)."""
    total, metrics = pixels.sum() * 0.0, {}
    for name, reward in rewards.items():
        spec = specs[name]
        r = reward(pixels, prompts).float()  # (B,)
        ok = ~torch.isnan(r)
        metrics[f"reward/{name}"] = r[ok].mean().item() if ok.any() else float("nan")
        if spec.weight == 0 or not ok.any():
            continue  # logged only: a held-out monitor, or no row it applies to
        per = torch.relu(spec.margin - r[ok]) if spec.margin is not None else -r[ok]
        total = total + spec.weight * per.mean()
    return total, metrics


class Guard:
    """EMA of the trained and the reference model's flow loss on real data; the reward loss's scale."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.state = {"model": None, "ref": None, "seen": 0, "scale": 1.0, "stopped": False, "tripped": 0}

    def update(self, err_model: float, err_ref: float) -> float:
        c, s = self.cfg, self.state
        a = c.ema if s["seen"] else 0.0
        s["model"] = err_model if s["model"] is None else a * s["model"] + (1 - a) * err_model
        s["ref"] = err_ref if s["ref"] is None else a * s["ref"] + (1 - a) * err_ref
        s["seen"] += 1
        if s["stopped"] or s["seen"] <= c.warmup:
            return 0.0 if s["stopped"] else s["scale"]
        if self.ratio > c.max_ratio:
            s["tripped"] += 1
            if c.action == "stop":
                s["stopped"] = True
                log.warning("reward feedback stopped: flow loss on real data is %.3fx the reference's (bound %.3f)",
                            self.ratio, c.max_ratio)
                return 0.0
            s["scale"] *= c.factor
            log.info("reward feedback scaled to %.3g: flow loss ratio %.3f > %.3f", s["scale"], self.ratio,
                     c.max_ratio)
        else:
            s["scale"] = min(1.0, s["scale"] * c.recover)
        return s["scale"]

    @property
    def ratio(self) -> float:
        s = self.state
        return s["model"] / max(s["ref"], 1e-12) if s["model"] is not None else 1.0

    def metrics(self) -> dict[str, float]:
        s = self.state
        return {"guard/flow_ratio": self.ratio, "guard/scale": 0.0 if s["stopped"] else s["scale"],
                "guard/tripped": float(s["tripped"])}


class RewardFeedback:
    """The `reward_feedback` term: built once per run, it loads its reward models before the first step."""

    def __init__(self, cfg):
        from training.rewards import RewardLoadError, build_reward

        fb = cfg.objective.feedback
        if not fb.rewards:
            raise ValueError("objective.terms.reward_feedback needs reward models: give objective.feedback.rewards, "
                             "e.g. {align: {kind: clip, path: hf:DIR}} (training/configs/rlhf.yaml)")
        if fb.guard.max_ratio is not None and cfg.stage.conditioner == "train":
            raise ValueError("the reward feedback guard compares with the frozen model the stage starts from, which "
                             "shares the conditioner: freeze it (stage.conditioner=frozen), or turn the guard off "
                             "(objective.feedback.guard.max_ratio=null)")
        self.specs = dict(fb.rewards)
        self.rewards = {name: build_reward(name, spec) for name, spec in fb.rewards.items()}
        blind = [n for n, r in self.rewards.items() if not r.differentiable and self.specs[n].weight != 0]
        if blind:
            raise RewardLoadError(
                f"rewards {blind} are not differentiable, so feedback learning cannot follow them: set their weight "
                "to 0 to log them only, or rank generated images with them into preference pairs for Diffusion-DPO "
                "(training/data/preference.py build_ranked_pairs; objective.terms.diffusion_dpo)")
        self.guard = Guard(fb.guard) if fb.guard.max_ratio is not None else None
        self.device = None

    def state_dict(self) -> dict:
        return {"guard": dict(self.guard.state) if self.guard else None}

    def load_state_dict(self, state: dict) -> None:
        if self.guard and state.get("guard"):
            self.guard.state.update(state["guard"])

    def _on(self, device: torch.device) -> None:
        if self.device != device:
            for r in self.rewards.values():
                r.to(device)
            self.device = device

    def _guard_scale(self, inp, rows: torch.Tensor) -> float:
        x0 = inp.x0[rows]
        with torch.no_grad():
            t = shifted_t(len(x0), x0, inp.generator, inp.objective, inp.patch)
            noise = torch.randn(x0.shape, generator=inp.generator).to(x0.device, x0.dtype)
            x_t = interpolate(x0, noise, t)
            err = per_sample_loss(inp.velocity(x_t, t, rows), x0, noise).mean().item()
            ref = per_sample_loss(inp.reference(x_t, t, rows), x0, noise).mean().item()
        return self.guard.update(err, ref)

    def __call__(self, inp):
        from training.objectives.base import TermOut

        fb = inp.objective.feedback
        if inp.guided is None or inp.decode is None:
            raise ValueError("reward_feedback needs the sampler's velocity and the VAE decode in StepInputs "
                             "(guided, decode); run it through training/engine/loop.py")
        self._on(inp.x0.device)
        n = len(inp.x0) if fb.rows is None else min(fb.rows, len(inp.x0))
        rows = torch.arange(n, device=inp.x0.device)
        scale = 1.0
        if self.guard is not None:
            if inp.reference is None:
                raise ValueError("the reward feedback guard needs the frozen reference model (training/engine/"
                                 "stage.py needs_reference keeps it when the guard is on)")
            scale = self._guard_scale(inp, rows)
        _, c, h, w = inp.x0.shape
        grid = sigmas(fb.steps, shift_for((h // inp.patch) * (w // inp.patch), inp.objective.base_shift,
                                          inp.objective.ref_tokens))
        offset = int(torch.randint(0, fb.window - fb.grad_steps + 1, (1,), generator=inp.generator))
        start = fb.steps - fb.window + offset
        noise = torch.randn((n, c, h, w), generator=inp.generator).to(inp.x0.device, inp.x0.dtype)
        x0_hat = rollout(inp.guided, noise, grid, start, fb.grad_steps, fb.cfg_scale, rows)
        loss, metrics = reward_loss(self.rewards, self.specs, inp.decode(x0_hat), inp.captions[:n])
        metrics.update({"feedback_loss": loss.item(), "feedback_t": float(grid[start + fb.grad_steps - 1])})
        if self.guard is not None:
            metrics.update(self.guard.metrics())
        return TermOut(loss * scale, metrics)
