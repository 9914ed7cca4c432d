"""The fusion head's training script: how OCR lines are labelled as lying on a mark, and how line scores reach
each image's features. The full run takes minutes of OCR; these parts decide what the heads learn."""

import importlib

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def script():
    return importlib.import_module("detector_factory.train_structure_fusion")


def _watermarked_record(split: str, seed: int):
    """The first record of (split, seed) with a visible watermark, its index, and its mask at the map's size."""
    from curation.signals.watermark_map import MAP_SIDE
    from detector_factory import structure_data as sd

    photos, pages = sd.split_photos(split)
    for index in range(60):
        r = sd.make_record(photos, index, seed, pages, 0.0, masks=True, side=MAP_SIDE)
        mark = r["masks"].get("watermark")
        if r["labels"]["watermark"] and mark is not None and 0.002 < mark.mean() < 0.3:
            return index, mark
    raise AssertionError("no watermarked record in the first 60")


def test_lines_on_the_mark_are_labelled_on_and_others_off(script):
    index, mark = _watermarked_record("heldout", 4242)
    h, w = mark.shape
    ys, xs = np.nonzero(mark)
    on = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.max() + 1, ys.max() + 1],
                   [xs.min(), ys.max() + 1]], np.float32) / (w, h)
    free = np.argwhere(~mark)  # a small box with no mark pixel in it
    y, x = next((y, x) for y, x in free[:: max(1, len(free) // 500)]
                if not mark[max(0, y - 2):y + 3, max(0, x - 4):x + 5].any())
    off = np.array([[x - 4, y - 2], [x + 5, y - 2], [x + 5, y + 3], [x - 4, y + 3]], np.float32) / (w, h)
    out = script._labels_at_map_side(("heldout", index, 4242, 0.0, [on, off], None))
    assert out["labels"]["watermark"] == 1 and out["on_mark"] == [1, 0]
    assert script._labels_at_map_side(("heldout", index, 4242, 0.0, [], None))["on_mark"] == []


def test_line_scores_pool_into_their_own_images_features(script):
    from curation.signals.structure_features import IMAGE_FEATURES

    def data(n_images, lines_per_image):
        line_of = np.concatenate([np.full(k, i) for i, k in enumerate(lines_per_image)]).astype(np.int64)
        return {"x": np.zeros((n_images, len(IMAGE_FEATURES)), np.float32), "y": np.zeros((n_images, 3)),
                "line_of": line_of, "lines": np.zeros((len(line_of), 2)), "line_y": np.zeros(len(line_of))}

    both = script.join(data(2, [2, 0]), data(2, [1, 3]))
    assert both["line_of"].tolist() == [0, 0, 2, 3, 3, 3]  # the second set's images come after the first's
    script.set_line_scores(both, np.array([0.2, 0.9, 0.4, 0.6, 0.7, 0.1]))
    best, marked = IMAGE_FEATURES.index("lines_max_mark"), IMAGE_FEATURES.index("lines_marked")
    assert both["x"][:, best].tolist() == pytest.approx([0.9, 0.0, 0.4, 0.7])
    assert both["x"][:, marked].tolist() == pytest.approx([np.log1p(1), 0, 0, np.log1p(2)])


def test_extra_photos_join_the_train_split_only(tmp_path):
    from PIL import Image

    from detector_factory import structure_data as sd

    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(tmp_path / f"wall{i}.jpg")
    train, _ = sd.split_photos("train")
    held, _ = sd.split_photos("heldout")
    more, _ = sd.split_photos("train", tmp_path)
    assert [s for s, _ in more] == [s for s, _ in train] + ["wall0.jpg", "wall1.jpg"]
    assert len(sd.split_photos("heldout", tmp_path)[0]) == len(held)  # validation never sees them


def test_unseen_split_draws_over_the_folder_alone(tmp_path):
    """The 'unseen' split is the photos of a folder and none of the bundled ones: the heads' samples over
    backgrounds the watermark map never learnt; without a folder it says what to give."""
    from PIL import Image

    from detector_factory import structure_data as sd

    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(tmp_path / f"new{i}.jpg")
    photos, pages = sd.split_photos("unseen", tmp_path)
    assert [s for s, _ in photos] == ["new0.jpg", "new1.jpg"]
    assert len(pages) == len(sd.split_photos("train")[1])  # the train split's pages, never the held-out one
    r = sd.make_record(photos, 0, 40_000, pages)
    assert r["subject"] in ("new0.jpg", "new1.jpg")
    with pytest.raises(ValueError, match="extra_photos"):
        sd.split_photos("unseen")
    with pytest.raises(ValueError, match="train, heldout, unseen"):
        sd.split_photos("validation")


@pytest.fixture(scope="module")
def photos():
    return importlib.import_module("detector_factory.debian_photos")


def test_photo_sets_are_disjoint_and_name_files_apart(photos):
    """The map's photos and the photos it never saw must not share a file, or the unseen set is not unseen;
    two photos of one set must not be written to one file name."""
    wallpapers, unseen = photos.SETS["wallpapers"][1], photos.SETS["unseen"][1]
    assert not set(wallpapers) & set(unseen)
    assert not {photos._name(p) for p in wallpapers} & {photos._name(p) for p in unseen}
    for _, paths in photos.SETS.values():
        assert len({photos._name(p) for p in paths}) == len(paths)


def test_webp_pictures_are_carved_out_of_a_resource_file(photos):
    """GCompris's photos sit inside Qt resource files among other bytes: each WebP big enough comes out whole,
    a small one and a stray "RIFF....WEBP" that is no picture are passed over."""
    import io

    from PIL import Image

    def webp(size, colour):
        buf = io.BytesIO()
        Image.new("RGB", size, colour).save(buf, "WEBP", quality=90)
        return buf.getvalue()

    blob = (b"qres\x00\x01" + webp((400, 320), (200, 30, 30)) + b"\x00" * 7 + webp((120, 90), (0, 0, 0))
            + b"RIFF\x10\x00\x00\x00WEBPnot-a-picture" + webp((320, 500), (20, 200, 40)) + b"tail")
    carved = photos.carve_webp(blob)
    assert [im.size for im in carved] == [(400, 320), (320, 500)]
    assert carved[1].getpixel((10, 10))[1] > 150  # the green one, decoded


def test_a_missing_photo_folder_fails_before_the_workers_start(tmp_path):
    """The render workers read the photos in their initializer, where an error makes the pool start new workers
    for ever: the build must fail at once with the folder's error instead of hanging."""
    import signal

    from detector_factory import structure_fusion_data as fd

    def hung(*_):
        raise AssertionError("build hung on a missing photo folder")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with pytest.raises(FileNotFoundError, match="photo folder not found"):
            fd.build(tmp_path / "out", "unseen", 4, 1, 0.0, 1, extra_photos=tmp_path / "missing")
        with pytest.raises(ValueError, match="give extra_photos"):
            fd.build(tmp_path / "out", "unseen", 4, 1, 0.0, 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert not list((tmp_path / "out").glob("*.pkl"))
