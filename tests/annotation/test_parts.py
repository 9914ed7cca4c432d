"""The loop's parts without a server: templates, selection, labels table, probe export and its scorer."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotation import selection
from annotation.labels import labels_frame, training_labels, write_labels
from annotation.templates import QUESTIONS, render


@pytest.mark.parametrize("name", list(QUESTIONS))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_templates_parse_and_store_language_free_answers(name, lang):
    cfg = render(name, lang, labels=["cat", "狗"] if name == "free_labels" else None)
    root = ET.fromstring(cfg.xml)
    assert "{{" not in cfg.xml
    for choices in root.iter("Choices"):
        stored = {c.get("alias") or c.get("value") for c in choices.iter("Choice")}
        assert stored == set(cfg.questions[choices.get("name")]), choices.get("name")
    if lang == "zh" and name == "valuable":
        assert "保留" in cfg.xml and 'alias="keep"' in cfg.xml


def test_unknown_template_and_language_are_refused():
    with pytest.raises(ValueError, match="known"):
        render("nope")
    with pytest.raises(ValueError, match="zh"):
        render("valuable", "fr")


def test_uncertainty_picks_the_least_sure():
    p = np.array([[0.99, 0.01], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    ids = ["a", "b", "c", "d"]
    assert selection.select("entropy", 2, ids, 0, proba=p).tolist() == [1, 3]
    assert selection.select("margin", 1, ids, 0, proba=p).tolist() == [1]


def test_random_order_is_a_hash_of_id_and_seed_not_of_position():
    ids = [f"x{i}" for i in range(50)]
    a = [ids[i] for i in selection.select("random", 10, ids, 3)]
    rev = ids[::-1]
    b = [rev[i] for i in selection.select("random", 10, rev, 3)]
    assert a == b
    assert a != [ids[i] for i in selection.select("random", 10, ids, 4)]


def test_diversity_covers_every_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [20, 0], [0, 20], [20, 20]], dtype=np.float32)
    X = np.concatenate([c + rng.normal(size=(50, 2)) for c in centres]).astype(np.float32)
    cluster = np.repeat(np.arange(4), 50)
    ids = [str(i) for i in range(len(X))]
    for strategy in ("kcenter", "kmeans"):
        picked = selection.select(strategy, 4, ids, 0, X=X)
        assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3], strategy
    # hybrid: among the uncertain half (clusters 0 and 1), still spread over both
    p = np.where(cluster[:, None] < 2, 0.5, 0.99) * np.array([1, 0]) + np.where(cluster[:, None] < 2, [0, 0.5], [0, 0.01])
    picked = selection.select("hybrid", 2, ids, 0, proba=p, X=X, hybrid_factor=50)
    assert sorted(cluster[picked].tolist()) == [0, 1]


def test_model_strategies_fall_back_to_random_without_a_model():
    ids = [str(i) for i in range(20)]
    assert selection.select("entropy", 5, ids, 1).tolist() == selection.select("random", 5, ids, 1).tolist()
    with pytest.raises(ValueError, match="strategy"):
        selection.select("magic", 5, ids, 1)


def _task(tid, sid, *annotations):
    return {"id": tid, "data": {"sample_id": sid, "uri": f"u/{sid}", "round": 2}, "annotations": list(annotations)}


def _ann(user, choice=None, cancelled=False, question="valuable"):
    result = [] if choice is None else [{"from_name": question, "to_name": "image", "type": "choices",
                                        "value": {"choices": [choice]}}]
    return {"completed_by": user, "result": result, "was_cancelled": cancelled,
            "created_at": "2026-11-26T10:00:00.000Z"}


def test_labels_keep_every_answer_and_flag_the_bad_ones(tmp_path):
    q = render("valuable").questions
    tasks = [
        _task(1, "clean", _ann(1, "keep")),
        _task(2, "skipped", _ann(1, cancelled=True)),
        _task(3, "empty", _ann(1)),
        _task(4, "unknown", _ann(1, "maybe")),
        _task(5, "conflict", _ann(1, "keep"), _ann(2, "drop"), _ann(3, "keep")),
        _task(6, "agree", _ann(1, "drop"), _ann(2, "drop")),
        _task(7, "unlabelled"),
    ]
    df = labels_frame(tasks, q, "valuable", {1: "a@x", 2: "b@x", 3: "c@x"})
    by = {sid: g for sid, g in df.groupby("id")}
    assert by["clean"]["flag"].isna().all() and by["clean"]["label"].tolist() == ["keep"]
    assert by["skipped"]["flag"].tolist() == ["skipped"] and by["skipped"]["label"].isna().all()
    assert by["empty"]["flag"].tolist() == ["empty"]
    assert by["unknown"]["flag"].tolist() == ["unknown_label"] and by["unknown"]["label"].tolist() == ["maybe"]
    assert (by["conflict"]["flag"] == "conflict").all() and len(by["conflict"]) == 3
    assert by["conflict"]["agreement"].iloc[0] == pytest.approx(2 / 3)
    assert by["agree"]["agreement"].tolist() == [1.0, 1.0] and by["agree"]["flag"].isna().all()
    assert set(by["conflict"]["annotator"]) == {"a@x", "b@x", "c@x"} and (df["round"] == 2).all()
    assert "unlabelled" not in by
    assert training_labels(df, "valuable") == {"clean": "keep", "conflict": "keep", "agree": "drop"}
    write_labels(df, tmp_path / "labels")
    from plumbing.tables import open_table

    t = open_table(tmp_path / "labels", expected="labels").to_table()
    assert t.num_rows == len(df) and t.schema.field("agreement").type == "float"


def _probe_dir(tmp_path: Path, kind="logreg") -> tuple[Path, np.ndarray, np.ndarray]:
    from annotation.probe import evaluate, export, train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    model, note = train(X[:200], y[:200], kind)
    metrics = evaluate(model, X[200:], y[200:])
    spec = {"kind": "signals", "columns": ["q_a", "q_b", "s_c"]}
    out = export(model, tmp_path / "probe", task="valuable", positive="keep", spec=spec, kind=kind,
                 metrics=metrics, calibration=note, n_train=200)
    return out, X, y


@pytest.mark.parametrize("kind", ["logreg", "gboost", "mlp"])
def test_probe_learns_and_is_calibrated(tmp_path, kind):
    out, X, y = _probe_dir(tmp_path, kind)
    card = json.loads((out / "probe.json").read_text())
    assert card["metrics"]["accuracy"] > 0.85 and card["output_column"] == "p_valuable"
    assert card["calibration"].startswith("sigmoid")


def test_probe_refuses_one_class():
    from annotation.probe import train

    with pytest.raises(ValueError, match="both classes"):
        train(np.zeros((5, 2)), np.ones(5))


def test_probe_scorer_adds_its_column_and_rules_use_it(tmp_path):
    from curation.signals.probe import Probe

    out, X, y = _probe_dir(tmp_path)
    scorer = Probe(out)
    assert scorer.requires == ("q_a", "q_b", "s_c") and set(scorer.columns) == {"p_valuable"}
    batch = pd.DataFrame({"id": [f"r{i}" for i in range(100)], "q_a": X[200:, 0], "q_b": X[200:, 1],
                          "s_c": X[200:, 2]})
    batch.loc[3, "q_a"] = None  # a missing signal is imputed, not an error
    p = scorer(batch)["p_valuable"].astype(float)
    assert p.notna().all()
    assert ((p >= 0.5).astype(int).values == y[200:]).mean() > 0.85
    # the same rule text a stage config would carry, evaluated on the scored rows
    assert batch.assign(p_valuable=p).eval("p_valuable >= 0.5").sum() == (p >= 0.5).sum()


def test_probe_with_a_swapped_model_file_is_refused(tmp_path):
    from curation.signals.probe import Probe

    out, _, _ = _probe_dir(tmp_path)
    (out / "probe.joblib").write_bytes((out / "probe.joblib").read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        Probe(out).load()


def test_curation_probe_does_not_import_annotation():
    code = "import sys, curation.signals.probe; print('annotation' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_server_start_without_venv_names_the_install_command(tmp_path, monkeypatch):
    from annotation import server

    monkeypatch.setenv("SLUICE_LS_VENV", str(tmp_path / "none"))
    with pytest.raises(server.ServerError, match="sluice annotate server install"):
        server.start(tmp_path / "data", port=server.free_port())


def test_server_needs_admin_and_token_from_the_environment(monkeypatch):
    from annotation import server

    for name in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(server.ServerError, match="LABEL_STUDIO_API_KEY"):
        server.admin_env()


def test_loop_config_errors_say_what_to_fix(tmp_path):
    from pydantic import ValidationError

    from annotation.loop_config import LoopConfig

    with pytest.raises(ValidationError, match="files_root"):
        LoopConfig(pool="p")
    with pytest.raises(ValidationError, match="strategy"):
        LoopConfig(pool="p", image_mode="inline", strategy="best")
    with pytest.raises(ValidationError, match="positive"):
        LoopConfig(pool="p", image_mode="inline", positive=["yes"])
    cfg = LoopConfig(pool="p", image_mode="inline", template="structure", question="logo")
    assert cfg.positive_labels() == ["yes"] and cfg.negative_label() == "no"


def test_inline_images_and_file_names_for_servers_that_cannot_see_our_disk(tmp_path):
    import io

    from PIL import Image

    from annotation.tasks import build_tasks, file_name, inline_refs, write_local

    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 200, 30)).save(buf, format="PNG")
    images = {"a/../../etc": buf.getvalue(), "broken": b"not an image"}
    refs = inline_refs(images)
    assert refs["a/../../etc"].startswith("data:image/jpeg;base64,") and "broken" not in refs
    name = file_name("a/../../etc", images["a/../../etc"])
    assert "/" not in name and name.endswith(".png")
    local = write_local(images, tmp_path, "sluice/1")
    assert all((tmp_path / "sluice/1" / r.split("/")[-1]).exists() for r in local.values())
    tasks = build_tasks([{"id": "broken", "caption": None, "uri": None}], refs, 2)
    assert tasks == [{"data": {"sample_id": "broken", "image": "", "caption": "", "uri": "", "round": 2}}]


@pytest.mark.spark
def test_probe_runs_in_spark_and_a_stage_rule_uses_its_column(tmp_path, spark):
    from curation.config import Rule
    from curation.signals.probe import Probe
    from curation.spark import apply_scorer
    from curation.steps.decide import check_rules, decide

    out, X, y = _probe_dir(tmp_path)
    rows = [(f"r{i}", float(X[200 + i, 0]), float(X[200 + i, 1]), float(X[200 + i, 2]), None) for i in range(100)]
    df = spark.createDataFrame(rows, "id string, q_a double, q_b double, s_c double, error string")
    scored = apply_scorer(df, Probe(out))
    rule = Rule(name="not_valuable", keep_if="p_valuable >= 0.5")
    check_rules(spark, scored.schema, [rule], where="test")
    decided = decide(scored, [rule], "stage2").toPandas().sort_values("id", key=lambda s: s.str[1:].astype(int))
    kept = decided["drop_reason"].isna().astype(int).to_numpy()
    assert len(decided) == 100 and (kept == y[200:]).mean() > 0.85
    assert set(decided["drop_reason"].dropna()) == {"not_valuable"}
