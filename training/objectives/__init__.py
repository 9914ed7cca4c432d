"""The objective terms a stage's loss is made of, by name (`objective.terms: {flow_matching: 1.0, ...}`).

A term is a callable `(StepInputs) -> TermOut` (training/objectives/base.py): a function, or a class built once
per run with the TrainConfig (for a term that loads something, e.g. reward models). The loop sums the weighted
terms and knows nothing of what each computes, so a new stage adds a term here and a YAML file, not a loop.
Names map to "module:attribute" so that reading a config imports no torch.
"""

from __future__ import annotations

TERMS: dict[str, str] = {
    "flow_matching": "training.objectives.flow_matching:flow_matching_term",
    "diffusion_dpo": "training.objectives.dpo:diffusion_dpo_term",
    "tscd": "training.objectives.consistency:TSCD",  # Hyper-SD consistency distillation (objective.tscd)
    "reward_feedback": "training.objectives.feedback:RewardFeedback",  # ReFL / DRaFT-K (objective.feedback)
    "perceptual": "training.objectives.identity:Perceptual",  # editing: features of x0_hat vs the target
    "identity": "training.objectives.identity:Identity",  # editing: embedding of x0_hat vs the source (face/ID)
    "refine": "training.objectives.refine:Refine",  # a refiner: low-noise flow from a degraded image
}


def build_term(name: str, cfg):
    """The term registered under `name`, ready to call: a function as is, a class instantiated with `cfg`."""
    import importlib

    if name not in TERMS:
        raise ValueError(f"unknown objective term {name!r}; choose from {sorted(TERMS)}")
    module, _, attr = TERMS[name].partition(":")
    term = getattr(importlib.import_module(module), attr)
    return term(cfg) if isinstance(term, type) else term
