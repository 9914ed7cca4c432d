"""What an objective term receives for one batch, and what it gives back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from training.config import ObjectiveConfig

# (x_t (B, C, H, W), t (B,), rows (B,) long | None) -> velocity (B, C, H, W). `rows` picks which of the batch's
# conditionings each input row uses (None: row i uses conditioning i), so a term can stack inputs.
Velocity = Callable[..., torch.Tensor]


@dataclass
class StepInputs:
    x0: torch.Tensor  # (B, C, H, W) latents of the batch's images (the preferred image of a pair)
    velocity: Velocity  # the model being trained, under the batch's conditioning
    reference: Velocity | None  # the frozen model the stage started from (no gradients); None when not kept
    generator: torch.Generator  # every random draw of the step comes from it (exact resume)
    objective: ObjectiveConfig
    patch: int  # the DiT's patch size (the timestep shift depends on image tokens)
    x0_lose: torch.Tensor | None = None  # (B, C, H, W) latents of the rejected images; rows without one are 0
    has_lose: torch.Tensor | None = None  # (B,) bool: which rows are preference pairs
    captions: list[str] = field(default_factory=list)  # the batch's prompts (content part), as conditioned on
    aesthetics: list[str] = field(default_factory=list)  # their aesthetic parts ("" for none)
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None  # latents -> pixels in [-1, 1], differentiable
    # the reference under the empty prompt (CFG's unconditional branch; no gradients), kept with `reference`
    reference_null: Velocity | None = None
    step: int = 0  # the trainer's step (0-based) this batch trains: terms with a schedule read it
    # (x, t, cfg_scale, rows=None) -> velocity of the trained model as the sampler runs it: the batch's prompts and
    # aesthetic parts WITHOUT CFG dropout, guided against the empty prompt; gradients flow (terms that sample)
    guided: Velocity | None = None
    x0_src: torch.Tensor | None = None  # (B, C, H, W) latents of an edit pair's source image (rows without one: 0)
    has_src: torch.Tensor | None = None  # (B,) bool: which rows are edit pairs


@dataclass
class TermOut:
    loss: torch.Tensor  # scalar
    metrics: dict[str, float] = field(default_factory=dict)
    losses: torch.Tensor | None = None  # (B,) per-sample losses, for the loss-by-timestep log
    t: torch.Tensor | None = None  # (B,) the timesteps they were drawn at
