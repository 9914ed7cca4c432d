"""The labelled stage-1 benchmark is deterministic, held out, and labelled as its file names say."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from benchmarks import stage1_benchmark as sb
from detector_factory.structure_data import HELDOUT_SUBJECTS, KIND_LABELS, split_photos

N_PER_CLASS = 1  # one image per class keeps the test fast; kinds rotate inside a class
TRAINING_SEEDS = (0, 10_000)  # train_structure_detector: --seed 0, held-out seed + 10000; streams (seed, index)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1_bench")
    sb.write_benchmark(out, n_per_class=N_PER_CLASS, seed=7)
    return out


def test_same_seed_same_bytes(bench, tmp_path):
    sb.write_benchmark(tmp_path, n_per_class=N_PER_CLASS, seed=7)
    assert _digests(tmp_path) == _digests(bench)


def test_a_record_depends_only_on_its_seed_and_place():
    photos, pages = split_photos("heldout")
    args = ("watermark", "wm_tiled", 5, 2)
    a, _ = sb.make_record(photos, pages[0], *args, seed=7)
    b, _ = sb.make_record(photos, pages[0], *args, seed=7)
    c, _ = sb.make_record(photos, pages[0], *args, seed=8)
    assert a == b and a != c


def test_labels_match_files_and_every_class_is_present(bench):
    labels = sb.read_labels(bench / sb.LABELS_NAME)
    files = sorted(str(p.relative_to(bench / sb.IMAGES_DIR)) for p in (bench / sb.IMAGES_DIR).rglob("*.jpg"))
    assert sorted(lb["key"] for lb in labels) == files
    assert {lb["class"] for lb in labels} == set(sb.CLASSES)
    for lb in labels:
        cls, name = lb["key"].split("/")
        assert cls == lb["class"] and name.startswith(lb["kind"] + "-")
        assert lb["kind"] in sb.CLASSES[cls][0]
        assert lb["defects"] == list(sb.CLASSES[cls][1])
        assert set(lb["defects"]) <= set(sb.RULES)
        with Image.open(bench / sb.IMAGES_DIR / lb["key"]) as im:
            assert im.format == "JPEG" and im.size == sb.SIZE
    # each rule the issue names has positives; scene text is labelled clean (it must be kept)
    assert {d for lb in labels for d in lb["defects"]} == set(sb.RULES)
    assert all(not lb["defects"] for lb in labels if lb["class"] == "scene_text")


def test_only_held_out_photos_and_disjoint_seed_streams(bench):
    import numpy as np

    photos, pages = split_photos("heldout")
    assert {s for s, _ in photos} == set(HELDOUT_SUBJECTS)
    for lb in sb.read_labels(bench / sb.LABELS_NAME):
        subject, _, page = lb["subject"].partition("+")
        assert subject in HELDOUT_SUBJECTS and page in ("", "text")  # "text": the held-out page photo
    assert sb.DEFAULT_SEED not in TRAINING_SEEDS
    # The generator's streams carry STREAM_TAG, so they differ from structure_data's (seed, index) streams
    # even for a training seed.
    ours = np.random.default_rng([0, sb.STREAM_TAG, 0, 0]).random(4)
    theirs = np.random.default_rng([0, 0]).random(4)
    assert not np.allclose(ours, theirs)


def test_structure_kinds_are_the_detectors_labels():
    for cls in ("watermark", "text_overlay"):
        assert all(KIND_LABELS[k] == cls for k in sb.CLASSES[cls][0])
    assert all(KIND_LABELS[k] == "scene_text" for k in sb.CLASSES["scene_text"][0])


def _rows(reasons: list[list[str] | None], defects: list[list[str]], classes=None) -> pd.DataFrame:
    return pd.DataFrame({"key": [str(i) for i in range(len(reasons))], "defects": defects,
                         "class": classes or ["x"] * len(reasons), "kind": ["k"] * len(reasons),
                         "error": [None] * len(reasons), "drop_reasons": reasons,
                         "drop_reason": [r[0] if r else None for r in reasons]})


def test_rule_scores_any_and_first():
    rows = _rows([["low_information", "blurry"], ["blurry"], None, ["blurry"]],
                 [["low_information"], ["blurry"], ["blurry"], []])
    s = sb.rule_scores(rows, ("blurry", "low_information"))
    assert s["blurry"]["precision_any"] == pytest.approx(1 / 3) and s["blurry"]["recall_any"] == 0.5
    assert s["blurry"]["precision_first"] == 0.5 and s["blurry"]["recall_first"] == 0.5
    assert s["low_information"]["precision_first"] == 1.0 and s["low_information"]["recall_first"] == 1.0


def test_scene_text_false_drops():
    rows = _rows([["text_overlay"], None, ["blurry"], None], [[], [], [], []],
                 ["scene_text", "scene_text", "scene_text", "clean"])
    d = sb.scene_text_drops(rows)
    assert d["n"] == 3 and d["dropped_as_text_overlay"] == 1 and d["dropped_any"] == 2


def test_suggest_keep_if_finds_a_compound_threshold():
    rows = _rows([None] * 6, [["blurry"]] * 3 + [[]] * 3)
    rows["q_sharpness"] = [5.0, 30.0, 35.0, 60.0, 80.0, 90.0]
    rows["q_motion_blur"] = [0.1, 0.6, 0.7, 0.6, 0.1, 0.2]
    keep_if = "q_sharpness >= 2.5 AND NOT (q_motion_blur >= 0.4 AND q_sharpness < 20)"
    assert sb.rule_flags(rows, keep_if).tolist() == [False] * 6
    rows.loc[0, "q_motion_blur"] = float("nan")  # null keeps, as in Spark
    assert not sb.rule_flags(rows, "q_motion_blur >= 0.05")[0]
    rows.loc[0, "q_motion_blur"] = 0.1
    s = sb.suggest_keep_if(rows, "blurry", keep_if, target=0.9)
    assert s["current"]["recall"] == 0.0
    assert s["suggested"]["recall"] == 1.0 and s["suggested"]["precision"] == 1.0
    assert sb.rule_flags(rows, s["suggested"]["keep_if"]).tolist() == [True] * 3 + [False] * 3
