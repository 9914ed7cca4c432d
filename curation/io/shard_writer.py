"""Webdataset tar shards for training. THE FORMAT IS A CONTRACT with the trainer (docs/export-format.md).

Layout (under the export folder):

    shards/<bucket>/<prefix>-<NNNNNN>.tar   one aspect bucket per folder and per shard; NNNNNN from 000000
    index.parquet                           table `shard_index`: one row per exported sample
    _manifest.json, _SUCCESS

Each sample is two members with the same key (the sample id, 32 hex characters, no dots; a copy that an
exported mix repeats is keyed `<id>_<n>`):
`<key>.jpg`, RGB JPEG re-encoded with the long side <= max_side (never upscaled, never cropped), and
`<key>.json`: schemas.shards.SAMPLE_JSON_KEYS ("captions": {style: {lang: text}}), with the same keys and
value types in every sample ("" for a missing caption or string signal, NaN for a missing number).
Members are written with fixed metadata (mtime 0, uid 0, mode 0644), so the same input gives the same
bytes. A shard is written to a hidden temporary name and renamed when complete.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from schemas.shards import IMAGE_MEMBER, META_MEMBER, member_name

# The column holding each row's key in the shards (the id, or `<id>_<n>` for a mix's copies).
SHARD_KEY = "_shard_key"


def shard_path(bucket: str, prefix: str, number: int) -> str:
    """The shard's path relative to the export folder."""
    return f"shards/{bucket}/{prefix}-{number:06d}.tar"


def encode_image(data: bytes, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height): EXIF-upright RGB, long side <= max_side."""
    from PIL import Image, ImageOps

    from curation.signals.pillow import open_unlimited

    # Ingest already refused images over the configured pixel limit; Pillow's own must not apply again.
    with open_unlimited(data) as im:
        im.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale when it is much larger
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        im = _rgb(im)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=False)
    return buf.getvalue(), im.size[0], im.size[1]


def _rgb(im):
    """RGB; transparent pixels go onto white, not black (the default of convert)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")


def jsonable(v):
    """Plain JSON values: NaN -> null, numpy scalars and arrays -> Python, structs -> dicts."""
    if v is None:
        return None
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return None
    return v


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Writes samples that arrive sorted by (bucket, shard number, key); yields one index row per sample.

    One Spark task holds one or more whole shards (the job partitions by shard), so a shard is never
    written by two tasks.
    """

    def __init__(self, export_dir: str | Path, prefix: str, max_side: int, quality: int):
        self.root, self.prefix, self.max_side, self.quality = Path(export_dir), prefix, max_side, quality
        self._tar, self._path, self._tmp = None, None, None

    def write(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        try:
            for pdf in batches:
                yield pd.DataFrame([self._sample(rec) for rec in pdf.to_dict("records")], columns=INDEX_COLUMNS)
        finally:
            self._close()
        # Spark calls this per task: a task that wrote nothing still closes cleanly.

    def _sample(self, rec: dict) -> dict:
        path = shard_path(rec["aspect_bucket"], self.prefix, int(rec["shard_no"]))
        key = rec.get(SHARD_KEY) or rec["id"]
        row = {"id": rec["id"], "uri": rec.get("uri"), "shard": path, "key": key, "width": None,
               "height": None, "aspect_bucket": rec["aspect_bucket"], "styles": None,
               "source": rec.get("source"), "error": None}
        try:
            jpg, w, h = encode_image(rec["image"], self.max_side, self.quality)
        except Exception as e:  # an image that decoded at ingest but not now: skipped, counted, named
            row["error"] = f"re-encode failed: {type(e).__name__}: {e}"
            return row
        meta = json.loads(rec["meta"])
        meta.update(width=w, height=h)
        if path != self._path:
            self._open(path)
        _add(self._tar, member_name(key, IMAGE_MEMBER), jpg)
        _add(self._tar, member_name(key, META_MEMBER),
             json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        row.update(width=w, height=h, styles=meta["styles"])
        return row

    def _open(self, path: str) -> None:
        self._close()
        final = self.root / path
        final.parent.mkdir(parents=True, exist_ok=True)
        self._path, self._tmp = path, final.with_name("." + final.name + f".{os.getpid()}.tmp")
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)

    def _close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            os.replace(self._tmp, self.root / self._path)
        self._tar, self._path, self._tmp = None, None, None


INDEX_COLUMNS = ["id", "uri", "shard", "key", "width", "height", "aspect_bucket", "styles", "source", "error"]
