"""Mix: kept rows of one or more curated tables -> `mix` (the training pool, by quota) and `mix_audit`.

Each pool of `mix.pools` is a table (a folder under the run, or a path) and a filter; the audit table
says per pool the quota, the target, what was available, what was achieved and how many repeats it took.
"""

from __future__ import annotations

import logging
from pathlib import Path

from curation.config import CurateConfig
from curation.jobs.downsample import read_input
from curation.steps.mix import check_where, default_size, draw, kept_rows, pool_filter, targets
from plumbing import runs

log = logging.getLogger(__name__)

TABLE, AUDIT = "mix", "mix_audit"


def table_path(run_dir: Path, table: str) -> Path:
    """A pool's table: a folder of the run when it names one, else a path."""
    inside = runs.stage_dir(run_dir, table)
    return inside if "/" not in table and inside.exists() else runs.local_path(table)


def _pools(spark, run_dir: Path, cfg):
    """(pool config, its kept rows, their count) per pool, every filter checked before any count."""
    frames = []
    for p in cfg.pools:
        path = table_path(run_dir, p.table)
        if not runs.is_done(path):
            raise FileNotFoundError(f"mix pool {p.name!r} reads {path}, which is not a finished table; "
                                    f"run `sluice curate downsample` first or fix mix.pools[].table")
        if runs.stale_reason(path):
            raise FileNotFoundError(f"mix pool {p.name!r} reads {path}, which is stale ({runs.stale_reason(path)}); "
                                    f"redo it first (`sluice curate run` redoes every stale stage)")
        df = read_input(spark, str(path))
        where = pool_filter(p.concepts, p.min_score, p.where)
        check_where(spark, df.schema, p.name, where)
        frames.append((p, path, where, kept_rows(df, where)))
    return [(p, path, where, df, df.count()) for p, path, where, df in frames]


def _to_mix(df):
    from pyspark.sql import functions as F

    from schemas.registry import get_schema
    from schemas.spark import to_spark_type

    for f in get_schema(TABLE):
        if f.name not in df.columns:
            df = df.withColumn(f.name, F.lit(None).cast(to_spark_type(f.type)))
    return df.select(*get_schema(TABLE).names)


def run(spark, run_dir: str | Path, cfg: CurateConfig, force: bool = False) -> dict:
    from curation.spark import write_table

    run_dir = runs.local_path(run_dir)
    mcfg = cfg.mix

    def work(job: runs.StageJob) -> dict:
        if not mcfg.pools:
            raise ValueError("mix.pools is empty; give at least one {name, quota, table, where} in the config")
        pools = _pools(spark, run_dir, mcfg)
        quotas = [p.quota for p, *_ in pools]
        available = [n for *_, n in pools]
        # An empty pool does not stop the mix: the audit shows it short with nothing achieved.
        empty = [p.name for p, *_, n in pools if n == 0]
        if len(empty) == len(pools):
            raise ValueError(f"every mix pool ({empty}) holds no rows; check their concepts, where filters and tables")
        if empty:
            log.warning("mix pools %s hold no rows; the audit marks them short", empty)
        size = mcfg.size or default_size(*zip(*[(q, a) for q, a in zip(quotas, available) if a > 0]))
        parts, audit = [], []
        for (p, path, where, df, n), target in zip(pools, targets(quotas, size)):
            rows, a = draw(df, p.name, target, n, mcfg.max_copies, mcfg.seed)
            parts.append(_to_mix(rows))
            audit.append({"id": p.name, "table": str(path), "where": where, "quota": p.quota, **a})
        total = sum(a["achieved_rows"] for a in audit)
        for a in audit:
            a["achieved_share"] = a["achieved_rows"] / total if total else 0.0
        mixed = parts[0]
        for part in parts[1:]:
            mixed = mixed.unionByName(part)
        with job.phase("draw_write"):
            write_table(mixed, str(job.dirs[TABLE]), TABLE)
        job.count(total)  # one row per copy the audit counts (the mix samples its pools: no row per input)
        write_table(spark.createDataFrame(audit, _audit_struct()), str(job.dirs[AUDIT]), AUDIT)
        job.count(len(audit), table=AUDIT)
        return {"input": {"pools": [str(path) for _, path, *_ in pools]}, "mix": {"size": size, "audit": audit}}

    tables = {TABLE: runs.stage_dir(run_dir, TABLE), AUDIT: runs.stage_dir(run_dir, AUDIT)}
    return runs.stage_job("mix", tables, work, config=cfg, force=force)


def _audit_struct():
    from schemas.spark import table_struct

    return table_struct(AUDIT)
