"""Text overlays, text added on top of a photo: caption bars, subtitles, meme text, stickers, speech
bubbles and titles."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from detector_factory.drawing import (_CJK, _centre, _fit_size, _font_path, _opposite, _paste, _phrase, _rgba,
                                      _shadowed, _shape, _text_image, _vivid)
from detector_factory.phrases import BAR_TAGS, BUBBLE, HEADLINES, MEME, PROMO, SUBTITLE_EN, SUBTITLE_ZH, TITLES
from synthetic.sample_corpus import cjk_font_path


def caption_bar(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    bar_h = int(h * rng.uniform(0.08, 0.2))
    place = rng.choice(["bottom", "bottom", "top", "lower_third"])
    y0 = {"bottom": h - bar_h, "top": 0, "lower_third": int(h * rng.uniform(0.62, 0.75))}[place]
    colour = [(0, 0, 0), (20, 40, 120), (170, 20, 30), (255, 255, 255), _vivid(rng)][int(rng.integers(5))]
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    x_text = int(w * 0.03)
    d.rectangle((0, y0, w, y0 + bar_h), fill=_rgba(colour, rng.uniform(0.55, 1.0)))
    if rng.random() < 0.5:  # a news tag block on the left
        tag = _phrase(BAR_TAGS, rng)
        tag_colour = _vivid(rng)
        tsize = max(7, int(bar_h * 0.45))
        tl = _text_image(tag, _font_path(tag, rng, bold=True), tsize, _rgba(_opposite(tag_colour)))
        d.rectangle((0, y0, tl.width + 2 * x_text, y0 + bar_h), fill=_rgba(tag_colour))
        layer.alpha_composite(tl, (x_text, y0 + (bar_h - tl.height) // 2))
        x_text = tl.width + 3 * x_text
        if w - x_text < w // 5:  # a wide tag (a bold Latin face) left no room for a headline beside it
            return _paste(image, layer, (0, 0))
    text = _phrase(HEADLINES + SUBTITLE_ZH + SUBTITLE_EN, rng)
    path = _font_path(text, rng)
    size = min(int(bar_h * rng.uniform(0.4, 0.6)), _fit_size(text, path, (w - x_text) * 0.95))
    tl = _text_image(text, path, max(7, size), _rgba(_opposite(colour)), align="left")
    x = x_text if rng.random() < 0.7 else max(x_text, (w - tl.width) // 2)
    layer.alpha_composite(tl.crop((0, 0, min(tl.width, w - x), tl.height)), (x, y0 + max(0, (bar_h - tl.height) // 2)))
    return _paste(image, layer, (0, 0))


def subtitle(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    i = int(rng.integers(len(SUBTITLE_ZH)))
    lines = rng.choice(["zh", "en", "both"])
    if not cjk_font_path():
        lines = "en"
    text = {"zh": SUBTITLE_ZH[i], "en": SUBTITLE_EN[i], "both": SUBTITLE_ZH[i] + "\n" + SUBTITLE_EN[i]}[lines]
    path = _font_path(text, rng)
    size = min(int(min(w, h) * rng.uniform(0.04, 0.08)), _fit_size(text, path, w * 0.92))
    colour = [(255, 255, 255), (255, 255, 255), (250, 230, 60), (200, 230, 255)][int(rng.integers(4))]
    style = rng.random()
    if style < 0.6:
        layer = _text_image(text, path, max(8, size), _rgba(colour), stroke=max(1, size // int(rng.integers(8, 16))),
                            stroke_fill=_rgba((0, 0, 0)))
    else:
        layer = _text_image(text, path, max(8, size), _rgba(colour))
        if style < 0.9:
            layer = _shadowed(layer, rng, 0.9)
    y = h - layer.height - int(h * rng.uniform(0.03, 0.12))
    return _paste(image, layer, ((w - layer.width) // 2, y))


def meme(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    out = image
    spots = [["top"], ["bottom"], ["top", "bottom"]][int(rng.integers(3))]
    for spot in spots:
        text = _phrase(MEME, rng)
        if rng.random() < 0.25 and len(text) > 6 and " " in text:
            words = text.split(" ")
            text = " ".join(words[: len(words) // 2]) + "\n" + " ".join(words[len(words) // 2:])
        path = _font_path(text, rng, bold=True)
        size = min(int(min(w, h) * rng.uniform(0.09, 0.16)), _fit_size(text, path, w * 0.94))
        colour = (255, 255, 255) if rng.random() < 0.85 else (0, 0, 0)
        layer = _text_image(text, path, max(10, size), _rgba(colour), stroke=max(2, size // 12),
                            stroke_fill=_rgba(_opposite(colour)))
        y = int(h * 0.03) if spot == "top" else h - layer.height - int(h * 0.03)
        out = _paste(out, layer, ((w - layer.width) // 2, y))
    return out


def sticker(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    size = int(min(w, h) * rng.uniform(0.16, 0.35))
    shape = ["burst", "circle", "rounded", "star", "rect", "burst"][int(rng.integers(6))]
    aspect = 1.0 if shape in ("burst", "circle", "star") else rng.uniform(1.4, 2.6)
    sw, sh = int(size * aspect), size
    colour = _vivid(rng)
    layer = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    border = (255, 255, 255) if rng.random() < 0.5 else None
    _shape(d, shape, (1, 1, sw - 2, sh - 2), _rgba(colour), _rgba(border) if border else None, max(2, size // 25))
    text = _phrase(PROMO, rng)
    if len(text) >= 4 and rng.random() < 0.3 and _CJK.search(text):
        text = text[: len(text) // 2] + "\n" + text[len(text) // 2:]
    path = _font_path(text, rng, bold=True)
    frac = 0.58 if shape in ("burst", "circle", "star") else 0.85
    tsize = _fit_size(text, path, sw * frac, lo=7, hi=int(sh * (0.3 if "\n" in text else 0.45)))
    tc = (255, 255, 255) if sum(colour) < 450 else (int(rng.integers(0, 40)),) * 3
    if rng.random() < 0.3:
        tc = (255, 235, 60) if tc == (255, 255, 255) else tc
    t = _text_image(text, path, tsize, _rgba(tc))
    _centre(layer, t)
    if rng.random() < 0.35:
        layer = _shadowed(layer, rng, 0.6)
    layer = layer.rotate(float(rng.uniform(-25, 25)), expand=True, resample=Image.Resampling.BICUBIC)
    x, y = rng.uniform(-0.05, 1.0) * (w - layer.width * 0.9), rng.uniform(-0.05, 1.0) * (h - layer.height * 0.9)
    return _paste(image, layer, (x, y))


def speech_bubble(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    text = _phrase(BUBBLE, rng)
    path = _font_path(text, rng)
    bw = int(min(w, h) * rng.uniform(0.22, 0.42))
    bh = int(bw * rng.uniform(0.5, 0.8))
    tail = bh // 2
    layer = Image.new("RGBA", (bw, bh + tail), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    fill = (255, 255, 255) if rng.random() < 0.8 else (255, 250, 200)
    line = max(1, bw // 60)
    tx = rng.uniform(0.2, 0.6) * bw
    d.polygon([(tx, bh * 0.7), (tx + bw * 0.18, bh * 0.8), (tx - bw * 0.05, bh + tail - 2)], fill=_rgba(fill),
              outline=_rgba((0, 0, 0)), width=line)
    shape = "circle" if rng.random() < 0.6 else "rounded"
    _shape(d, shape, (1, 1, bw - 2, bh - 2), _rgba(fill), _rgba((0, 0, 0)), line)
    t = _text_image(text, path, _fit_size(text, path, bw * 0.6, lo=7, hi=int(bh * 0.4)), _rgba((10, 10, 10)))
    _centre(layer, t, box=(0, 0, bw, bh))
    if rng.random() < 0.5:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x, y = rng.uniform(0, 1) * (w - bw), rng.uniform(0, 0.6) * max(1, h - layer.height)
    return _paste(image, layer, (x, y))


def title(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    text = _phrase(TITLES, rng)
    path = _font_path(text, rng, bold=rng.random() < 0.5)
    size = min(int(min(w, h) * rng.uniform(0.07, 0.15)), _fit_size(text, path, w * 0.9))
    colour = _vivid(rng) if rng.random() < 0.6 else (255, 255, 255)
    if rng.random() < 0.4:
        layer = _text_image(text, path, max(9, size), _rgba(colour), stroke=max(1, size // 14),
                            stroke_fill=_rgba(_opposite(colour)))
    else:
        layer = _shadowed(_text_image(text, path, max(9, size), _rgba(colour)), rng, 0.8)
    layer = layer.rotate(float(rng.uniform(-12, 12)), expand=True, resample=Image.Resampling.BICUBIC)
    x, y = rng.uniform(0, 1) * max(1, w - layer.width), rng.uniform(0, 1) * max(1, h - layer.height)
    return _paste(image, layer, (x, y))
