"""Score, then decide: rules set the drop columns, and a changed threshold needs no rescoring."""

from __future__ import annotations

import json

import pytest

from curation.config import CurateConfig, Rule, Stage1Config
from curation.steps.decide import RuleError, check_rules, decide
from schemas.registry import get_schema
from schemas.spark import to_spark

pytestmark = pytest.mark.spark

RULES = (Rule(name="blurry", keep_if="q_sharpness >= 40"), Rule(name="watermark", keep_if="s_watermark < 0.5"))


def stage1_rows(spark, n=100):
    """A stage-1 table written as the job writes it, with known signals and two failed rows."""
    from pyspark.sql import functions as F

    rows = []
    for i in range(n):
        rows.append({"id": f"id{i:03d}", "source": "s", "key": f"k{i}", "uri": f"/x/{i}.jpg",
                     "q_sharpness": float(i), "s_watermark": (i % 10) / 10.0,
                     "error": "broken" if i in (3, 4) else None, "error_kind": "truncated" if i in (3, 4) else None})
    df = spark.createDataFrame(rows, "id string, source string, key string, uri string, q_sharpness double, "
                                     "s_watermark double, error string, error_kind string")
    for f in to_spark(get_schema("stage1")).fields:
        if f.name not in df.columns:
            df = df.withColumn(f.name, F.lit(None).cast(f.dataType))
    return df


def test_rules_set_first_and_all_reasons(spark):
    out = {r["id"]: r for r in decide(stage1_rows(spark), RULES, "stage1").collect()}
    r = out["id010"]  # sharpness 10 < 40 and watermark 0.0 -> blurry only
    assert (r["drop_stage"], r["drop_reason"], r["drop_reasons"]) == ("stage1", "blurry", ["blurry"])
    r = out["id037"]  # sharpness 37, watermark 0.7 -> both, blurry first (config order)
    assert r["drop_reason"] == "blurry" and r["drop_reasons"] == ["blurry", "watermark"]
    r = out["id041"]  # kept
    assert r["drop_reason"] is None and r["drop_stage"] is None
    assert out["id003"]["drop_reason"] is None and out["id003"]["error_kind"] == "truncated"  # failed rows stay failed


def test_null_signal_does_not_drop(spark):
    from pyspark.sql import functions as F

    df = stage1_rows(spark).withColumn("s_watermark", F.lit(None).cast("float"))
    out = decide(df, RULES, "stage1").where("id = 'id050'").first()
    assert out["drop_reason"] is None


def test_bad_rules_fail_before_running(spark):
    schema = to_spark(get_schema("stage1"))
    with pytest.raises(RuleError, match="q_sharpnes"):
        check_rules(spark, schema, (Rule(name="blurry", keep_if="q_sharpnes >= 40"),), "stage1.rules")
    with pytest.raises(RuleError, match="invalid"):
        check_rules(spark, schema, (Rule(name="blurry", keep_if="q_sharpness >>= 40"),), "stage1.rules")
    with pytest.raises(RuleError, match="two rules"):
        check_rules(spark, schema, RULES + (RULES[0],), "stage1.rules")


def test_redecide_stored_table_with_new_thresholds_without_scoring(spark, tmp_path, monkeypatch):
    from curation.jobs import redecide
    from curation.spark import write_table
    from plumbing import runs

    table = tmp_path / "run" / "stage1"
    write_table(decide(stage1_rows(spark), RULES, "stage1"), str(table), "stage1")
    runs.write_manifest(table, {"job": "stage1", "output": {}})

    def no_scoring(*a, **k):
        raise AssertionError("re-deciding must not run a scorer")

    monkeypatch.setattr("curation.spark.apply_scorer", no_scoring)
    strict = CurateConfig(stage1=Stage1Config(rules=(Rule(name="blurry", keep_if="q_sharpness >= 80"),)))
    m = redecide.run(spark, table, "stage1", strict)
    # 100 rows: ids 0..79 are below 80, minus the two failed rows (3, 4) -> 78 blurry, 20 kept
    assert m["output"]["dropped"] == {"blurry": 78} and m["output"]["kept"] == 20
    assert m["output"]["errors"] == {"truncated": 2}
    assert json.loads((table / "_manifest.json").read_text())["output"]["kept"] == 20
    lenient = CurateConfig(stage1=Stage1Config(rules=(Rule(name="watermark", keep_if="s_watermark < 0.85"),)))
    m = redecide.run(spark, table, "stage1", lenient)
    assert m["output"]["dropped"] == {"watermark": 10} and m["output"]["kept"] == 88
    assert not table.with_name("stage1.redecide").exists() and not table.with_name("stage1.old").exists()
