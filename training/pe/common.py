"""What SFT and DPO of the rewriter share: trl's arguments from a TrainSpec, LoRA, logging, saving."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def require_trl():
    from plumbing.deps import require

    return require("trl", "train")


def trl_args(config_cls, spec, out: Path, **extra):
    """trl's SFTConfig/DPOConfig from a TrainSpec: no checkpoints (the PE folder is the output), no trackers,
    fp32 on the CPU (trl's default bf16 is slower there), the same seed for data order and init."""
    import dataclasses

    import torch

    cuda = torch.cuda.is_available()
    # no activation checkpointing (trl turns it on by default): small rewriters are compute-bound, not memory-bound;
    # transformers 5 renamed the switch, and the old name warns
    names = {f.name for f in dataclasses.fields(config_cls)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    extra.setdefault(ckpt, False)
    return config_cls(output_dir=str(out / "trainer"), max_steps=spec.steps, per_device_train_batch_size=spec.batch_size,
                      per_device_eval_batch_size=spec.batch_size, learning_rate=spec.lr, warmup_steps=spec.warmup,
                      weight_decay=spec.weight_decay, lr_scheduler_type="linear", logging_steps=spec.log_every,
                      max_length=spec.max_length, seed=spec.seed, data_seed=spec.seed, report_to="none",
                      save_strategy="no", use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
                      disable_tqdm=True, dataloader_num_workers=0, **extra)


def lora_config(spec):
    """peft's LoraConfig for a causal LM, or None (full fine-tuning)."""
    if spec is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, task_type="CAUSAL_LM",
                      target_modules=spec.target_modules)


def quiet(trainer):
    """transformers prints every log dict to stdout when tqdm is off; our logger carries them instead."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def losses(trainer) -> list[float]:
    """The training loss at every logged step, in order."""
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def save_rewriter(trainer, cfg, tok, out: Path, base: str | None, meta: dict) -> Path:
    """The trained model as a PE folder: a whole model, or the adapter over `base`."""
    from training.pe.rewrite import Rewriter

    model = trainer.accelerator.unwrap_model(trainer.model)
    is_adapter = hasattr(model, "peft_config")
    rw = Rewriter(model, tok, cfg.template, cfg.max_new_tokens, cfg.guard)
    return rw.save(out, {**meta, "base": base if is_adapter else None})


def format_user(cfg, user: str) -> str:
    return cfg.template.format(prompt=user)


def completion(text: str) -> str:
    # The rewrite follows the template's cue after one space, as a person would write it ("Rephrase: a red
    # circle"); generation strips it again.
    return " " + text.strip()
