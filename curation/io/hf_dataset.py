"""Hugging Face datasets saved with `save_to_disk`, read as Arrow files without importing `datasets`.

A saved dataset is a folder per split (or one folder) with `state.json` naming its Arrow stream files
and `dataset_info.json` with the features. One task reads one Arrow file; keys are `<split>/<row>`.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa

from curation.config import IngestConfig
from curation.io.files import TooLarge, exists, filesystem, read_bytes
from curation.io.plan import ReadPlan, partitions_for
from curation.io.records import batched, record

_TEXT_COLUMNS = ("text", "caption", "alt_text", "sentence", "prompt")


def is_saved_dataset(path: str) -> bool:
    import pyarrow.fs as pafs

    return any(exists(posixpath.join(path, f)) == pafs.FileType.File for f in ("dataset_dict.json", "state.json"))


def _json(path: str) -> dict:
    return json.loads(read_bytes(path))


def _open_stream(path: str) -> pa.ipc.RecordBatchStreamReader:
    fs, p = filesystem(path)
    return pa.ipc.open_stream(fs.open_input_file(p))


def _splits(root: str, wanted) -> list[tuple[str, str]]:
    dd = posixpath.join(root, "dataset_dict.json")
    import pyarrow.fs as pafs

    if exists(dd) == pafs.FileType.File:
        names = _json(dd)["splits"]
        missing = [s for s in (wanted or ()) if s not in names]
        if missing:
            raise ValueError(f"{root} has splits {names}, not {missing}; fix ingest.hf.splits")
        return [(s, posixpath.join(root, s)) for s in names if not wanted or s in wanted]
    return [(_json(posixpath.join(root, "dataset_info.json")).get("split") or "train", root)]


def _columns(split_dir: str, cfg: IngestConfig) -> tuple[str, str | None]:
    features = _json(posixpath.join(split_dir, "dataset_info.json")).get("features", {})
    image = cfg.hf.image_column or next((n for n, f in features.items()
                                         if isinstance(f, dict) and f.get("_type") == "Image"), None)
    if image is None or image not in features:
        raise ValueError(f"{split_dir}: no image column (features: {list(features)}); set ingest.hf.image_column")
    text = cfg.hf.text_column or next((c for c in _TEXT_COLUMNS if c in features), None)
    if cfg.hf.text_column and cfg.hf.text_column not in features:
        raise ValueError(f"{split_dir}: no column {cfg.hf.text_column!r} (features: {list(features)}); "
                         f"fix ingest.hf.text_column")
    return image, text


def plan(spark, root: str, cfg: IngestConfig, source: str) -> ReadPlan:
    root = root.rstrip("/")
    units = []
    for split, split_dir in _splits(root, cfg.hf.splits):
        image_col, text_col = _columns(split_dir, cfg)
        offset = 0
        for f in _json(posixpath.join(split_dir, "state.json"))["_data_files"]:
            path = posixpath.join(split_dir, f["filename"])
            n = sum(b.num_rows for b in _open_stream(path))  # memory-mapped: counts rows, copies no data
            units.append({"split": split, "path": path, "offset": offset, "image_col": image_col,
                          "text_col": text_col})
            offset += n
    pdf = pd.DataFrame(units, columns=["split", "path", "offset", "image_col", "text_col"])
    n = partitions_for(spark, len(pdf), 1, cfg.partitions)
    sdf = spark.createDataFrame(
        pdf, "split string, path string, offset long, image_col string, text_col string").repartition(n)
    return ReadPlan(sdf, lambda u: read(u, cfg, source), None, {"arrow_files": len(pdf)})


def _image_bytes(value, cfg: IngestConfig, split_dir: str) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, error, error_kind) from an Image feature value {bytes, path}."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"]), None, None
        path = value.get("path")
        if path:
            full = path if path.startswith("/") or "://" in path else posixpath.join(split_dir, path)
            try:
                return read_bytes(full, max_bytes=cfg.max_bytes), None, None
            except TooLarge as e:
                return None, str(e), "too_large"
            except OSError as e:
                return None, f"cannot read {full}: {e}", "read_error"
    return None, "the row's image is null", "missing_image"


def read(units: pd.DataFrame, cfg: IngestConfig, source: str) -> Iterator[pd.DataFrame]:
    def records():
        for u in units.itertuples(index=False):
            row = int(u.offset)
            split_dir = posixpath.dirname(u.path)
            for batch in _open_stream(u.path):
                images = batch.column(u.image_col).to_pylist()
                texts = batch.column(u.text_col).to_pylist() if u.text_col else [None] * batch.num_rows
                for img, text in zip(images, texts):
                    key = f"{u.split}/{row}"
                    uri = f"{u.path}#row={row - int(u.offset)}"
                    data, err, kind = _image_bytes(img, cfg, split_dir)
                    caption = text if isinstance(text, str) else None
                    yield record(source, key, uri, image=data, caption=caption, error=err, error_kind=kind)
                    row += 1

    yield from batched(records())
