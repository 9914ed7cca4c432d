"""Scene text, the hard negatives: signs, posters, documents, painted words and book pages rendered into the
photo with perspective, lighting, texture and blur. Not a mark; must not be called `text_overlay`."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from detector_factory.backgrounds import photo_variant, procedural_background
from detector_factory.drawing import (_CJK, _fade, _fit_size, _font_path, _opposite, _paste, _phrase, _rgba,
                                      _text_image, _vivid)
from detector_factory.phrases import PAGE_WORDS, POSTERS, SIGNS


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
