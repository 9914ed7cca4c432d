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
import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from detector_factory import backgrounds, drawing, overlays, phrases, scene_text, watermarks
from detector_factory.backgrounds import bars, collage_background, photo_variant, procedural_background
from detector_factory.overlays import caption_bar, meme, speech_bubble, sticker, subtitle, title
from detector_factory.scene_text import scene_document, scene_page, scene_painted, scene_poster, scene_sign
from detector_factory.watermarks import logo, wm_center, wm_corner, wm_diagonal, wm_logo, wm_tiled
from synthetic.sample_corpus import real_photos

log = logging.getLogger(__name__)

HEADS = ("watermark", "logo", "text_overlay")  # the detector's outputs, in this order
LABELS = HEADS + ("scene_text",)  # scene_text is not a head: it marks the hard negatives
HELDOUT_SUBJECTS = ("coffee", "rocket", "motorcycle_left", "motorcycle_right", "gravel")
PAGE_SUBJECTS = {"train": ("page",), "heldout": ("text",)}  # skimage photos of printed text
SPLITS = ("train", "heldout", "unseen")  # unseen: only a given folder's photos (split_photos)

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
    """A hash of this generator's sources (this module and the modules it draws with) and of `modules` that
    draw on top of it (e.g. detector_factory.clutter): part of every cache name of rendered or scored samples,
    so a changed generator (a font fix) renders afresh instead of reusing samples it no longer draws."""
    drawn_with = (phrases, drawing, backgrounds, watermarks, overlays, scene_text)
    files = [Path(__file__)] + [Path(m.__file__) for m in (*drawn_with, *modules)]
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
