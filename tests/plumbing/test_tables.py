"""open_table, the one way to read a Sluice table without Spark."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.registry import TAG_KEY, SchemaMismatch, tag
from plumbing.tables import open_table


def tagged(name: str, n: int) -> pa.Table:
    field = pa.field("id", pa.string(), metadata={TAG_KEY: json.dumps(tag(name))})
    return pa.table({"id": pa.array([str(i) for i in range(n)])}).cast(pa.schema([field]))


def test_a_folder_a_file_and_the_tag_of_either(tmp_path):
    folder = tmp_path / "pool"
    (folder / "sub").mkdir(parents=True)
    pq.write_table(tagged("pool", 3), folder / "part-0.parquet")
    pq.write_table(tagged("pool", 2), folder / "sub" / "part-1.parquet")
    pq.write_table(tagged("pool", 9), folder / ".part-2.parquet.tmp.parquet")  # a writer's hidden temporary
    (folder / "_SUCCESS").write_text("")
    assert open_table(folder).count_rows() == 5
    assert open_table(folder, expected=("stage2", "pool")).count_rows() == 5
    assert open_table(folder / "part-0.parquet", expected="pool").count_rows() == 3
    with pytest.raises(SchemaMismatch, match="holds a 'pool' table, expected 'stage2' or 'raw'"):
        open_table(folder, expected=("stage2", "raw"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no parquet files"):
        open_table(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_table(tmp_path / "none")
