"""Backgrounds the marks are drawn over: crops of real photos with colour jitter, procedural gradients,
noise and blobs, collages of photos, and letterbox bars (layout, not a mark)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from detector_factory.drawing import _shape


def photo_variant(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random crop, rescale (long side 320..960), flip and colour jitter of a clean photo."""
    w, h = photo.size
    cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = photo.crop((x0, y0, x0 + cw, y0 + ch))
    scale = min(rng.uniform(320, 960) / max(cw, ch), 1.6)  # little upscaling: it blurs
    image = image.resize((max(32, round(cw * scale)), max(32, round(ch * scale))), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 1.25))
    gains = np.clip(rng.uniform(0.75, 1.25) * (1 + rng.normal(0, 0.04, 3)), 0, 2)  # exposure, white balance
    lut = np.minimum(255, np.rint(np.arange(256)[None, :] * gains[:, None])).astype(int)
    return image.point(lut.ravel().tolist())


def _small_to_image(a: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)


def procedural_background(rng: np.random.Generator) -> Image.Image:
    """Gradients, fractal noise or soft blobs: variety the handful of real photos lacks."""
    w, h = int(rng.integers(320, 900)), int(rng.integers(320, 900))
    c0, c1 = (rng.uniform(0, 255, 3) for _ in range(2))
    kind = rng.integers(3)
    sw, sh = w // 4, h // 4  # smooth fields are made small and scaled up
    if kind == 0:  # linear or radial gradient
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        if rng.random() < 0.5:
            a = rng.uniform(0, np.pi)
            t = (xx * np.cos(a) + yy * np.sin(a)) / (sw + sh)
        else:
            t = np.hypot(xx - rng.uniform(0, sw), yy - rng.uniform(0, sh)) / max(sw, sh)
        t = np.clip(t - t.min(), 0, 1)[..., None]
        image = _small_to_image(c0 * (1 - t) + c1 * t, (w, h))
    elif kind == 1:  # fractal noise
        t = np.zeros((sh, sw), np.float32)
        for octave in range(4):
            n = 4 * 2 ** octave
            small = rng.random((n, n)).astype(np.float32)
            t += np.asarray(Image.fromarray(small).resize((sw, sh), Image.Resampling.BICUBIC)) / 2 ** octave
        t = ((t - t.min()) / (np.ptp(t) + 1e-6))[..., None]
        image = _small_to_image(c0 * (1 - t) + c1 * t, (w, h))
    else:  # soft blobs (bokeh-like)
        image = Image.new("RGB", (w, h), tuple(int(v) for v in c0))
        d = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(8, 30))):
            r = rng.uniform(0.03, 0.2) * max(w, h)
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(4, 20)))
    return _grain(image, rng.uniform(1, 6), rng)


def collage_background(photos: list[tuple[str, Image.Image]], rng: np.random.Generator) -> Image.Image:
    """A dead-leaves collage: shapes filled with patches of the photos, large to small.

    Thirteen photos are few backgrounds; occluding shapes cut from them at random scales make new
    layouts, clutter and texture boundaries, the statistics of natural images without new photos.
    """
    w, h = int(rng.integers(320, 900)), int(rng.integers(320, 900))
    canvas = photo_variant(photos[int(rng.integers(len(photos)))][1], rng).resize((w, h))
    n = int(rng.integers(12, 60))
    for i in range(n):
        r = max(6, int(max(w, h) * rng.uniform(0.04, 0.45) * (1 - 0.7 * i / n)))  # big leaves first
        bw, bh = int(r * rng.uniform(0.6, 2.0)), int(r * rng.uniform(0.6, 2.0))
        x, y = int(rng.integers(-bw // 2, w)), int(rng.integers(-bh // 2, h))
        src = photos[int(rng.integers(len(photos)))][1]
        scale = rng.uniform(0.25, 1.5)
        sw, sh = max(2, min(src.width, int(bw / scale))), max(2, min(src.height, int(bh / scale)))
        sx, sy = int(rng.integers(0, src.width - sw + 1)), int(rng.integers(0, src.height - sh + 1))
        patch = src.crop((sx, sy, sx + sw, sy + sh)).resize((bw, bh), Image.Resampling.BILINEAR)
        patch = ImageEnhance.Color(patch).enhance(rng.uniform(0.3, 1.6))
        patch = ImageEnhance.Brightness(patch).enhance(rng.uniform(0.6, 1.4))
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.ROTATE_90).resize((bw, bh))
        mask = Image.new("L", (bw, bh), 0)
        _shape(ImageDraw.Draw(mask), ["circle", "rect", "rounded", "hexagon", "diamond"][int(rng.integers(5))],
               (0, 0, bw - 1, bh - 1), 255)
        canvas.paste(patch, (x, y), mask)
    if rng.random() < 0.5:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return canvas


def _grain(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    noise = rng.normal(0, sigma, (image.height, image.width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def bars(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Letterbox or pillarbox bars with no text: layout, not an overlay."""
    w, h = image.size
    out = image.copy()
    d = ImageDraw.Draw(out)
    colour = (0, 0, 0) if rng.random() < 0.8 else (255, 255, 255)
    f = rng.uniform(0.06, 0.18)
    if rng.random() < 0.7:
        d.rectangle((0, 0, w, int(h * f)), fill=colour); d.rectangle((0, h - int(h * f), w, h), fill=colour)
    else:
        d.rectangle((0, 0, int(w * f), h), fill=colour); d.rectangle((w - int(w * f), 0, w, h), fill=colour)
    return out
