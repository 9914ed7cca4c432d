"""General quality of an image: sharpness, motion blur, exposure, contrast, colour, information, JPEG quality.

Every pixel statistic is measured on the image resampled so that its LONG side is `ANALYSIS_SIDE` (512):
the shared decode always has at least that (512 without OCR, 1024 with it), whatever the aspect ratio, so a
4000 px photo and its 1000 px copy give the same numbers. (A short side of 512 would need a 1536 px decode
for a 3:1 panorama, which the shared decode does not make.) Images smaller than that are upscaled: a
300 px image does look soft at the size a model trains on, and a size rule, not the blur rule, should
drop the tiny ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.signals.analysis import Decoded
from schemas.stage1 import QUALITY

ANALYSIS_SIDE = 512
RGB_KEY = "rgb512"  # (H, W, 3) uint8, long side ANALYSIS_SIDE; in Decoded.cache for other signals
LUMA_KEY = "luma512"  # (H, W) uint8, BT.601 luma of RGB_KEY

# The IJG (libjpeg) example luminance table, natural order; encoders that take a 1..100 "quality" scale it.
IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.int64)


def _ijg_tables() -> np.ndarray:
    """(100, 64) luma tables libjpeg writes for quality 1..100 (jpeg_quality_scaling, baseline clamp)."""
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((IJG_LUMA[None, :] * scale[:, None] + 50) // 100, 1, 255)


_LOG_IJG = np.log(_ijg_tables().astype(np.float64))


def estimate_jpeg_quality(quant: dict | None) -> int | None:
    """The IJG quality 1..100 whose luma table is closest to the file's (in log ratio: quality scales it).

    Exact for libjpeg/Pillow/most web encoders; for custom tables (cameras, Photoshop) the nearest
    equivalent. None when there is no luma table.
    """
    if not quant or 0 not in quant or len(quant[0]) != 64:
        return None
    table = np.clip(np.asarray(quant[0], dtype=np.float64), 1, None)
    dist = np.abs(_LOG_IJG - np.log(table)[None, :]).sum(axis=1)
    # q 98..100 all clamp to tables of ones; the highest tied quality is the honest answer there.
    return int(100 - np.argmin(dist[::-1]))


def analysis_rgb(img: Decoded) -> np.ndarray:
    """RGB at the analysis scale, computed once per image and shared through `img.cache`."""
    rgb = img.cache.get(RGB_KEY)
    if rgb is None:
        import cv2

        full = np.asarray(img.image)
        h, w = full.shape[:2]
        s = ANALYSIS_SIDE / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        # Area averaging when shrinking (no aliasing: the value must not depend on the file size);
        # cubic when enlarging, the closest cheap stand-in for a camera's own softness.
        interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        rgb = full if s == 1 else cv2.resize(full, size, interpolation=interpolation)
        img.cache[RGB_KEY] = rgb
    return rgb


def analysis_luma(img: Decoded) -> np.ndarray:
    """BT.601 luma of `analysis_rgb`, shared through `img.cache` under LUMA_KEY."""
    luma = img.cache.get(LUMA_KEY)
    if luma is None:
        import cv2

        luma = cv2.cvtColor(analysis_rgb(img), cv2.COLOR_RGB2GRAY)  # BT.601, as PIL's "L"
        img.cache[LUMA_KEY] = luma
    return luma


def exposure_stats(luma: np.ndarray) -> dict:
    """Brightness, dark/bright fractions, contrast and entropy, all from one 256-bin histogram."""
    import cv2

    hist = cv2.calcHist([luma], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    p = hist / hist.sum()
    levels = np.arange(256, dtype=np.float64)
    mean = float(p @ levels)
    nz = p[p > 0]
    return {
        "q_brightness": mean,
        "q_dark_frac": float(p[:17].sum()),
        "q_bright_frac": float(p[240:].sum()),
        "q_contrast": math.sqrt(max(0.0, float(p @ (levels - mean) ** 2))),
        "q_entropy": float(-(nz * np.log2(nz)).sum()),
    }


def sharpness(luma: np.ndarray, sigma: float = 0.7) -> float:
    """Variance of the Laplacian of luma after a slight Gaussian (a Laplacian of Gaussian): focus, detail.

    The plain 3x3 Laplacian answers mostly to the top octave, which is where resampling filters differ:
    a 512 px photo and its 2x upscale, both brought to 512, differ by up to 1.7x with it, within 1.25x
    with sigma 0.7. Blur still divides the value by 20 or more.
    """
    import cv2

    smooth = cv2.GaussianBlur(luma.astype(np.float32), (5, 5), sigma)
    _, std = cv2.meanStdDev(cv2.Laplacian(smooth, cv2.CV_32F, ksize=1))
    return float(std[0, 0]) ** 2


def motion_blur(luma: np.ndarray, coarse: int = 8) -> float:
    """0..1: anisotropy of fine-scale gradient energy, measured against the image's own coarse scale.

    A moving camera removes fine detail along one direction only, so the fine-scale structure tensor
    loses one axis. Content is oriented too (brick courses, masts, a horizon), but at every scale alike:
    whitening the fine tensor by the tensor of the image shrunk `coarse` times cancels that, and what is
    left is the direction that lost detail between the two scales. Gaussian blur removes detail in all
    directions and stays near 0. Blur much longer than `coarse` pixels at 512 smears both scales and
    reads lower; such images have little sharpness left anyway.
    """
    import cv2

    h, w = luma.shape
    small = cv2.resize(luma, (max(1, w // coarse), max(1, h // coarse)), interpolation=cv2.INTER_AREA)
    fine, rough = _structure_tensor(luma), _structure_tensor(small)
    evals, evecs = np.linalg.eigh(rough)
    if evals[1] <= 0:  # no gradients at all at the coarse scale: a blank frame, nothing to compare
        return 0.0
    # Floor the weak axis so a coarse scale with (almost) one direction does not amplify noise.
    evals = np.maximum(evals, 1e-2 * evals[1])
    inv_sqrt = (evecs / np.sqrt(evals)) @ evecs.T
    m = inv_sqrt @ fine @ inv_sqrt
    trace = m[0, 0] + m[1, 1]
    return float(math.sqrt((m[0, 0] - m[1, 1]) ** 2 + 4 * m[0, 1] ** 2) / trace) if trace > 0 else 0.0


def _structure_tensor(luma: np.ndarray) -> np.ndarray:
    """Mean of [gx^2, gx*gy; gx*gy, gy^2] over the image, 3x3 Sobel gradients."""
    import cv2

    gx, gy = cv2.spatialGradient(luma)
    gx, gy = gx.astype(np.float32), gy.astype(np.float32)
    # einsum, not a BLAS dot: BLAS would start its own threads inside a Spark task.
    xx, yy, xy = (float(np.einsum("ij,ij->", a, b)) for a, b in ((gx, gx), (gy, gy), (gx, gy)))
    return np.array([[xx, xy], [xy, yy]]) / gx.size


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003): std and mean of the opponent channels rg and yb."""
    import cv2

    # Means and stds over every other pixel: the same statistics in expectation at a quarter of the cost
    # (nearest-neighbour halving picks pixels, it does not average them away).
    half = cv2.resize(rgb, (max(1, rgb.shape[1] // 2), max(1, rgb.shape[0] // 2)), interpolation=cv2.INTER_NEAREST)
    r, g, b = cv2.split(half)
    rg = cv2.subtract(r, g, dtype=cv2.CV_16S)
    yb2 = cv2.subtract(cv2.add(r, g, dtype=cv2.CV_16S), cv2.add(b, b, dtype=cv2.CV_16S))  # 2 * yb, exact
    m_rg, s_rg = cv2.meanStdDev(rg)
    m_yb, s_yb = (v / 2 for v in cv2.meanStdDev(yb2))
    return float(math.hypot(s_rg[0, 0], s_yb[0, 0]) + 0.3 * math.hypot(m_rg[0, 0], m_yb[0, 0]))


def clipped_frac(rgb: np.ndarray) -> float:
    """Share of pixels with some channel at 0 or 255."""
    import cv2

    inside = cv2.inRange(rgb, (1, 1, 1), (254, 254, 254))  # 255 where no channel is clipped
    return 1.0 - cv2.countNonZero(inside) / inside.size


def flat_frac(luma: np.ndarray, block: int = 8, max_std: float = 2.0) -> float:
    """Share of 8x8 blocks whose luma std is below `max_std`: blank, meaningless areas."""
    import cv2

    h, w = luma.shape
    bh, bw = h // block, w // block
    if bh == 0 or bw == 0:  # a sliver thinner than a block: judge it as one block
        return float(luma.std() < max_std)
    s, sq = cv2.integral2(luma, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)  # one pass for sums and squares

    def block_sums(t):  # (bh, bw): corners of the integral image at block boundaries
        c = t[: bh * block + 1 : block, : bw * block + 1 : block]
        return c[1:, 1:] - c[:-1, 1:] - c[1:, :-1] + c[:-1, :-1]

    n = block * block
    mean = block_sums(s) / n
    var = block_sums(sq) / n - mean * mean
    return float((var < max_std**2).mean())


@dataclass(frozen=True)
class QualitySignal:
    """All `q_` columns of stage 1 from one shared decode."""

    flat_block_std: float = 2.0  # luma levels; JPEG and sensor noise on a blank frame stay below this

    name: ClassVar[str] = "quality"
    columns: ClassVar[dict[str, pa.DataType]] = {f.name: f.type for f in QUALITY}
    decode_long_side: ClassVar[int] = ANALYSIS_SIDE

    def load(self) -> None:
        from plumbing.deps import require

        cv2 = require("cv2", "vision")
        cv2.setNumThreads(1)  # Spark runs one task per core; OpenCV's own pool would oversubscribe them

    def score_image(self, img: Decoded) -> dict:
        rgb = analysis_rgb(img)
        luma = analysis_luma(img)
        return {
            "q_aspect": max(img.width, img.height) / max(1, min(img.width, img.height)),
            "q_sharpness": sharpness(luma),
            "q_motion_blur": motion_blur(luma),
            **exposure_stats(luma),
            "q_clipped_frac": clipped_frac(rgb),
            "q_colorfulness": colorfulness(rgb),
            "q_flat_frac": flat_frac(luma, max_std=self.flat_block_std),
            "q_jpeg_quality": estimate_jpeg_quality(img.jpeg_quant) if img.format == "JPEG" else None,
        }
