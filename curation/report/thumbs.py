"""Thumbnails for the report: small JPEG files made from the raw table's bytes, looked up by id."""

from __future__ import annotations

import html
import io
import logging
from pathlib import Path

import pyarrow.compute as pc

from plumbing.tables import open_table

log = logging.getLogger(__name__)

THUMB_SIDE = 160


def images_by_id(raw_dir: Path, ids: list[str]) -> dict[str, bytes]:
    if not ids:
        return {}
    t = open_table(raw_dir).to_table(columns=["id", "image"], filter=pc.field("id").isin(ids))
    return dict(zip(t.column("id").to_pylist(), t.column("image").to_pylist()))


def write_thumb(data: bytes, path: Path) -> bool:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
        img = img.convert("RGB")
        img.thumbnail((THUMB_SIDE, THUMB_SIDE))
        img.save(path, quality=85)
        return True
    except Exception as e:  # a thumbnail is not worth failing the report for
        log.warning("no thumbnail for %s: %s", path.name, e)
        return False


def grid(rows: list[dict], images: dict[str, bytes], out_dir: Path, prefix: str, caption) -> str:
    """A grid of figures for `rows` (dicts with id and whatever `caption(row)` reads)."""
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    figures = []
    for i, r in enumerate(rows):
        data = images.get(r["id"])
        name = f"{prefix}_{i:03d}.jpg"
        if data is None or not write_thumb(data, thumbs / name):
            continue
        cap = html.escape(caption(r))
        figures.append(f'<figure><img src="thumbs/{name}" alt="{html.escape(r.get("key", ""))}">'
                       f'<figcaption title="{cap}">{cap}</figcaption></figure>')
    return '<div class="grid">' + "".join(figures) + "</div>" if figures else "<p>none</p>"
