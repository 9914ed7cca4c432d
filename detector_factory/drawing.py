"""Fonts and drawing for the structure-defect generator: the Latin and CJK fonts, text drawn on transparent
layers, colours, shadows, and compositing a layer over a photo."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from detector_factory.phrases import HANDLE_NAME, HANDLE_PREFIX
from synthetic.sample_corpus import cjk_font_path


def _text_fonts(paths) -> list[str]:
    """Sorted .ttf/.otf files among `paths`, without math fonts (symbols, no running text)."""
    return sorted({str(p) for p in paths if Path(p).suffix.lower() in (".ttf", ".otf") and "Math" not in Path(p).name})


@functools.cache
def latin_font_paths() -> tuple[str, ...]:
    """Latin fonts fontconfig knows (sorted, so runs agree on one machine); the CJK font when none are found.
    $SLUICE_LATIN_FONT_DIR, a folder of .ttf/.otf files searched recursively, stands in for fontconfig on a
    machine that has none (a rented GPU box): the same files give the same draws."""
    found: list[str] = []
    folder = os.environ.get("SLUICE_LATIN_FONT_DIR")
    if folder:
        found = _text_fonts(Path(folder).rglob("*"))
        if not found:
            raise FileNotFoundError(f"SLUICE_LATIN_FONT_DIR={folder} holds no .ttf or .otf font")
    elif shutil.which("fc-list"):
        # fc-list prints "path: " per font; the path is what comes before the colon.
        out = subprocess.run(["fc-list", ":lang=en", "file"], capture_output=True, text=True, check=False).stdout
        found = _text_fonts(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    cjk = cjk_font_path()
    return tuple(found) or ((cjk,) if cjk else ())


@functools.cache
def _truetype(path: str | None, size: int):
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def _font_path(text: str, rng: np.random.Generator, bold: bool = False) -> str | None:
    if _CJK.search(text) or not latin_font_paths():
        return cjk_font_path()
    paths = latin_font_paths()
    if bold:
        paths = tuple(p for p in paths if "Bold" in p) or paths
    return paths[int(rng.integers(len(paths)))] if rng.random() < 0.85 else (cjk_font_path() or paths[0])


def _phrase(pool: list[str], rng: np.random.Generator) -> str:
    """A phrase from `pool`; Chinese ones are skipped when no CJK font is installed."""
    usable = pool if cjk_font_path() else [p for p in pool if not _CJK.search(p)] or ["SAMPLE"]
    return usable[int(rng.integers(len(usable)))]


def _handle(rng: np.random.Generator) -> str:
    name = _phrase(HANDLE_NAME, rng)
    return _phrase(HANDLE_PREFIX, rng) + name + (str(int(rng.integers(10, 9999))) if rng.random() < 0.4 else "")


# ---------------------------------------------------------------- drawing helpers


def _rgba(colour, alpha: float = 1.0) -> tuple[int, int, int, int]:
    return (int(colour[0]), int(colour[1]), int(colour[2]), int(round(255 * alpha)))


def _vivid(rng: np.random.Generator) -> tuple[int, int, int]:
    palette = [(220, 30, 40), (250, 200, 20), (255, 120, 0), (30, 90, 200), (20, 150, 70), (230, 40, 140),
               (120, 40, 180), (0, 170, 200), (255, 255, 255), (20, 20, 20)]
    base = np.array(palette[int(rng.integers(len(palette)))]) + rng.integers(-20, 21, 3)
    return tuple(int(v) for v in np.clip(base, 0, 255))


def _text_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r = rng.random()
    if r < 0.55:
        return (255, 255, 255)
    if r < 0.8:
        return (int(rng.integers(0, 50)),) * 3
    return _vivid(rng)


def _opposite(colour) -> tuple[int, int, int]:
    return (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)


def _fit_size(text: str, path: str | None, width: float, lo: int = 7, hi: int = 400) -> int:
    """Font size at which `text` (its longest line) is about `width` pixels wide."""
    font = _truetype(path, 100)
    widest = max(font.getlength(line) for line in text.split("\n")) or 1.0
    return int(np.clip(100 * width / widest, lo, hi))


def _text_image(text: str, path: str | None, size: int, fill, stroke: int = 0, stroke_fill=None,
                align: str = "center") -> Image.Image:
    """`text` drawn on a transparent RGBA canvas that just holds it."""
    font = _truetype(path, size)
    spacing = max(2, size // 5)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke, spacing=spacing,
                                              align=align)
    x0, y0, x1, y1 = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))
    canvas = Image.new("RGBA", (x1 - x0 + 4, y1 - y0 + 4), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).multiline_text((2 - x0, 2 - y0), text, font=font, fill=fill, stroke_width=stroke,
                                          stroke_fill=stroke_fill, spacing=spacing, align=align)
    return canvas


def _shadowed(layer: Image.Image, rng: np.random.Generator, strength: float = 0.7) -> Image.Image:
    """`layer` with a soft dark drop shadow under it."""
    pad = max(4, layer.height // 6)
    out = Image.new("RGBA", (layer.width + 2 * pad, layer.height + 2 * pad), (0, 0, 0, 0))
    alpha = layer.getchannel("A").point(lambda v: int(v * strength))
    shadow = Image.new("RGBA", layer.size, (0, 0, 0, 255))
    shadow.putalpha(alpha)
    dx, dy = (int(v) for v in rng.integers(1, max(2, pad // 2 + 1), 2))
    out.alpha_composite(shadow, (pad + dx, pad + dy))
    out = out.filter(ImageFilter.GaussianBlur(max(0.8, pad / 4)))
    out.alpha_composite(layer, (pad, pad))
    return out


def _fade(layer: Image.Image, alpha: float) -> Image.Image:
    layer = layer.copy()
    layer.putalpha(layer.getchannel("A").point(lambda v: int(v * alpha)))
    return layer


def _paste(image: Image.Image, layer: Image.Image, xy) -> Image.Image:
    """`layer` composited over `image` at `xy` (may hang over the edges)."""
    base = image.convert("RGBA")
    x, y = int(xy[0]), int(xy[1])
    sx, sy = max(0, -x), max(0, -y)  # alpha_composite wants the layer inside the canvas: clip it
    w, h = min(layer.width - sx, base.width - max(x, 0)), min(layer.height - sy, base.height - max(y, 0))
    if w > 0 and h > 0:
        base.alpha_composite(layer.crop((sx, sy, sx + w, sy + h)), (max(x, 0), max(y, 0)))
    return base.convert("RGB")


def _centre(canvas: Image.Image, layer: Image.Image, box=None) -> None:
    """Composite `layer` centred in `box` of `canvas` (in place), cropped to fit."""
    x0, y0, x1, y1 = box or (0, 0, canvas.width, canvas.height)
    w, h = min(layer.width, x1 - x0), min(layer.height, y1 - y0)
    part = layer.crop(((layer.width - w) // 2, (layer.height - h) // 2, (layer.width - w) // 2 + w, (layer.height - h) // 2 + h))
    canvas.alpha_composite(part, (x0 + (x1 - x0 - w) // 2, y0 + (y1 - y0 - h) // 2))


def _corner_xy(image: Image.Image, layer: Image.Image, rng: np.random.Generator, corners: str = "tl tr bl br",
               margin: tuple[float, float] = (0.015, 0.06)) -> tuple[int, int]:
    w, h = image.size
    m = int(min(w, h) * rng.uniform(*margin))
    corner = corners.split()[int(rng.integers(len(corners.split())))]
    x = m if corner[1] == "l" else (w - layer.width - m if corner[1] == "r" else (w - layer.width) // 2)
    y = m if corner[0] == "t" else h - layer.height - m
    return x, y


def _shape(draw: ImageDraw.ImageDraw, kind: str, box, fill, outline=None, width: int = 0) -> None:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    if kind == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif kind == "rounded":
        draw.rounded_rectangle(box, radius=int(min(rx, ry) * 0.5), fill=fill, outline=outline, width=width)
    elif kind == "rect":
        draw.rectangle(box, fill=fill, outline=outline, width=width)
    elif kind in ("hexagon", "diamond", "star", "burst"):
        n, inner = {"hexagon": (6, 1.0), "diamond": (4, 1.0), "star": (5, 0.45), "burst": (14, 0.78)}[kind]
        points = []
        for i in range(n * (2 if inner < 1 else 1)):
            r = 1.0 if inner == 1 or i % 2 == 0 else inner
            a = np.pi * i / (n if inner < 1 else n / 2) - np.pi / 2
            points.append((cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)))
        draw.polygon(points, fill=fill, outline=outline, width=width)
