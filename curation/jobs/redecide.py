"""Decide again: apply a stage's rules from a new config to its stored table, without rescoring."""

from __future__ import annotations

import logging
from pathlib import Path

from curation.config import CurateConfig
from curation.spark import read_table, write_table
from curation.steps.decide import check_rules, clear_stage, decide
from plumbing import runs
from plumbing.tables import open_table

log = logging.getLogger(__name__)


def run(spark, table_dir: Path, stage: str, cfg: CurateConfig) -> dict:
    """Rewrite the stage's table with the config's rules (the old table stays until the new one is complete);
    its manifest keeps what the scoring run recorded and says when the table was decided again."""
    rules = cfg.rules(stage)
    before = runs.read_manifest(table_dir)

    def work(job: runs.StageJob) -> dict:
        rows_in = open_table(table_dir).count_rows()
        df = read_table(spark, str(table_dir), stage)
        check_rules(spark, df.schema, rules, where=f"{stage}.rules")
        decided = decide(clear_stage(df, stage), rules, stage=stage)
        with job.phase("redecide_write"):
            write_table(decided, str(job.out_dir), stage, extra_ok=True)  # probe columns (p_*) are not in the schema
        job.count(rows_in)
        return {**before, "redecided_from": before.get("written_at")}

    return runs.stage_job("redecide", {stage: table_dir}, work, config=cfg, in_place=True)
