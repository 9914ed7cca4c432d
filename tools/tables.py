"""Reading Sluice tables without Spark (pyarrow), for inspection, reports and small tools."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from schemas.registry import check_tag, read_tag


def open_table(path: str | Path, expected: str | None = None) -> ds.Dataset:
    """The table at `path` as a pyarrow dataset; with `expected`, its schema tag is checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
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
