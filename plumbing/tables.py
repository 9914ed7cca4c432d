"""Reading Sluice tables without Spark (pyarrow), for inspection, reports and small tools."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from schemas.registry import check_tag, read_tag


def open_table(path: str | Path, expected: str | tuple[str, ...] | None = None) -> ds.Dataset:
    """The table at `path` (a table folder, or one parquet file) as a pyarrow dataset: the one way Sluice reads
    a table without Spark. With `expected` (a table name, or several), its schema tag is checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        files = [str(path)]
    else:  # Spark's and our markers (_SUCCESS, _manifest.json) and hidden temporaries are not data
        files = sorted(str(p) for p in path.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    if not files:
        raise FileNotFoundError(f"{path} holds no parquet files; is it a table folder (e.g. <run>/raw)?")
    dataset = ds.dataset(files, format="parquet")
    if expected is not None:
        check_tag(table_tag(dataset), expected, where=str(path))
    return dataset


def table_tag(dataset: ds.Dataset) -> dict | None:
    import pyarrow.parquet as pq

    first = dataset.files[0]
    return read_tag(pq.read_schema(first))


def sample_rows(dataset: ds.Dataset, n: int, columns: list[str] | None = None, where=None) -> pa.Table:
    """The first `n` rows (optionally filtered), reading as little as possible."""
    scanner = dataset.scanner(columns=columns, filter=where)
    return scanner.head(n)


def majority_labels(df, task: str) -> dict[str, str]:
    """One answer per sample for `task` from a `labels` table (pandas): clean answers, or a strict majority of
    conflicting ones; skipped, empty and unknown answers count for nothing."""
    from collections import Counter

    sub = df[(df["task"] == task) & (df["flag"].isna() | (df["flag"] == "conflict"))]
    out = {}
    for sid, labels in sub.groupby("id")["label"]:
        (top, k), = Counter(labels).most_common(1)
        if k * 2 > len(labels) or len(labels) == 1:
            out[sid] = top
    return out


def read_majority_labels(path: str | Path, task: str) -> dict[str, str]:
    """`majority_labels` of the labels table at `path` (checked to be one)."""
    df = open_table(path, expected="labels").to_table(columns=["id", "task", "label", "flag"]).to_pandas()
    return majority_labels(df, task)
