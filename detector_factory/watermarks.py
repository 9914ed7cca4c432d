"""Watermarks (semi-transparent text and emblems: centred, diagonal, tiled, corner, @handles) and logos
(opaque brand-like badges in a corner)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from detector_factory.drawing import (_centre, _corner_xy, _fade, _fit_size, _font_path, _handle, _opposite, _paste,
                                      _phrase, _rgba, _shadowed, _shape, _text_colour, _text_image, _vivid)
from detector_factory.phrases import LOGO_WORDS, WM_TEXT


def _wm_colour(image: Image.Image, rng: np.random.Generator) -> tuple[int, int, int]:
    """Marks are made to be seen: mostly light on dark pictures and dark on light ones."""
    lum = float(np.asarray(image.convert("L").reduce(8)).mean())
    r = rng.random()
    if r < 0.2:
        return _vivid(rng)
    light = r < (0.85 if lum < 140 else 0.3)
    return (255, 255, 255) if light else (int(rng.integers(0, 50)),) * 3


def _wm_style(text: str, size: int, rng: np.random.Generator, colour=None) -> Image.Image:
    colour = colour or _text_colour(rng)
    path = _font_path(text, rng)
    r = rng.random()
    if r < 0.3:
        layer = _text_image(text, path, size, _rgba(colour), stroke=max(1, size // 18), stroke_fill=_rgba(_opposite(colour)))
    else:
        layer = _text_image(text, path, size, _rgba(colour))
        if r < 0.5:
            layer = _shadowed(layer, rng, 0.6)
    return layer


def wm_center(image: Image.Image, rng: np.random.Generator, diagonal: bool = False) -> Image.Image:
    w, h = image.size
    text = _phrase(WM_TEXT, rng) if rng.random() < 0.8 else _handle(rng)
    if rng.random() < 0.2:
        text += "\n" + _phrase(WM_TEXT, rng)
    angle = rng.choice([-1, 1]) * rng.uniform(20, 45) if diagonal else rng.uniform(-6, 6)
    width = (np.hypot(w, h) * rng.uniform(0.35, 0.7)) if diagonal else w * rng.uniform(0.3, 0.8)
    size = _fit_size(text, _font_path(text, rng), width, lo=12, hi=int(h * 0.35))
    layer = _wm_style(text, size, rng, _wm_colour(image, rng))
    layer = layer.rotate(float(angle), expand=True, resample=Image.Resampling.BICUBIC)
    x = (w - layer.width) / 2 + rng.uniform(-0.15, 0.15) * w
    y = (h - layer.height) / 2 + rng.uniform(-0.2, 0.2) * h
    return _paste(image, _fade(layer, rng.uniform(0.15, 0.6)), (x, y))


def wm_diagonal(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return wm_center(image, rng, diagonal=True)


def wm_tiled(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same mark repeated on a rotated, staggered grid over the whole image."""
    w, h = image.size
    text = _phrase(WM_TEXT, rng) if rng.random() < 0.85 else _handle(rng)
    size = max(9, int(min(w, h) * rng.uniform(0.035, 0.09)))
    tile = _wm_style(text, size, rng, _wm_colour(image, rng))
    angle = rng.uniform(-45, 45)
    step_x, step_y = tile.width * rng.uniform(1.3, 2.2), tile.height * rng.uniform(2.0, 4.0)
    rotated = tile.rotate(float(angle), expand=True, resample=Image.Resampling.BICUBIC)
    a = np.radians(-angle)  # PIL rotates counter-clockwise; image y points down
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    reach = int(np.hypot(w, h) / min(step_x, step_y)) + 2
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.5, 0.5, 2) * [step_x, step_y]
    for j in range(-reach, reach + 1):
        for i in range(-reach, reach + 1):
            p = centre + (i + 0.5 * (j % 2)) * step_x * u + j * step_y * v
            x, y = int(p[0] - rotated.width / 2), int(p[1] - rotated.height / 2)
            if -rotated.width < x < w and -rotated.height < y < h:
                sx, sy = max(0, -x), max(0, -y)
                part = rotated.crop((sx, sy, min(rotated.width, w - x), min(rotated.height, h - y)))
                layer.alpha_composite(part, (max(x, 0), max(y, 0)))
    return _paste(image, _fade(layer, rng.uniform(0.15, 0.5)), (0, 0))


def wm_corner(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    text = _handle(rng) if rng.random() < 0.5 else _phrase(WM_TEXT, rng)
    size = max(9, int(min(w, h) * rng.uniform(0.035, 0.07)))
    w4, h4 = w // 4, h // 4
    corners = [image.crop(box) for box in ((0, 0, w4, h4), (w - w4, 0, w, h4), (0, h - h4, w4, h), (w - w4, h - h4, w, h))]
    strip = Image.new("RGB", (4 * w4, h4))
    for i, c in enumerate(corners):
        strip.paste(c, (i * w4, 0))
    layer = _wm_style(text, size, rng, _wm_colour(strip, rng))
    if layer.width > 0.9 * w:
        layer = layer.resize((int(0.9 * w), max(4, int(layer.height * 0.9 * w / layer.width))))
    xy = _corner_xy(image, layer, rng, "tl tr bl br br bl bc")
    return _paste(image, _fade(layer, rng.uniform(0.35, 0.9)), xy)


def _emblem(size: int, rng: np.random.Generator, word: str, colour, word_colour) -> Image.Image:
    """A shape with a short word in or beside it: the body of logos and logo watermarks."""
    shape = ["circle", "rounded", "rect", "hexagon", "diamond", "ring"][int(rng.integers(6))]
    beside = rng.random() < 0.4
    path = _font_path(word, rng, bold=True)
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(icon)
    if shape == "ring":
        d.ellipse((1, 1, size - 2, size - 2), outline=_rgba(colour), width=max(2, size // 9))
    else:
        _shape(d, shape, (1, 1, size - 2, size - 2), _rgba(colour))
    if not beside:
        inner = word_colour if shape != "ring" else colour
        fs = _fit_size(word, path, size * (0.62 if shape in ("circle", "ring", "diamond", "hexagon") else 0.8),
                       lo=6, hi=int(size * 0.55))
        t = _text_image(word, path, fs, _rgba(inner))
        _centre(icon, t)
        return icon
    if rng.random() < 0.6:  # a mark inside the shape: a smaller inverse shape
        m = size // 4
        _shape(d, ["circle", "diamond", "rect"][int(rng.integers(3))], (m, m, size - m, size - m), _rgba(word_colour))
    t = _text_image(word, path, max(6, int(size * rng.uniform(0.4, 0.7))), _rgba(colour))
    out = Image.new("RGBA", (size + t.width + size // 6, max(size, t.height)), (0, 0, 0, 0))
    out.alpha_composite(icon, (0, (out.height - size) // 2))
    out.alpha_composite(t, (size + size // 6, (out.height - t.height) // 2))
    return out


def wm_logo(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A semi-transparent emblem, mostly centred: a watermark, not an opaque logo."""
    w, h = image.size
    centred = rng.random() < 0.7
    size = int(min(w, h) * (rng.uniform(0.25, 0.5) if centred else rng.uniform(0.1, 0.18)))
    colour = _wm_colour(image, rng)
    word = _phrase(WM_TEXT + LOGO_WORDS, rng) if rng.random() < 0.5 else _phrase(LOGO_WORDS, rng)
    layer = _emblem(max(16, size), rng, word[:8], colour, _opposite(colour))
    alpha = rng.uniform(0.2, 0.55)
    if centred:
        xy = ((w - layer.width) / 2 + rng.uniform(-0.1, 0.1) * w, (h - layer.height) / 2 + rng.uniform(-0.1, 0.1) * h)
    else:
        xy = _corner_xy(image, layer, rng)
    return _paste(image, _fade(layer, alpha), xy)


# ---------------------------------------------------------------- logos (opaque badges)


def logo(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    size = max(14, int(min(w, h) * rng.uniform(0.07, 0.15)))
    colour = _vivid(rng)
    layer = _emblem(size, rng, _phrase(LOGO_WORDS, rng), colour, _opposite(colour))
    if rng.random() < 0.3:
        layer = _shadowed(layer, rng, 0.5)
    xy = _corner_xy(image, layer, rng, "tl tr tr tl bl br", margin=(0.02, 0.06))
    return _paste(image, _fade(layer, rng.uniform(0.9, 1.0)), xy)
