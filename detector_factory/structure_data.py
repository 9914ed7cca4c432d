"""Labelled structure defects over real photos: the data the structure detector is trained and judged on.

No published watermark, logo or text-overlay model works offline or knows Chinese, so Sluice makes its
own data (DESIGN rule 9). A sample is a clean photo (or a procedural background) with marks drawn over it:

* `watermark`: semi-transparent text or emblems (centred, diagonal, tiled, corner marks, @handles);
* `logo`: an opaque brand-like badge (shape + short word) in a corner;
* `text_overlay`: text added on top (caption bars, subtitles, meme text, stickers, speech bubbles, titles).

Negatives are clean photos and *scene text*: signs, posters, book pages and painted words rendered into
the photo with perspective, lighting, texture and blur, plus skimage's real photos of printed text. Those
carry `scene_text=1` and must not be called `text_overlay`. Photo subjects are split into train and
held-out sets so a benchmark never sees a training photo. Everything is a function of the seed.

    python -m detector_factory.structure_data --out DIR --n 600 --seed 1000 --split heldout
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from synthetic.sample_corpus import cjk_font_path, real_photos

log = logging.getLogger(__name__)

HEADS = ("watermark", "logo", "text_overlay")  # the detector's outputs, in this order
LABELS = HEADS + ("scene_text",)  # scene_text is not a head: it marks the hard negatives
HELDOUT_SUBJECTS = ("coffee", "rocket", "motorcycle_left", "motorcycle_right", "gravel")
PAGE_SUBJECTS = {"train": ("page",), "heldout": ("text",)}  # skimage photos of printed text
SPLITS = ("train", "heldout", "unseen")  # unseen: only a given folder's photos (split_photos)

# ---------------------------------------------------------------- phrases (zh and en)

WM_TEXT = ["© 摄影网", "版权所有", "禁止转载", "样图 请勿商用", "光影图库", "素材天下", "© 光年图片", "未经授权 禁止使用",
           "原创摄影", "图片仅供参考", "预览图", "星河图库", "云端素材网", "高清原图", "© 山海视觉",
           "© stock photo", "stock photo", "SAMPLE", "PREVIEW", "PROOF", "© PhotoHub", "DO NOT COPY",
           "www.photo-site.com", "pixelstock.io", "© 2024 All Rights Reserved", "imagebank", "FOR REVIEW ONLY",
           "COMP IMAGE", "shotlab.net", "© Lumen Images"]
HANDLE_PREFIX = ["@", "@", "微博@", "抖音号：", "小红书号 ", "IG @", "© ", "Photo by @"]
HANDLE_NAME = ["user_123", "xiaoming", "阿花的相册", "旅行的猫", "lens_lover", "kiki.photo", "大橙子", "moonwalker",
               "摄影师老王", "sunny_day", "chen.studio", "青柠", "pixel_pete", "橘子汽水"]
LOGO_WORDS = ["新闻", "体育", "财经", "直播", "电影", "综艺", "卫视", "影视", "少儿", "天气", "NEWS", "NEWS TV", "LIVE",
              "HD", "TV", "SPORTS", "4K", "MUSIC", "STAR", "Q TV", "FILM", "ONE"]
SUBTITLE_ZH = ["我们明天早上八点出发", "你到底想说什么？", "这件事我一直没告诉你", "今天的天气真不错", "欢迎收看本期节目",
               "他们已经在路上了", "你还记得那个夏天吗", "我会一直等你回来", "快看，那边有人", "谢谢大家的支持",
               "这就是我的选择", "别担心，一切都会好起来的", "我们得赶快离开这里", "这是最后的机会", "你听说了吗？",
               "下一站，北京", "今晚我们吃火锅吧", "这道菜的做法很简单"]
SUBTITLE_EN = ["We leave at eight tomorrow morning", "What are you trying to say?", "I never told you about this",
               "The weather is lovely today", "Welcome to this episode", "They are already on their way",
               "Do you remember that summer?", "I'll wait for you", "Look, someone's over there",
               "Thank you all for your support", "This is my choice", "Don't worry, it will be fine",
               "We have to get out of here", "This is the last chance", "Did you hear the news?",
               "Next stop, Beijing", "Let's have hotpot tonight", "This recipe is really simple"]
HEADLINES = ["突发：暴雨导致部分路段交通中断", "新地铁线路今日正式开通", "本市将迎来今年首场降雪", "专家解读最新经济数据",
             "BREAKING: Storm hits the coast", "LIVE: Markets open higher", "City council approves new park",
             "Weather alert for the weekend", "全国多地气温创新高", "Election results expected tonight"]
BAR_TAGS = ["突发", "直播", "快讯", "新闻", "BREAKING", "LIVE", "UPDATE", "NEWS"]
MEME = ["当你周一早上醒来", "我太难了", "这就是生活", "不要慌", "我裂开了", "打工人的日常", "WHEN YOU SEE IT",
        "ME ON MONDAY", "NOBODY:", "BUT WHY", "TRUST ME", "SUCH WOW", "MOOD", "EXPECTATION VS REALITY"]
PROMO = ["限时特价", "包邮", "新品上市", "热卖", "买一送一", "秒杀", "爆款", "仅剩3天", "立减100元", "¥99", "五折",
         "SALE -50%", "NEW", "HOT", "50% OFF", "FREE SHIPPING", "$19.99", "BEST SELLER", "LIMITED", "BUY 1 GET 1"]
BUBBLE = ["哈哈哈", "我太难了", "嗯？", "真的吗？", "救命！", "好耶", "饿了", "OMG!", "what?!", "Hello!", "LOL",
          "Yes!", "Hmm...", "Nope"]
TITLES = ["周末愉快", "美好的一天", "旅行日记", "新年快乐", "早安", "我的日常", "今日份快乐", "Good Morning",
          "Summer Vibes", "Happy Birthday", "Travel Diary", "Weekend Mood", "Best Day Ever", "Hello Spring"]
SIGNS = ["中山路", "人民路", "出口 EXIT", "禁止停车", "营业中", "便利店", "地铁站 Metro", "北京西站", "书店 BOOKS", "面馆",
         "停车场 P", "小心地滑", "银行 BANK", "医院", "火锅", "公交站 Bus Stop", "茶馆", "OPEN", "Main St",
         "Coffee & Tea", "PHARMACY", "STOP", "ONE WAY", "BAKERY", "No Parking", "Hotel", "Platform 3", "EXIT"]
POSTERS = ["音乐节", "夏日电影节", "读书会", "演唱会", "招聘", "美术展", "JAZZ NIGHT", "ART EXHIBITION",
           "FILM FESTIVAL", "GRAND OPENING", "CONCERT", "BOOK FAIR"]
PAGE_WORDS = ("the of and to in is that for with as was on by this data image model are from text which it be at "
              "an not we can each one all their been has more than other time into only some may when these two "
              "数据 图像 模型 文本 训练 方法 结果 研究 系统 使用 我们 可以 一个 这个 进行 通过 分析 问题 实验 表明").split()

# ---------------------------------------------------------------- fonts


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


# ---------------------------------------------------------------- backgrounds


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


# ---------------------------------------------------------------- watermarks (semi-transparent)


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


# ---------------------------------------------------------------- text overlays


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


# ---------------------------------------------------------------- scene text (negatives)


def _perspective_coeffs(dst, src) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points `dst` to input points `src` (4 each)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y]); rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y]); rhs.append(v)
    return list(np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


def _texture(panel: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Grain, dirt and a light gradient: a printed or painted surface, not flat pixels."""
    a = np.asarray(panel, dtype=np.float32)
    h, w = a.shape[:2]
    small = rng.normal(0, 1, (max(2, h // 24), max(2, w // 24))).astype(np.float32)
    blotch = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))[..., None]
    a[..., :3] = a[..., :3] * (1 + 0.05 * blotch) + rng.normal(0, rng.uniform(3, 9), (h, w, 1))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), panel.mode)


def _place_in_scene(image: Image.Image, panel: Image.Image, rng: np.random.Generator, width_frac) -> Image.Image:
    """Warp `panel` (RGBA) into `image` with a homography, the photo's light, blur and grain."""
    w, h = image.size
    tw = w * rng.uniform(*width_frac)
    th = min(tw * panel.height / panel.width, h * 0.9)
    tw = th * panel.width / panel.height
    cx, cy = rng.uniform(0.5 * tw, w - 0.5 * tw) if w > tw else w / 2, rng.uniform(0.5 * th, h - 0.5 * th) if h > th else h / 2
    quad = np.array([[-tw, -th], [tw, -th], [tw, th], [-tw, th]], float) / 2
    squeeze = rng.uniform(0.55, 0.92)  # a turned surface: the far side is shorter and closer
    side = int(rng.integers(4))
    if side < 2:  # yaw: one vertical edge shrinks
        k = [1, 2] if side == 0 else [0, 3]
        quad[k, 1] *= squeeze
        quad[k, 0] *= rng.uniform(0.8, 1.0)
    else:  # pitch: top or bottom edge shrinks
        k = [0, 1] if side == 2 else [2, 3]
        quad[k, 0] *= squeeze
    angle = np.radians(rng.uniform(-10, 10))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    quad = quad @ rot.T + rng.normal(0, 0.02 * tw, (4, 2)) + [cx, cy]
    src = [(0, 0), (panel.width, 0), (panel.width, panel.height), (0, panel.height)]
    blur = rng.uniform(0.5, 1.6) * max(1.0, min(w, h) / 400)
    pad = int(3 * blur) + 2
    bx0, by0 = (int(np.floor(v)) - pad for v in quad.min(0))
    bx1, by1 = (int(np.ceil(v)) + pad for v in quad.max(0))
    warped = panel.transform((bx1 - bx0, by1 - by0), Image.Transform.PERSPECTIVE,
                             _perspective_coeffs(quad - [bx0, by0], src), Image.Resampling.BICUBIC)
    a = np.asarray(warped, dtype=np.float32)
    rgb, alpha = a[..., :3], a[..., 3:]
    # Light: the photo's own low-frequency brightness and colour cast, and a gradient across the panel.
    small = np.asarray(image.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)
    mean = max(float(small.mean()), 1.0)
    low = Image.fromarray(small.mean(2).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    low = np.asarray(low.crop((bx0, by0, bx1, by1)), dtype=np.float32)[..., None]
    light = np.clip((low / mean) ** 0.5 * np.clip(mean / 140.0, 0.45, 1.1), 0.3, 1.25)
    cast = np.clip(small.reshape(-1, 3).mean(0) / mean, 0.8, 1.2) ** 0.5
    yy, xx = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
    g = rng.uniform(-np.pi, np.pi)
    grad = 1 + rng.uniform(0.1, 0.35) * ((xx - cx) * np.cos(g) + (yy - cy) * np.sin(g)) / max(tw, th)
    rgb = rgb * light * cast * grad[..., None]
    layer = Image.fromarray(np.clip(np.concatenate([rgb, alpha], axis=2), 0, 255).astype(np.uint8), "RGBA")
    return _paste(image, layer.filter(ImageFilter.GaussianBlur(blur)), (bx0, by0))


def _text_panel(lines: list[str], rng: np.random.Generator, bg, fg, pad: float = 0.18, aspect=None) -> Image.Image:
    text = "\n".join(lines)
    path = _font_path(text, rng, bold=rng.random() < 0.5)
    t = _text_image(text, path, 64, _rgba(fg))
    pw, ph = int(t.width * (1 + 2 * pad)), int(t.height * (1 + 2 * pad * 2))
    if aspect:
        pw = max(pw, int(ph * aspect))
    panel = Image.new("RGBA", (pw, ph), _rgba(bg))
    d = ImageDraw.Draw(panel)
    if rng.random() < 0.6:  # inner border line, as on road and shop signs
        m = int(min(pw, ph) * 0.06)
        d.rounded_rectangle((m, m, pw - m, ph - m), radius=m, outline=_rgba(fg), width=max(2, m // 2))
    panel.alpha_composite(t, ((pw - t.width) // 2, (ph - t.height) // 2))
    return _texture(panel, rng)


def scene_sign(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    schemes = [((20, 110, 60), (255, 255, 255)), ((25, 60, 150), (255, 255, 255)), ((240, 240, 235), (20, 20, 20)),
               ((180, 30, 30), (255, 255, 255)), ((110, 70, 40), (245, 230, 200)), ((245, 200, 30), (20, 20, 20)),
               ((30, 30, 30), (250, 220, 120))]
    bg, fg = schemes[int(rng.integers(len(schemes)))]
    lines = [_phrase(SIGNS, rng)] + ([_phrase(SIGNS, rng)] if rng.random() < 0.3 else [])
    panel = _text_panel(lines, rng, bg, fg)
    return _place_in_scene(image, panel, rng, (0.2, 0.6))


def scene_poster(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pw, ph = 300, int(300 * rng.uniform(1.2, 1.6))
    bg = tuple(int(v) for v in rng.uniform(150, 255, 3)) if rng.random() < 0.5 else _vivid(rng)
    panel = Image.new("RGBA", (pw, ph), _rgba(bg))
    art = procedural_background(rng).resize((pw - 40, int(ph * 0.5)))
    panel.paste(art, (20, int(ph * rng.uniform(0.05, 0.4))))
    d = ImageDraw.Draw(panel)
    head = _phrase(POSTERS, rng)
    path = _font_path(head, rng, bold=True)
    t = _text_image(head, path, _fit_size(head, path, pw * 0.85, hi=70), _rgba(_opposite(bg)))
    y = int(ph * 0.6) if rng.random() < 0.6 else 8
    panel.alpha_composite(t, ((pw - t.width) // 2, min(y, ph - t.height - 30)))
    for i in range(int(rng.integers(1, 4))):
        line = " ".join(rng.choice(PAGE_WORDS, int(rng.integers(2, 6))))
        s = _text_image(line, _font_path(line, rng), 14, _rgba(_opposite(bg)))
        panel.alpha_composite(s.crop((0, 0, min(s.width, pw - 20), s.height)), (10, min(ph - 20, ph - 70 + 18 * i)))
    d.rectangle((0, 0, pw - 1, ph - 1), outline=_rgba((40, 40, 40)), width=2)
    return _place_in_scene(image, _texture(panel, rng), rng, (0.25, 0.55))


def _document(rng: np.random.Generator, pw: int = 420) -> Image.Image:
    ph = int(pw * rng.uniform(1.2, 1.45))
    paper = tuple(int(v) for v in np.clip(np.array([245, 240, 225]) + rng.integers(-20, 10, 3), 0, 255))
    panel = Image.new("RGBA", (pw, ph), _rgba(paper))
    size = int(rng.integers(11, 17))
    y, margin = int(ph * 0.07), int(pw * 0.08)
    ink = _rgba((int(rng.integers(10, 60)),) * 3)
    if rng.random() < 0.6:
        head = " ".join(rng.choice(PAGE_WORDS, 3))
        t = _text_image(head, _font_path(head, rng, bold=True), size * 2, ink)
        panel.alpha_composite(t.crop((0, 0, min(t.width, pw - 2 * margin), t.height)), (margin, y))
        y += t.height + size
    while y < ph - margin - size:
        words = rng.choice(PAGE_WORDS, 14)
        line = "".join(words) if _CJK.search(words[0]) else " ".join(words)
        t = _text_image(line, _font_path(line, rng) if y == int(ph * 0.07) else _font_path(line, rng), size, ink)
        panel.alpha_composite(t.crop((0, 0, min(t.width, pw - 2 * margin), t.height)), (margin, y))
        y += int(size * rng.uniform(1.4, 1.9))
    return _texture(panel, rng)


def scene_document(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A page, book or menu photographed in the scene (sometimes filling most of the frame)."""
    return _place_in_scene(image, _document(rng), rng, (0.3, 0.9))


def scene_painted(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Words painted on a wall or storefront: the surface's texture shows through the paint."""
    text = _phrase(SIGNS + POSTERS, rng)
    path = _font_path(text, rng, bold=True)
    w, h = image.size
    colour = _vivid(rng)
    t = _text_image(text, path, _fit_size(text, path, w * rng.uniform(0.3, 0.6), hi=160), _rgba(colour))
    panel = Image.new("RGBA", (t.width + 8, t.height + 8), (0, 0, 0, 0))
    panel.alpha_composite(t, (4, 4))
    mixed = _place_in_scene(image, _fade(_texture(panel, rng), rng.uniform(0.8, 0.95)), rng, (0.3, 0.6))
    # Paint takes the surface's shading: keep the photo's high-frequency luminance under the text.
    a, base = np.asarray(mixed, dtype=np.float32), np.asarray(image, dtype=np.float32)
    detail = base.mean(2, keepdims=True) - np.asarray(image.filter(ImageFilter.GaussianBlur(3)),
                                                      dtype=np.float32).mean(2, keepdims=True)
    changed = (np.abs(a - base).sum(2, keepdims=True) > 12).astype(np.float32)
    return Image.fromarray(np.clip(a + 0.6 * detail * changed, 0, 255).astype(np.uint8))


def scene_page(image: Image.Image, rng: np.random.Generator, page: Image.Image) -> Image.Image:
    """A real photo of printed text: the whole frame, or warped into the photo as a sheet."""
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.06, 3)
    src = page.convert("RGB")
    if rng.random() < 0.5:
        return photo_variant(Image.fromarray(np.clip(np.asarray(src) * tint, 0, 255).astype(np.uint8)), rng)
    sheet = photo_variant(src, rng).convert("RGBA")
    return _place_in_scene(image, sheet, rng, (0.35, 0.8))


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


# ---------------------------------------------------------------- kinds and sets

RENDER = {
    "clean": lambda im, rng: im, "bars": bars,
    "scene_sign": scene_sign, "scene_poster": scene_poster, "scene_document": scene_document,
    "scene_painted": scene_painted, "scene_page": scene_page,
    "wm_center": wm_center, "wm_diagonal": wm_diagonal, "wm_tiled": wm_tiled, "wm_corner": wm_corner,
    "wm_logo": wm_logo, "logo": logo,
    "caption_bar": caption_bar, "subtitle": subtitle, "meme": meme, "sticker": sticker,
    "speech_bubble": speech_bubble, "title": title,
}
GROUPS = {
    "none": {"clean": 0.13, "bars": 0.03},
    "scene": {"scene_sign": 0.06, "scene_poster": 0.04, "scene_document": 0.04, "scene_painted": 0.02,
              "scene_page": 0.04},
    "watermark": {"wm_center": 0.045, "wm_diagonal": 0.045, "wm_tiled": 0.05, "wm_corner": 0.06, "wm_logo": 0.035},
    "logo": {"logo": 0.1},
    "text_overlay": {"caption_bar": 0.045, "subtitle": 0.05, "meme": 0.035, "sticker": 0.045,
                     "speech_bubble": 0.035, "title": 0.035},
}
_GROUP_LABEL = {"none": None, "scene": "scene_text", "watermark": "watermark", "logo": "logo",
                "text_overlay": "text_overlay"}
KIND_LABELS = {kind: _GROUP_LABEL[g] for g, kinds in GROUPS.items() for kind in kinds}  # the label a kind sets
COMBO_RATE = 0.22  # share of samples with a second kind from another group (e.g. a TV logo + subtitles)
_ORDER = ("none", "scene", "watermark", "logo", "text_overlay")  # scene first: marks lie on top of it


VISIBILITY_SIDE = 256  # marks are judged at about the size the detector sees
MIN_MARK_PIXELS = 24  # changed pixels (at VISIBILITY_SIDE) below which a mark is not there
MIN_STRENGTH = 20  # mean change (grey levels) on a mark's pixels for it to count as seen
MIN_CONTRAST = 1.5  # ... and that mean change over the picture's local texture there


def _thumb(image: Image.Image, side: int = VISIBILITY_SIDE) -> np.ndarray:
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.int16)


def _mark(before: Image.Image, after: Image.Image, side: int = VISIBILITY_SIDE) -> tuple[np.ndarray, bool]:
    """Pixels a renderer changed (bool, long side `side`) and whether the change shows at that size.

    Strength is the mean change on the changed pixels; texture is the mean step between neighbours of
    the picture there. A faint mark over grass or gravel can change many pixels and still be unseen:
    such a sample is labelled by what shows, not by what was drawn.
    """
    a = _thumb(before, side)
    diff = np.abs(_thumb(after, side) - a).max(axis=2)
    mark = diff >= 6
    if mark.sum() < MIN_MARK_PIXELS * (side / VISIBILITY_SIDE) ** 2:
        return mark, False
    ys, xs = np.nonzero(mark)
    region = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean(axis=2)
    texture = float(np.abs(np.diff(region, axis=1)).mean()) if region.shape[1] > 1 else 0.0
    strength = float(diff[mark].mean())
    return mark, strength >= MIN_STRENGTH and strength >= MIN_CONTRAST * texture


def _render_parts(photo, kind: str, rng: np.random.Generator, page,
                  side: int = VISIBILITY_SIDE) -> tuple[Image.Image, dict, dict, list[str]]:
    """The image, labels, per-label masks (bool, long side `side`) and the parts that are actually visible.

    Visibility is judged at `side`: the whole-image detector sees VISIBILITY_SIDE, a detector that looks
    at a larger image sees fainter and smaller marks, and is taught with labels judged at its own size.
    """
    image = photo_variant(photo, rng) if photo is not None else procedural_background(rng)
    labels, masks, shown = dict.fromkeys(LABELS, 0), {}, []
    for part in kind.split("+"):
        if part not in RENDER:
            raise ValueError(f"unknown structure kind {part!r}; known: {', '.join(RENDER)}")
        before = image
        if part == "scene_page":
            if page is None:
                raise ValueError("kind scene_page needs a page photo (page=...), e.g. skimage.data.page()")
            image = scene_page(image, rng, page)
        else:
            image = RENDER[part](image, rng)
        label = KIND_LABELS[part]
        if label is None:
            shown.append(part)
            continue
        if image.size != before.size:  # a page photo replaced the whole frame
            mark, visible = np.ones(_thumb(image, side).shape[:2], bool), True
        else:
            mark, visible = _mark(before, image, side)
        if label in masks and masks[label].shape != mark.shape:
            masks.pop(label)
        if visible or label == "scene_text":
            labels[label] = 1
            masks[label] = masks[label] | mark if label in masks else mark
            shown.append(part)
    if rng.random() < 0.25:  # reposted images are often resampled: soften everything alike
        w, h = image.size
        s = rng.uniform(0.5, 0.85)
        image = image.resize((max(16, int(w * s)), max(16, int(h * s))), Image.Resampling.BILINEAR).resize((w, h))
    return image, labels, masks, shown


def make_sample(photo: Image.Image | None, kind: str, rng: np.random.Generator,
                page: Image.Image | None = None) -> tuple[Image.Image, dict[str, int]]:
    """One image and its labels. `photo` None = a procedural background; `kind` may join kinds with '+'.

    A mark that does not show (too faint for the picture under it) leaves its label at 0.
    """
    image, labels, _, _ = _render_parts(photo, kind, rng, page)
    return image, labels


def _draw_kind(rng: np.random.Generator, has_pages: bool) -> str:
    weights = {k: v for g in GROUPS.values() for k, v in g.items() if has_pages or k != "scene_page"}
    names = list(weights)
    p = np.array([weights[k] for k in names])
    kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    group = next(g for g, ks in GROUPS.items() if kind in ks)
    if group != "none" and rng.random() < COMBO_RATE:
        others = [g for g in ("scene", "watermark", "logo", "text_overlay") if g != group]
        second_group = others[int(rng.integers(len(others)))]
        pool = [k for k in GROUPS[second_group] if has_pages or k != "scene_page"]
        second = pool[int(rng.integers(len(pool)))]
        parts = sorted([(group, kind), (second_group, second)], key=lambda gk: _ORDER.index(gk[0]))
        kind = "+".join(k for _, k in parts)
    return kind


def split_photos(split: str,
                 extra_photos: Path | None = None) -> tuple[list[tuple[str, Image.Image]], list[Image.Image]]:
    """(subject, photo) pairs and page photos of a split: 'train' or 'heldout' (disjoint subjects), or
    'unseen': the photos of `extra_photos` alone, none of the bundled ones (backgrounds a model trained on
    the train split never saw; its pages are the train split's).
    `extra_photos`: a folder of more backgrounds (`photos_from_folder`), added to the train split only, so
    that validation stays on the held-out subjects."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if split == "unseen":
        if extra_photos is None:
            raise ValueError("the 'unseen' split is drawn over a folder of photos: give extra_photos")
        photos = photos_from_folder(extra_photos)
    else:
        held = set(HELDOUT_SUBJECTS)
        photos = [(s, p) for s, p in real_photos() if (s in held) == (split == "heldout")]
        if extra_photos is not None and split == "train":
            photos = photos + photos_from_folder(extra_photos)
    import skimage.data

    pages = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
             for name in PAGE_SUBJECTS["heldout" if split == "heldout" else "train"]]
    return photos, pages


def generator_digest(*modules) -> str:
    """A hash of this generator's source (and of `modules` that draw on top of it, e.g. detector_factory.clutter): part of
    every cache name of rendered or scored samples, so a changed generator (a font fix) renders afresh
    instead of reusing samples it no longer draws."""
    files = [Path(__file__)] + [Path(m.__file__) for m in modules]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:10]


def extra_photos_tag(extra_photos: Path | None) -> str:
    """A cache-name suffix for a set drawn with `extra_photos` ("" without): the folder's full path, hashed,
    so two folders of the same name are different sets."""
    if extra_photos is None:
        return ""
    return f"-x{hashlib.sha1(str(Path(extra_photos).resolve()).encode()).hexdigest()[:10]}"


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def photos_from_folder(folder: Path) -> list[tuple[str, Image.Image]]:
    """(subject, RGB image) for every readable photo directly in `folder` (subject = file name): more
    backgrounds than the bundled ones, for a detector to learn what is not a mark. Unreadable files are
    skipped with a warning; a folder with no photo is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        try:
            with Image.open(path) as im:
                photos.append((path.name, im.convert("RGB")))
        except (OSError, ValueError) as e:
            log.warning("skipping %s: %s", path, e)
    if not photos:
        raise ValueError(f"no readable photo ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return photos


def make_record(photos, index: int, seed: int, pages=(), procedural: float = 0.0, masks: bool = False,
                kind: str | None = None, side: int = VISIBILITY_SIDE) -> dict:
    """Record `index` of set `seed`: its own rng, so records can be made in any order or in parallel.

    `kind` lists the parts drawn; `shown` those that are visible ("clean" when none). With `masks`, also
    the pixels each label's marks changed (bool, long side `side`), for dense supervision. `kind` forces
    the kind instead of the usual draw (the draw's random numbers are still taken, so the rest is alike).
    """
    rng = np.random.default_rng([seed, index])
    drawn = _draw_kind(rng, bool(pages))
    kind = kind or drawn
    if rng.random() < procedural:
        subject, photo = "procedural", None
        if rng.random() < 0.7:
            subject, photo = "collage", collage_background(photos, rng)
    else:
        subject, photo = photos[int(rng.integers(len(photos)))]
    page = pages[int(rng.integers(len(pages)))] if pages else None
    image, labels, label_masks, shown = _render_parts(photo, kind, rng, page, side)
    record = {"image": image, "labels": labels, "kind": kind, "shown": "+".join(shown) or "clean", "subject": subject}
    if masks:
        record["masks"] = label_masks
    return record


def make_set(photos, n: int, seed: int, pages=(), procedural: float = 0.0) -> list[tuple[Image.Image, dict]]:
    """n (image, labels) pairs over `photos` ((subject, image) pairs), deterministic in `seed`."""
    records = (make_record(photos, i, seed, pages, procedural) for i in range(n))
    return [(r["image"], r["labels"]) for r in records]


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def write_set(out_dir: Path, split: str, n: int, seed: int, procedural: float = 0.0) -> Path:
    """Write n JPEGs of a split and `labels.jsonl` (file, kind, subject, labels) to `out_dir`."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    photos, pages = split_photos(split)
    with (out_dir / "labels.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n):
            r = make_record(photos, i, seed, pages, procedural)
            name = f"images/{i:06d}.jpg"
            q = int(np.random.default_rng([seed, i, 1]).integers(75, 96))
            (out_dir / name).write_bytes(encode_jpeg(r["image"], q))
            f.write(json.dumps({"file": name, "kind": r["kind"], "shown": r["shown"], "subject": r["subject"], **r["labels"]},
                               ensure_ascii=False) + "\n")
    log.info("wrote %d %s samples to %s", n, split, out_dir)
    return out_dir / "labels.jsonl"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write a labelled structure-defect set (JPEGs + labels.jsonl).")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--split", choices=["train", "heldout"], default="heldout")
    p.add_argument("--procedural", type=float, default=0.0,
                   help="share of made-up backgrounds (collages of the split's photos, gradients, noise)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(write_set(args.out, args.split, args.n, args.seed, args.procedural))


if __name__ == "__main__":
    main()
