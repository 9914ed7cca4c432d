"""A probe from the annotation loop used by name in the stage configs: `probes: [{name, path}]` adds
p_<name> after the stage's signals, the rules drop rows on it, and a probe that cannot work fails first."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.config import CurateConfig

pytestmark = pytest.mark.spark

RULE = {"name": "not_valuable", "keep_if": "p_valuable >= 0.5"}


def _export(out: Path, spec: dict, X: np.ndarray, y: np.ndarray) -> Path:
    """Train and export a probe the way `sluice annotate round` does (annotation.probe)."""
    from annotation.probe import evaluate, export, train

    model, note = train(X, y, "logreg")
    return export(model, out, task="valuable", positive="keep", spec=spec, kind="logreg",
                  metrics=evaluate(model, X, y), calibration=note, n_train=len(y))


def _brightness_probe(out: Path) -> Path:
    """A tiny labelled set: 'valuable' = a bright picture (q_brightness above 100 of 255)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 255, size=(40, 1)).astype(np.float32)
    return _export(out, {"kind": "signals", "columns": ["q_brightness"]}, X, (X[:, 0] > 100).astype(int))


def _folder(root: Path) -> Path:
    """Four bright and four dark photos-to-be (noise, so they are not flat), and a file that is no image."""
    from PIL import Image

    rng = np.random.default_rng(1)
    root.mkdir()
    for i in range(8):
        level = 190 if i < 4 else 35
        px = np.clip(rng.normal(level, 25, size=(300, 400, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "JPEG", quality=90)
        (root / f"{'bright' if i < 4 else 'dark'}{i}.jpg").write_bytes(buf.getvalue())
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def _signals_only() -> dict:
    return {"quality": True, "layout": False, "structure": {"enabled": False}, "ocr": {"enabled": False}}


@pytest.fixture(scope="module")
def probed_run(spark, tmp_path_factory):
    from curation.jobs import ingest, stage1

    root = tmp_path_factory.mktemp("probe_run")
    probe = _brightness_probe(root / "probe")
    cfg = CurateConfig.model_validate({"stage1": {"signals": _signals_only(), "rules": [RULE],
                                                  "probes": [{"name": "valuable", "path": str(probe)}]}})
    rows = ingest.run(spark, str(_folder(root / "images")), root / "raw", cfg)["output"]["rows"]
    manifest = stage1.run(spark, root / "raw", root / "stage1", cfg)
    return root, rows, manifest


def test_stage1_probe_rule_drops_the_rows_the_probe_rejects(probed_run):
    root, rows, manifest = probed_run
    df = pq.read_table(root / "stage1").to_pandas().set_index("uri")
    assert len(df) == rows == 9 and manifest["output"]["rows"] == 9  # every row out once
    assert "p_valuable" in df.columns and str(df["p_valuable"].dtype) == "float32"
    by_name = {Path(u).stem: r for u, r in df.iterrows()}
    for name, r in by_name.items():
        if name == "broken":  # a row that failed keeps its error and gets no probability
            assert r["error"] and np.isnan(r["p_valuable"]) and r["drop_reason"] is None
        elif name.startswith("bright"):
            assert r["p_valuable"] > 0.5 and r["drop_reason"] is None, (name, r["p_valuable"], r["q_brightness"])
        else:
            assert r["p_valuable"] < 0.5 and r["drop_reason"] == "not_valuable", (name, r["p_valuable"])
            assert r["drop_stage"] == "stage1"


def test_stage1_manifest_lists_the_probe_with_its_card_metrics(probed_run):
    root, _, manifest = probed_run
    card = json.loads((root / "probe" / "probe.json").read_text())
    (entry,) = manifest["probes"]
    assert entry["column"] == "p_valuable" and entry["path"] == str((root / "probe").absolute())
    assert entry["metrics"] == card["metrics"] and entry["metrics"]["accuracy"] > 0.9
    assert entry["sha256"] == card["sha256"] and entry["input"]["columns"] == ["q_brightness"]


def test_rules_on_probe_columns_are_redecided_without_rescoring(spark, probed_run, tmp_path):
    """`sluice curate decide` keeps the probe column and applies a new threshold on it."""
    import shutil

    from curation.jobs import redecide

    root, rows, _ = probed_run
    table = tmp_path / "stage1"
    shutil.copytree(root / "stage1", table)
    before = pq.read_table(table).to_pandas().set_index("id")
    strict = CurateConfig.model_validate({"stage1": {"rules": [{"name": "not_valuable", "keep_if": "p_valuable >= 1.1"}]}})
    out = redecide.run(spark, table, "stage1", strict)["output"]
    after = pq.read_table(table).to_pandas().set_index("id")
    assert list(after.columns) == list(before.columns)  # nothing of decide's own is left behind
    assert out["rows"] == rows and np.allclose(after["p_valuable"], before.loc[after.index, "p_valuable"], equal_nan=True)
    live = after[after["error"].isna()]
    assert (live["drop_reason"] == "not_valuable").all()  # every usable row fails the stricter rule


def test_stage2_probe_on_embeddings_feeds_its_tiers_and_rules(spark, probed_run):
    """Stage 2 (weight-free embeddings) with a probe over img_emb: its column is written and its rule holds."""
    from curation.jobs import stage2
    from curation.signals.descriptor import DIM

    root, rows, _ = probed_run
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, DIM)).astype(np.float32)
    probe = _export(root / "emb_probe", {"kind": "embedding", "column": "img_emb", "dim": DIM}, X,
                    (X[:, 0] > 0).astype(int))
    cfg = CurateConfig.model_validate({"stage2": {
        "cluster": {"levels": [2], "min_rows_per_cluster": 1},
        "tiers": [{"name": "A", "when": "p_valuable >= 0.5"}],
        "probes": [{"name": "valuable", "path": str(probe)}], "rules": [RULE]}})
    manifest = stage2.run(spark, root / "stage1", root / "raw", root / "stage2", cfg)
    df = pq.read_table(root / "stage2").to_pandas()
    assert len(df) == rows and manifest["probes"][0]["input"]["kind"] == "embedding"
    live = df[df["img_emb"].notna()]
    assert len(live) >= 3 and live["p_valuable"].notna().all()
    assert ((live["p_valuable"] < 0.5) == (live["drop_reason"] == "not_valuable")).all()
    assert ((live["p_valuable"] >= 0.5) == (live["tier"] == "A")).all()
    assert df.loc[df["img_emb"].isna(), "p_valuable"].isna().all()  # rows out of play get no score
    assert (df.loc[df["drop_stage"] == "stage1", "drop_reason"] == "not_valuable").all()  # kept as stage 1 decided


def test_bad_probes_fail_before_any_work_saying_what_to_fix(spark, tmp_path):
    from curation.jobs import stage1, stage2
    from curation.signals.probe import ProbeError
    from curation.steps.decide import RuleError

    good = _brightness_probe(tmp_path / "good")
    odd = _export(tmp_path / "odd", {"kind": "signals", "columns": ["q_brightness", "q_glossiness"]},
                  np.random.default_rng(3).normal(size=(20, 2)), np.arange(20) % 2)
    (tmp_path / "notacard").mkdir()
    (tmp_path / "notacard" / "probe.json").write_text("{not json")

    def stage1_cfg(path, rules=(RULE,)):
        return CurateConfig.model_validate({"stage1": {"rules": list(rules),
                                                       "probes": [{"name": "valuable", "path": str(path)}]}})

    for path, needle in ((tmp_path / "nowhere", "nowhere.*does not exist"),
                         (odd, r"reads columns \['q_glossiness'\]"),
                         (tmp_path / "notacard", "notacard")):
        with pytest.raises(ProbeError, match=f"stage1.probes: probe 'valuable'.*{needle}"):
            stage1.check(spark, stage1_cfg(path))
    (good / "probe.joblib").write_bytes(b"swapped")
    with pytest.raises(ProbeError, match="not the model probe.json describes"):
        stage1.check(spark, stage1_cfg(good))
    # a rule on a probe column that no probe writes is still a rule error
    with pytest.raises(RuleError, match="p_other"):
        stage1.check(spark, CurateConfig.model_validate({"stage1": {"rules": [
            {"name": "x", "keep_if": "p_other > 0.5"}]}}))
    # an embedding probe needs img_emb, which stage 1 does not have (stage 2 does)
    emb = _export(tmp_path / "emb", {"kind": "embedding", "column": "img_emb", "dim": 4},
                  np.random.default_rng(4).normal(size=(20, 4)), np.arange(20) % 2)
    with pytest.raises(ProbeError, match=r"reads columns \['img_emb'\]"):
        stage1.check(spark, stage1_cfg(emb))
    stage2.check(spark, CurateConfig.model_validate({"stage2": {
        "probes": [{"name": "valuable", "path": str(emb)}], "rules": [RULE],
        "tiers": [{"name": "A", "when": "p_valuable > 0.9"}]}}))
