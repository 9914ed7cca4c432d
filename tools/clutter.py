"""Clutter: things real photos are full of that a watermark detector mistakes for marks at a glance.

Thin bright and dark structures (spokes, fences, shelf edges, cables, chrome highlights) and fine
pebble-like texture. The bundled training photos have little of either; without them the watermark map
marked a garage's motorcycle and a bed of gravel in held-out photos as strongly as real marks. Drawn
opaque and lit like the rest of the photo, never semi-transparent, so they teach "not a mark".
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _tone(rng: np.random.Generator) -> tuple[int, int, int]:
    r = rng.random()
    if r < 0.4:
        v = int(rng.integers(200, 256))
        return (v, v, v)
    if r < 0.75:
        v = int(rng.integers(0, 60))
        return (v, v, v)
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def thin_structures(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Bundles of thin lines (parallel like a fence or shelf, radial like spokes) and small highlights."""
    out = image.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(int(rng.integers(1, 4))):
        colour, width = _tone(rng), int(rng.integers(1, max(2, min(w, h) // 150) + 1))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        n, length = int(rng.integers(4, 24)), rng.uniform(0.1, 0.5) * max(w, h)
        if rng.random() < 0.5:  # radial, like spokes
            for a in np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, np.pi):
                d.line((cx, cy, cx + length / 2 * np.cos(a), cy + length / 2 * np.sin(a)), fill=colour, width=width)
        else:  # parallel, like a fence, a grille or shelf edges
            a, gap = rng.uniform(0, np.pi), rng.uniform(4, 30) * max(1, min(w, h) / 400)
            ux, uy = np.cos(a), np.sin(a)
            for i in range(n):
                ox, oy = cx - uy * gap * (i - n / 2), cy + ux * gap * (i - n / 2)
                d.line((ox - ux * length / 2, oy - uy * length / 2, ox + ux * length / 2, oy + uy * length / 2),
                       fill=colour, width=width)
    for _ in range(int(rng.integers(0, 30))):  # specular glints on metal
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, 6)
        d.ellipse((x - r, y - r / 2, x + r, y + r / 2), fill=(255, 255, 255))
    return out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0))) if rng.random() < 0.6 else out


def pebbles(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A patch of small shaded stones (gravel, pebbles, foliage-like fine texture) over part of the image."""
    w, h = image.size
    base = np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1))
    layer = Image.new("RGB", (w, h), tuple(int(v * 0.5) for v in base))
    d = ImageDraw.Draw(layer)
    size = rng.uniform(0.01, 0.04) * max(w, h)
    grey = rng.random() < 0.6
    for _ in range(int(w * h / (size * size) * 1.5)):
        x, y = rng.uniform(-size, w + size), rng.uniform(-size, h + size)
        rx, ry = size * rng.uniform(0.4, 1.0), size * rng.uniform(0.4, 1.0)
        v = rng.uniform(70, 230)
        fill = (int(v),) * 3 if grey else tuple(int(c) for c in np.clip(base * v / 150 + rng.normal(0, 20, 3), 0, 255))
        d.ellipse((x - rx + 2, y - ry + 2, x + rx + 2, y + ry + 2), fill=(20, 20, 20))  # shadow
        d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill)
    mask = Image.new("L", (w, h), 0)
    if rng.random() < 0.5:
        mask.paste(255, (0, 0, w, h))
    else:
        x0, y0 = int(rng.uniform(0, w * 0.5)), int(rng.uniform(0, h * 0.5))
        ImageDraw.Draw(mask).rectangle((x0, y0, x0 + int(w * rng.uniform(0.3, 0.8)), y0 + int(h * rng.uniform(0.3, 0.8))),
                                       fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(w, h) * 0.02))
    return Image.composite(layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9))), image.convert("RGB"), mask)


def cluttered(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One or both kinds of clutter."""
    r = rng.random()
    if r < 0.4:
        return thin_structures(image, rng)
    if r < 0.75:
        return pebbles(image, rng)
    return thin_structures(pebbles(image, rng), rng)
