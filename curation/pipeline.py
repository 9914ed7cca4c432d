"""The funnel as a list of stages, and `run`: every stage that exists, in order, each in its own folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plumbing import runs

if TYPE_CHECKING:
    from curation.config import CurateConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str  # the command: `sluice curate <name>`
    table: str  # its folder under the run dir
    reads: str | None  # the folder it reads, None for the input; "auto" for stage 3 (stage3.input)


# In funnel order. `run` always chains STAGES; `mix` joins when the run has one (or --until mix), and stage 3
# and export join when a captioner is configured or --until names them: without a captioner stage 3 keeps
# only the cleaned alt text, which is what the demo exports.
STAGES = [Stage("ingest", "raw", None), Stage("stage1", "stage1", "raw"), Stage("stage2", "stage2", "stage1"),
          Stage("downsample", "pool", "stage2")]
STAGE_NAMES = [s.name for s in STAGES]
MIX = Stage("mix", "mix", "pool")
CAPTION_STAGES = [Stage("stage3", "stage3", "auto"), Stage("export", "export", "stage3")]
ALL_STAGES = STAGES + [MIX] + CAPTION_STAGES
# Every table a stage writes, in funnel order: a table is built from the ones before it, so when one
# changes, those after it are stale.
TABLE_ORDER = ("raw", "stage1", "stage2", "pool", "mix", "mix_audit", "stage3", "export")


def stages_until(until: str | None, cfg: CurateConfig | None = None, run_dir: Path | None = None) -> list[Stage]:
    """The stages `run` chains, up to and including `until`."""
    names = [s.name for s in ALL_STAGES]
    if until is not None and until not in names:
        raise ValueError(f"--until {until!r} is not a stage; stages are {', '.join(names)}")
    captioned = cfg is not None and cfg.stage3.captioner.backend != "none"
    at = names.index(until) if until is not None else None
    has_mix = run_dir is not None and runs.stage_dir(run_dir, MIX.table).exists()
    with_mix = until == "mix" or (has_mix and (at is None or at > names.index("mix")))
    chain = list(STAGES) + ([MIX] if with_mix else [])
    if captioned or (at is not None and at >= names.index("stage3")):
        chain += CAPTION_STAGES
    return chain if until is None else [s for s in chain if names.index(s.name) <= at]


def stage(name: str) -> Stage:
    for st in ALL_STAGES:
        if st.name == name:
            return st
    raise ValueError(f"{name!r} is not a stage; stages are {', '.join(s.name for s in ALL_STAGES)}")


def output_dir(run_dir: Path, st: Stage, cfg: CurateConfig | None = None) -> Path:
    if st.name == "export" and cfg is not None:
        from curation.jobs.export import export_dir

        return export_dir(run_dir, cfg.export)
    return runs.stage_dir(run_dir, st.table)


def reads(st: Stage, run_dir: Path, cfg: CurateConfig | None) -> str | None:
    """The table folder a stage reads: stage 3's is stage3.input, resolved when `auto` (the latest
    finished of mix, pool, stage2, stage1)."""
    if st.reads != "auto":
        return st.reads
    from curation.jobs.stage3 import FUNNEL

    choice = cfg.stage3.input if cfg is not None else "auto"
    if choice != "auto":
        return choice
    return next((t for t in FUNNEL if runs.is_done(runs.stage_dir(run_dir, t))), None)


def later_tables(run_dir: Path, table: str, cfg: CurateConfig | None = None) -> list[Path]:
    """The folders of the tables after `table` in the funnel (the export where the config puts it)."""
    after = TABLE_ORDER[TABLE_ORDER.index(table) + 1:]
    return [output_dir(run_dir, stage("export"), cfg) if t == "export" else runs.stage_dir(run_dir, t)
            for t in after]


def mark_later_stale(run_dir: Path, table: str, why: str, cfg: CurateConfig | None = None) -> list[Path]:
    """Mark every finished table after `table` stale (the next run redoes it); returns those marked."""
    return [p for p in later_tables(run_dir, table, cfg) if runs.mark_stale(p, why)]


def describe(input_path: str | None, run_dir: Path, stages: list[Stage], force: bool,
             cfg: CurateConfig | None = None) -> list[dict]:
    """The plan, without starting Spark: what runs, from where to where, and what is skipped."""
    plan = []
    for st in stages:
        out = output_dir(run_dir, st, cfg)
        src = reads(st, run_dir, cfg)
        if st.reads is None:
            src = input_path
        elif st.name == "mix" and cfg is not None:  # its pools name their tables
            src = ", ".join(dict.fromkeys(p.table if "/" in p.table else str(runs.stage_dir(run_dir, p.table))
                                          for p in cfg.mix.pools))
        elif src is None:  # stage 3, auto, before any funnel table exists
            src = "the latest finished of mix, pool, stage2, stage1"
        else:
            src = str(runs.stage_dir(run_dir, src))
        stale = runs.stale_reason(out)
        if runs.is_done(out) and not force and stale is None:
            action = "skip (done; --force to redo)"
        else:
            action = f"run (stale: {stale})" if stale else "run"
        plan.append({"stage": st.name, "reads": src, "writes": str(out), "action": action})
    return plan


def run_stage(spark, stage: Stage, cfg: CurateConfig, input_path: str, run_dir: Path, force: bool) -> dict:
    """Run one stage (skipped when its table is current); when it wrote a new table, the later ones are stale."""
    out = output_dir(run_dir, stage, cfg)
    redo = force or not runs.is_current(out) or (stage.name == "mix" and not runs.is_current(
        runs.stage_dir(run_dir, "mix_audit")))
    manifest = _run_job(spark, stage, cfg, input_path, run_dir, out, force)
    if redo:
        table = "mix_audit" if stage.name == "mix" else stage.table
        mark_later_stale(run_dir, table, f"{stage.name} was redone at {manifest.get('written_at', '?')}", cfg)
    return manifest


def _run_job(spark, stage: Stage, cfg: CurateConfig, input_path: str, run_dir: Path, out: Path, force: bool) -> dict:
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
    if stage.name == "mix":
        from curation.jobs import mix

        return mix.run(spark, run_dir, cfg, force=force)
    if stage.name == "stage3":
        from curation.jobs import stage3

        return stage3.run(spark, run_dir, out, cfg, force=force)
    if stage.name == "export":
        from curation.jobs import export

        return export.run(spark, run_dir, out, cfg, force=force)
    raise NotImplementedError(stage.name)


def check_inputs(input_path: str | None, run_dir: Path, stages: list[Stage], cfg: CurateConfig | None = None) -> None:
    """Fail in seconds, before Spark starts, when what the first stage reads is not there or is stale."""
    first = stages[0]
    if first.reads is None:
        if not input_path:
            raise ValueError(f"stage {first.name} needs --input")
        from curation.io.readers import detect

        detect(input_path)
        return
    if first.name == "mix":
        return  # its pools name their tables; mix.run checks each before any work
    table = reads(first, run_dir, cfg)
    if table is None:
        raise FileNotFoundError(f"no finished mix, pool, stage2 or stage1 table in {run_dir}; run "
                                f"`sluice curate stage1` (or the later stages) first")
    check_current(run_dir, table)


def producer(table: str) -> str:
    """The command that writes `table`."""
    return next((s.name for s in ALL_STAGES if s.table == table), "mix" if table == "mix_audit" else table)


def check_current(run_dir: Path, table: str) -> Path:
    """The folder of `table` in the run, or an error saying which command makes it (or redoes it, when stale)."""
    path = runs.stage_dir(run_dir, table)
    if not runs.is_done(path):
        raise FileNotFoundError(f"{path} is not a finished table; run `sluice curate {producer(table)}` first")
    stale = runs.stale_reason(path)
    if stale:
        raise FileNotFoundError(f"{path} is stale ({stale}); redo it with `sluice curate {producer(table)}` "
                                f"(or `sluice curate run --until {producer(table)}`) first")
    return path
