"""Deterministic demo corpus: variants of real photos with bilingual alt text and known defects.

The corpus is an image folder as users bring it (images with optional `.txt`/`.json` sidecars) plus a
`manifest.jsonl` that records the ground truth of every file, so tests and the demo can check what the
stage-1 filters catch. Photos come from scikit-image and scikit-learn, which ship them offline.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
FILES_PER_PART = 100

DEFECT_RATE = 0.04
BROKEN_RATE = 0.01
# Broken kinds and the error kind ingest is expected to give them (same strings as synthetic.bad_inputs).
BROKEN_KINDS = {"truncated_jpeg": "truncated", "zero_byte": "empty_file", "random_bytes": "not_an_image"}

# (subject, loader); greyscale ones become RGB. skimage's "clock" is left out: it is motion-blurred by
# design and would make a "clean" record that a blur rule rightly drops.
_PHOTO_SOURCES: tuple[tuple[str, str], ...] = (
    ("astronaut", "skimage:astronaut"),
    ("coffee", "skimage:coffee"),
    ("chelsea", "skimage:chelsea"),
    ("rocket", "skimage:rocket"),
    ("hubble_deep_field", "skimage:hubble_deep_field"),
    ("retina", "skimage:retina"),
    ("immunohistochemistry", "skimage:immunohistochemistry"),
    ("motorcycle_left", "motorcycle:0"),
    ("motorcycle_right", "motorcycle:1"),
    ("colorwheel", "skimage:colorwheel"),
    ("china", "sklearn:china.jpg"),
    ("flower", "sklearn:flower.jpg"),
    ("camera", "skimage:camera"),
    ("coins", "skimage:coins"),
    ("moon", "skimage:moon"),
    ("brick", "skimage:brick"),
    ("grass", "skimage:grass"),
    ("gravel", "skimage:gravel"),
)

_MOTORCYCLE = {
    "zh": ["停在车库里的一辆红色摩托车", "杂物间里的一辆摩托车，背景是货架和纸箱", "一辆复古红色摩托车的侧面"],
    "en": ["a red motorcycle parked in a garage", "a motorbike in a cluttered workshop with shelves",
           "side view of a vintage red motorcycle"],
}
CAPTIONS: dict[str, dict[str, list[str]]] = {
    "astronaut": {
        "zh": ["宇航员艾琳·柯林斯的肖像", "身穿橙色宇航服的女宇航员，背景是美国国旗", "宇航员与航天飞机模型和头盔的合影"],
        "en": ["portrait of astronaut Eileen Collins in a spacesuit",
               "a female astronaut in an orange spacesuit in front of the American flag",
               "official NASA portrait with a space shuttle model and a helmet"],
    },
    "coffee": {
        "zh": ["一杯拿铁咖啡", "白色瓷杯里的拿铁，奶泡拉花", "桌上的一杯咖啡和碟子"],
        "en": ["a cup of latte with foam art", "latte art in a white ceramic cup on a saucer",
               "a cup of coffee on a table"],
    },
    "chelsea": {
        "zh": ["一只虎斑猫", "橘色虎斑猫的特写", "一只猫咪望向镜头外"],
        "en": ["a tabby cat", "close-up of a ginger tabby cat", "a cat named Chelsea looking to the side"],
    },
    "rocket": {
        "zh": ["猎鹰9号火箭在发射台上", "黄昏时分矗立在发射塔之间的火箭", "即将发射的火箭和灯光"],
        "en": ["a Falcon 9 rocket on the launch pad", "a rocket between launch towers at dusk",
               "a rocket ready for launch, lit by floodlights"],
    },
    "hubble_deep_field": {
        "zh": ["哈勃深空场中的遥远星系", "漆黑宇宙中成千上万的星系", "哈勃太空望远镜拍摄的深空图像"],
        "en": ["distant galaxies in the Hubble Deep Field", "thousands of galaxies scattered across dark space",
               "deep space image taken by the Hubble Space Telescope"],
    },
    "retina": {
        "zh": ["人眼视网膜的眼底照片", "视网膜血管和视盘的医学影像", "眼科检查拍摄的眼底图"],
        "en": ["fundus photograph of a human retina", "retinal blood vessels and the optic disc",
               "medical image of the back of the eye"],
    },
    "immunohistochemistry": {
        "zh": ["免疫组化染色的组织切片显微图像", "显微镜下棕色和蓝色染色的细胞", "病理切片的高倍显微照片"],
        "en": ["immunohistochemistry stained tissue under a microscope", "cells stained brown and blue, microscopy",
               "high magnification micrograph of a pathology slide"],
    },
    "motorcycle_left": _MOTORCYCLE,
    "motorcycle_right": _MOTORCYCLE,
    "colorwheel": {
        "zh": ["色相环", "彩虹色的圆形色轮", "HSV颜色空间的色轮示意图"],
        "en": ["a colour wheel", "a circular rainbow hue wheel", "HSV colour wheel diagram"],
    },
    "china": {
        "zh": ["中国的一座古老宝塔", "湖边绿树环绕的中国传统楼阁", "颐和园佛香阁的飞檐和琉璃瓦"],
        "en": ["an ancient pagoda in China", "a traditional Chinese tower among trees by a lake",
               "the Tower of Buddhist Incense at the Summer Palace"],
    },
    "flower": {
        "zh": ["一朵盛开的橙色大丽花", "大丽花的特写，背景是绿叶", "花园里的一朵花"],
        "en": ["an orange dahlia in bloom", "close-up of a dahlia against green leaves", "a flower in a garden"],
    },
    "camera": {
        "zh": ["拿着相机的摄影师黑白照片", "草地上架着三脚架相机的男人", "经典的黑白摄影师图像"],
        "en": ["black-and-white photo of a cameraman", "a man with a camera on a tripod in a field",
               "the classic cameraman test photo"],
    },
    "coins": {
        "zh": ["黑色背景上的几排古钱币", "古希腊硬币的黑白照片", "收藏的旧硬币"],
        "en": ["rows of old coins on a dark background", "black-and-white photo of ancient Greek coins",
               "a collection of antique coins"],
    },
    "moon": {
        "zh": ["月球表面的环形山", "月面的黑白照片", "布满陨石坑的月球地表"],
        "en": ["craters on the surface of the Moon", "black-and-white photo of the lunar surface",
               "the cratered ground of the Moon"],
    },
    "brick": {
        "zh": ["砖墙的纹理", "一面砖墙的特写", "灰色砖块整齐排列"],
        "en": ["brick wall texture", "close-up of a brick wall", "rows of grey bricks"],
    },
    "grass": {
        "zh": ["草地的纹理", "茂密草丛的特写", "一片青草"],
        "en": ["grass texture", "close-up of dense grass", "a patch of grass"],
    },
    "gravel": {
        "zh": ["碎石路面的纹理", "地上小石子的特写", "一片砾石"],
        "en": ["gravel texture", "close-up of small stones on the ground", "a patch of gravel"],
    },
}

WATERMARKS = {"latin": ["© Sluice Stock", "SAMPLE", "example.com", "PREVIEW ONLY"],
              "cjk": ["示例图库", "样张 禁止商用", "© 水闸图片"]}
SUBTITLES = [("今天的天气真好", "The weather is lovely today"), ("我们明天出发", "We leave tomorrow"),
             ("欢迎收看本期节目", "Welcome to this episode"), ("这是最后的机会", "This is the last chance")]
_CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)


# ---------------------------------------------------------------- photos

def _load_source(source: str) -> np.ndarray:
    kind, _, name = source.partition(":")
    if kind == "sklearn":
        from sklearn.datasets import load_sample_image
        return load_sample_image(name)
    import skimage.data
    if kind == "motorcycle":
        return skimage.data.stereo_motorcycle()[int(name)]
    return getattr(skimage.data, name)()


@functools.cache
def _photos() -> tuple[tuple[str, Image.Image], ...]:
    loaded = []
    for subject, source in _PHOTO_SOURCES:
        try:
            array = _load_source(source)
        except Exception as exc:  # a photo that needs a download we cannot make must not stop the demo
            log.warning("skipping photo %s (%s): %s", subject, source, exc)
            continue
        loaded.append((subject, Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")))
    if not loaded:
        raise RuntimeError("no sample photos could be loaded; install scikit-image and scikit-learn")
    return tuple(loaded)


def real_photos() -> list[tuple[str, Image.Image]]:
    """(subject, RGB image) for every bundled real photo, in a fixed order; the images are fresh copies."""
    return [(subject, image.copy()) for subject, image in _photos()]


# ---------------------------------------------------------------- fonts

@functools.cache
def cjk_font_path() -> str | None:
    """A font file with Chinese glyphs: $SLUICE_CJK_FONT, a known path, or fontconfig; None when absent."""
    override = os.environ.get("SLUICE_CJK_FONT")
    if override and Path(override).is_file():
        return override
    for candidate in _CJK_FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    if shutil.which("fc-list"):
        listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, check=False)
        files = sorted(line.split(":")[0].strip() for line in listed.stdout.splitlines() if line.strip())
        if files:
            return files[0]
    log.warning("no CJK font found (apt-get install fonts-wqy-microhei, or set SLUICE_CJK_FONT): "
                "Chinese overlay text is left out and latin text uses PIL's default font")
    return None


def _font(size: int, cjk: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont | None:
    path = cjk_font_path()
    if path:
        # BASIC layout: raqm is not needed for CJK or latin, and output should not depend on it.
        return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
    return None if cjk else ImageFont.load_default(size=size)


# ---------------------------------------------------------------- image variants and defects

def _short(image: Image.Image) -> int:
    return min(image.size)


def _variant(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random crop, rescale (short side 256..1024, little upscaling) and flip of a photo."""
    width, height = photo.size
    crop_w = int(width * rng.uniform(0.6, 1.0))
    crop_h = int(height * rng.uniform(0.6, 1.0))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    image = photo.crop((x0, y0, x0 + crop_w, y0 + crop_h))
    # Upscaling blurs; capping it keeps "clean" records sharp for the blur rules.
    target = min(int(rng.integers(256, 1025)), max(256, int(min(crop_w, crop_h) * 1.3)))
    scale = target / min(crop_w, crop_h)
    image = image.resize((max(1, round(crop_w * scale)), max(1, round(crop_h * scale))), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _from_float(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))


def _gaussian_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    from PIL import ImageFilter
    return image.filter(ImageFilter.GaussianBlur(max(2.5, _short(image) * rng.uniform(0.008, 0.015))))


def _motion_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Average of copies shifted along a line: a camera moved while the shutter was open."""
    length = int(np.clip(_short(image) * rng.uniform(0.04, 0.07), 13, 51))
    angle = rng.uniform(0, np.pi)
    array = np.asarray(image, dtype=np.float32)
    height, width = array.shape[:2]
    padded = np.pad(array, ((length, length), (length, length), (0, 0)), mode="edge")
    total = np.zeros_like(array)
    for t in np.linspace(-length / 2, length / 2, length):
        dx, dy = int(round(t * np.cos(angle))), int(round(t * np.sin(angle)))
        total += padded[length + dy:length + dy + height, length + dx:length + dx + width]
    return _from_float(total / length)


def _too_dark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _from_float(np.asarray(image, dtype=np.float32) * rng.uniform(0.05, 0.14))


def _overexposed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    bright = np.asarray(image, dtype=np.float32) * rng.uniform(2.2, 3.0) + rng.uniform(60, 110)
    # A dark photo (deep space) stays dim under gain alone; lift it until it is washed out too.
    lift = max(0.0, rng.uniform(205, 225) - float(np.clip(bright, 0, 255).mean()))
    return _from_float(bright + lift)


def _low_information(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Flat colour with a faint gradient and sensor noise: a blank frame or placeholder."""
    width, height = image.size
    colour = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0) + rng.normal(0, 20, 3)
    ramp = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None] * rng.uniform(0, 6)
    noise = rng.normal(0, rng.uniform(1.5, 3.0), (height, width, 3)).astype(np.float32)
    return _from_float(colour[None, None, :] + ramp + noise)


def _border_bars(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Letterbox (top/bottom) or pillarbox (left/right) bars covering 12-20% of each side."""
    width, height = image.size
    fraction = rng.uniform(0.12, 0.2)
    colour = (0, 0, 0) if rng.random() < 0.75 else (255, 255, 255)
    if rng.random() < 0.6:
        box = (0, int(height * fraction), width, height - int(height * fraction))
    else:
        box = (int(width * fraction), 0, width - int(width * fraction), height)
    framed = Image.new("RGB", image.size, colour)
    framed.paste(image.crop(box), box[:2])
    return framed


def _tiny(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    longest = int(rng.integers(40, 121))
    scale = longest / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


def _extreme_aspect(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A strip with aspect ratio 6:1 to 12:1, horizontal or vertical."""
    aspect = rng.uniform(6, 12)
    width, height = image.size
    if rng.random() < 0.7:
        strip_h = max(8, int(width / aspect))
        y0 = int(rng.integers(0, max(1, height - strip_h)))
        return image.crop((0, y0, width, min(height, y0 + strip_h)))
    strip_w = max(8, int(height / aspect))
    x0 = int(rng.integers(0, max(1, width - strip_w)))
    return image.crop((x0, 0, min(width, x0 + strip_w), height))


def _watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Semi-transparent text tiled diagonally over the whole image, as stock photo sites do."""
    pool = WATERMARKS["latin"] + (WATERMARKS["cjk"] if cjk_font_path() else [])
    text = pool[int(rng.integers(len(pool)))]
    size = max(12, _short(image) // 9)
    font = _font(size, cjk=True) or _font(size, cjk=False)
    alpha = int(rng.integers(80, 141))
    side = int(np.hypot(*image.size)) + size
    layer = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    draw = ImageDraw.Draw(layer)
    step_x, step_y = int(size * (len(text) * 0.7 + 3)), size * 3
    for row, y in enumerate(range(0, side, step_y)):
        for x in range(-(row % 2) * step_x // 2, side, step_x):
            draw.text((x, y), text, font=font, fill=(255, 255, 255, alpha))
    layer = layer.rotate(float(rng.uniform(20, 40)), resample=Image.Resampling.BICUBIC)
    left, top = (side - image.width) // 2, (side - image.height) // 2
    layer = layer.crop((left, top, left + image.width, top + image.height))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _caption_overlay(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A subtitle bar at the bottom with a Chinese and an English line (English only without a CJK font)."""
    zh, en = SUBTITLES[int(rng.integers(len(SUBTITLES)))]
    width, height = image.size
    bar_h = max(24, int(height * rng.uniform(0.16, 0.22)))
    lines = [zh, en] if cjk_font_path() else [en]
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle((0, height - bar_h, width, height), fill=(0, 0, 0, int(rng.integers(150, 221))))
    size = max(8, int(bar_h / 2.6))  # two lines fit the bar; one line keeps the same look
    # Shrink until the longest line fits, as subtitles on a narrow image do.
    while size > 8 and max(draw.textlength(line, font=_font(size, cjk=True) or _font(size, cjk=False))
                           for line in lines) > 0.92 * width:
        size = max(8, int(size * 0.85))
    font = _font(size, cjk=True) or _font(size, cjk=False)
    y = height - bar_h + (bar_h - int(size * 1.2) * len(lines)) / 2
    for line in lines:
        draw.text(((width - draw.textlength(line, font=font)) / 2, y), line, font=font, fill=(255, 255, 255, 255))
        y += int(size * 1.2)
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


DEFECTS = {
    "gaussian_blur": _gaussian_blur,
    "motion_blur": _motion_blur,
    "too_dark": _too_dark,
    "overexposed": _overexposed,
    "low_information": _low_information,
    "border_bars": _border_bars,
    "tiny": _tiny,
    "extreme_aspect": _extreme_aspect,
    "watermark": _watermark,
    "caption_overlay": _caption_overlay,
}


# ---------------------------------------------------------------- bytes

def non_image_bytes(rng: np.random.Generator, n_bytes: int) -> bytes:
    """Random bytes that Pillow cannot identify (redrawn if they happen to match a format's signature)."""
    while True:
        data = rng.bytes(n_bytes)
        try:
            Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            return data
        except Exception:  # noqa: BLE001 - a plugin accepted the header and then failed: redraw to be sure
            pass


def _encode(image: Image.Image, fmt: str, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpg":
        image.save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    elif fmt == "png":
        image.save(buffer, "PNG")
    else:
        image.save(buffer, "WEBP", quality=int(rng.integers(70, 91)), method=4)
    return buffer.getvalue()


def _broken_bytes(kind: str, photo: Image.Image, rng: np.random.Generator) -> bytes:
    if kind == "zero_byte":
        return b""
    if kind == "random_bytes":
        return non_image_bytes(rng, int(rng.integers(2_000, 20_000)))
    valid = _encode(_variant(photo, rng), "jpg", rng)
    return valid[: int(len(valid) * rng.uniform(0.3, 0.6))]


# ---------------------------------------------------------------- corpus plan

def _plan_kinds(n_images: int, rng: np.random.Generator) -> list[str]:
    counts = {kind: round(n_images * DEFECT_RATE) for kind in DEFECTS}
    counts |= {kind: round(n_images * BROKEN_RATE) for kind in BROKEN_KINDS}
    # A small corpus still shows every kind once, as long as clean records stay the majority.
    if 2 * len(counts) <= n_images // 2:
        counts = {kind: max(1, count) for kind, count in counts.items()}
    kinds = [kind for kind in sorted(counts) for _ in range(counts[kind])]
    kinds += ["clean"] * (n_images - len(kinds))
    return [kinds[i] for i in rng.permutation(len(kinds))]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    return names[int(rng.choice(len(names), p=np.array(list(weights.values())) / sum(weights.values())))]


def _caption(subject: str, lang: str, rng: np.random.Generator) -> str:
    templates = CAPTIONS[subject]
    zh = templates["zh"][int(rng.integers(len(templates["zh"])))]
    en = templates["en"][int(rng.integers(len(templates["en"])))]
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return zh + [" / ", " | ", "，"][int(rng.integers(3))] + en


def _write_record(index: int, subject: str, kind: str, photo: Image.Image, seed: int, out_dir: Path) -> dict:
    rng = np.random.default_rng([seed, index])  # per record, so a record does not depend on the others
    key = f"{index:06d}"
    fmt = "jpg" if kind in BROKEN_KINDS else _pick(rng, {"jpg": 0.84, "png": 0.08, "webp": 0.08})
    sidecars = _pick(rng, {"txt": 0.72, "txt+json": 0.10, "json": 0.10, "none": 0.08})
    lang = _pick(rng, {"zh": 0.45, "en": 0.45, "mixed": 0.10})
    caption = _caption(subject, lang, rng)
    record = {"path": f"{IMAGES_DIR}/part-{index // FILES_PER_PART:02d}/{key}.{fmt}", "key": key,
              "subject": subject, "kind": kind, "expect_error": BROKEN_KINDS.get(kind)}
    if kind in BROKEN_KINDS:
        data = _broken_bytes(kind, photo, rng)
        record |= {"format": None, "width": None, "height": None, "mean_luma": None}
    else:
        image = _variant(photo, rng)
        if kind != "clean":
            image = DEFECTS[kind](image, rng)
        data = _encode(image, fmt, rng)
        record |= {"format": {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt], "width": image.width,
                   "height": image.height, "mean_luma": round(float(np.asarray(image.convert("L")).mean()), 1)}
    image_path = out_dir / record["path"]
    image_path.parent.mkdir(parents=True, exist_ok=True)
    image_path.write_bytes(data)
    if "txt" in sidecars:
        image_path.with_suffix(".txt").write_bytes(caption.encode("utf-8"))
    if "json" in sidecars:
        sidecar = {"caption": caption, "url": f"https://example.com/{subject}/{key}.{fmt}", "key": key}
        image_path.with_suffix(".json").write_bytes(json.dumps(sidecar, ensure_ascii=False).encode("utf-8"))
    has_caption = sidecars != "none"
    record |= {"sidecars": [] if not has_caption else sidecars.split("+"),
               "lang": lang if has_caption else None, "caption": caption if has_caption else None}
    return record


def _clear_previous(out_dir: Path) -> None:
    """Remove a corpus this module wrote before; refuse to touch a folder it did not write."""
    images = out_dir / IMAGES_DIR
    if not images.exists() or not any(images.iterdir()):
        return
    if not (out_dir / MANIFEST_NAME).is_file():
        raise FileExistsError(f"{images} is not empty and has no {MANIFEST_NAME} beside it, so it was not "
                              f"written by write_demo_corpus; choose an empty --out folder")
    log.info("replacing the demo corpus in %s", out_dir)
    shutil.rmtree(images)


def write_demo_corpus(out_dir: Path, n_images: int = 240, seed: int = 0) -> dict:
    """Write the demo image folder, manifest.jsonl and summary.json; return the summary (counts per kind)."""
    out_dir = Path(out_dir)
    photos = _photos()
    _clear_previous(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_rng = np.random.default_rng([seed, 2**32 - 1])  # kinds and subjects; records draw from their own
    kinds = _plan_kinds(n_images, plan_rng)
    subjects = [photos[i % len(photos)] for i in plan_rng.permutation(n_images)]
    records = [_write_record(i, subject, kinds[i], photo, seed, out_dir)
               for i, (subject, photo) in enumerate(subjects)]
    with (out_dir / MANIFEST_NAME).open("w", encoding="utf-8", newline="\n") as manifest:
        for record in records:
            manifest.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")

    def count(field: str) -> dict:
        return dict(sorted(Counter(str(r[field]) for r in records).items()))

    summary = {
        "n_records": len(records), "seed": seed, "images_dir": IMAGES_DIR, "manifest": MANIFEST_NAME,
        "kinds": count("kind"), "languages": count("lang"), "formats": count("format"),
        "sidecars": dict(sorted(Counter("+".join(r["sidecars"]) or "none" for r in records).items())),
        "subjects": count("subject"), "cjk_font": cjk_font_path() is not None,
    }
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote %d records to %s", len(records), out_dir)
    return summary


def write_bench_jpegs(out_dir: Path, n: int, size: tuple[int, int] = (1024, 768), seed: int = 0) -> list[Path]:
    """Write n realistic JPEGs (q90) of exactly `size`, cropped from the real photos with slight noise."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    target_w, target_h = size
    paths = []
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        photo = photos[index % len(photos)][1]
        # Largest crop of the target aspect, shrunk a little at a random place, so images differ.
        scale = min(photo.width / target_w, photo.height / target_h) * rng.uniform(0.75, 1.0)
        crop_w, crop_h = int(target_w * scale), int(target_h * scale)
        x0 = int(rng.integers(0, photo.width - crop_w + 1))
        y0 = int(rng.integers(0, photo.height - crop_h + 1))
        image = photo.crop((x0, y0, x0 + crop_w, y0 + crop_h)).resize(size, Image.Resampling.BICUBIC)
        noise = rng.standard_normal((target_h, target_w, 3), dtype=np.float32) * 2.0
        noisy = np.asarray(image, dtype=np.float32) + noise
        path = out_dir / f"{index:06d}.jpg"
        _from_float(noisy).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the deterministic Sluice demo corpus (an image folder).")
    parser.add_argument("--out", type=Path, required=True, help="output folder (images/, manifest.jsonl)")
    parser.add_argument("--n", type=int, default=240, help="number of records (default 240)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(write_demo_corpus(args.out, n_images=args.n, seed=args.seed), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
