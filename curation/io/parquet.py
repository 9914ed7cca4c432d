"""Parquet with image bytes (or image paths) in a column; each row is one record.

The record key is the key column when given, else `<file relative to the input>#<row index>`, read from
Spark's `_metadata` so it does not depend on how the files are split into tasks.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import pandas as pd

from curation.config import IngestConfig
from curation.io.files import TooLarge, read_bytes
from curation.io.plan import ReadPlan
from curation.io.records import batched, record


def _norm(uri: str) -> str:
    return uri.removeprefix("file:").lstrip("/") if uri.startswith("file:") else uri


def plan(spark, path: str, cfg: IngestConfig, source: str) -> ReadPlan:
    from pyspark.sql import functions as F

    pcfg = cfg.parquet
    df = spark.read.parquet(path)
    cols = df.columns
    wanted = {"image_column": pcfg.image_column, "path_column": pcfg.path_column,
              "caption_column": pcfg.caption_column, "key_column": pcfg.key_column}
    if not pcfg.image_column and not pcfg.path_column:
        raise ValueError("set ingest.parquet.image_column (bytes) or ingest.parquet.path_column (paths)")
    for opt, col in wanted.items():
        if col and col not in cols:
            raise ValueError(f"{path} has no column {col!r} (ingest.parquet.{opt}); its columns are {cols}. "
                             f"Fix it with --set ingest.parquet.{opt}=<column> (or null)")
    image = None
    if pcfg.image_column:
        image_col = F.col(pcfg.image_column)
        if df.schema[pcfg.image_column].dataType.typeName() == "struct":  # HF-style {bytes, path}
            image_col = image_col.getField("bytes")
        image = image_col.cast("binary")
    sel = [
        (image if image is not None else F.lit(None).cast("binary")).alias("image"),
        (F.col(pcfg.path_column) if pcfg.path_column else F.lit(None).cast("string")).alias("image_path"),
        (F.col(pcfg.caption_column).cast("string") if pcfg.caption_column else F.lit(None).cast("string"))
        .alias("caption"),
        (F.col(pcfg.key_column).cast("string") if pcfg.key_column else F.lit(None).cast("string")).alias("rkey"),
        F.col("_metadata.file_path").alias("file_path"),
        F.col("_metadata.row_index").alias("row_index"),
    ]
    units = df.select(*sel)
    if cfg.partitions:
        units = units.repartition(cfg.partitions)
    root = _norm(spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path).toUri().toString()).rstrip("/")
    return ReadPlan(units, lambda pdf: read(pdf, cfg, source, root), None, {"parquet": path})


def _key(file_path: str, row_index: int, root: str) -> str:
    rel = _norm(file_path)
    rel = posixpath.relpath(rel, root) if rel.startswith(root) and rel != root else posixpath.basename(rel)
    return f"{rel}#{row_index}"


def read(units: pd.DataFrame, cfg: IngestConfig, source: str, root: str) -> Iterator[pd.DataFrame]:
    def records():
        for u in units.itertuples(index=False):
            key = u.rkey if isinstance(u.rkey, str) and u.rkey else _key(u.file_path, int(u.row_index), root)
            uri = f"{u.file_path}#row={int(u.row_index)}"
            caption = u.caption if isinstance(u.caption, str) else None
            image = u.image if isinstance(u.image, (bytes, bytearray)) else None
            if image is None and isinstance(u.image_path, str) and u.image_path:
                try:
                    image = read_bytes(u.image_path, max_bytes=cfg.max_bytes)
                except TooLarge as e:
                    yield record(source, key, uri, caption=caption, error=str(e), error_kind="too_large")
                    continue
                except OSError as e:
                    yield record(source, key, uri, caption=caption, error=f"cannot read {u.image_path}: {e}",
                                 error_kind="read_error")
                    continue
            if image is None:
                yield record(source, key, uri, caption=caption, error="the row's image is null",
                             error_kind="missing_image")
                continue
            yield record(source, key, uri, image=bytes(image), caption=caption)

    yield from batched(records())
