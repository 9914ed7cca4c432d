"""Clutter: things real photos are full of that a watermark detector mistakes for marks at a glance.

Thin bright and dark structures (spokes, fences, shelf edges, cables, chrome highlights), fine
pebble-like texture, and regular man-made texture (perforated metal, wire mesh, tiles and brick). The
bundled training photos have little of any; without them the watermark map marked a garage's motorcycle
and a bed of gravel in held-out photos as strongly as real marks, and after them still the perforated
uprights of the garage's shelves. Drawn opaque and lit like the rest of the photo, never
semi-transparent, so they teach "not a mark".
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


def _region_mask(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A band (a shelf upright, a fence panel's edge) or a rectangle, softly edged."""
    w, h = size
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    if rng.random() < 0.4:
        if rng.random() < 0.5:
            bw = int(w * rng.uniform(0.03, 0.12))
            x0 = int(rng.uniform(0, w - bw))
            d.rectangle((x0, 0, x0 + bw, h), fill=255)
        else:
            bh = int(h * rng.uniform(0.03, 0.12))
            y0 = int(rng.uniform(0, h - bh))
            d.rectangle((0, y0, w, y0 + bh), fill=255)
    else:
        rw, rh = int(w * rng.uniform(0.25, 0.8)), int(h * rng.uniform(0.25, 0.8))
        x0, y0 = int(rng.uniform(0, w - rw)), int(rng.uniform(0, h - rh))
        d.rectangle((x0, y0, x0 + rw, y0 + rh), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))


PERIODIC_KINDS = ("perforated", "mesh", "tiles")


def periodic(image: Image.Image, rng: np.random.Generator, kind: str | None = None) -> Image.Image:
    """Regular man-made texture over a band or a patch: perforated metal, wire mesh or a grille, tiles or brick.

    A tiled watermark is a regular pattern too; these teach the map that regularity alone is not a mark.
    """
    src = image.convert("RGB")
    w, h = src.size
    big = int(max(w, h) * 1.5)  # drawn larger, then rotated and cropped, so no edge shows
    period = rng.uniform(0.008, 0.035) * max(w, h)
    plate = tuple(int(v) for v in np.clip(rng.uniform(90, 220) + rng.normal(0, 12, 3), 0, 255))
    dark = tuple(int(v) for v in rng.integers(0, 60, 3))
    kind = rng.choice(list(PERIODIC_KINDS)) if kind is None else kind
    if kind == "mesh":  # thin wires over the photo, which shows through
        layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        wire = (plate if rng.random() < 0.5 else dark) + (255,)
        width = int(rng.integers(1, 3))
        d = ImageDraw.Draw(layer)
        for i in np.arange(0, big, period):
            d.line((i, 0, i, big), fill=wire, width=width)
            d.line((0, i, big, i), fill=wire, width=width)
    else:
        layer = Image.new("RGBA", (big, big), plate + (255,))
        d = ImageDraw.Draw(layer)
        if kind == "perforated":  # rows of round holes or slots
            hw, hh = period * rng.uniform(0.2, 0.5), period * rng.uniform(0.2, 0.5) * (rng.uniform(1, 3) if rng.random() < 0.5 else 1)
            stagger = rng.random() < 0.5
            for r, y in enumerate(np.arange(0, big, period * max(1.0, hh / hw))):
                off = period / 2 if stagger and r % 2 else 0.0
                for x in np.arange(off, big, period):
                    d.rounded_rectangle((x, y, x + hw, y + hh), radius=min(hw, hh) / 2, fill=dark + (255,))
        else:  # tiles or brick: mortar lines, alternate rows offset for brick
            mortar = tuple(int(v) for v in np.clip(np.array(plate) * rng.uniform(0.4, 1.4), 0, 255)) + (255,)
            tw, th = period * rng.uniform(1.5, 4), period * rng.uniform(0.8, 1.5)
            brick = rng.random() < 0.5
            for r, y in enumerate(np.arange(0, big, th)):
                d.line((0, y, big, y), fill=mortar, width=2)
                off = tw / 2 if brick and r % 2 else 0.0
                for x in np.arange(off, big, tw):
                    d.line((x, y, x, y + th), fill=mortar, width=2)
    layer = layer.rotate(rng.uniform(-35, 35), resample=Image.BICUBIC)
    left, top = (big - w) // 2, (big - h) // 2
    layer = layer.crop((left, top, left + w, top + h))
    # lit like the photo: the photo's own shading multiplies the pattern
    shade = src.convert("L").filter(ImageFilter.GaussianBlur(max(w, h) * 0.02))
    shade = shade.point(lambda v: int(128 + (v - 128) * 0.5))
    rgb = Image.composite(layer.convert("RGB"), src, layer.getchannel("A"))
    lit = Image.fromarray(np.clip(np.asarray(rgb, np.float32) * (np.asarray(shade, np.float32)[..., None] / 160),
                                  0, 255).astype(np.uint8))
    out = Image.composite(lit, src, _region_mask((w, h), rng))
    return out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0))) if rng.random() < 0.6 else out


def cluttered(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One or two kinds of clutter."""
    r = rng.random()
    if r < 0.25:
        return thin_structures(image, rng)
    if r < 0.5:
        return pebbles(image, rng)
    if r < 0.75:
        return periodic(image, rng)
    return periodic(thin_structures(image, rng), rng) if r < 0.875 else thin_structures(pebbles(image, rng), rng)
