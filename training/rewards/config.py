"""Config of reward models and of reward feedback learning (`objective.feedback`), as validated data.

Kept apart from training/config.py so that reading a config stays free of torch while the reward code can grow;
training/config.py's ObjectiveConfig holds a FeedbackConfig.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from plumbing.config import Frozen

# kind -> what `path` names; the kinds themselves are training/rewards/__init__.py REWARDS
PATH_OF = {
    "clip": "a CLIP-family model: hf:DIR (CLIP, Chinese-CLIP, AltCLIP) or open_clip:CONFIG.json@CHECKPOINT",
    "aesthetic": "an aesthetic head file (LAION MLP layout, .safetensors/.pth; `sluice curate train-aesthetic` "
                 "writes one from Label Studio ratings or pairs)",
    "match": "a learned image-text match model folder (training/rewards/match.py; e.g. the toy reward or the "
             "text-rendering proxy)",
    "ocr": None,  # rapidocr's shipped models; optional local det/rec ONNX files go in `options`
}


class RewardSpec(Frozen):
    """One reward model of a stage, by kind, with its weight in the summed reward."""

    kind: Literal["clip", "aesthetic", "match", "ocr"]
    path: str | None = None  # what it loads (PATH_OF[kind]); REQUIRED for every kind but ocr
    clip: str | None = None  # aesthetic: the CLIP spec the head reads (default: the one its card names)
    head: str | None = None  # clip: an optional preference head fine-tuned on pairs (training/rewards/heads.py)
    weight: float = 1.0  # in the weighted sum; 0 logs the reward without optimising it (a held-out monitor)
    # Hinge: loss = relu(margin - r) (ReFL used 2 - r), so a reward already past the margin stops pulling;
    # None: loss = -r. A cap on what a reward can ask for is one guard against reward hacking.
    margin: float | None = None
    options: dict[str, float | int | str | bool] = Field(default_factory=dict)  # kind-specific, e.g. ocr threads


class GuardConfig(Frozen):
    """The reward-hacking guard: the pretraining (flow) loss on real data must stay within a bound.

    Each step the trained model's flow loss and the frozen reference's are measured on the same noisy real
    inputs; their ratio (EMA over steps) rising above `max_ratio` means the reward pulls the model off the data.
    """

    max_ratio: float | None = Field(1.25, gt=1)  # None: no guard
    action: Literal["scale", "stop"] = "scale"  # scale the reward loss down, or stop feedback for the run
    factor: float = Field(0.5, gt=0, lt=1)  # scale: multiply the reward loss by this each step over the bound
    recover: float = Field(1.05, ge=1)  # scale: multiply back by this each step under it (up to 1)
    ema: float = Field(0.9, ge=0, lt=1)  # smoothing of both losses over steps (one batch's ratio is noisy)
    warmup: int = Field(5, ge=0)  # steps measured before the guard may act


class FeedbackConfig(Frozen):
    """Reward feedback learning (the `reward_feedback` term): ReFL and DRaFT-K over the sampler's trajectory.

    From noise, the trained model is rolled out with the sampler's own grid (`steps`, CFG); gradient is kept
    through `grad_steps` (K) model evaluations only, starting at an index drawn from the last `window` steps;
    the last of them predicts x0 (x0 = x_t - t v), which is decoded and rewarded. K=1 with window > 1 is ReFL;
    window = K is DRaFT-K. Regularise with the `flow_matching` term on real data in the same stage.
    """

    rewards: dict[str, RewardSpec] = Field(default_factory=dict)
    steps: int = Field(20, ge=1)  # sampling steps of the rollout (the sampler's grid, shifted as in training)
    window: int = Field(5, ge=1)  # the gradient starts at one of the last `window` steps (ReFL: a late step)
    grad_steps: int = Field(1, ge=1)  # K: model evaluations kept in the graph
    cfg_scale: float = Field(3.0, ge=1)  # as the sampler; 1 = no guidance (one model call per step)
    rows: int | None = Field(None, ge=1)  # rollout only the batch's first `rows` prompts (None: all)
    guard: GuardConfig = GuardConfig()

    @model_validator(mode="after")
    def _consistent(self):
        if self.grad_steps > self.window or self.window > self.steps:
            raise ValueError(f"objective.feedback: need grad_steps <= window <= steps (got {self.grad_steps}, "
                             f"{self.window}, {self.steps}); e.g. ReFL grad_steps=1 window=5, DRaFT-K window=K")
        missing = [f"objective.feedback.rewards.{n}.path" for n, r in self.rewards.items()
                   if PATH_OF[r.kind] and not r.path]
        if missing:
            hints = "; ".join(f"{m}: {PATH_OF[self.rewards[m.split('.')[3]].kind]}" for m in missing)
            raise ValueError(f"REQUIRED reward paths are not set: {hints}")
        return self
