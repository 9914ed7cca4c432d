"""Balanced downsampling: the budget split (pure), the Spark step on a known Zipf tree, and the job."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curation.config import CurateConfig, DownsampleConfig
from curation.report.distribution import level_stats
from curation.steps.downsample import allocate, tree_quotas
from synthetic.pool import zipf_tree

# ---------------------------------------------------------------- the split, without Spark


def test_allocate_sums_to_budget_caps_at_size_and_gives_small_clusters_whole():
    sizes = [1000, 300, 50, 5, 1]
    for t in (0.0, 0.5, 1.0):
        q = allocate(sizes, 200, t)
        assert sum(q) == 200 and all(0 <= a <= s for a, s in zip(q, sizes)), (t, q)
    # Equal shares (T=0) would give 40 each: the two small clusters are kept whole, their rest flows up.
    q = allocate(sizes, 200, 0.0)
    assert q[3:] == [5, 1] and q[2] == 50 and q[0] == q[1] == 72
    assert allocate(sizes, 10_000, 0.5) == sizes  # more budget than rows: everything
    assert allocate(sizes, 0, 0.5) == [0] * 5


def test_allocate_t1_is_proportional_and_ties_are_deterministic():
    assert allocate([600, 300, 100], 100, 1.0) == [60, 30, 10]
    # 3 rows among 4 equal children: the remainder goes to the first keys, every time.
    assert allocate([5, 5, 5, 5], 3, 1.0) == [1, 1, 1, 0]


def _levels(leaves, quotas, temps):
    return level_stats(leaves, quotas, temps, [f"l{i}" for i in range(len(temps))])


def test_t1_keeps_every_levels_proportions():
    leaves = zipf_tree(200_000, branching=(8, 6, 5), alpha=1.2, seed=3)
    quotas = tree_quotas(leaves, 20_000, [1.0, 1.0, 1.0])
    assert sum(quotas.values()) == 20_000
    for lv in _levels(leaves, quotas, [1.0] * 3):
        assert lv["max_share_error"] < 5e-4, lv["level"]
        assert lv["kl_to_input"] < 1e-3
        assert abs(lv["entropy_after"] - lv["entropy_before"]) < 0.01


def test_t_half_raises_entropy_as_the_law_predicts_and_keeps_small_clusters_whole():
    leaves = zipf_tree(200_000, branching=(8, 6, 5), alpha=1.2, seed=3)
    temps = [0.5] * 3
    budget = 40_000
    quotas = tree_quotas(leaves, budget, temps)
    stats = _levels(leaves, quotas, temps)
    for lv in stats:
        assert lv["entropy_after"] > lv["entropy_before"] + 0.05, lv
        assert lv["entropy_after"] == pytest.approx(lv["entropy_target"], abs=0.1), lv
        assert lv["kl_to_target"] < 0.05
    # A leaf whose share under the law exceeds its size is kept whole.
    top = stats[-1]
    assert top["kept_whole"] > 0
    assert all(quotas[p] <= n for p, n in leaves.items())
    law = _law_shares(leaves, temps)
    # Water-filling only ever gives an uncapped node more than the law's share, never less.
    whole = [p for p in leaves if law[p] * budget >= leaves[p] + 1]
    assert whole and all(quotas[p] == leaves[p] for p in whole)


def _law_shares(leaves, temps):
    from curation.report.distribution import _target_shares

    sizes = {}
    for p, n in leaves.items():
        for d in range(1, len(p) + 1):
            sizes[p[:d]] = sizes.get(p[:d], 0) + n
    return _target_shares(list(sizes), sizes, temps)


# ---------------------------------------------------------------- the Spark step

N = 3000


@pytest.fixture(scope="module")
def table(spark):
    from synthetic.pool import synthetic_pool

    df, leaves = synthetic_pool(spark, 12_000, branching=(4, 4, 3), alpha=1.1, seed=7,
                                error_frac=0.02, dropped_frac=0.05, partitions=3)
    return df.cache(), leaves


def _kept(out):
    return out.where("error IS NULL AND drop_reason IS NULL")


@pytest.mark.spark
def test_exactly_n_rows_kept_no_duplicates_and_every_drop_named(table):
    from pyspark.sql import functions as F

    from curation.steps.downsample import downsample

    df, _ = table
    out, plan = downsample(df, DownsampleConfig(size=N, temperature=0.5))
    out = out.cache()
    assert out.count() == df.count()
    assert out.select("id").distinct().count() == df.count()
    kept = _kept(out)
    assert kept.count() == N and kept.select("id").distinct().count() == N
    before = {r["id"]: r for r in df.select("id", "error", "drop_reason").collect()}
    rows = out.select("id", "error", "drop_reason", "drop_stage", "drop_reasons", "ds_rank").collect()
    for r in rows:
        b = before[r["id"]]
        if b["error"] is not None or b["drop_reason"] is not None:  # passed through untouched
            assert (r["error"], r["drop_reason"], r["ds_rank"]) == (b["error"], b["drop_reason"], None)
        elif r["drop_reason"] is not None:
            assert (r["drop_reason"], r["drop_stage"], list(r["drop_reasons"])) == \
                ("downsampled", "downsample", ["downsampled"])
    # The kept rows of a leaf are its best by tier: no kept C where the same leaf dropped an A.
    worst_kept = kept.groupBy("ds_leaf").agg(F.max("tier").alias("w"))
    best_dropped = out.where("drop_reason = 'downsampled'").groupBy("ds_leaf").agg(F.min("tier").alias("b"))
    assert worst_kept.join(best_dropped, "ds_leaf").where("w > b").count() == 0
    assert plan["budget"] == N


@pytest.mark.spark
def test_same_sample_on_1_4_and_16_partitions(table):
    from curation.steps.downsample import downsample

    df, _ = table
    cfg = DownsampleConfig(size=N, temperature=0.5, order="random", seed=11)
    samples = [sorted(r["id"] for r in _kept(downsample(df.repartition(n), cfg)[0]).select("id").collect())
               for n in (1, 4, 16)]
    assert len(samples[0]) == N and samples[0] == samples[1] == samples[2]
    other = sorted(r["id"] for r in _kept(downsample(df, cfg.model_copy(update={"seed": 12}))[0])
                   .select("id").collect())
    assert other != samples[0]  # the seed matters: the sample is not a fixed order in disguise


@pytest.mark.spark
def test_more_budget_than_rows_keeps_every_row_in_play(table):
    from curation.steps.downsample import downsample

    df, _ = table
    out, plan = downsample(df, DownsampleConfig(size=10**9))
    in_play = df.where("error IS NULL AND drop_reason IS NULL").count()
    assert _kept(out).count() == in_play == plan["budget"]
    assert out.where("drop_reason = 'downsampled'").count() == 0
    # Nothing in play (every row failed): nothing kept, every row still there.
    failed = df.where("error IS NOT NULL")
    out, plan = downsample(failed, DownsampleConfig(size=100))
    assert plan["budget"] == 0 and out.count() == failed.count() and _kept(out).count() == 0


@pytest.mark.spark
def test_bad_sort_key_and_bad_level_temperatures_fail_before_any_work(spark, table):
    from curation.steps.downsample import check, downsample

    df, _ = table
    with pytest.raises(ValueError, match="aesthetik"):
        check(spark, df.schema, DownsampleConfig(quality=("aesthetik DESC",)))
    with pytest.raises(ValueError, match="one per level"):
        downsample(df, DownsampleConfig(size=10, level_temperatures=(1.0, 0.5)))


# ---------------------------------------------------------------- the job and its report


@pytest.mark.spark
def test_job_writes_pool_distribution_and_report(spark, tmp_path, table):
    from curation.jobs import downsample as job
    from curation.report.distribution import section
    from curation.spark import write_table
    from plumbing import runs
    from plumbing.tables import open_table

    df, _ = table
    src = tmp_path / "input"
    write_table(df, str(src), "pool")
    run_dir = tmp_path / "run"
    cfg = CurateConfig(downsample=DownsampleConfig(size=N, temperature=0.5))
    m = job.run(spark, src, runs.stage_dir(run_dir, "pool"), cfg)
    assert m["output"]["rows"] == 12_000 and m["output"]["kept"] == N
    assert m["output"]["dropped"]["downsampled"] == 12_000 - N - m["output"]["dropped"]["near_duplicate"] \
        - sum(m["output"]["errors"].values())
    assert open_table(run_dir / "pool", expected="pool").count_rows() == 12_000
    dist = json.loads((run_dir / "pool" / "_distribution.json").read_text())
    assert [lv["level"] for lv in dist["levels"]] == ["source", "cluster level 1", "cluster level 2",
                                                      "cluster level 3"]
    assert sum(dist["shares"]["source"]["after"].values()) == N
    assert set(dist["shares"]["concept"]["before"]) >= {"calligraphy", "portrait"}
    html = section(run_dir)
    assert html.count("<svg") >= 4 + 2 and "KL to target" in html
    # A rerun is skipped; a table of another kind is refused with what to pass.
    assert job.run(spark, src, runs.stage_dir(run_dir, "pool"), cfg)["written_at"] == m["written_at"]
    from schemas.registry import SchemaMismatch

    untagged = tmp_path / "untagged"
    spark.createDataFrame([("a",)], "id string").write.parquet(str(untagged))
    with pytest.raises(SchemaMismatch, match="downsample reads stage2 or pool"):
        job.read_input(spark, str(untagged))


def test_level_stats_numbers_are_the_definitions():
    leaves = {(0, 0): 90, (0, 1): 10, (1, 2): 100}
    after = {(0, 0): 45, (0, 1): 5, (1, 2): 50}
    lv = level_stats(leaves, after, [1.0, 1.0], ["a", "b"])
    assert lv[0]["entropy_before"] == pytest.approx(1.0) and lv[0]["kl_to_input"] == pytest.approx(0.0)
    p = np.array([0.45, 0.05, 0.5])
    assert lv[1]["entropy_after"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert lv[1]["tail_nodes"] == 1 and lv[1]["tail_survive_frac"] == 1.0


@pytest.mark.spark
@pytest.mark.slow  # two `sluice` processes, each starting its own Spark
def test_cli_downsample_then_mix(spark, tmp_path, run_cli):
    from synthetic.pool import write_synthetic_pool

    src = tmp_path / "stage2_like"
    write_synthetic_pool(spark, str(src), 6000, branching=(3, 4), seed=1, error_frac=0.01, partitions=2)
    run = tmp_path / "run"
    out = run_cli("curate", "downsample", "--input-table", str(src), "--output", str(run), "--size", "1500",
                  "--set", "downsample.temperature=0.5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "kept 1500" in out.stderr
    out = run_cli("curate", "mix", "--output", str(run), "--set", "mix.max_copies=1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "chinese_culture: quota 15.0%" in out.stderr and "SHORT" not in out.stderr
