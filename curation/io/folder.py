"""Image folders: every image file under a root, captions from sidecar `NAME.txt` / `NAME.json`."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator

import pandas as pd

from curation.config import IngestConfig
from curation.io.files import TooLarge, list_files, read_bytes
from curation.io.plan import ReadPlan, partitions_for
from curation.io.records import batched, record


def _split_ext(path: str) -> tuple[str, str]:
    stem, ext = posixpath.splitext(path)
    return stem, ext[1:].lower()


def plan(spark, root: str, cfg: IngestConfig, source: str) -> ReadPlan:
    fcfg = cfg.folder
    root = root.rstrip("/")
    images, sidecars, ignored = [], {}, []
    for path, _size in list_files(root):
        stem, ext = _split_ext(path)
        if ext in fcfg.extensions:
            images.append(path)
        elif ext in fcfg.caption_extensions:
            sidecars.setdefault(stem, {})[ext] = path
        else:
            ignored.append(path)
    used = set()
    rows = []
    for path in images:
        stem, _ = _split_ext(path)
        side = sidecars.get(stem, {})
        used.add(stem)
        rows.append({"path": path, "key": posixpath.relpath(path, root),
                     "txt": side.get("txt"), "json": side.get("json")})
    orphans = sorted(p for stem, d in sidecars.items() if stem not in used for p in d.values())
    units = pd.DataFrame(rows, columns=["path", "key", "txt", "json"])
    n = partitions_for(spark, len(units), cfg.records_per_partition, cfg.partitions)
    sdf = spark.createDataFrame(units, "path string, key string, txt string, json string").repartition(n)
    notes = {"image_files": len(images), "ignored_files": len(ignored), "ignored_examples": ignored[:10],
             "orphan_sidecars": len(orphans), "orphan_examples": orphans[:10]}
    return ReadPlan(sdf, lambda pdf: read(pdf, cfg, source), len(images), notes)


def _caption(txt: str | None, js: str | None, keys: tuple[str, ...]) -> bytes | None:
    """The caption bytes: the .txt sidecar, else the first caption key of the .json sidecar."""
    if txt:
        try:
            return read_bytes(txt, max_bytes=1 << 20)
        except OSError:
            pass
    if js:
        try:
            meta = json.loads(read_bytes(js, max_bytes=1 << 20))
        except (OSError, ValueError):
            return None
        if isinstance(meta, dict):
            for k in keys:
                if isinstance(meta.get(k), str):
                    return meta[k].encode("utf-8")
    return None


def read(units: pd.DataFrame, cfg: IngestConfig, source: str) -> Iterator[pd.DataFrame]:
    def records():
        for u in units.itertuples(index=False):
            caption = _caption(u.txt, u.json, cfg.folder.json_caption_keys)
            try:
                image = read_bytes(u.path, max_bytes=cfg.max_bytes)
            except TooLarge as e:
                yield record(source, u.key, u.path, caption=caption, error=str(e), error_kind="too_large")
                continue
            except OSError as e:
                yield record(source, u.key, u.path, caption=caption, error=f"cannot read file: {e}",
                             error_kind="read_error")
                continue
            yield record(source, u.key, u.path, image=image, caption=caption)

    yield from batched(records())
