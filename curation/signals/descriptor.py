"""`descriptor-v1`: a weight-free image embedding from colour, texture and layout descriptors.

It is what stage 2 uses when no model is given, so dedup and clustering still work on a laptop with no
weights. It is not CLIP and says so: it has no text tower (no text embedding, alignment score or
concept tags), and nearness in it means "looks alike" (palette, texture, composition), not "means alike".

Layout of the 160-d vector (each block centred, L2-normalised, weighted, then the whole re-normalised):
  colour  72: HSV histogram, 8 hue x 3 saturation x 3 value bins, square-rooted (Hellinger)
  layout  48: mean Y, Cb, Cr of a 4x4 grid
  texture 40: 8-bin gradient-orientation histograms of a 2x2 grid (32), gradient energy at 4 scales (4),
              and 4 edge-density values of the quadrants
"""

from __future__ import annotations

import numpy as np

NAME = "descriptor-v1"
SIZE = 96  # analysis side: enough for palette, texture and a 4x4 layout; fast on one core
WEIGHTS = {"colour": 1.0, "layout": 1.0, "texture": 0.8}
DIM = 160


def _unit(v: np.ndarray) -> np.ndarray:
    v = v - v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-8 else v


def _colour(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.int32)
    h = hsv[..., 0] * 8 // 256
    s = np.minimum(hsv[..., 1] * 3 // 256, 2)
    v = np.minimum(hsv[..., 2] * 3 // 256, 2)
    hist = np.bincount((h * 9 + s * 3 + v).ravel(), minlength=72).astype(np.float64)
    return np.sqrt(hist / hist.sum())


def _layout(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    ycc = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=np.float64) / 255.0
    g = SIZE // 4
    cells = ycc.reshape(4, g, 4, g, 3).mean(axis=(1, 3))  # (4, 4, 3)
    return cells.ravel()


def _texture(rgb: np.ndarray) -> np.ndarray:
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(luma)
    mag = np.hypot(gx, gy)
    ang = (np.arctan2(gy, gx) % np.pi) / np.pi  # orientation, sign-free: 0..1
    bins = np.minimum((ang * 8).astype(np.int64), 7)
    half = SIZE // 2
    out = []
    for qy in range(2):
        for qx in range(2):
            sl = (slice(qy * half, (qy + 1) * half), slice(qx * half, (qx + 1) * half))
            h = np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=8)
            out.append(np.sqrt(h / (h.sum() + 1e-8)))
    energy = []
    for k in (1, 2, 4, 8):  # gradient energy of ever coarser versions: fine texture vs broad shapes
        small = luma[: SIZE // k * k, : SIZE // k * k].reshape(SIZE // k, k, SIZE // k, k).mean(axis=(1, 3))
        ey, ex = np.gradient(small)
        energy.append(np.log1p(np.hypot(ex, ey).mean() * k))
    edges = mag > 24.0
    density = [edges[sl].mean() for sl in
               ((slice(0, half), slice(0, half)), (slice(0, half), slice(half, None)),
                (slice(half, None), slice(0, half)), (slice(half, None), slice(half, None)))]
    return np.concatenate([*out, np.array(energy) / 4.0, np.array(density)])


def describe(img) -> np.ndarray:
    """A PIL RGB image -> the L2-normalised 160-d descriptor (float32)."""
    from PIL import Image

    rgb = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)
    parts = [WEIGHTS["colour"] * _unit(_colour(rgb)), WEIGHTS["layout"] * _unit(_layout(rgb)),
             WEIGHTS["texture"] * _unit(_texture(rgb))]
    v = np.concatenate(parts)
    return (v / max(float(np.linalg.norm(v)), 1e-8)).astype(np.float32)


class DescriptorEmbedder:
    """The weight-free backend; same interface as the model backends, without a text tower."""

    name = NAME
    has_text = False
    weight_free = True
    decode_side = 256
    dim = DIM

    def load(self) -> None:
        pass

    def encode_images(self, images: list) -> np.ndarray:
        return np.stack([describe(im) for im in images]) if images else np.zeros((0, DIM), np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError(f"{NAME} has no text tower; give stage2.embed.model a CLIP model for text")
