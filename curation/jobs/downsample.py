"""Downsample: a stage-2 table (or a pool) -> `pool`, balanced over sources and the cluster tree.

Every input row is in the pool: kept, dropped with `downsampled`, or passed through as it came (failed or
dropped earlier). `_distribution.json` beside the table holds the before/after statistics the report shows.
"""

from __future__ import annotations

import logging
from pathlib import Path

from curation.config import CurateConfig
from curation.report import distribution
from curation.steps.downsample import check, downsample
from plumbing import runs
from plumbing.counts import table_counts

log = logging.getLogger(__name__)

TABLE = "pool"
INPUTS = ("stage2", "pool")  # a pool can be downsampled again to a smaller size


def read_input(spark, path: str):
    """Read a stage-2 table or a pool, refusing any other table with a message that says what to pass."""
    from curation.spark import read_table

    return read_table(spark, path, INPUTS, where=f"{path} (downsample reads {' or '.join(INPUTS)})")


def to_pool(df):
    """The pool's columns in order; columns the input lacks (a stage 2 without OCR, say) become nulls."""
    from pyspark.sql import functions as F

    from curation.spark import conform
    from schemas.registry import get_schema
    from schemas.spark import to_spark_type

    missing = [f for f in get_schema(TABLE) if f.name not in df.columns]
    if missing:
        log.info("input lacks pool columns %s; they are written as nulls", [f.name for f in missing])
    for f in missing:
        df = df.withColumn(f.name, F.lit(None).cast(to_spark_type(f.type)))
    return conform(df.select(*get_schema(TABLE).names), TABLE)


def shares(spark, table_dir: Path) -> dict:
    """Rows per source and per concept tag, among rows in play before and kept after (two small aggregations)."""
    from pyspark.sql import functions as F

    from curation.spark import read_table

    df = read_table(spark, str(table_dir), TABLE)
    before = F.col("error").isNull() & (F.col("drop_reason").isNull() | (F.col("drop_stage") == F.lit("downsample")))
    after = F.col("error").isNull() & F.col("drop_reason").isNull()
    out = {}
    for name, frame in (("source", df.select(F.col("source").alias("k"), before, after)),
                        ("concept", df.select(F.explode("tags.concept").alias("k"), before, after))):
        rows = frame.toDF("k", "b", "a").groupBy("k").agg(
            F.sum(F.col("b").cast("long")).alias("before"), F.sum(F.col("a").cast("long")).alias("after")).collect()
        out[name] = {"before": {str(r["k"]): int(r["before"] or 0) for r in rows if r["before"]},
                     "after": {str(r["k"]): int(r["after"] or 0) for r in rows if r["after"]}}
    return out


def run(spark, input_dir: str | Path, out_dir: Path, cfg: CurateConfig, force: bool = False) -> dict:
    def work(job: runs.StageJob) -> dict:
        dcfg = cfg.downsample
        df = read_input(spark, str(input_dir))
        check(spark, df.schema, dcfg)
        rows_in = table_counts(str(input_dir))["rows"]
        with job.phase("plan"):
            decided, plan = downsample(df, dcfg)
        with job.phase("rank_write"):
            to_pool(decided).write.mode("overwrite").parquet(str(job.out_dir))
        counts = job.count(rows_in)
        if counts.get("kept", 0) != plan["budget"]:
            raise RuntimeError(f"downsample kept {counts.get('kept')} rows, planned {plan['budget']} (a bug)")
        with job.phase("distribution"):
            dist = distribution.summarize(plan, list(dcfg.group_by), shares(spark, job.out_dir))
            distribution.write(job.out_dir, dist)
        return {"input": {"path": str(input_dir), "records": rows_in},
                "downsample": {"target": dcfg.size, "kept": plan["budget"], "leaves": len(plan["sizes"]),
                               "temperatures": plan["temperatures"],
                               "levels": [{k: v for k, v in lv.items() if k != "hist"} for lv in dist["levels"]]}}

    return runs.stage_job("downsample", {TABLE: out_dir}, work, config=cfg, force=force)
