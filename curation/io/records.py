"""What every reader yields: one record per input item, before decoding.

Readers only find and read bytes; decoding and caption handling are scorers that run after them, so
every reader gets the same checks. A record a reader cannot read is still yielded, with `error`.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import xxhash

RECORD = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("key", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("image", pa.binary()),
        pa.field("caption_raw", pa.binary()),  # caption bytes as found; decoded by the alt-text scorer
        pa.field("error", pa.string()),
        pa.field("error_kind", pa.string()),
    ]
)


def record_id(source: str, key: str) -> str:
    """Stable id of a record: the same (source, key) gives the same id in every run and partitioning."""
    return xxhash.xxh3_128_hexdigest(f"{source}\x00{key}".encode("utf-8"))


def record(source: str, key: str, uri: str, image: bytes | None = None, caption: bytes | str | None = None,
           error: str | None = None, error_kind: str | None = None) -> dict:
    if isinstance(caption, str):
        caption = caption.encode("utf-8")
    if image is None and error is None:
        error, error_kind = "the record has no image", "missing_image"
    return {
        "id": record_id(source, key), "source": source, "key": key, "uri": uri,
        "image": image, "caption_raw": caption, "error": error, "error_kind": error_kind,
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RECORD.names)


def batched(rows, size: int = 256):
    """Yield DataFrames of at most `size` records, so one huge tar never sits in memory whole."""
    buf = []
    for r in rows:
        buf.append(r)
        if len(buf) >= size:
            yield frame(buf)
            buf = []
    if buf:
        yield frame(buf)
