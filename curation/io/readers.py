"""Which reader an input needs, found from the path when the config says `format: auto`."""

from __future__ import annotations

import posixpath
import re

import pyarrow.fs as pafs

from curation.io import folder, hf_dataset, parquet, webdataset
from curation.io.files import exists, list_files

READERS = {"folder": folder.plan, "webdataset": webdataset.plan, "parquet": parquet.plan, "hf": hf_dataset.plan}


def detect(path: str) -> str:
    """folder | webdataset | parquet | hf, from what is at `path`; a clear error when nothing is."""
    if re.search(r"[*?\[]|\{\d+\.\.\d+\}", path):
        return "parquet" if path.rstrip("/").endswith(".parquet") else "webdataset"
    kind = exists(path)
    if kind == pafs.FileType.NotFound:
        raise FileNotFoundError(f"input {path} does not exist; give an image folder, .tar files, parquet or a "
                                f"dataset saved with datasets' save_to_disk")
    if kind == pafs.FileType.File:
        if path.endswith(".tar"):
            return "webdataset"
        if path.endswith(".parquet"):
            return "parquet"
        raise ValueError(f"input {path} is a single file that is neither .tar nor .parquet; "
                         f"give its folder, or set ingest.format")
    if hf_dataset.is_saved_dataset(path):
        return "hf"
    exts = {posixpath.splitext(p)[1].lower() for p, _ in list_files(path)[:10000]}
    if exts and exts <= {".parquet", ".crc", ""} and ".parquet" in exts:
        return "parquet"
    if ".tar" in exts and not exts & {".jpg", ".jpeg", ".png", ".webp"}:
        return "webdataset"
    return "folder"


def source_name(path: str) -> str:
    """A readable source name from the input path: its last plain component."""
    parts = [p for p in re.split(r"[/\\]", path.rstrip("/")) if p and not re.search(r"[*?\[{]", p)]
    name = parts[-1] if parts else "input"
    return re.sub(r"\.(tar|parquet)$", "", name) or "input"
