"""Preference optimisation of the rewriter on (u, r_chosen, r_rejected), with trl's DPOTrainer.

The reference is the rewriter as it starts (normally the SFT one), frozen. It is given to trl explicitly: left
to itself, trl loads the reference from the model config's path, which for a model trained in this process is
the checkpoint before training, not the model it holds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.pe.common import completion, format_user, lora_config, losses, quiet, require_trl, save_rewriter, \
    trl_args

log = logging.getLogger(__name__)


def dpo_dataset(cfg, pairs: list[dict]):
    from datasets import Dataset

    if not pairs:
        raise ValueError("no preference pairs to train on; build them with training/pe/data.py (improve_pairs "
                         "from reward scores, pairs_from_pairwise from Label Studio) or give a JSONL with "
                         "`user`, `chosen` and `rejected` on each line")
    same = sum(p["chosen"].strip() == p["rejected"].strip() for p in pairs)
    if same == len(pairs):
        log.warning("every preference pair has chosen == rejected: DPO has nothing to learn (zero gradient)")
    return Dataset.from_list([{"prompt": format_user(cfg, p["user"]), "chosen": completion(p["chosen"]),
                               "rejected": completion(p["rejected"])} for p in pairs])


def dpo_trainer(cfg, pairs: list[dict], out: Path, eval_pairs: list[dict] | None = None):
    """trl's DPOTrainer: the policy starts at `cfg.model` (a PE folder or a causal LM), the reference is a frozen
    copy of the same. LoRA: `cfg.lora` over a whole model (the reference is the model with the adapter off), or
    an adapter folder trained on (the reference is that adapter merged, frozen)."""
    require_trl()
    from trl import DPOConfig, DPOTrainer

    from training.pe.rewrite import load_lm

    model, tok, meta = load_lm(cfg.model, trainable=True)
    peft, ref = None, None
    if hasattr(model, "peft_config"):
        ref, _, _ = load_lm(cfg.model, merge=True)
    elif cfg.lora is not None:
        peft = lora_config(cfg.lora)  # trl's reference is then the same model with the adapter disabled
    else:
        ref, _, _ = load_lm(cfg.model)
    if ref is not None:
        ref.requires_grad_(False).eval()
    losses_ = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.dpo.rpo]} if cfg.dpo.rpo else {}
    args = trl_args(DPOConfig, cfg.dpo, Path(out), beta=cfg.dpo.beta, precompute_ref_log_probs=False, **losses_)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dpo_dataset(cfg, pairs),
                         eval_dataset=dpo_dataset(cfg, eval_pairs) if eval_pairs else None, processing_class=tok,
                         peft_config=peft)
    base = meta.get("base") or cfg.model
    return quiet(trainer), tok, base


def train_dpo(cfg, pairs: list[dict], out: Path) -> tuple[Path, list[float]]:
    """Train and save a PE folder at `out`; returns it and the logged losses (the first is at the start: log 2)."""
    trainer, tok, base = dpo_trainer(cfg, pairs, out)
    log.info("PE DPO: %d pairs, %d steps, beta %g", len(pairs), cfg.dpo.steps, cfg.dpo.beta)
    trainer.train()
    hist = losses(trainer)
    # the preference part on its own: the implicit reward margin of chosen over rejected, and how often it is > 0
    logged = [h for h in trainer.state.log_history if "rewards/margins" in h]
    meta = {"stage": "dpo", "pairs": len(pairs), "losses": hist, "margins": [h["rewards/margins"] for h in logged],
            "accuracies": [h["rewards/accuracies"] for h in logged]}
    return save_rewriter(trainer, cfg, tok, Path(out), base, meta), hist
