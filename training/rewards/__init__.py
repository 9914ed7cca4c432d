"""Reward models by kind: what RLHF optimises (feedback learning) or ranks with (preference pairs).

A reward scores images against their prompts: `reward(pixels (B, 3, H, W) in [-1, 1], prompts) -> (B,)`, NaN
where it does not apply (e.g. text rendering for a prompt that quotes no text). `differentiable` says whether
gradients reach the pixels (feedback learning needs that; Diffusion-DPO on ranked pairs does not).
Every reward loads in `load()`, before any training step, and fails with what to fix. Model cards: docs/rewards.md.
Kinds map to "module:class" so that reading a config imports no torch.
"""

from __future__ import annotations

REWARDS: dict[str, str] = {
    "clip": "training.rewards.clip:ClipAlignment",  # bilingual image-text alignment (+ optional preference head)
    "aesthetic": "training.rewards.clip:AestheticReward",  # an MLP head over CLIP image features
    "match": "training.rewards.match:MatchReward",  # a learned image-text match model the project trains
    "ocr": "training.rewards.ocr:OCRReward",  # rapidocr reads the image; character match with the quoted text
}


class RewardLoadError(RuntimeError):
    """A reward model could not be loaded; the message says what to fix."""


def build_reward(name: str, spec):
    """The reward `spec` (a RewardSpec) describes, loaded; `name` is its key in the config (for messages)."""
    import importlib

    module, _, attr = REWARDS[spec.kind].partition(":")
    reward = getattr(importlib.import_module(module), attr)(name, spec)
    reward.load()
    return reward
