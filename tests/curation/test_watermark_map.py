"""The watermark map: its input contract, its features, its file checks, and that it marks a held-out
mark's pixels and not scene text or a clean photo."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from PIL import Image  # noqa: E402

from curation.signals.analysis import decode_for_analysis  # noqa: E402
from curation.signals.watermark_map import (  # noqa: E402
    CELL, DEFAULT_NAME, MAP_FEATURES, MAP_SIDE, WatermarkMap, default_map_path, map_features, map_input_size, to_map_input)
from detector_factory import structure_data as sd  # noqa: E402

SEED = 6161  # none of the map's (0, 10000) or the fusion head's training or validation seeds


def test_input_keeps_the_aspect_on_a_grid_of_16():
    assert map_input_size((1024, 768)) == (512, 384)
    assert map_input_size((300, 1000)) == (160, 512)
    assert map_input_size((5000, 20)) == (512, 16)  # a sliver still gets one row of cells
    x = to_map_input(Image.new("L", (1024, 768), 200))
    assert x.shape == (3, 384, 512) and x.dtype == np.uint8 and int(x.max()) == 200


def test_features_pool_the_map_over_the_image_and_inside_lines():
    prob = np.zeros((48, 64), np.float32)
    prob[40:44, 50:60] = 0.8  # a mark at the bottom right
    quads = [[[800, 640], [950, 640], [950, 700], [800, 700]],  # on the mark (cells 40-43, 50-59 of 1024x768)
             [[10, 10], [200, 10], [200, 60], [10, 60]]]  # elsewhere
    f = dict(zip(MAP_FEATURES, map_features(prob, quads, (1024, 768))))
    assert f["map_max"] == pytest.approx(0.8) and f["map_area"] == pytest.approx(40 / (48 * 64))
    assert f["map_top_mean"] == pytest.approx(0.8)  # the top 1% (30 cells) are all on the mark
    assert f["map_marked_lines"] == 1 and f["map_lines_max"] > 0.5 and f["map_lines_mean"] < f["map_lines_max"]
    empty = dict(zip(MAP_FEATURES, map_features(prob, [], (1024, 768))))
    assert empty["map_lines_max"] == 0 and empty["map_marked_lines"] == 0


def test_a_rotated_line_reads_the_cells_inside_it_not_its_bounding_box():
    from curation.signals.watermark_map import cells_under

    prob = np.zeros((48, 64), np.float32)
    rows, cols = np.mgrid[0:48, 0:64]
    prob[np.abs(rows - 0.75 * cols) <= 2] = 0.9  # a diagonal band of marked cells, as a diagonal mark's word
    # a line along the band (16 px per cell at 1024x768): its bounding box is mostly unmarked sky
    line = [[160, 120 - 30], [800, 600 - 30], [800, 600 + 30], [160, 120 + 30]]  # along rows = 0.75 cols
    inside = cells_under(prob, line, (1024, 768))
    q = np.asarray(line)
    box = prob[q[:, 1].min() // 16:q[:, 1].max() // 16 + 1, q[:, 0].min() // 16:q[:, 0].max() // 16 + 1]
    assert inside.mean() > 0.6 > 0.3 > box.mean()
    tiny = cells_under(prob, [[3, 3], [6, 3], [6, 6], [3, 6]], (1024, 768))  # holds no cell centre
    assert tiny.tolist() == [prob[0, 0]]


def test_a_missing_or_foreign_map_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="fusion: false"):
        WatermarkMap(tmp_path / "nope.onnx")
    import onnx

    proto = onnx.load(str(default_map_path()))
    for entry in proto.metadata_props:
        if entry.key == "cell":
            entry.value = str(CELL * 2)
    onnx.save(proto, str(tmp_path / "coarse.onnx"))
    with pytest.raises(ValueError, match="cell"):
        WatermarkMap(tmp_path / "coarse.onnx")


def test_shipped_map_is_small_and_fits_its_contract():
    assert default_map_path().stat().st_size < 4 * 2**20
    net = WatermarkMap()
    prob = net.probabilities(Image.new("RGB", (1024, 768), (120, 130, 140)))
    assert prob.shape == (384 // CELL, 512 // CELL) and prob.dtype == np.float32
    assert float(prob.max()) < 0.5  # a flat frame has no mark


def test_map_marks_held_out_watermarks_not_scene_text_or_clean_photos():
    """Held-out photo subjects and a seed of their own: each watermark's own pixels score above what scene
    text and clean photos score anywhere."""
    net = WatermarkMap()
    photos, pages = sd.split_photos("heldout")
    marks, marked_cells, others = [], [], []
    kinds = ["wm_center", "wm_diagonal", "wm_tiled", "wm_corner"] * 2 + ["scene_sign", "scene_poster", "clean"] * 3
    for i, kind in enumerate(kinds):
        r = sd.make_record(photos, i, SEED, pages, kind=kind, masks=True, side=MAP_SIDE)
        if kind.startswith("wm") and not r["labels"]["watermark"]:
            continue  # too faint to show on this photo: not a mark to find
        prob = net.probabilities(decode_for_analysis(sd.encode_jpeg(r["image"], 88)).image)
        if kind.startswith("wm"):
            mask = np.asarray(Image.fromarray(r["masks"]["watermark"].astype(np.uint8) * 255).resize(
                (prob.shape[1], prob.shape[0]), Image.Resampling.BOX)) > 64
            marks.append(float(prob.max()))
            marked_cells.append(float(prob[mask].mean()) if mask.any() else 0.0)
        else:
            others.append(float(prob.max()))
    assert len(marks) >= 5 and len(others) == 9
    # The map is an input of the fusion head, not a detector by itself: held-out clutter (a garage, gravel)
    # also lights some cells, so what must hold is the ranking, and that a mark's own cells are marked.
    auc = np.mean([m > o for m in marks for o in others])
    assert auc >= 0.75, (marks, others)
    assert np.mean(marked_cells) > 0.4, marked_cells  # it marks where the mark is, not just the image


def test_records_are_the_same_image_whatever_size_judges_the_marks():
    photos, pages = sd.split_photos("heldout")
    small = sd.make_record(photos, 3, SEED, pages, kind="wm_tiled", masks=True)
    large = sd.make_record(photos, 3, SEED, pages, kind="wm_tiled", masks=True, side=MAP_SIDE)
    assert np.array_equal(np.asarray(small["image"]), np.asarray(large["image"]))
    assert large["labels"]["watermark"] == 1  # a tiled mark shows at 512 px
    assert max(large["masks"]["watermark"].shape) == MAP_SIDE
    assert small["labels"]["watermark"] == 0 or max(small["masks"]["watermark"].shape) == sd.VISIBILITY_SIDE


def test_clutter_is_opaque_scenery_drawn_deterministically():
    from detector_factory.clutter import cluttered

    photo = sd.split_photos("train")[0][0][1]
    a = cluttered(photo, np.random.default_rng(4))
    b = cluttered(photo, np.random.default_rng(4))
    assert a.size == photo.size and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(a, np.int16) - np.asarray(photo.convert("RGB"), np.int16)).mean() > 1


def test_regular_texture_is_drawn_in_every_kind_and_deterministically():
    from detector_factory.clutter import PERIODIC_KINDS, periodic

    photo = sd.split_photos("train")[0][0][1].convert("RGB").resize((320, 240))
    for kind in PERIODIC_KINDS:
        for seed in range(3):
            a = periodic(photo, np.random.default_rng(seed), kind)
            b = periodic(photo, np.random.default_rng(seed), kind)
            assert a.size == photo.size and np.array_equal(np.asarray(a), np.asarray(b))
            change = np.abs(np.asarray(a, np.int16) - np.asarray(photo, np.int16)).max(axis=2)
            assert (change > 30).mean() > 0.002, (kind, seed)  # a visible pattern, not a faint tint


def test_a_folder_of_own_photos_adds_backgrounds_and_says_what_is_wrong(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (320, 240), (40, 90, 30)).save(folder / "field.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not a photo")
    photos = sd.photos_from_folder(folder)
    assert [name for name, _ in photos] == ["field.jpg"] and photos[0][1].mode == "RGB"
    with pytest.raises(FileNotFoundError, match="photo folder not found"):
        sd.photos_from_folder(tmp_path / "missing")
    (folder / "field.jpg").unlink()
    with pytest.raises(ValueError, match="no readable photo"):
        sd.photos_from_folder(folder)


def test_trainer_runs_end_to_end_with_own_photos(tmp_path):
    """A few steps on a few samples: renders (with the user's photos), trains, exports an ONNX file that
    WatermarkMap loads, and writes the card; not a quality check."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import subprocess
    import sys
    from pathlib import Path

    photos = tmp_path / "photos"
    photos.mkdir()
    sd.split_photos("train")[0][2][1].save(photos / "own.png")
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "detector_factory.train_watermark_map", "--n-train", "12",
                          "--n-val", "8", "--max-steps", "3", "--eval-every", "2", "--batch", "2", "--workers", "1",
                          "--threads", "1", "--extra-photos", str(photos), "--cache", str(tmp_path / "cache"),
                          "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=repo)
    assert run.returncode == 0, run.stderr[-3000:]
    net = WatermarkMap(out / f"{DEFAULT_NAME}.onnx")
    assert net.probabilities(Image.new("RGB", (640, 480), (128, 128, 128))).shape == (384 // CELL, 512 // CELL)
    card = (out / "WATERMARK_MAP_CARD.md").read_text(encoding="utf-8")
    assert f"the photos of `{photos}`" in card and "--extra-photos" in card and "--cache" not in card
