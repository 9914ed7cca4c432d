"""Near-duplicate benchmark from real photos: originals and edited copies with known groups.

Originals are non-overlapping tiles of the real photos that ship with scikit-image and scikit-learn
(nearly flat tiles, such as the black corners of the retina photo, are left out: they are not distinct
pictures). Each group is one original and edited copies of it: crop, rescale, JPEG re-encode, colour
shift, a small text or logo overlay, horizontal flip. Everything is a function of `seed`.

The edits are the ones a web crawl is full of and a perceptual hash is meant to catch: a crop keeps at
least CROP_KEEP of each side, an overlay covers at most OVERLAY_MAX_AREA of the image. Heavier edits
(a crop to a detail, a rotation) are semantic duplicates, the job of the embedding level.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

TILE = 128
MIN_TILE_STD = 18.0  # luma levels: below this a tile is a flat patch (sky, black border), not a picture
CROP_KEEP = 0.95
OVERLAY_MAX_AREA = 0.015
EDITS = ("crop", "rescale", "reencode", "colour", "overlay", "flip")
_SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket",
                   "immunohistochemistry", "moon", "coins", "brick", "grass", "gravel", "cell",
                   "clock", "horse")


@dataclass(frozen=True)
class Item:
    id: str
    group: str  # the original's id: items of one group are near-duplicates of each other
    edit: str  # "original" or one of EDITS
    image: object  # PIL.Image.Image, RGB


def real_photos() -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 array) of the photos bundled with scikit-image and scikit-learn (no download)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = []
    for name in _SKIMAGE_PHOTOS:
        a = np.asarray(getattr(skimage.data, name)())
        if a.dtype == bool:
            continue  # silhouettes, not photos
        out.append((name, _rgb(a)))
    left, right, _ = skimage.data.stereo_motorcycle()
    out += [("motorcycle_left", _rgb(left)), ("motorcycle_right_half", _rgb(right)[:, right.shape[1] // 2:])]
    sample = load_sample_images()
    out += [(p.rsplit("/", 1)[-1].split(".")[0], _rgb(img)) for p, img in zip(sample.filenames, sample.images)]
    return out


def _rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
    return a


def originals(tile: int = TILE) -> list[tuple[str, object]]:
    """(id, PIL RGB) for every non-flat tile of every photo, in a fixed order."""
    from PIL import Image

    out = []
    for name, a in real_photos():
        h, w = a.shape[:2]
        for y in range(0, h - tile + 1, tile):
            for x in range(0, w - tile + 1, tile):
                t = a[y:y + tile, x:x + tile]
                if t.mean(axis=-1).std() >= MIN_TILE_STD:
                    out.append((f"{name}_{y}_{x}", Image.fromarray(np.ascontiguousarray(t))))
    return out


def edit(image, kind: str, rng: np.random.Generator):
    """One edited copy of `image` (PIL RGB)."""
    from PIL import Image, ImageEnhance, ImageOps

    w, h = image.size
    if kind == "crop":
        kw, kh = (int(s * rng.uniform(CROP_KEEP, 0.99)) for s in (w, h))
        x, y = int(rng.integers(0, w - kw + 1)), int(rng.integers(0, h - kh + 1))
        return image.crop((x, y, x + kw, y + kh))
    if kind == "rescale":
        f = float(rng.choice([rng.uniform(0.4, 0.8), rng.uniform(1.25, 2.0)]))
        return image.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.BICUBIC)
    if kind == "reencode":
        return _jpeg_roundtrip(image, int(rng.integers(15, 60)))
    if kind == "colour":
        out = ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.6))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
        out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.25))
        shift = rng.integers(-20, 21, size=3)  # a colour cast
        return Image.fromarray(np.clip(np.asarray(out, dtype=np.int16) + shift, 0, 255).astype(np.uint8))
    if kind == "overlay":
        return _overlay(image, rng)
    if kind == "flip":
        return ImageOps.mirror(image)
    raise ValueError(f"unknown edit {kind!r}; one of {EDITS}")


def _jpeg_roundtrip(image, quality: int):
    from PIL import Image

    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _overlay(image, rng: np.random.Generator):
    """A small text label or a logo-like badge in a random place."""
    from PIL import ImageDraw, ImageFont

    out = image.copy()
    w, h = out.size
    pw = int(np.sqrt(OVERLAY_MAX_AREA * w * h) * rng.uniform(1.1, 1.6))
    ph = max(6, int(OVERLAY_MAX_AREA * w * h * rng.uniform(0.6, 1.0) / pw))
    x, y = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
    draw = ImageDraw.Draw(out)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    if rng.random() < 0.5:
        draw.rectangle((x, y, x + pw, y + ph), fill=colour)
        draw.ellipse((x + 2, y + 2, x + ph - 2, y + ph - 2), fill=tuple(255 - c for c in colour))
    else:
        font = ImageFont.load_default(size=max(8, int(ph * 0.8)))
        draw.text((x, y), "sluice.io", fill=colour, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return out


def make_benchmark(n_groups: int, copies: int, n_singletons: int, seed: int = 0) -> list[Item]:
    """`n_groups` originals with `copies` edits each (edits cycle through EDITS), and `n_singletons`
    originals without copies. Raises if the photos do not hold that many distinct tiles."""
    tiles = originals()
    need = n_groups + n_singletons
    if need > len(tiles):
        raise ValueError(f"asked for {need} distinct originals, the bundled photos give {len(tiles)} tiles; "
                         f"ask for fewer groups/singletons or more copies per group")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tiles))
    items = []
    for g, idx in enumerate(order[:need]):
        name, image = tiles[int(idx)]
        items.append(Item(name, name, "original", image))
        if g >= n_groups:
            continue
        for c in range(copies):
            kind = EDITS[(g + c) % len(EDITS)]
            items.append(Item(f"{name}~{c}_{kind}", name, kind, edit(image, kind, np.random.default_rng([seed, g, c]))))
    return items


def jpeg_bytes(image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
