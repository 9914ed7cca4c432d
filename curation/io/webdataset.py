"""Webdataset tars as img2dataset writes them: `key.jpg` + `key.txt` + `key.json`, one task per tar.

Members are grouped by key (the name up to the first dot of the file name) in the order they stream,
as the webdataset library does. A member that cannot be read, or a tar cut short, becomes an error row;
everything read before it is kept.
"""

from __future__ import annotations

import glob
import json
import posixpath
import re
import tarfile
from collections.abc import Iterator

import pandas as pd

from curation.config import IngestConfig
from curation.io.files import exists, filesystem, list_files
from curation.io.plan import ReadPlan, partitions_for
from curation.io.records import batched, record

_GLOB = re.compile(r"[*?\[]")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand(spec: str) -> list[str]:
    """Tar paths from a directory, a glob, a brace range (`shard-{000..099}.tar`) or one file."""
    m = _BRACES.search(spec)
    if m:
        lo, hi = m.group(1), m.group(2)
        width = len(lo)
        return sorted(p for i in range(int(lo), int(hi) + 1)
                      for p in expand(spec[: m.start()] + str(i).zfill(width) + spec[m.end():]))
    if _GLOB.search(spec):
        return sorted(glob.glob(spec, recursive=True))
    import pyarrow.fs as pafs

    if exists(spec) == pafs.FileType.Directory:
        return [p for p, _ in list_files(spec) if p.endswith(".tar")]
    return [spec]


def plan(spark, spec: str, cfg: IngestConfig, source: str) -> ReadPlan:
    tars = expand(spec)
    if not tars:
        raise FileNotFoundError(f"no tar files match {spec!r}; give a folder of .tar files, a glob or a brace range")
    n = partitions_for(spark, len(tars), 1, cfg.partitions)
    units = spark.createDataFrame(pd.DataFrame({"tar": tars}), "tar string").repartition(n)
    return ReadPlan(units, lambda pdf: read(pdf, cfg, source), None, {"tars": len(tars)})


def _split_member(name: str) -> tuple[str, str]:
    d, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(d, stem), ext.lower()


def _build(source, tar_name, tar_path, key, parts, cfg) -> dict:
    wcfg = cfg.webdataset
    rkey = f"{tar_name}/{key}"
    image_ext = next((e for e in wcfg.image_extensions if e in parts), None)
    caption = parts.get("txt")
    if caption is None and "json" in parts:
        try:
            meta = json.loads(parts["json"])
            caption = next((meta[k] for k in wcfg.json_caption_keys if isinstance(meta.get(k), str)), None)
        except ValueError:
            caption = None
    uri = f"{tar_path}::{key}.{image_ext}" if image_ext else f"{tar_path}::{key}"
    if image_ext is None and "_too_large" in parts:
        return record(source, rkey, uri, caption=caption, error_kind="too_large",
                      error=f"image member is {parts['_too_large']} bytes, above ingest.max_bytes={cfg.max_bytes}")
    if image_ext is None:
        found = ", ".join(sorted(parts)) or "nothing"
        return record(source, rkey, uri, caption=caption, error=f"no image member for key {key} (found {found})",
                      error_kind="missing_image")
    return record(source, rkey, uri, image=parts[image_ext], caption=caption)


def read_tar(tar_path: str, cfg: IngestConfig, source: str) -> Iterator[dict]:
    tar_name = posixpath.splitext(posixpath.basename(tar_path))[0]
    fs, p = filesystem(tar_path)
    key, parts, seen = None, {}, {}
    in_data = False  # True while a member's bytes are being read: a failure then breaks the current record
    try:
        with fs.open_input_stream(p) as stream, tarfile.open(fileobj=stream, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                mkey, ext = _split_member(member.name)
                if mkey != key:
                    if key is not None:
                        yield _build(source, tar_name, tar_path, key, parts, cfg)
                    # A key that comes back later is a second record, not a continuation.
                    seen[mkey] = seen.get(mkey, 0) + 1
                    key = mkey if seen[mkey] == 1 else f"{mkey}~{seen[mkey]}"
                    parts = {}
                if member.size > cfg.max_bytes:
                    parts["_too_large"] = member.size
                    continue
                in_data = True
                parts[ext] = tf.extractfile(member).read()
                if len(parts[ext]) != member.size:
                    raise tarfile.ReadError(f"member {member.name} is cut short")
                in_data = False
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        if key is not None and not in_data:
            # The header after a complete record is broken: keep that record, report the unknown rest.
            yield _build(source, tar_name, tar_path, key, parts, cfg)
            rkey, where = f"{tar_name}/<after {key}>", f"{tar_path}::<after {key}>"
        elif key is not None:
            rkey, where = f"{tar_name}/{key}", f"{tar_path}::{key}"
        else:
            rkey, where = f"{tar_name}/<start>", tar_path
        yield record(source, rkey, where, error=f"tar unreadable at {rkey}: {e}", error_kind="broken_tar")
        return
    if key is not None:
        yield _build(source, tar_name, tar_path, key, parts, cfg)


def read(units: pd.DataFrame, cfg: IngestConfig, source: str) -> Iterator[pd.DataFrame]:
    def records():
        for tar in units["tar"]:
            yield from read_tar(tar, cfg, source)

    yield from batched(records())
