"""The one scorer->Spark adapter: model loaded once per worker, failures become rows, not crashes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pyarrow as pa
import pytest

from curation.spark import apply_scorer, score_batch

pytestmark = pytest.mark.spark


@dataclass(frozen=True)
class LengthScorer:
    """A test scorer: text length; raises on the word 'boom'; logs every load() to a file."""

    log_path: str

    name: ClassVar[str] = "length"
    requires: ClassVar[tuple[str, ...]] = ("text",)
    columns: ClassVar[dict[str, pa.DataType]] = {"n_chars": pa.int32()}

    def load(self) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"{os.getpid()}\n")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if (batch["text"] == "boom").any():
            raise ValueError("cannot score boom")
        return pd.DataFrame({"n_chars": batch["text"].str.len()}, index=batch.index)


def test_model_loads_once_per_worker_and_bad_rows_become_errors(spark, tmp_path):
    log = tmp_path / "loads.txt"
    rows = [(str(i), "boom" if i % 50 == 7 else "x" * (i % 13), None, None) for i in range(400)]
    df = spark.createDataFrame(rows, "id string, text string, error string, error_kind string").repartition(8)
    out = {r["id"]: r for r in df.transform(apply_scorer, LengthScorer(str(log))).collect()}
    assert len(out) == 400
    for i in range(400):
        r = out[str(i)]
        if i % 50 == 7:
            assert r["error_kind"] == "scorer_error" and "cannot score boom" in r["error"] and r["n_chars"] is None
        else:
            assert r["error"] is None and r["n_chars"] == i % 13
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)), f"load() ran more than once in a worker: {pids}"


def test_missing_required_column_fails_before_running(spark, tmp_path):
    df = spark.createDataFrame([("1",)], "id string")
    with pytest.raises(ValueError, match="needs columns \\['text'\\]"):
        apply_scorer(df, LengthScorer(str(tmp_path / "x")))


def test_failed_and_dropped_rows_pass_through_unscored(tmp_path):
    s = LengthScorer(str(tmp_path / "x"))
    pdf = pd.DataFrame({"id": ["a", "b", "c"], "text": ["ab", "boom", "abc"],
                        "error": [None, "earlier failure", None], "error_kind": [None, "read_error", None],
                        "drop_reason": [None, None, "blurry"]})
    out = score_batch(s, pdf)
    assert out["n_chars"].tolist() == [2, None, None]
    assert out["error"].tolist() == [None, "earlier failure", None]  # the first cause is kept
