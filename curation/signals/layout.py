"""Layout of an image: flat border bars (letterbox, pillarbox, frames) and collages (grids of pictures).

Both work on the shared analysis-scale arrays of `curation.signals.quality` (long side 512), so a signal
run after QualitySignal pays nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.signals.analysis import Decoded
from curation.signals.quality import ANALYSIS_SIDE, analysis_luma, analysis_rgb
from schemas.stage1 import STRUCTURE

_OWN = ("s_border_frac", "s_collage")


# ---------------------------------------------------------------- border bars

def _line_match(lines: np.ndarray, colour: np.ndarray, tol: int) -> np.ndarray:
    """(n,) share of pixels of each line (n, L, 3), in YCrCb, close to `colour`.

    Luma must be within `tol`. JPEG keeps chroma at half resolution with coarser steps, so next to a
    saturated bar whole lines of it ring by 20 levels or more: chroma may stray further the more
    saturated the bar. A neutral bar keeps the tight limit, so dark photo content does not pass for a
    black bar.
    """
    colour = colour.astype(np.int16)
    chroma_tol = tol + int(np.abs(colour[1:] - 128).max()) // 4
    diff = np.abs(lines.astype(np.int16) - colour)
    return ((diff[..., 0] <= tol) & (diff[..., 1] <= chroma_tol) & (diff[..., 2] <= chroma_tol)).mean(axis=1)


def bar_depth(lines: np.ndarray, tol: int = 12, min_match: float = 0.9, max_frac: float = 0.45) -> int:
    """How many lines (YCrCb) from the edge (lines[0]) form a flat bar; 0 when there is none.

    A bar is a run of lines whose pixels stay close to the edge line's colour (JPEG noise stays inside
    `tol`), ending in a straight, abrupt boundary. That boundary test is what keeps a natural flat area
    from counting.
    """
    n = lines.shape[0]
    limit = int(n * max_frac)
    if limit < 1:
        return 0
    colour = np.median(lines[0], axis=0)
    if _line_match(lines[:1], colour, tol)[0] < min_match:
        return 0
    # Scan in growing chunks until three lines in a row are mostly not bar (one or two can be JPEG
    # chroma ringing from a saturated bar): most images stop at once.
    match, stop = np.empty(0), None
    while stop is None and match.size < limit:
        match = np.concatenate([match, _line_match(lines[match.size : 2 * match.size + 4], colour, tol)])
        low = match < 0.75
        run = low[:-2] & low[1:-1] & low[2:]
        stop = int(np.argmax(run)) if run.any() else None
    if stop is None or stop >= limit:  # flat all the way in: a blank image, not a bar (q_flat_frac)
        return 0
    # Up to `stop` the lines are bar, JPEG ringing included (2x2 chroma subsampling spreads it up to
    # 16 px into a bar). The boundary must be abrupt: right after it, the share of bar-coloured pixels
    # falls by at least 0.4 at once. Content creeps into a natural flat area (sky, a backdrop, the
    # dark around coins) a little at a time; dark content beside a black bar still drops that much.
    clean = int(np.flatnonzero(match[:stop] >= min_match)[-1]) + 1
    if stop - clean > max(2, n // 32):
        return 0
    if stop + 4 > match.size:
        match = np.concatenate([match, _line_match(lines[match.size : stop + 4], colour, tol)])
    return stop if float(np.median(match[:clean])) - match[stop : stop + 4].min() >= 0.4 else 0


def border_frac(rgb: np.ndarray, tol: int = 12) -> tuple[float, tuple[int, int, int, int]]:
    """Fraction of the area in flat bars, and the bars' depths (top, bottom, left, right) in pixels."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    top = bar_depth(ycc, tol)
    bottom = bar_depth(ycc[::-1], tol)
    left = bar_depth(ycc.transpose(1, 0, 2), tol)
    right = bar_depth(ycc.transpose(1, 0, 2)[::-1], tol)
    h, w = rgb.shape[:2]
    inner = max(0, h - top - bottom) * max(0, w - left - right)
    return 1.0 - inner / (h * w), (top, bottom, left, right)


# ---------------------------------------------------------------- collage seams

def _step(planes: list[np.ndarray], gap: int) -> np.ndarray:
    """|x[i + gap] - x[i]|, largest over the planes: (H - gap, W) uint8."""
    import cv2

    step = cv2.absdiff(planes[0][gap:], planes[0][:-gap])
    for p in planes[1:]:
        step = cv2.max(step, cv2.absdiff(p[gap:], p[:-gap]))
    return step


def seam_strengths(planes: list[np.ndarray], gap: int = 3, far: int = 21, min_step: int = 12) -> np.ndarray:
    """(H,) for each row, the share of columns where the picture changes abruptly across it.

    `planes`: the R, G and B planes, (H, W) uint8 each. Across a pasted seam, the rows `gap` apart
    belong to different pictures: they differ (in some channel: two photos often differ more in colour
    than in brightness) by 1.5 times more than rows as far apart just above and just below, at most
    columns. `gap` lets resampling blend a seam into gap-1 rows. Natural edges fail this wherever the
    texture beside them changes as fast as the edge. Rows `far` apart must differ too: on both sides
    of a thin line (a mast, a wire, a mortar joint) lies the same background, on both sides of a seam
    two pictures.
    """
    import cv2

    h, wide = planes[0].shape[0], far + (far - gap) % 2  # same parity as gap, so both steps share a centre
    out = np.zeros(h, dtype=np.float32)
    shift = (wide - gap) // 2
    lo, hi = max(gap, shift), min(h - 2 * gap, h - wide + shift)  # seams i where every step exists
    if hi <= lo:
        return out
    d = _step(planes, gap)  # d[i] compares rows i and i + gap
    across = d[lo:hi]
    within = cv2.max(d[lo - gap : hi - gap], d[lo + gap : hi + gap])  # the same step just above and below
    apart = _step(planes, wide)[lo - shift : hi - shift]  # rows further apart, around the same centre
    # 1.5 x within in uint8 (saturating: a step of 255 can never count as abrupt, nor should it);
    # an integer shift, as OpenCV's scaled multiply costs as much as everything else here together.
    within = cv2.add(within, within >> 1)
    # numpy, not cv2.compare/reduce: OpenCV 4.x takes slow paths for a scalar compare and a uint8->float
    # reduce (~1 ms each per call at 512 px); numpy does the same in a tenth of that.
    abrupt = (across > within) & (np.minimum(across, apart) > min_step)
    share = np.count_nonzero(abrupt, axis=1).astype(np.float32) / np.float32(abrupt.shape[1])
    out[lo + gap // 2 : hi + gap // 2] = share  # at the middle of the rows a resampled seam blends into
    return out


def _peaks(profile: np.ndarray, margin: float, min_strength: float, min_sep: float) -> list[tuple[int, float]]:
    """Seams: the strongest rows above `min_strength`, away from the edges, at least `min_sep` apart."""
    n = profile.size
    lo, hi, sep = int(n * margin), int(np.ceil(n * (1 - margin))), max(1, int(n * min_sep))
    found: list[tuple[int, float]] = []
    for i in np.argsort(profile[lo:hi])[::-1] + lo:
        s = float(profile[i])
        if s < min_strength:
            break
        if all(abs(i - j) >= sep for j, _ in found):
            found.append((int(i), s))
    return found


def gutter_rows(luma: np.ndarray, flat_std: float = 3.0, max_width: float = 0.06,
                margin: float = 0.08) -> list[int]:
    """Middle rows of gutters: thin bands of flat rows with picture on both sides.

    Collages often separate panels with a white or black line. Where a panel's edge has the gutter's
    colour the step test above misses the seam, but the gutter rows themselves are still flat across
    the whole width, which content is not. A flat band touching the edge (sky) or a thick one is not
    a gutter.
    """
    h = luma.shape[0]
    # numpy, not cv2.multiply/reduce: OpenCV 4.x takes slow paths for a dtype-changing multiply and a
    # row reduce (~7 ms at 512 px, more than the rest of the layout signal together).
    lf = luma.astype(np.float32)
    mean = lf.mean(axis=1)
    mean_sq = np.einsum("ij,ij->i", lf, lf) / np.float32(lf.shape[1])
    std = np.sqrt(np.maximum(mean_sq - mean * mean, 0))
    flat = np.concatenate([[False], std < flat_std, [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # run starts and ends, alternating
    found = []
    for start, end in zip(edges[::2], edges[1::2]):
        if (start >= margin * h and end <= (1 - margin) * h and end - start <= max(1, max_width * h)
                and min(std[max(0, start - 2)], std[min(h - 1, end + 1)]) > 4 * flat_std):
            found.append(int((start + end) // 2))
    return found


def collage_score(rgb: np.ndarray, luma: np.ndarray, min_strength: float = 0.5) -> float:
    """0..1 from the seams (abrupt steps or gutters) found: strong when they form a grid.

    One horizontal seam alone is also what a sea horizon or a shelf edge looks like, so it counts for
    little; a vertical seam is rarer in nature; seams in both directions, or two parallel ones that cut
    the picture into three panels, are what collages are made of. Many parallel seams are a texture
    (bricks, tiles), not panels.
    """
    import cv2

    planes = cv2.split(rgb)
    found = []
    for colour, grey in ((planes, luma), ([cv2.transpose(p) for p in planes], cv2.transpose(luma))):
        profile = seam_strengths(colour)
        profile[gutter_rows(grey)] = 1.0
        found.append(_peaks(profile, 0.08, min_strength, 0.12))
    rows, cols = found
    if len(rows) > 4:
        rows = []
    if len(cols) > 4:
        cols = []
    h = sorted((s for _, s in rows), reverse=True) + [0.0, 0.0]
    v = sorted((s for _, s in cols), reverse=True) + [0.0, 0.0]
    return float(max(min(h[0], v[0]), min(v[0], v[1]), min(h[0], h[1]), 0.5 * v[0], 0.35 * h[0]))


@dataclass(frozen=True)
class LayoutSignal:
    """s_border_frac and s_collage from one shared decode."""

    bar_tolerance: int = 12  # luma levels at the analysis scale; chroma gets more next to saturated bars

    name: ClassVar[str] = "layout"
    columns: ClassVar[dict[str, pa.DataType]] = {f.name: f.type for f in STRUCTURE if f.name in _OWN}
    decode_long_side: ClassVar[int] = ANALYSIS_SIDE

    def load(self) -> None:
        from plumbing.deps import require

        cv2 = require("cv2", "vision")
        cv2.setNumThreads(1)  # Spark runs one task per core; OpenCV's own pool would oversubscribe them

    def score_image(self, img: Decoded) -> dict:
        rgb = analysis_rgb(img)
        frac, (top, bottom, left, right) = border_frac(rgb, self.bar_tolerance)
        # Bars have straight edges too; look for seams only in the picture inside them.
        inside = (slice(top, rgb.shape[0] - bottom), slice(left, rgb.shape[1] - right))
        rgb, luma = rgb[inside], analysis_luma(img)[inside]
        return {"s_border_frac": frac,
                "s_collage": collage_score(rgb, luma) if min(luma.shape) >= 32 else 0.0}
