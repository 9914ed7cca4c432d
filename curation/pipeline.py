"""The funnel as a list of stages, and `run`: every stage that exists, in order, each in its own folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tools import runs

if TYPE_CHECKING:
    from curation.config import CurateConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str  # the command: `sluice curate <name>`
    table: str  # its folder under the run dir
    reads: str | None  # the folder it reads, None for the input


# In funnel order. Later issues append stage1, stage2, downsample, stage3, export.
STAGES = [Stage("ingest", "raw", None), Stage("stage1", "stage1", "raw"), Stage("stage2", "stage2", "stage1"),
          Stage("downsample", "pool", "stage2")]
STAGE_NAMES = [s.name for s in STAGES]
# Captioning and export run as commands; `run` chains them only when a captioner is configured, since
# without one stage 3 has only the alt text (the demo has no VLM weights).
CAPTION_STAGES = [Stage("stage3", "stage3", "stage1"), Stage("export", "export", "stage3")]


def stages_until(until: str | None, cfg: CurateConfig | None = None) -> list[Stage]:
    chain = STAGES + (CAPTION_STAGES if cfg is not None and cfg.stage3.captioner.backend != "none" else [])
    names = [s.name for s in chain]
    if until is None:
        return chain
    if until not in names:
        raise ValueError(f"--until {until!r} is not a stage of this run; stages are {', '.join(names)}"
                         + ("" if until not in [s.name for s in CAPTION_STAGES] else
                            f" ({until} joins the run when stage3.captioner is configured; "
                            f"or run `sluice curate {until}`)"))
    return chain[: names.index(until) + 1]


def stage(name: str) -> Stage:
    for st in STAGES + CAPTION_STAGES:
        if st.name == name:
            return st
    raise ValueError(f"{name!r} is not a stage; stages are {', '.join(STAGE_NAMES)}")


def describe(input_path: str | None, run_dir: Path, stages: list[Stage], force: bool) -> list[dict]:
    """The plan, without starting Spark: what runs, from where to where, and what is skipped."""
    plan = []
    for st in stages:
        out = runs.stage_dir(run_dir, st.table)
        src = input_path if st.reads is None else str(runs.stage_dir(run_dir, st.reads))
        action = "skip (done; --force to redo)" if runs.is_done(out) and not force else "run"
        plan.append({"stage": st.name, "reads": src, "writes": str(out), "action": action})
    return plan


def run_stage(spark, stage: Stage, cfg: CurateConfig, input_path: str, run_dir: Path, force: bool) -> dict:
    out = runs.stage_dir(run_dir, stage.table)
    if stage.name == "ingest":
        from curation.jobs import ingest

        return ingest.run(spark, input_path, out, cfg, force=force)
    if stage.name == "stage1":
        from curation.jobs import stage1

        return stage1.run(spark, runs.stage_dir(run_dir, stage.reads), out, cfg, force=force)
    if stage.name == "stage2":
        from curation.jobs import stage2

        return stage2.run(spark, runs.stage_dir(run_dir, stage.reads), runs.stage_dir(run_dir, "raw"), out, cfg,
                          force=force)
    if stage.name == "downsample":
        from curation.jobs import downsample

        return downsample.run(spark, runs.stage_dir(run_dir, stage.reads), out, cfg, force=force)
    if stage.name == "stage3":
        from curation.jobs import stage3

        return stage3.run(spark, run_dir, out, cfg, force=force)
    if stage.name == "export":
        from curation.jobs import export

        return export.run(spark, run_dir, export.export_dir(run_dir, cfg.export), cfg, force=force)
    raise NotImplementedError(stage.name)


def check_inputs(input_path: str | None, run_dir: Path, stages: list[Stage]) -> None:
    """Fail in seconds, before Spark starts, when what the first stage reads is not there."""
    first = stages[0]
    if first.reads is None:
        if not input_path:
            raise ValueError(f"stage {first.name} needs --input")
        from curation.io.readers import detect

        detect(input_path)
        return
    upstream = runs.stage_dir(run_dir, first.reads)
    if not runs.is_done(upstream):
        producer = next(s.name for s in STAGES + CAPTION_STAGES if s.table == first.reads)
        raise FileNotFoundError(f"{upstream} is not a finished table; run `sluice curate {producer}` first")
