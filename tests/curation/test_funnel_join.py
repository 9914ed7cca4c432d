"""The funnel joined: mix -> stage 3 -> export on real local Spark, stale tables after a change upstream,
calibration with the rules of the stage it is given, and --dry-run on every job command."""

from __future__ import annotations

import json
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from curation.config import CurateConfig
from plumbing.config import load

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "curation" / "configs" / "default.yaml"

MIX_CFG = {"mix": {"size": 30, "pools": [
    {"name": "general", "quota": 0.5},
    {"name": "text_rendering", "quota": 0.5, "where": "ocr_n_chars >= 4"}]},
    "export": {"shard_size": 4, "max_side": 128, "resolutions": [256]}}


def write_stage2_and_pool(run, kinds, seed: int = 0) -> dict[str, dict]:
    """stage2 and pool tables over make_run's stage1 rows, with aesthetic scores and tiers; rows by id."""
    from synthetic.run import write_tagged

    rng = random.Random(seed)
    rows = {}
    for r in kinds["stage1_rows"]:
        aesthetic = round(rng.uniform(3, 8), 2)
        rows[r["id"]] = {**r, "aesthetic": aesthetic, "aesthetic_tier": "good" if aesthetic >= 5.5 else "poor",
                         "tier": rng.choice("ABC"), "cluster_path": [0, rng.randrange(3)], "tags": [],
                         "emb_model": "descriptor-v1"}
    write_tagged(run / "stage2", list(rows.values()), "stage2")
    write_tagged(run / "pool", list(rows.values()), "pool")
    return rows


@pytest.fixture(scope="module")
def joined(spark, tmp_path_factory):
    """A synthetic run through pool, then mix -> stage3 -> export as `sluice curate run` chains them."""
    from curation import pipeline
    from synthetic.run import make_run

    run = tmp_path_factory.mktemp("joined") / "run"
    kinds = make_run(run, n=24)
    rows = write_stage2_and_pool(run, kinds)
    cfg = CurateConfig.model_validate(MIX_CFG)
    for name in ("mix", "stage3", "export"):
        pipeline.run_stage(spark, pipeline.stage(name), cfg, None, run, force=False)
    return run, cfg, kinds, rows


def _mix_rows(run):
    from plumbing.tables import open_table

    return open_table(run / "mix").to_table(columns=["id", "mix_pool", "mix_copy"]).to_pylist()


def _shard_samples(export_dir) -> dict[str, dict]:
    out = {}
    for tar in sorted((export_dir / "shards").rglob("*.tar")):
        with tarfile.open(tar) as tf:
            names = [m.name for m in tf.getmembers()]
            assert len(names) == len(set(names)), f"{tar} repeats a member"
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    out[m.name[:-5]] = json.loads(tf.extractfile(m).read())
    return out


@pytest.mark.spark
def test_stage3_captions_each_sample_of_the_mix_once(joined):
    from plumbing import runs
    from plumbing.tables import open_table

    run, *_ = joined
    mix = _mix_rows(run)
    assert len(mix) == 30 and len({r["id"] for r in mix}) < 30  # the short text pool repeats rows
    m = runs.read_manifest(run / "stage3")
    assert m["input"]["table"] == "mix" and m["input"]["records"] == len({r["id"] for r in mix})
    captioned = set(open_table(run / "stage3").to_table(columns=["id"]).column("id").to_pylist())
    assert captioned == {r["id"] for r in mix}


@pytest.mark.spark
def test_export_of_the_mix_writes_every_copy_with_stage2_signals(joined):
    from plumbing import runs

    run, _, kinds, rows = joined
    mix = _mix_rows(run)
    m = runs.read_manifest(run / "export")
    broken = [r for r in mix if r["id"] in kinds["broken"]]
    assert m["input"]["table"] == "mix" and m["samples"] == len(mix) - len(broken)
    assert m["skipped"] == {"no_caption": 0, "error": len(broken)}
    samples = _shard_samples(run / "export")
    assert len(samples) == m["samples"]
    per_id: dict[str, int] = {}
    for r in mix:
        if r["id"] not in kinds["broken"]:
            per_id[r["id"]] = per_id.get(r["id"], 0) + 1
    for id_, n in per_id.items():  # the first copy keyed by the id, the others <id>_1, <id>_2, ...
        assert {k for k in samples if k.split("_")[0] == id_} == {id_} | {f"{id_}_{i}" for i in range(1, n)}
    pools = {r["id"]: set() for r in mix}
    for r in mix:
        pools[r["id"]].add(r["mix_pool"])
    for key, meta in samples.items():
        src, sig = rows[meta["id"]], meta["signals"]
        assert meta["key"] == key and key.split("_")[0] == meta["id"]
        assert sig["aesthetic"] == pytest.approx(src["aesthetic"], abs=1e-3)  # float32 in the tables
        assert sig["aesthetic_tier"] == src["aesthetic_tier"] and sig["tier"] == src["tier"]
        assert sig["mix_pool"] in pools[meta["id"]] and "mix_copy" not in sig
        assert isinstance(sig["q_sharpness"], float) and sig["ocr_text"] == (src["ocr_text"] or "")


@pytest.mark.spark
def test_mix_export_reads_with_webdataset_and_hf_datasets(joined, tmp_path):
    from sluice.demo import check_readers

    from plumbing import runs

    run, *_ = joined
    counts = check_readers(run / "export", tmp_path / "hf")
    n = runs.read_manifest(run / "export")["samples"]
    assert n > 0 and counts == {"webdataset": n, "datasets": n}


@pytest.mark.spark
def test_a_changed_table_makes_the_later_ones_stale_and_they_are_redone(spark, joined, tmp_path):
    from curation import pipeline
    from curation.jobs import stage3
    from plumbing import runs

    src, cfg, *_ = joined
    run = tmp_path / "run"
    shutil.copytree(src, run)
    before = runs.read_manifest(run / "export")["written_at"]
    marked = pipeline.mark_later_stale(run, "pool", "pool was redone in a test", cfg)
    assert [p.name for p in marked] == ["mix", "mix_audit", "stage3", "export"]
    assert runs.is_done(run / "export") and not runs.is_current(run / "export")  # still readable, not current
    with pytest.raises(FileNotFoundError, match=r"mix is stale \(pool was redone in a test\)"):
        stage3.input_table(run, "auto")  # never falls back to the pool behind a stale mix
    with pytest.raises(FileNotFoundError, match="stale"):
        pipeline.check_inputs(None, run, [pipeline.stage("export")], cfg)
    plan = pipeline.describe(None, run, pipeline.stages_until("export", cfg, run), False, cfg)
    actions = {p["stage"]: p["action"] for p in plan}
    assert actions["downsample"].startswith("skip") and actions["mix"].startswith("run (stale: pool was redone")
    assert actions["stage3"].startswith("run (stale") and actions["export"].startswith("run (stale")

    for name in ("mix", "stage3", "export"):
        pipeline.run_stage(spark, pipeline.stage(name), cfg, None, run, force=False)
    for name in ("mix", "mix_audit", "stage3", "export"):
        assert runs.is_current(run / name), name
    assert runs.read_manifest(run / "export")["written_at"] > before
    assert not (run / "export" / "_STALE").exists()


@pytest.mark.spark
def test_a_mix_of_another_runs_rows_is_refused(spark, joined, tmp_path):
    from curation.jobs import stage3
    from synthetic.run import write_tagged

    src, cfg, *_ = joined
    run = tmp_path / "run"
    for t in ("raw", "stage1", "pool"):
        shutil.copytree(src / t, run / t)
    write_tagged(run / "mix", [{"id": "f" * 32, "mix_pool": "general", "mix_copy": 0}], "mix")
    with pytest.raises(ValueError, match="1 samples of .* are not in this run's stage1 table"):
        stage3.run(spark, run, run / "stage3", cfg)


def test_run_chains_mix_when_the_run_has_one_and_captions_when_asked(tmp_path):
    from curation.pipeline import stages_until

    cfg = CurateConfig()
    names = lambda until: [s.name for s in stages_until(until, cfg, tmp_path)]  # noqa: E731
    assert names(None) == ["ingest", "stage1", "stage2", "downsample"]
    assert names("export") == ["ingest", "stage1", "stage2", "downsample", "stage3", "export"]
    assert names("mix")[-1] == "mix"
    (tmp_path / "mix").mkdir()
    assert names("export") == ["ingest", "stage1", "stage2", "downsample", "mix", "stage3", "export"]
    assert names("downsample")[-1] == "downsample"
    served = CurateConfig.model_validate({"stage3": {"captioner": {"backend": "served", "model": "m",
                                                                   "url": "http://127.0.0.1:1/v1"}}})
    assert [s.name for s in stages_until(None, served, tmp_path)][-3:] == ["mix", "stage3", "export"]


# ---------------------------------------------------------------- calibrate and --dry-run (no Spark)

def _stage2_for_calibration(run):
    """Rows stage 1 dropped (mislabelled low_aesthetic, as label noise), rows kept, and rows stage 2 dropped."""
    from synthetic.run import write_tagged

    rows, labels = [], []
    for i, (aesthetic, stage, label) in enumerate(
            [(2.0, "stage1", True)] * 4 + [(5.0, None, False), (6.0, None, False), (7.0, None, False)] * 2
            + [(2.0, "stage2", True), (3.0, "stage2", True), (3.5, "stage2", True), (3.9, "stage2", True)]):
        reason = {"stage1": "blurry", "stage2": "low_aesthetic"}.get(stage)
        rows.append({"id": f"{i:032x}", "key": f"k{i}", "source": "s", "uri": f"s/{i}.jpg", "aesthetic": aesthetic,
                     "drop_stage": stage,
                     "drop_reason": reason, "drop_reasons": [reason] if reason else None})
        labels.append({"key": f"k{i}", "defects": ["low_aesthetic"] if label else []})
    write_tagged(run / "stage2", rows, "stage2")
    path = run / "labels.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in labels))
    return path


def test_calibrate_stage2_uses_stage2_rules_on_the_rows_they_saw(tmp_path):
    from typer.testing import CliRunner

    from curation.calibrate import calibrate
    from sluice.cli import app

    labels = _stage2_for_calibration(tmp_path)
    cfg = load(CurateConfig, default=DEFAULT_YAML)
    scores, suggestions = calibrate(tmp_path / "stage2", labels, cfg.rules("stage2"), 0.9, stage="stage2")
    assert [s.rule for s in scores] == [r.name for r in cfg.stage2.rules]
    low = next(s for s in scores if s.rule == "low_aesthetic")
    # stage 1's drops never met stage 2's rules: counting them would halve the recall
    assert (low.labelled, low.flagged, low.precision, low.recall) == (4, 4, 1.0, 1.0)
    sug = next(s for s in suggestions if s.rule == "low_aesthetic")
    assert sug.term == "aesthetic >= 4" and 3.9 < sug.suggested <= 5.0 and sug.recall == 1.0

    out = CliRunner().invoke(app, ["curate", "calibrate", "-o", str(tmp_path), "--stage", "stage2",
                                   "--labels", str(labels)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "low_aesthetic" in out.output and "semantic_duplicate" in out.output
    assert "blurry" not in out.output and "watermark" not in out.output  # stage-1 rules
    bad = CliRunner().invoke(app, ["curate", "calibrate", "-o", str(tmp_path), "--stage", "export",
                                   "--labels", str(labels)])
    assert bad.exit_code == 2 and "has no rules; choose one of stage1, stage2" in bad.output


@pytest.mark.parametrize("command", [
    ["run", "--input", "{tmp}", "--until", "export"], ["ingest", "--input", "{tmp}"], ["stage1"], ["stage2"],
    ["downsample"], ["downsample", "--input-table", "{tmp}/other"], ["mix"], ["stage3"], ["export"],
    ["decide", "--stage", "stage2"]])
def test_every_job_command_has_a_dry_run(command, tmp_path):
    from typer.testing import CliRunner

    from sluice.cli import app

    args = ["curate", *[a.format(tmp=tmp_path) for a in command], "-o", str(tmp_path / "run"), "--dry-run"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "stage1:" in out.output and "\nplan:\n" in out.output  # the resolved config, then the plan
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written
