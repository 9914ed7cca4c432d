"""Supervised fine-tuning of the rewriter on (u, r) pairs, with trl's SFTTrainer (the loss is on r only)."""

from __future__ import annotations

import logging
from pathlib import Path

from training.pe.common import completion, format_user, lora_config, losses, quiet, require_trl, save_rewriter, \
    trl_args

log = logging.getLogger(__name__)


def sft_dataset(cfg, pairs: list[dict]):
    """trl's prompt-completion rows: the template around u, then r (completion-only loss)."""
    from datasets import Dataset

    if not pairs:
        raise ValueError("no (u, r) pairs to train on; build them with training/pe/data.py (pairs_from_export, "
                         "improve_pairs) or give a pairs JSONL with `user` and `rewrite` on each line")
    return Dataset.from_list([{"prompt": format_user(cfg, p["user"]), "completion": completion(p["rewrite"])}
                              for p in pairs])


def sft_trainer(cfg, pairs: list[dict], out: Path):
    """trl's SFTTrainer over the rewriter `cfg.model` (a causal LM or a PE folder to go on from)."""
    require_trl()
    from trl import SFTConfig, SFTTrainer

    from training.pe.rewrite import load_lm

    model, tok, meta = load_lm(cfg.model, trainable=True)
    peft = None if hasattr(model, "peft_config") else lora_config(cfg.lora)  # an adapter folder goes on as it is
    args = trl_args(SFTConfig, cfg.sft, Path(out), completion_only_loss=True, packing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(cfg, pairs), processing_class=tok,
                         peft_config=peft)
    base = meta.get("base") or cfg.model
    return quiet(trainer), tok, base


def train_sft(cfg, pairs: list[dict], out: Path) -> tuple[Path, list[float]]:
    """Train and save a PE folder at `out`; returns it and the logged losses."""
    trainer, tok, base = sft_trainer(cfg, pairs, out)
    log.info("PE SFT: %d pairs, %d steps", len(pairs), cfg.sft.steps)
    trainer.train()
    hist = losses(trainer)
    folder = save_rewriter(trainer, cfg, tok, Path(out), base, {"stage": "sft", "pairs": len(pairs), "losses": hist})
    return folder, hist
