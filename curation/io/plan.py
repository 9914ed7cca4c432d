"""A reader's plan: the work units as a small DataFrame, and the function that turns units into records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class ReadPlan:
    units: object  # a Spark DataFrame of work units (paths, rows)
    read: Callable[[pd.DataFrame], Iterator[pd.DataFrame]]  # units batch -> record batches
    expected_records: int | None  # known before reading (files), or None (tar members)
    notes: dict = field(default_factory=dict)  # for the manifest: ignored files, orphan sidecars, ...


def partitions_for(spark, n_units: int, per_partition: int, override: int | None) -> int:
    if override:
        return override
    parallel = spark.sparkContext.defaultParallelism
    return max(1, min(max(n_units, 1), max(2 * parallel, -(-n_units // per_partition))))
