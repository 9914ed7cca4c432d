"""The objective terms a stage's loss is made of, by name (`objective.terms: {flow_matching: 1.0, ...}`).

A term is a function `(StepInputs) -> TermOut` (training/objectives/base.py). The loop sums the weighted terms
and knows nothing of what each computes, so a new stage adds a term here and a YAML file, not a loop.
Names map to "module:function" so that reading a config imports no torch.
"""

from __future__ import annotations

TERMS: dict[str, str] = {
    "flow_matching": "training.objectives.flow_matching:flow_matching_term",
    "diffusion_dpo": "training.objectives.dpo:diffusion_dpo_term",
}


def get_term(name: str):
    """The term function registered under `name`."""
    import importlib

    if name not in TERMS:
        raise ValueError(f"unknown objective term {name!r}; choose from {sorted(TERMS)}")
    module, _, fn = TERMS[name].partition(":")
    return getattr(importlib.import_module(module), fn)
