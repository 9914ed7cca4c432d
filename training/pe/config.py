"""Config of the prompt rewriter and of its training (SFT, then DPO), as validated data; imports no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from plumbing.config import Frozen

# Promptist's format: the user's prompt, then a cue the LM continues with the rewrite.
DEFAULT_TEMPLATE = "{prompt}\nRephrase:"


class LoraSpec(Frozen):
    """LoRA on the rewriter's linear layers (peft); None in PEConfig trains every weight (tiny models)."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainSpec(Frozen):
    """One training run of the rewriter (SFT or DPO)."""

    steps: int = Field(200, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup: float = Field(0.05, ge=0, lt=1)  # share of the steps
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(256, ge=8)  # tokens of template + rewrite; longer rows are cut at the end
    beta: float = Field(0.1, gt=0)  # DPO only: how far the policy may move from the reference
    # DPO only: weight of an SFT loss on the chosen rewrite beside the DPO loss (RPO). DPO alone may lower the
    # chosen rewrite's likelihood too, as long as the rejected one falls faster; a small model then degenerates
    rpo: float = Field(0.0, ge=0)
    seed: int = 0
    log_every: int = Field(10, ge=1)


class PEConfig(Frozen):
    """The rewriter: a causal LM by local path or hub id (a PE folder to go on from one), how prompts are put to
    it, how it generates, and how SFT and DPO train it."""

    model: str  # REQUIRED: a causal LM (path or hub id), or a PE folder this one goes on from
    template: str = DEFAULT_TEMPLATE  # must hold {prompt}; the rewrite is the continuation
    lora: LoraSpec | None = None  # None: full fine-tuning
    max_new_tokens: int = Field(96, ge=1)
    guard: Literal["repair", "fallback"] = "repair"  # what to do when a rewrite loses a quoted span
    sft: TrainSpec = TrainSpec(lr=1e-4)
    dpo: TrainSpec = TrainSpec(lr=5e-6, steps=100)

    @field_validator("template")
    @classmethod
    def _has_prompt(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError(f"must hold {{prompt}} (where the user's prompt goes), e.g. {DEFAULT_TEMPLATE!r}")
        return v
