"""Checkpoints with exact resume: weights, optimiser, EMA, data position, every RNG, the step.

Frozen weights (the LLM, the ByT5 encoder) are not stored: they come back from their path. One process
writes one file with torch.save; under FSDP2 every rank writes its shards with torch.distributed.checkpoint.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.engine.ema import clean


def trainable_state(nets: nn.Module) -> dict[str, torch.Tensor]:
    frozen = {clean(n) for n, p in nets.named_parameters() if not p.requires_grad}
    return {clean(k): v for k, v in nets.state_dict().items() if clean(k) not in frozen}


def rng_state(gen: torch.Generator) -> dict:
    return {"gen": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(gen: torch.Generator, s: dict) -> None:
    gen.set_state(s["gen"])
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save(folder: Path, step: int, nets: nn.Module, opt, ema, data_state: dict, gen: torch.Generator,
         distributed: bool = False, terms: dict | None = None) -> Path:
    """`terms`: the state of objective terms that keep one (e.g. the reward-feedback guard), by name."""
    path = Path(folder) / f"step-{step:08d}"
    path.mkdir(parents=True, exist_ok=True)
    extra = {"step": step, "ema": ema.state_dict(), "data": data_state, "rng": rng_state(gen), "terms": terms or {}}
    if distributed:
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        msd, osd = get_state_dict(nets, opt)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(path / "dcp"))
        # data position and RNG differ per rank; EMA is small enough to keep whole on every rank
        torch.save(extra, path / f"extra-rank{dist.get_rank()}.pt")
        dist.barrier()  # every rank's part is on disk before the marker
        if dist.get_rank():
            return path
    else:
        torch.save({**extra, "model": trainable_state(nets), "optim": opt.state_dict()}, path / "state.pt")
    (path / "_COMPLETE").write_text("")  # written last: a half-written checkpoint is never resumed from
    return path


def latest(folder: Path) -> Path | None:
    found = sorted(p for p in Path(folder).glob("step-*") if (p / "_COMPLETE").exists() and re.search(r"\d+$", p.name))
    return found[-1] if found else None


def load(path: Path, nets: nn.Module, opt, ema, gen: torch.Generator, distributed: bool = False,
         terms: dict | None = None) -> tuple[int, dict]:
    """Restore everything in place (and the state of `terms` that keep one); returns (step, data state)."""
    if distributed:
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        msd, osd = get_state_dict(nets, opt)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=str(Path(path) / "dcp"))
        set_state_dict(nets, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        extra = torch.load(Path(path) / f"extra-rank{dist.get_rank()}.pt", weights_only=False)
    else:
        extra = torch.load(Path(path) / "state.pt", weights_only=False)
        missing, unexpected = nets.load_state_dict(extra["model"], strict=False)
        frozen = {clean(n) for n, p in nets.named_parameters() if not p.requires_grad}
        bad = [k for k in missing if clean(k) not in frozen] + list(unexpected)
        if bad:
            raise ValueError(f"checkpoint {path} does not fit this model (e.g. {bad[:3]}); "
                             "resume with the config it was written with, or set run.resume=false")
        opt.load_state_dict(extra["optim"])
    ema.load_state_dict(extra["ema"])
    set_rng_state(gen, extra["rng"])
    for name, term in (terms or {}).items():
        if hasattr(term, "load_state_dict") and name in extra.get("terms", {}):
            term.load_state_dict(extra["terms"][name])
    return extra["step"], extra["data"]
