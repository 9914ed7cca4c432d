"""Decide again: apply a stage's rules from a new config to its stored table, without rescoring."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from curation.config import CurateConfig
from curation.spark import read_table, write_table
from curation.steps.decide import check_rules, clear_stage, decide
from tools import runs
from tools.counts import table_counts

log = logging.getLogger(__name__)

def run(spark, table_dir: Path, stage: str, cfg: CurateConfig) -> dict:
    rules = cfg.rules(stage)
    before = runs.read_manifest(table_dir)
    df = read_table(spark, str(table_dir), stage)
    check_rules(spark, df.schema, rules, where=f"{stage}.rules")
    decided = decide(clear_stage(df, stage), rules, stage=stage)
    # Spark reads lazily: write beside the table, then swap, so the table is never read while overwritten.
    tmp = table_dir.with_name(table_dir.name + ".redecide")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_table(decided, str(tmp), stage, extra_ok=True)  # probe columns (p_*) are not in the schema
    counts = table_counts(str(tmp))
    manifest = {**before, "output": {"path": str(table_dir), **counts}, "config": cfg.model_dump(mode="json"),
                "redecided_from": before.get("written_at")}
    manifest.pop("written_at", None)
    manifest.pop("code_version", None)
    old = table_dir.with_name(table_dir.name + ".old")
    table_dir.rename(old)
    tmp.rename(table_dir)
    shutil.rmtree(old)
    return runs.write_manifest(table_dir, manifest)
