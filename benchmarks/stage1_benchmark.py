"""A labelled stage-1 benchmark: an image folder of 1024x768 JPEGs with known defects, from held-out photos.

    python -m benchmarks.stage1_benchmark --out DIR [--n-per-class 40] [--seed 1234]

Writes `DIR/images/<class>/<kind>-<nnnn>.jpg` and `DIR/labels.jsonl`, one line per image:
`{"key": "<class>/<kind>-<nnnn>.jpg", "defects": [rule names], "kind": ..., "class": ..., "subject": ...}`.
`key` is the path relative to `images/`, which is the `key` ingest writes for `--input DIR/images`, so the
file is what `sluice curate calibrate --labels` reads.

Classes, `n_per_class` images each, kinds taken in turn inside a class:

| class | kinds | defects (rule names) |
|---|---|---|
| clean | clean | [] |
| blurry | gaussian_blur, motion_blur | [blurry] |
| bad_exposure | too_dark, overexposed | [bad_exposure] |
| low_information | low_information | [low_information] |
| border | border_bars | [border] |
| watermark | wm_center, wm_diagonal, wm_tiled, wm_corner, wm_logo | [watermark] |
| text_overlay | caption_bar, subtitle, meme, sticker, speech_bubble, title | [text_overlay] |
| scene_text | scene_sign, scene_poster, scene_document, scene_painted, scene_page | [] (must be kept) |

Photos are only the held-out subjects of `detector_factory.structure_data.HELDOUT_SUBJECTS` (and its held-out page
photo), which the structure detector never trains on. Every record draws from its own generator seeded
with `(seed, STREAM_TAG, class, index)`: the detector's training and validation sets draw from
`(seed, index)` streams, so no stream is shared whatever seeds are chosen, and records do not depend on
each other. The defects are the demo corpus's (`synthetic.sample_corpus.DEFECTS`) and the structure
renderers of `detector_factory.structure_data`.

Order of effects, as a camera and an editor would apply them: crop and scale the photo to 1024x768;
optical defects (blur, exposure); sensor grain; then edits (bars, watermarks, overlays, scene text placed
in the scene); JPEG at quality 80..95. Low-information frames carry their own noise.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

SIZE = (1024, 768)
IMAGES_DIR = "images"
LABELS_NAME = "labels.jsonl"
STREAM_TAG = 0x53544731  # "STG1": keeps these streams apart from every (seed, index) stream of detector_factory.structure_data
DEFAULT_SEED = 1234
GRAIN_SIGMA = 1.5  # sensor noise, grey levels at 1024x768
JPEG_QUALITY = (80, 96)  # [lo, hi)

# class -> (kinds taken in turn, defect labels = rule names)
CLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "clean": (("clean",), ()),
    "blurry": (("gaussian_blur", "motion_blur"), ("blurry",)),
    "bad_exposure": (("too_dark", "overexposed"), ("bad_exposure",)),
    "low_information": (("low_information",), ("low_information",)),
    "border": (("border_bars",), ("border",)),
    "watermark": (("wm_center", "wm_diagonal", "wm_tiled", "wm_corner", "wm_logo"), ("watermark",)),
    "text_overlay": (("caption_bar", "subtitle", "meme", "sticker", "speech_bubble", "title"), ("text_overlay",)),
    "scene_text": (("scene_sign", "scene_poster", "scene_document", "scene_painted", "scene_page"), ()),
}
RULES = ("blurry", "bad_exposure", "low_information", "border", "watermark", "text_overlay")
_OPTICAL = {"gaussian_blur", "motion_blur", "too_dark", "overexposed"}  # before the sensor grain


def key_for(cls: str, kind: str, index: int) -> str:
    return f"{cls}/{kind}-{index:04d}.jpg"


def _base(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 4:3 crop (80-100% of the largest one) of `photo`, maybe flipped, scaled to SIZE."""
    tw, th = SIZE
    scale = min(photo.width / tw, photo.height / th) * rng.uniform(0.8, 1.0)
    cw, ch = int(tw * scale), int(th * scale)
    x0 = int(rng.integers(0, photo.width - cw + 1))
    y0 = int(rng.integers(0, photo.height - ch + 1))
    image = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize(SIZE, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _grain(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    noise = rng.normal(0, GRAIN_SIGMA, (image.height, image.width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(np.asarray(image, dtype=np.float32) + noise), 0, 255).astype(np.uint8))


def _scene_page(image: Image.Image, rng: np.random.Generator, page: Image.Image) -> Image.Image:
    """The held-out page photo as a sheet in the scene.

    `structure_data.scene_page` also returns the bare page half the time; that one is 448x172 pixels and
    would have to be enlarged 2-6 times to fill 1024x768, which makes a blurry image, not a scene.
    """
    from detector_factory.backgrounds import photo_variant
    from detector_factory.scene_text import _place_in_scene

    return _place_in_scene(image, photo_variant(page.convert("RGB"), rng).convert("RGBA"), rng, (0.35, 0.8))


def render(photo: Image.Image, kind: str, rng: np.random.Generator, page: Image.Image) -> Image.Image:
    """One benchmark image of `kind` over `photo`, exactly SIZE."""
    from detector_factory import structure_data as sd
    from synthetic.sample_corpus import DEFECTS

    image = _base(photo, rng)
    if kind in _OPTICAL:
        image = DEFECTS[kind](image, rng)
    if kind != "low_information":
        image = _grain(image, rng)
    if kind in ("low_information", "border_bars"):
        image = DEFECTS[kind](image, rng)
    elif kind == "scene_page":
        image = _scene_page(image, rng, page)
    elif kind in sd.RENDER:
        image = sd.RENDER[kind](image, rng)
    elif kind not in _OPTICAL:
        raise ValueError(f"unknown benchmark kind {kind!r}")
    if image.size != SIZE:  # every renderer keeps the size; a change would be a generator bug
        raise AssertionError(f"{kind} changed the size to {image.size}")
    return image.convert("RGB")


def plan(n_per_class: int) -> list[tuple[str, str, int, int]]:
    """(class, kind, class number, index in class) of every record, in writing order."""
    return [(cls, kinds[i % len(kinds)], c, i)
            for c, (cls, (kinds, _)) in enumerate(CLASSES.items()) for i in range(n_per_class)]


def make_record(photos, page, cls: str, kind: str, c: int, index: int, seed: int) -> tuple[bytes, dict]:
    """The JPEG bytes and label record of one image; depends only on its own arguments."""
    rng = np.random.default_rng([seed, STREAM_TAG, c, index])
    subject, photo = photos[int(rng.integers(len(photos)))]
    image = render(photo, kind, rng, page)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(rng.integers(*JPEG_QUALITY)))
    label = {"key": key_for(cls, kind, index), "defects": list(CLASSES[cls][1]), "kind": kind, "class": cls,
             "subject": subject if kind != "scene_page" else f"{subject}+text"}
    return buf.getvalue(), label


def write_benchmark(out_dir: Path, n_per_class: int = 40, seed: int = DEFAULT_SEED) -> Path:
    """Write `out_dir/images/...` and `out_dir/labels.jsonl`; return the path of labels.jsonl."""
    from detector_factory.structure_data import split_photos

    out_dir = Path(out_dir)
    images = out_dir / IMAGES_DIR
    if images.exists():
        if not (out_dir / LABELS_NAME).is_file():
            raise FileExistsError(f"{images} exists without {LABELS_NAME} beside it, so this module did not "
                                  "write it; choose an empty --out folder")
        shutil.rmtree(images)
    photos, pages = split_photos("heldout")
    page = pages[0]
    labels = []
    for cls, kind, c, index in plan(n_per_class):
        data, label = make_record(photos, page, cls, kind, c, index, seed)
        path = images / label["key"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        labels.append(label)
    out = out_dir / LABELS_NAME
    with out.open("w", encoding="utf-8", newline="\n") as f:
        for label in labels:
            f.write(json.dumps(label, ensure_ascii=False, sort_keys=True) + "\n")
    log.info("wrote %d images (%s) to %s", len(labels), dict(Counter(lb["class"] for lb in labels)), images)
    return out


def read_labels(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- scoring a run against the labels


def labelled_rows(table_dir: Path, labels_path: Path):
    """The labelled rows of a stage table (pandas), with the label's defects, class and kind joined on key."""
    import pandas as pd

    from plumbing.tables import open_table

    table = open_table(table_dir).to_table().to_pandas()
    labels = pd.DataFrame(read_labels(labels_path))
    rows = labels.merge(table, on="key", how="left", suffixes=("", "_table"), indicator=True)
    missing = rows.loc[rows["_merge"] != "both", "key"].tolist()
    if missing:
        raise ValueError(f"{len(missing)} labelled keys are not in {table_dir} (e.g. {missing[:3]}); was it run "
                         f"on the images/ folder beside {labels_path}?")
    return rows.drop(columns="_merge")


def _reasons(value) -> set[str]:
    return set(value) if value is not None and not isinstance(value, float) else set()


def rule_scores(rows, rules=RULES) -> dict[str, dict]:
    """Precision and recall of each rule on usable labelled rows, two ways.

    `any`: the rule is among the row's `drop_reasons` (what `sluice curate calibrate` reports: each rule on
    its own). `first`: the rule is the row's `drop_reason`, the one reason the pipeline reports when
    several rules fail (config order: low_information before bad_exposure before blurry, so a black
    frame is low-information, not also blurry).
    """
    usable = rows[rows["error"].isna()] if "error" in rows else rows
    out = {}
    for rule in rules:
        pos = usable["defects"].map(lambda d: rule in d)
        flags = {"any": usable["drop_reasons"].map(lambda r: rule in _reasons(r)),
                 "first": usable["drop_reason"] == rule}
        row = {"labelled": int(pos.sum())}
        for how, flagged in flags.items():
            tp = int((flagged & pos).sum())
            row[f"flagged_{how}"] = int(flagged.sum())
            row[f"precision_{how}"] = tp / int(flagged.sum()) if flagged.sum() else None
            row[f"recall_{how}"] = tp / int(pos.sum()) if pos.sum() else None
        out[rule] = row
    return out


def scene_text_drops(rows) -> dict:
    """How scene-text images (no defect: they must be kept) fare: dropped as text_overlay, dropped at all."""
    scene = rows[rows["class"] == "scene_text"]
    as_overlay = scene["drop_reasons"].map(lambda r: "text_overlay" in _reasons(r))
    dropped = scene["drop_reason"].notna() | scene["error"].notna()
    return {"n": int(len(scene)), "dropped_as_text_overlay": int(as_overlay.sum()),
            "false_drop_rate_text_overlay": float(as_overlay.mean()) if len(scene) else None,
            "dropped_any": int(dropped.sum()), "false_drop_rate_any": float(dropped.mean()) if len(scene) else None,
            "by_kind": {k: {"n": int(len(g)), "as_text_overlay": int(as_overlay[g.index].sum()),
                            "dropped_any": int(dropped[g.index].sum())} for k, g in scene.groupby("kind")}}


def outcomes(rows) -> dict[str, dict[str, int]]:
    """Per class: how many rows were kept, failed, or dropped for each reason."""
    out: dict[str, dict[str, int]] = {}
    for cls, g in rows.groupby("class", sort=False):
        what = g["drop_reason"].where(g["drop_reason"].notna(), "kept")
        if "error" in g:
            what = what.where(g["error"].isna(), "error")
        out[str(cls)] = dict(Counter(what))
    return out


_TERM = re.compile(r"([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)", re.I)
_OPS = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}


class _Formula:
    """A keep_if of comparisons joined by AND, OR, NOT and parentheses, over numpy columns.

    Each `signal op number` becomes an atom, so thresholds can be swapped without parsing again. Like
    Spark's `decide`, a row where a compared signal is null is kept. Anything else in the expression (a
    function call, a column compared to a column) makes it unsupported: ValueError.
    """

    def __init__(self, keep_if: str):
        self.keep_if = keep_if
        self.terms = list(_TERM.finditer(keep_if))
        atoms, last = [], 0
        for j, m in enumerate(self.terms):
            atoms += [keep_if[last:m.start()], f"(_t{j})"]
            last = m.end()
        py = "".join(atoms + [keep_if[last:]])
        for sql, op in (("AND", "&"), ("OR", "|"), ("NOT", "~")):  # precedence NOT > AND > OR, as in SQL
            py = re.sub(rf"\b{sql}\b", op, py, flags=re.I)
        if re.sub(r"_t\d+|[()&|~\s]", "", py):
            raise ValueError(f"keep_if {keep_if!r} is not only comparisons of signals with numbers")
        self.code = compile(py, "<keep_if>", "eval")

    @property
    def values(self) -> list[float]:
        return [float(m.group(3)) for m in self.terms]

    def render(self, values) -> str:
        out, last = [], 0
        for m, v in zip(self.terms, values):
            out += [self.keep_if[last:m.start(3)], f"{v:.4g}"]
            last = m.end(3)
        return "".join(out + [self.keep_if[last:]])

    def flags(self, rows, values=None) -> np.ndarray:
        """(n,) True where the rule drops the row."""
        values = self.values if values is None else values
        env, null = {}, np.zeros(len(rows), bool)
        for j, (m, v) in enumerate(zip(self.terms, values)):
            col = rows[m.group(1)].to_numpy(dtype=float)
            null |= np.isnan(col)
            env[f"_t{j}"] = _OPS[m.group(2)](col, v)
        return ~eval(self.code, {"__builtins__": {}}, env) & ~null  # noqa: S307 - atoms and &|~ only


def rule_flags(rows, keep_if: str) -> np.ndarray:
    """Rows a keep_if (comparisons of signals with numbers, AND, OR, NOT) would drop; null keeps."""
    return _Formula(keep_if).flags(rows)


def suggest_keep_if(rows, rule: str, keep_if: str, target: float = 0.9, earlier: tuple[str, ...] = (),
                    passes: int = 3) -> dict | None:
    """Thresholds of every comparison in `keep_if` tuned together for the best recall at precision >= target.

    `sluice curate calibrate` sweeps only top-level `signal op number` terms one at a time; a compound rule
    (blurry: `... AND NOT (q_motion_blur >= 0.4 AND q_sharpness < 20)`) has terms it cannot reach. Here
    each term's threshold is swept over midpoints of the observed values, the others held, for a few
    passes (coordinate ascent), starting with each term in turn; of equally good results the one that
    changes the fewest thresholds the least wins. Precision and recall are of the first reason: rows that
    a rule in `earlier` (the rules before this one in config order) already drops are not this rule's to
    flag. A suggestion from a labelled set of this size is a hint to check on more data, not a value to
    copy blindly. None when the expression is not made of such comparisons.
    """
    from itertools import permutations

    usable = rows[rows["error"].isna()] if "error" in rows else rows
    try:
        f = _Formula(keep_if)
    except ValueError:
        return None
    pos = usable["defects"].map(lambda d: rule in d).to_numpy()
    in_play = ~usable["drop_reasons"].map(lambda r: bool(_reasons(r) & set(earlier))).to_numpy()
    if not f.terms or not pos.any() or any(m.group(1) not in usable for m in f.terms):
        return None

    def score(values):
        flagged = f.flags(usable, values) & in_play
        tp = int((flagged & pos).sum())
        p = tp / flagged.sum() if flagged.sum() else 0.0
        r = tp / pos.sum()
        return (bool(p >= target), r if p >= target else p, p), p, r

    start = f.values
    candidates = []
    for j, m in enumerate(f.terms):
        seen = np.unique(usable[m.group(1)].dropna().to_numpy(dtype=float))
        mids = (seen[1:] + seen[:-1]) / 2
        candidates.append(np.quantile(mids, np.linspace(0, 1, 300)) if mids.size > 300 else mids)

    def change(values) -> tuple[int, float]:
        rel = [abs(v - v0) / max(abs(v0), 1e-6) for v, v0 in zip(values, start)]
        return sum(r > 1e-9 for r in rel), sum(rel)

    results = []
    for order in list(permutations(range(len(f.terms))))[:24]:
        values, best = list(start), score(start)
        for _ in range(passes):
            changed = False
            for j in order:
                for v in candidates[j]:
                    trial = values[:j] + [float(v)] + values[j + 1:]
                    s = score(trial)
                    if s[0] > best[0]:
                        best, values, changed = s, trial, True
            if not changed:
                break
        n, rel = change(values)
        results.append(((best[0], -n, -rel), best, values))
    _, best, values = max(results, key=lambda r: r[0])
    now = score(start)
    return {"rule": rule, "current": {"keep_if": keep_if, "precision": now[1], "recall": now[2]},
            "suggested": {"keep_if": f.render(values), "precision": best[1], "recall": best[2],
                          "meets_target": best[0][0]}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the labelled stage-1 benchmark (1024x768 JPEGs + labels.jsonl) "
                                            "from held-out photos.")
    p.add_argument("--out", type=Path, required=True, help="output folder (images/, labels.jsonl)")
    p.add_argument("--n-per-class", type=int, default=40, help="images per class (default 40)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = write_benchmark(args.out, args.n_per_class, args.seed)
    print(f"{path}\nrun: sluice curate run --input {args.out / IMAGES_DIR} --output RUN\n"
          f"then: sluice curate calibrate --output RUN --labels {path}")


if __name__ == "__main__":
    main()
