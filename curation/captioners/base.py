"""The captioner contract, the prompts, and what every backend shares (requests, images, error rows).

A captioner is a scorer that writes long rows: `load()` once per worker, then `__call__(batch)` takes one
row per sample (`id`, `uri`, `image` bytes, `ocr_text`) and returns one row per (sample, style, lang) it
was asked for, with the caption text or the error that stopped it. A failed request is an error row,
never a missing one. Caption checks (`curation.steps.caption_checks`) run after, on the text.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

from schemas.captions import CAPTION_LANGS, CAPTION_STYLES, CAPTIONS

# Styles a model writes; `alt` is the record's own caption and needs no model.
MODEL_STYLES = tuple(s for s in CAPTION_STYLES if s != "alt")
COLUMNS = CAPTIONS.names
_VERSION = re.compile(r"^(?P<style>[a-z_]+)\.(?P<lang>[a-z]+)\.v(?P<v>\d+)\.txt$")


@dataclass(frozen=True)
class Request:
    """One caption to write: which sample, which style and language, and the prompt for it."""

    id: str
    uri: str | None
    style: str
    lang: str
    prompt: str
    prompt_version: str


@lru_cache(maxsize=None)
def prompt_versions() -> dict[tuple[str, str], list[int]]:
    """Versions of every shipped prompt file, by (style, lang)."""
    found: dict[tuple[str, str], list[int]] = {}
    for f in resources.files("curation.captioners").joinpath("prompts").iterdir():
        m = _VERSION.match(f.name)
        if m:
            found.setdefault((m["style"], m["lang"]), []).append(int(m["v"]))
    return {k: sorted(v) for k, v in found.items()}


@lru_cache(maxsize=None)
def load_prompt(style: str, lang: str, version: int | None = None) -> tuple[str, str]:
    """(prompt template, version tag like `short.en.v1`); the latest version unless one is named."""
    versions = prompt_versions().get((style, lang))
    if not versions:
        raise ValueError(f"no prompt file for style {style!r} in {lang!r}; expected "
                         f"curation/captioners/prompts/{style}.{lang}.v1.txt")
    v = versions[-1] if version is None else version
    if v not in versions:
        raise ValueError(f"prompt {style}.{lang} has versions {versions}, not v{v}")
    text = resources.files("curation.captioners").joinpath(f"prompts/{style}.{lang}.v{v}.txt").read_text("utf-8")
    return text.strip(), f"{style}.{lang}.v{v}"


def requests_for(row, styles: tuple[str, ...], langs: tuple[str, ...],
                 versions: dict[str, int] | None = None) -> tuple[list[Request], list[dict]]:
    """The requests for one sample, and rows for styles it cannot have (text-in-image without text)."""
    reqs, skipped = [], []
    ocr = row.get("ocr_text")
    ocr = ocr if isinstance(ocr, str) and ocr.strip() else None
    for style in styles:
        for lang in langs:
            template, tag = load_prompt(style, lang, (versions or {}).get(style))
            if "{ocr_text}" in template and ocr is None:
                skipped.append(caption_row(row["id"], row.get("uri"), style, lang, model=None,
                                           prompt_version=tag, drop_reason="no_text_in_image"))
                continue
            prompt = template.replace("{ocr_text}", ocr or "")
            reqs.append(Request(row["id"], row.get("uri"), style, lang, prompt, tag))
    return reqs, skipped


def caption_row(id: str, uri, style: str, lang: str, text: str | None = None, model: str | None = None,
                prompt_version: str | None = None, drop_reason: str | None = None,
                error: str | None = None) -> dict:
    return {"id": id, "uri": uri, "style": style, "lang": lang, "text": text, "model": model,
            "prompt_version": prompt_version, "drop_reason": drop_reason, "error": error}


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype(object)


def image_for_model(data: bytes, max_side: int):
    """RGB PIL image no larger than `max_side` (models resize anyway; smaller requests travel faster)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale, much cheaper
        im = ImageOps.exif_transpose(im).convert("RGB")
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def check_styles(styles, langs) -> None:
    bad = [s for s in styles if s not in MODEL_STYLES]
    if bad:
        raise ValueError(f"captioner styles {bad} are not model styles; choose from {list(MODEL_STYLES)}")
    bad = [lang for lang in langs if lang not in CAPTION_LANGS]
    if bad:
        raise ValueError(f"caption languages {bad} are not supported; choose from {list(CAPTION_LANGS)}")


class CaptionerBase:
    """What both backends share: turning a batch of samples into requests and rows.

    Subclasses implement `load()` and `_run(images, requests) -> list[(text | None, error | None)]`, in
    the order of `requests`; `images` maps sample id to a PIL image.
    """

    name = "captioner"
    requires = ("id", "image")

    def __init__(self, model: str, styles=MODEL_STYLES, langs=CAPTION_LANGS, image_max_side: int = 768,
                 prompt_versions: dict[str, int] | None = None):
        check_styles(styles, langs)
        self.model, self.styles, self.langs = model, tuple(styles), tuple(langs)
        self.image_max_side, self.prompt_versions = image_max_side, dict(prompt_versions or {})

    # Samples whose decoded images are held at once: 32 at 768 px is ~40 MB, a whole Arrow batch would be GBs.
    samples_per_chunk = 32

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        step = self.samples_per_chunk
        return pd.concat([self._chunk(batch.iloc[i : i + step]) for i in range(0, len(batch), step)] or
                         [rows_frame([])], ignore_index=True)

    def _chunk(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows, images, reqs = [], {}, []
        for rec in batch.to_dict("records"):
            mine, skipped = requests_for(rec, self.styles, self.langs, self.prompt_versions)
            rows += skipped
            if not mine:
                continue
            try:
                images[rec["id"]] = image_for_model(rec["image"], self.image_max_side)
            except Exception as e:  # an image the model cannot see: every caption of it is an error row
                why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(image bytes)", str(e))
                rows += [self._row(r, error=f"image could not be decoded: {type(e).__name__}: {why}") for r in mine]
                continue
            reqs += mine
        results = self._run(images, reqs) if reqs else []
        rows += [self._row(r, text=t, error=err) for r, (t, err) in zip(reqs, results, strict=True)]
        return rows_frame(rows)

    def __repr__(self) -> str:
        # The Spark adapter caches one loaded captioner per worker under this: it must name the config.
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in sorted(fields.items()))})"

    def _row(self, r: Request, text: str | None = None, error: str | None = None) -> dict:
        return caption_row(r.id, r.uri, r.style, r.lang, text=text, model=self.model,
                           prompt_version=r.prompt_version, error=error)

    def _run(self, images: dict, reqs: list[Request]) -> list[tuple[str | None, str | None]]:
        raise NotImplementedError

    def load(self) -> None:
        raise NotImplementedError
