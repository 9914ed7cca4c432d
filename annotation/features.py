"""The pool the loop selects from: ids, captions and the feature matrix (embeddings, else stage-1 signals)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from plumbing.probe_format import EMBEDDING_COLUMN, feature_matrix, signal_columns
from plumbing.tables import open_table


@dataclass
class Pool:
    ids: list[str]
    X: np.ndarray  # (N, D) float32, NaN where a signal is missing
    spec: dict  # the probe card's `input`
    meta: pd.DataFrame  # id, uri, caption; indexed like X

    def standardized(self) -> np.ndarray:
        """X with NaN filled by column medians and unit variance: the space diversity distances live in."""
        X = self.X.copy()
        med = np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0) if len(X) else np.zeros(X.shape[1])
        med = np.nan_to_num(med)
        X = np.where(np.isfinite(X), X, med)
        std = X.std(axis=0)
        return ((X - X.mean(axis=0)) / np.where(std > 0, std, 1)).astype(np.float32)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def feature_spec(schema: pa.Schema, prefer: str = "auto") -> dict:
    """Embeddings when the table has them (and `prefer` allows), else its numeric stage-1 signals."""
    if prefer in ("auto", "embedding") and EMBEDDING_COLUMN in schema.names:
        return {"kind": "embedding", "column": EMBEDDING_COLUMN, "dim": None}
    if prefer == "embedding":
        raise ValueError(f"the pool has no {EMBEDDING_COLUMN} column; run stage 2 first or use --features signals")
    types = {f.name: "numeric" if _numeric(f.type) else "other" for f in schema}
    cols = signal_columns(schema.names, types)
    if not cols:
        raise ValueError("the pool has neither img_emb nor numeric q_/s_/ocr_ signal columns; give a stage-1 "
                         "or stage-2 table as --pool")
    return {"kind": "signals", "columns": cols}


def load_pool(path: Path, prefer: str = "auto") -> Pool:
    """Rows of the table at `path` that can be scored (no `error`), with their features."""
    dataset = open_table(path)
    spec = feature_spec(dataset.schema, prefer)
    names = dataset.schema.names
    want = ["id"] + [c for c in ("uri", "alt_text", "error") if c in names]
    want += [spec["column"]] if spec["kind"] == "embedding" else spec["columns"]
    table = dataset.to_table(columns=want)
    df = table.to_pandas()
    if "error" in df.columns:
        df = df[df["error"].isna()]
    df = df.reset_index(drop=True)
    if spec["kind"] == "embedding":
        lengths = {len(b) for b in df[spec["column"]].dropna()}
        if len(lengths) != 1:
            raise ValueError(f"{EMBEDDING_COLUMN} values have lengths {sorted(lengths)[:5]} bytes; expected one "
                             f"float16 dimension for the whole table")
        spec = {**spec, "dim": lengths.pop() // 2}
    else:
        # A signal nobody computed (all null, e.g. OCR switched off) carries nothing to learn from.
        spec = {**spec, "columns": [c for c in spec["columns"] if df[c].notna().any()]}
    X = feature_matrix(df, spec)
    meta = pd.DataFrame({"id": df["id"].astype(str),
                         "uri": df["uri"] if "uri" in df.columns else None,
                         "caption": df["alt_text"] if "alt_text" in df.columns else None})
    return Pool(ids=meta["id"].tolist(), X=X, spec=spec, meta=meta)


def image_bytes(ids: list[str], *tables: Path) -> dict[str, bytes]:
    """The `image` bytes of `ids` from the first of `tables` that has an image column (pool, then raw)."""
    for path in tables:
        if path is None:
            continue
        dataset = open_table(path)
        if "image" not in dataset.schema.names:
            continue
        t = dataset.to_table(columns=["id", "image"], filter=ds.field("id").isin(list(ids)))
        return {i: b for i, b in zip(t.column("id").to_pylist(), t.column("image").to_pylist()) if b}
    return {}
