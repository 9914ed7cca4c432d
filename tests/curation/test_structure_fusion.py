"""The structure fusion head: exported trees equal scikit-learn's, features, wiring, and what it does on
held-out photos (text overlays found, scene text kept)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("rapidocr")
pytest.importorskip("skimage")

from curation.signals.analysis import decode_for_analysis  # noqa: E402
from curation.signals.boosted_trees import BoostedTrees, export_hgb  # noqa: E402
from curation.signals.structure import StructureSignal  # noqa: E402
from curation.signals.structure_features import (IMAGE_FEATURES, LINE_FEATURES, image_features,  # noqa: E402
                                                 line_features)
from curation.signals.structure_fusion import (FUSION_NAME, StructureFusionSignal, default_fusion_path,  # noqa: E402
                                               line_head_path)
from curation.signals.watermark_map import DEFAULT_NAME as MAP_NAME  # noqa: E402
from detector_factory import structure_data as sd  # noqa: E402

SEED = 5151  # neither the CNN's (0, 10000) nor the head's (20000) training or validation seeds


def test_exported_trees_predict_what_scikit_learn_predicts():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 5))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the side the fit chose
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2 + 0.3 * rng.normal(size=1500) > 0.4).astype(int)
    models = {"a": HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x, y),
              "b": HistGradientBoostingClassifier(max_iter=30, random_state=1).fit(x, 1 - y)}
    trees = BoostedTrees(export_hgb(models, tuple("vwxyz")))
    ours = trees.predict(x[:300])
    for j, head in enumerate(trees.heads):
        np.testing.assert_allclose(ours[:, j], models[head].predict_proba(x[:300])[:, 1], atol=1e-9)
    with pytest.raises(ValueError, match="expected 5 features"):
        trees.predict(x[:3, :4])


def test_malformed_tree_arrays_are_refused():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.random.default_rng(1).normal(size=(200, 2))
    arrays = export_hgb({"h": HistGradientBoostingClassifier(max_iter=5).fit(x, x[:, 0] > 0)}, ("p", "q"))
    arrays["h.left"] = arrays["h.left"][:-1]
    with pytest.raises(ValueError, match="malformed"):
        BoostedTrees(arrays)


def test_features_without_text_and_with_a_tiled_mark():
    from PIL import Image

    image = Image.new("RGB", (400, 300), (90, 120, 150))
    cnn, tiles = np.array([0.1, 0.2, 0.3]), np.full((4, 3), 0.05)
    quiet = np.full((30, 40), 0.02, np.float32)  # a watermark map that sees nothing
    none = dict(zip(IMAGE_FEATURES, image_features(image, cnn, tiles, [], quiet)))
    assert none["has_text"] == 0 and none["n_lines"] == 0 and none["cnn_text_overlay"] == pytest.approx(0.3)
    assert none["map_max"] == pytest.approx(0.02) and none["map_lines_max"] == 0
    quad = [[10, 10], [110, 10], [110, 30], [10, 30]]
    lines = [(np.array(quad) + [0, 60 * i], "© PhotoHub", 0.9) for i in range(4)] + [(np.array(quad) + [250, 0], "OPEN", 0.95)]
    marked = quiet.copy()
    marked[:, :12] = 0.9  # the left 30%, where the repeated lines are; "OPEN" at x 250-360 is not marked
    tiled = dict(zip(IMAGE_FEATURES, image_features(image, cnn, tiles, lines, marked)))
    assert tiled["has_text"] == 1 and tiled["max_repeat"] == pytest.approx(np.log1p(4))
    assert tiled["repeat_share"] == pytest.approx(4 / 5)
    assert tiled["max_angle"] == 0
    assert tiled["map_lines_max"] == pytest.approx(0.9) and tiled["map_marked_lines"] == 4
    assert tiled["map_lines_mean"] == pytest.approx((4 * 0.9 + 0.02) / 5)
    assert tiled["lines_max_mark"] == 0 and tiled["lines_marked"] == 0  # no line scores given
    scored = dict(zip(IMAGE_FEATURES, image_features(image, cnn, tiles, lines, marked,
                                                      line_scores=[0.7, 0.6, 0.2, 0.1, 0.05])))
    assert scored["lines_max_mark"] == pytest.approx(0.7) and scored["lines_marked"] == pytest.approx(np.log1p(2))


def test_line_features_describe_each_line_on_its_own():
    from PIL import Image

    image = Image.new("RGB", (400, 300), (90, 120, 150))
    cnn = np.array([0.1, 0.2, 0.3])
    marked = np.full((30, 40), 0.02, np.float32)
    marked[:, :12] = 0.9
    quad = np.array([[10, 10], [110, 10], [110, 30], [10, 30]])
    lines = ([(quad + [0, 60 * i], "© PhotoHub", 0.9) for i in range(4)] + [(quad + [250, 0], "OPEN", 0.95)]
             + [(quad + [250, 200], "  ", 0.5)])  # no text: left out, as image_features leaves it out
    rows = line_features(image, cnn, lines, marked)
    assert rows.shape == (5, len(LINE_FEATURES))
    f = [dict(zip(LINE_FEATURES, r)) for r in rows]
    assert [r["repeat"] for r in f] == pytest.approx([np.log1p(4)] * 4 + [np.log1p(1)])
    assert f[0]["map_mean"] == pytest.approx(0.9) and f[4]["map_mean"] == pytest.approx(0.02)
    assert f[0]["edge_x"] == pytest.approx(60 / 400) and f[4]["conf"] == pytest.approx(0.95)
    assert f[4]["n_chars"] == 4 and all(r["cnn_text_overlay"] == pytest.approx(0.3) for r in f)
    assert line_features(image, cnn, [], marked).shape == (0, len(LINE_FEATURES))


def test_shipped_head_matches_this_feature_set():
    with np.load(default_fusion_path()) as z:
        trees = BoostedTrees(z)
        meta = json.loads(str(z["meta"]))
    assert trees.features == IMAGE_FEATURES
    assert meta["detector"] == "structure_v1" and meta["map"] == MAP_NAME
    assert default_fusion_path().stat().st_size < 2 * 2**20
    with np.load(line_head_path(default_fusion_path())) as z:
        lines = BoostedTrees(z)
    assert lines.features == LINE_FEATURES and lines.heads == ("on_mark",)
    assert line_head_path(default_fusion_path()).stat().st_size < 2**20


def test_a_head_without_its_line_head_is_refused(tmp_path):
    import shutil

    shutil.copy(default_fusion_path(), tmp_path / "mine.npz")
    with pytest.raises(FileNotFoundError, match="mine.lines.npz"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "mine.npz")).load()
    shutil.copy(default_fusion_path(), tmp_path / "mine.lines.npz")  # the image head where the line head belongs
    with pytest.raises(ValueError, match="line head"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "mine.npz")).load()
    (tmp_path / "mine.lines.npz").write_text("not trees")  # a stray file: refused, never unpickled
    with pytest.raises(ValueError, match="line head .* is not a boosted-trees file .*train_structure_fusion"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "mine.npz")).load()
    (tmp_path / "mine.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="structure fusion head .* is not a boosted-trees file"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "mine.npz")).load()


def test_head_trained_on_another_detector_is_refused(tmp_path):
    with np.load(default_fusion_path()) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = np.array(json.dumps({"detector": "someone_elses_detector"}))
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(ValueError, match="fusion: false"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "other.npz")).load()
    arrays["meta"] = np.array(json.dumps({"detector": "structure_v1", "map": "watermark_map_v0"}))
    np.savez(tmp_path / "old_map.npz", **arrays)
    with pytest.raises(ValueError, match="watermark map watermark_map_v0"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "old_map.npz")).load()
    with pytest.raises(FileNotFoundError, match="fusion"):
        StructureFusionSignal(StructureSignal(), path=str(tmp_path / "missing.npz")).load()


def test_stage1_refuses_a_foreign_head_before_any_work(spark, tmp_path):
    from curation.config import CurateConfig
    from curation.jobs import stage1

    with np.load(default_fusion_path()) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = np.array(json.dumps({"detector": "someone_elses_detector"}))
    np.savez(tmp_path / "other.npz", **arrays)
    cfg = CurateConfig.model_validate({"stage1": {"signals": {"structure": {"fusion_model": str(tmp_path / "other.npz")}}}})
    with pytest.raises(ValueError, match="fusion: false"):
        stage1.check(spark, cfg)
    off = CurateConfig.model_validate({"stage1": {"signals": {"structure": {"fusion": False,
                                                                            "fusion_model": str(tmp_path / "x.npz")}}}})
    stage1.check(spark, off)  # fusion off: the head is not read


def test_stage1_runs_fusion_after_ocr_only_when_both_are_on():
    from curation.config import Stage1Config
    from curation.jobs.stage1 import build_signals

    names = [s.name for s in build_signals(Stage1Config())]
    assert names[-2:] == ["ocr", "structure_fusion"]
    off = Stage1Config.model_validate({"signals": {"structure": {"fusion": False}}})
    assert "structure_fusion" not in [s.name for s in build_signals(off)]
    no_ocr = Stage1Config.model_validate({"signals": {"ocr": {"enabled": False}}})
    assert "structure_fusion" not in [s.name for s in build_signals(no_ocr)]


def _jpeg(image) -> bytes:
    return sd.encode_jpeg(image, 88)


@pytest.fixture(scope="module")
def fused_rows():
    """Held-out photos with overlays, scene text and nothing, scored as stage 1 does (structure, OCR, fusion)."""
    from curation.signals.ocr import OcrSignal

    structure, ocr = StructureSignal(), OcrSignal()
    fusion = StructureFusionSignal(structure)
    for s in (structure, ocr, fusion):
        s.load()
    photos, pages = sd.split_photos("heldout")
    kinds = (["subtitle", "caption_bar", "meme", "sticker"] * 2 + ["scene_sign", "scene_poster"] * 4 + ["clean"] * 4
             + ["wm_corner", "wm_tiled", "wm_center"] * 2)
    rows = []
    for i, kind in enumerate(kinds):
        image, labels = sd.make_sample(photos[i % len(photos)][1], kind, np.random.default_rng([SEED, i]), pages[0])
        img = decode_for_analysis(_jpeg(image))
        cnn = structure.score_image(img)
        ocr.score_image(img)
        rows.append((kind, labels, cnn, fusion.score_image(img)))
    return rows


def test_fusion_needs_structure_and_ocr_first():
    from PIL import Image

    img = decode_for_analysis(_jpeg(Image.new("RGB", (64, 64), (10, 20, 30))))
    with pytest.raises(RuntimeError, match="run first"):
        StructureFusionSignal(StructureSignal()).score_image(img)


def test_fused_scores_find_overlays_and_keep_scene_text(fused_rows):
    for _, _, _, row in fused_rows:
        assert set(row) == set(StructureSignal.columns)
        assert row["s_detector"] == f"structure_v1+{FUSION_NAME}"
    overlay = [row["s_text_overlay"] for _, lab, _, row in fused_rows if lab["text_overlay"]]
    others = [row["s_text_overlay"] for _, lab, _, row in fused_rows if not lab["text_overlay"]]
    assert len(overlay) >= 6 and len(others) >= 8
    assert np.mean(np.array(overlay) >= 0.5) >= 0.75, overlay
    scene = [row["s_text_overlay"] for _, lab, _, row in fused_rows if lab["scene_text"] and not lab["text_overlay"]]
    assert np.mean(np.array(scene) >= 0.5) <= 0.25, scene
    assert min(overlay) < 1 and max(others) > 0  # probabilities, not constants


def test_fused_watermark_ranks_marks_above_scene_text_and_clean(fused_rows):
    marks = [row["s_watermark"] for _, lab, _, row in fused_rows if lab["watermark"]]
    others = [row["s_watermark"] for kind, lab, _, row in fused_rows
              if not lab["watermark"] and (lab["scene_text"] or kind == "clean")]
    assert len(marks) >= 3 and len(others) >= 8
    assert np.mean(marks) > np.mean(others) + 0.2, (marks, others)
    assert np.mean(np.array(others) >= 0.8) <= 0.1, others  # the default rule's threshold
