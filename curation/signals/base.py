"""The scorer contract. A scorer only adds columns; deciding what to drop is a rule in config."""

from __future__ import annotations

from typing import ClassVar, Protocol

import pandas as pd
import pyarrow as pa


class Scorer(Protocol):
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]  # input columns, checked before Spark runs anything
    columns: ClassVar[dict[str, pa.DataType]]  # output columns; "error"/"error_kind" mark rows it cannot score
    # Optional `needs_image: ClassVar[bool]` (default True): False lets the scorer see rows that failed.

    def load(self) -> None:
        """Heavy imports and weights; called once per worker process."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Output columns for `batch`, on the same index."""
