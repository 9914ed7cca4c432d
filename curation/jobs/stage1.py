"""Stage 1: cheap pixel signals over every usable row (quality, layout, structure, OCR), then rules."""

from __future__ import annotations

import logging
from pathlib import Path

from curation.config import CurateConfig, Stage1Config, Stage1Signals
from curation.signals import Builder, resolve
from curation.signals.analysis import ImageSignals
from curation.signals.probe import probe_manifest
from curation.spark import apply_scorer, read_table, write_table
from curation.steps.decide import check_rules, decide
from schemas.registry import get_schema
from schemas.spark import to_spark
from plumbing import runs

log = logging.getLogger(__name__)

TABLE = "stage1"


def _ocr(sig: Stage1Signals, built: dict) -> dict | None:
    o = sig.ocr
    return dict(backend=o.backend, det_max_side=o.det_max_side, min_conf=o.min_conf, det_model=o.det_model,
                rec_model=o.rec_model, cls_model=o.cls_model) if o.enabled else None


def _fusion(sig: Stage1Signals, built: dict) -> dict | None:
    on = sig.structure.fusion and "structure" in built and "ocr" in built
    return dict(structure=built["structure"], path=sig.structure.fusion_model) if on else None


# Stage 1's pixel signals (curation.signals.SIGNALS), cheapest first; fusion reads structure's and OCR's
# outputs, so it runs last.
SIGNAL_BUILDERS: list[Builder] = [
    ("quality", lambda sig, built: {} if sig.quality else None),
    ("layout", lambda sig, built: {} if sig.layout else None),
    ("structure", lambda sig, built: dict(model=sig.structure.model) if sig.structure.enabled else None),
    ("ocr", _ocr),
    ("structure_fusion", _fusion),
]


def build_signals(cfg: Stage1Config) -> tuple:
    """The pixel signals the config turns on, cheapest first."""
    built, _ = resolve(SIGNAL_BUILDERS, cfg.signals)
    return tuple(built.values())


def _spread(spark, df, rows: int, rows_per_task: int = 500):
    """Enough tasks for every core: OCR costs ~1 s per image, so a few large Parquet files are too few."""
    target = max(2 * spark.sparkContext.defaultParallelism, -(-rows // rows_per_task))
    return df.repartition(target) if df.rdd.getNumPartitions() < target else df


def _with_disabled_signals(df):
    """Null columns for the signals the config turned off: the table keeps one schema whatever was on,
    and a rule on a signal that was not computed keeps every row (decide treats null as 'cannot say')."""
    from pyspark.sql import functions as F

    from curation.spark import to_spark_type

    return df.select("*", *[F.lit(None).cast(to_spark_type(f.type)).alias(f.name)
                            for f in get_schema(TABLE) if f.name not in df.columns])


def check(spark, cfg: CurateConfig) -> tuple:
    """Fail before any work when a probe or a rule does not fit the stage-1 schema; the probes."""
    from curation.signals.probe import stage_probes, with_probe_columns

    probes = stage_probes(cfg.stage1.probes, get_schema(TABLE).names, where="stage1.probes")
    schema = with_probe_columns(to_spark(get_schema(TABLE)), probes)  # rules may name p_<probe>
    check_rules(spark, schema, cfg.stage1.rules, where="stage1.rules")
    for signal in build_signals(cfg.stage1):
        if signal.name == "structure_fusion":  # a head that does not fit the detector: say so here, not in a task
            signal.load()
    return probes


def run(spark, raw_dir: Path, out_dir: Path, cfg: CurateConfig, force: bool = False) -> dict:
    def work(job: runs.StageJob) -> dict:
        probes = check(spark, cfg)
        rows_in = runs.read_manifest(raw_dir)["output"]["rows"]
        raw = _spread(spark, read_table(spark, str(raw_dir), "raw"), rows_in)
        signals = build_signals(cfg.stage1)
        scored = _with_disabled_signals(raw.transform(apply_scorer, ImageSignals(signals)))
        if probes:  # after the signals they read, before the rules that name them
            scored = scored.transform(apply_scorer, *probes)
        decided = decide(scored, cfg.stage1.rules, stage=TABLE)
        with job.phase("score_decide_write"):
            # p_<probe> columns are not in the schema: written after it, as extra columns
            write_table(decided.select(*get_schema(TABLE).names, *[p.output for p in probes]), str(job.out_dir),
                        TABLE, extra_ok=bool(probes))
        job.count(rows_in)
        return {"input": {"path": str(raw_dir), "records": rows_in},
                "signals": [repr(s) for s in signals], "probes": probe_manifest(probes)}

    return runs.stage_job("stage1", {TABLE: out_dir}, work, config=cfg, force=force)
