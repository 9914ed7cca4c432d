"""Features that tell a watermark from a text overlay from scene text, given where OCR found text.

The CNN detector sees the whole image squashed to 256 px, where a corner mark or a faint tiled watermark
is a few pixels. The OCR engine (trained on real text, at up to 960 px) finds such text far more reliably,
but not what kind it is. What kind follows from how the text sits in the picture, which these features
measure per OCR line and pool per image:

* geometry: position (corner, bottom centre, centre), size, rotation (diagonal marks), how often the same
  text repeats (tiled marks);
* the pixels of the line's box split into strokes and background (Otsu), against a ring around the box:
  semi-transparent strokes carry the picture's texture through (stroke spread close to the ring's) and
  sit on the picture itself (background like the ring); an overlay's strokes are flat and often on a bar
  or sticker that differs from what is around it; scene text is lit and textured with the scene.

* the watermark map (`watermark_map.py`): where a net that looks at 512 px sees semi-transparent strokes,
  over the whole image and inside OCR's lines (a watermark's words are marked, scene text is not).
* each line on its own (`line_features`): its pixel statistics, place, size, rotation, repetition and the
  map inside it, scored by the line head (`structure_fusion.py`), trained on which generated lines lie on a
  mark. Pooling per line statistics over the image (mean, largest line) blurs a small corner mark into the
  scene text around it; the best line's score does not.

No feature reads what the text says: the training phrases would leak into the benchmark, and real marks
say anything.
"""

from __future__ import annotations

from difflib import SequenceMatcher

import numpy as np

from curation.signals.watermark_map import MAP_FEATURES, cells_under, map_features

LINE_PIXEL_FEATURES = ("contrast", "stroke_spread", "background_spread", "background_vs_ring", "stroke_saturation",
                       "light_text", "stroke_share")
IMAGE_FEATURES = (
    ("cnn_watermark", "cnn_logo", "cnn_text_overlay", "tiles_max_watermark", "tiles_max_logo",
     "tiles_max_text_overlay", "tiles_mean_watermark", "has_text", "n_lines", "n_chars", "text_area",
     "max_repeat", "repeat_share", "conf_mean", "conf_min", "rotated_share", "max_angle", "corner_lines",
     "bottom_centre_lines", "centre_lines", "max_height", "median_height", "spread_x", "spread_y")
    + tuple(f"mean_{f}" for f in LINE_PIXEL_FEATURES)
    + tuple(f"largest_{f}" for f in LINE_PIXEL_FEATURES)
    + MAP_FEATURES
    + ("lines_max_mark", "lines_marked")
)
LINE_FEATURES = (
    LINE_PIXEL_FEATURES
    + ("map_mean", "map_max", "angle", "height", "width", "edge_x", "edge_y", "repeat", "conf", "n_chars",
       "n_lines", "cnn_watermark", "cnn_logo", "cnn_text_overlay", "image_map_max")
)
SIMILAR_TEXT = 0.6  # SequenceMatcher ratio above which two OCR lines are the same mark read twice
CORNER = 0.22  # a line inside this share of width and height from a corner is a corner line
MAX_LINES_MEASURED = 24  # pixel features on at most this many lines (the largest), to bound the cost


def _otsu(values: np.ndarray) -> float:
    hist = np.bincount(values.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    w = np.cumsum(hist)
    mu = np.cumsum(hist * np.arange(256))
    total, mu_t = w[-1], mu[-1]
    between = (mu_t * w - mu * total) ** 2 / np.maximum(w * (total - w), 1e-9)
    return float(np.argmax(between[:-1]))


def line_pixel_features(gray: np.ndarray, sat: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """LINE_PIXEL_FEATURES for one OCR line (quad in pixels of the analysed image)."""
    h, w = gray.shape
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return np.zeros(len(LINE_PIXEL_FEATURES), np.float32)
    pad = max(2, (y1 - y0) // 2)
    ox0, oy0, ox1, oy1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)
    outer = gray[oy0:oy1, ox0:ox1]
    ring_mask = np.ones(outer.shape, bool)
    ring_mask[y0 - oy0:y1 - oy0, x0 - ox0:x1 - ox0] = False
    ring = outer[ring_mask] if ring_mask.any() else outer.ravel()
    box, box_sat = gray[y0:y1, x0:x1], sat[y0:y1, x0:x1]
    t = _otsu(box)
    hi = box > t
    # strokes are the minority class of the box: text covers less of its box than what is behind it
    strokes = hi if hi.mean() <= 0.5 else ~hi
    if strokes.all() or not strokes.any():
        return np.zeros(len(LINE_PIXEL_FEATURES), np.float32)
    fg, bg = box[strokes], box[~strokes]
    ring_spread = float(ring.std()) + 4.0
    return np.array([
        abs(float(fg.mean()) - float(bg.mean())) / 255.0,
        float(fg.std()) / ring_spread,
        float(bg.std()) / ring_spread,
        abs(float(bg.mean()) - float(ring.mean())) / 255.0,
        float(box_sat[strokes].mean()) / 255.0,
        float(fg.mean() > bg.mean()),
        float(strokes.mean()),
    ], np.float32)


def _normalised(texts: list[str]) -> list[str]:
    return ["".join(t.split()).lower() for t in texts]


def _repeats(a: str, norm: list[str]) -> int:
    """How many lines read as the same text as `a` (itself included): tiled marks repeat one phrase."""
    if not a:
        return 0
    return sum(1 for b in norm if b and (a in b or b in a or SequenceMatcher(None, a, b).ratio() >= SIMILAR_TEXT))


def _max_repeat(texts: list[str]) -> int:
    """The largest number of lines that read as the same text."""
    norm = _normalised(texts)
    return max((_repeats(a, norm) for a in norm[:MAX_LINES_MEASURED]), default=0)


def _geometry(quads: np.ndarray, size: tuple[int, int]) -> dict:
    w, h = size
    top = quads[:, 1] - quads[:, 0]  # along the text
    side = quads[:, 3] - quads[:, 0]  # across it
    angle = np.degrees(np.arctan2(top[:, 1], top[:, 0]))
    angle = np.abs((angle + 90.0) % 180.0 - 90.0)
    height = np.linalg.norm(side, axis=1) / h
    lo, hi = quads.min(axis=1) / (w, h), quads.max(axis=1) / (w, h)
    cx, cy = (lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2
    in_corner = ((hi[:, 0] <= CORNER) | (lo[:, 0] >= 1 - CORNER)) & ((hi[:, 1] <= CORNER) | (lo[:, 1] >= 1 - CORNER))
    bottom_centre = (np.abs(cx - 0.5) < 0.2) & (cy > 0.72)
    centre = (np.abs(cx - 0.5) < 0.2) & (np.abs(cy - 0.5) < 0.2)
    area = np.clip((hi - lo).prod(axis=1), 0, 1)
    return {"angle": angle, "height": height, "cx": cx, "cy": cy, "corner": in_corner,
            "bottom_centre": bottom_centre, "centre": centre, "area": area}


def _clean_lines(lines: list) -> list:
    return [(np.asarray(q, np.float32).reshape(4, 2), t, float(c)) for q, t, c in lines if t and t.strip()]


def line_features(image, cnn: np.ndarray, lines: list, mark_map: np.ndarray) -> np.ndarray:
    """LINE_FEATURES, one row per OCR line with text (the order of `lines`), for the line head.

    The largest MAX_LINES_MEASURED lines get pixel statistics; the others keep zeros there (bounded cost).
    """
    lines = _clean_lines(lines)
    if not lines:
        return np.zeros((0, len(LINE_FEATURES)), np.float32)
    size = np.asarray(image.size, np.float32)
    quads = np.stack([q for q, _, _ in lines])
    g = _geometry(quads, image.size)
    norm = _normalised([t for _, t, _ in lines])
    rgb = np.asarray(image, dtype=np.int16)
    gray = rgb.mean(axis=2)
    sat = (rgb.max(axis=2) - rgb.min(axis=2)).astype(np.float32)
    pix = np.zeros((len(lines), len(LINE_PIXEL_FEATURES)), np.float32)
    for i in np.argsort(-g["area"])[:MAX_LINES_MEASURED]:
        pix[i] = line_pixel_features(gray, sat, quads[i])
    rows = []
    for i, (quad, _, conf) in enumerate(lines):
        cells = cells_under(mark_map, quad, image.size)
        lo, hi = quad.min(axis=0) / size, quad.max(axis=0) / size
        cx, cy = (lo + hi) / 2
        rows.append(np.concatenate([pix[i], [
            cells.mean(), cells.max(), g["angle"][i] / 90.0, g["height"][i], hi[0] - lo[0], min(cx, 1 - cx),
            min(cy, 1 - cy), np.log1p(_repeats(norm[i], norm)), conf, len(norm[i]), np.log1p(len(lines)),
            *np.asarray(cnn, np.float32)[:3], mark_map.max()]]))
    return np.asarray(rows, np.float32)


def pool_line_scores(scores: np.ndarray) -> tuple[float, float]:
    """(lines_max_mark, lines_marked): the best line's mark probability and log1p(lines at >= 0.5)."""
    scores = np.asarray(scores, np.float32)
    if not len(scores):
        return 0.0, 0.0
    return float(scores.max()), float(np.log1p((scores >= 0.5).sum()))


def tiles(image, grid: int = 2) -> list:
    """The image cut into grid x grid tiles: the CNN sees each at twice the scale of the whole image,
    so a corner mark or a faint watermark covers four times as many input pixels."""
    w, h = image.size
    return [image.crop((w * i // grid, h * j // grid, w * (i + 1) // grid, h * (j + 1) // grid))
            for j in range(grid) for i in range(grid)]


def image_features(image, cnn: np.ndarray, cnn_tiles: np.ndarray, lines: list, mark_map: np.ndarray,
                   line_rows: np.ndarray | None = None, line_scores: np.ndarray = ()) -> np.ndarray:
    """IMAGE_FEATURES for one analysed image (PIL RGB), the CNN's three probabilities on the whole image
    and on its `tiles` (T, 3), the OCR lines [(quad (4, 2) pixels, text, conf)] the engine returned, the
    watermark map's cell probabilities, `line_features` of those lines (None: computed here; passed in, the
    pixel statistics are not measured twice) and the line head's score of each (empty: none)."""
    out = dict.fromkeys(IMAGE_FEATURES, 0.0)
    out["lines_max_mark"], out["lines_marked"] = pool_line_scores(line_scores)
    out["cnn_watermark"], out["cnn_logo"], out["cnn_text_overlay"] = (float(v) for v in cnn)
    cnn_tiles = np.asarray(cnn_tiles, np.float32).reshape(-1, 3)
    out["tiles_max_watermark"], out["tiles_max_logo"], out["tiles_max_text_overlay"] = cnn_tiles.max(axis=0)
    out["tiles_mean_watermark"] = float(cnn_tiles[:, 0].mean())
    lines = _clean_lines(lines)
    out.update(zip(MAP_FEATURES, map_features(mark_map, [q for q, _, _ in lines], image.size).tolist()))
    if lines:
        quads = np.stack([q for q, _, _ in lines])
        texts = [t for _, t, _ in lines]
        conf = np.array([c for _, _, c in lines])
        g = _geometry(quads, image.size)
        repeat = _max_repeat(texts)
        out.update({
            "has_text": 1.0, "n_lines": np.log1p(len(lines)),
            "n_chars": np.log1p(sum(len("".join(t.split())) for t in texts)),
            "text_area": float(min(g["area"].sum(), 1.0)), "max_repeat": np.log1p(repeat),
            "repeat_share": repeat / len(lines), "conf_mean": float(conf.mean()), "conf_min": float(conf.min()),
            "rotated_share": float((g["angle"] > 8).mean()), "max_angle": float(g["angle"].max()) / 90.0,
            "corner_lines": float(g["corner"].sum()), "bottom_centre_lines": float(g["bottom_centre"].sum()),
            "centre_lines": float(g["centre"].sum()), "max_height": float(g["height"].max()),
            "median_height": float(np.median(g["height"])), "spread_x": float(g["cx"].std()),
            "spread_y": float(g["cy"].std()),
        })
        if line_rows is None:
            line_rows = line_features(image, cnn, lines, mark_map)
        order = np.argsort(-g["area"])[:MAX_LINES_MEASURED]  # the lines line_features measured, largest first
        pix = np.asarray(line_rows, np.float32)[order, :len(LINE_PIXEL_FEATURES)]
        for j, name in enumerate(LINE_PIXEL_FEATURES):
            out[f"mean_{name}"] = float(pix[:, j].mean())
            out[f"largest_{name}"] = float(pix[0, j])
    return np.array([out[k] for k in IMAGE_FEATURES], np.float32)
