"""Where semi-transparent marks are: a small fully convolutional net that maps an image to a grid of mark probabilities.

The structure detector (`structure.py`) sees the whole image squashed to 256 px, where a tiled mark of
small faint words, or a corner handle, is a few grey levels over a few pixels. This net looks at the image
at MAP_SIDE px (long side) and says, per CELL x CELL cell, how likely the cell is covered by watermark
strokes: text or emblems drawn semi-transparently over the picture. Being taught per cell (the generator
knows which pixels each mark changed, and which were scene text or an overlay), it learns from every
stroke, not from one label per image.

The fusion head (`structure_fusion.py`) turns the map into features, alone and inside the lines OCR found.
`watermark_map_v4.onnx` ships beside this module; `detector_factory/train_watermark_map.py` trains it
(see weights/WATERMARK_MAP_CARD.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_NAME = "watermark_map_v4"
MAP_SIDE = 512  # the long side the net sees
MULTIPLE = 16  # both sides are rounded to this (the net halves four times)
CELL = 8  # output stride: one probability per CELL x CELL input pixels

# Features of the map for the fusion head, per image. "lines" are OCR's: a watermark's words are marked,
# scene text and overlays are not, so the map inside OCR's boxes tells the kinds apart.
MAP_FEATURES = ("map_max", "map_top_mean", "map_area", "map_mean", "map_lines_max", "map_lines_mean",
                "map_marked_lines")
TOP_SHARE = 0.01  # map_top_mean: mean of the top 1% cells (at least 4)
MARKED = 0.5  # a cell or a line above this is marked


def default_map_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / f"{DEFAULT_NAME}.onnx"


def map_input_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) the net sees for an image of `size`: long side MAP_SIDE, both sides multiples of 16."""
    w, h = size
    s = MAP_SIDE / max(w, h)
    return (max(MULTIPLE, int(round(w * s / MULTIPLE)) * MULTIPLE),
            max(MULTIPLE, int(round(h * s / MULTIPLE)) * MULTIPLE))


def to_map_input(image) -> np.ndarray:
    """(3, H, W) uint8 RGB at map_input_size, area-averaged; training and scoring both call this."""
    from PIL import Image

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = rgb.resize(map_input_size(rgb.size), Image.Resampling.BOX)
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8).transpose(2, 0, 1))


class WatermarkMap:
    """The ONNX net: `probabilities(image)` -> (H/CELL, W/CELL) float32 mark probabilities."""

    def __init__(self, path: Path | None = None, threads: int = 1):
        from plumbing.deps import require

        path = Path(path) if path else default_map_path()
        if not path.is_file():
            raise FileNotFoundError(f"watermark map model not found: {path}; reinstall sluice, retrain with "
                                    "detector_factory/train_watermark_map.py, or set "
                                    "stage1.signals.structure.fusion: false")
        ort = require("onnxruntime", extra="ocr")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if int(meta.get("cell", CELL)) != CELL or int(meta.get("side", MAP_SIDE)) != MAP_SIDE:
            raise ValueError(f"watermark map {path} was trained for side {meta.get('side')} and cell "
                             f"{meta.get('cell')}; this version of sluice feeds side {MAP_SIDE}, cell {CELL}")
        self.name = meta.get("name", path.stem)
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, image) -> np.ndarray:
        x = to_map_input(image)[None].astype(np.float32) * (1.0 / 255.0)
        return np.asarray(self.session.run(None, {self.input_name: x})[0][0, 0], dtype=np.float32)


def cells_under(prob: np.ndarray, quad, size: tuple[int, int]) -> np.ndarray:
    """The map's cells whose centres lie inside a quad (pixels of an image of `size`); for a quad too small
    to hold a centre, the cells under its bounding box. A rotated line's bounding box is mostly what is
    around it (a diagonal mark's word fills a third of it), so the box would dilute the mark."""
    gh, gw = prob.shape
    q = np.asarray(quad, np.float32).reshape(4, 2) / (size[0], size[1]) * (gw, gh)  # in cells
    x0, y0 = np.clip(np.floor(q.min(axis=0)).astype(int), 0, (gw - 1, gh - 1))
    x1, y1 = np.clip(np.ceil(q.max(axis=0)).astype(int), (x0 + 1, y0 + 1), (gw, gh))
    box = prob[y0:y1, x0:x1]
    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
    inside = np.ones(box.shape, bool)
    cx, cy = q.mean(axis=0)
    for k in range(4):  # the same side of each edge as the quad's centre (convex)
        (ax, ay), (bx, by) = q[k], q[(k + 1) % 4]
        side = (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)
        ref = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        inside &= side * np.sign(ref) >= 0
    return box[inside] if inside.any() else box.ravel()


def map_features(prob: np.ndarray, quads: list, size: tuple[int, int]) -> np.ndarray:
    """MAP_FEATURES from a map and OCR's line quads (pixels of an image of `size`)."""
    flat = np.sort(prob.ravel())[::-1]
    k = max(4, int(len(flat) * TOP_SHARE))
    lines = np.asarray([float(cells_under(prob, quad, size).mean()) for quad in quads], np.float32)
    return np.array([
        flat[0], flat[:k].mean(), (prob >= MARKED).mean(), prob.mean(),
        lines.max() if len(lines) else 0.0, lines.mean() if len(lines) else 0.0,
        (lines >= MARKED).sum() if len(lines) else 0.0,
    ], np.float32)
