"""Balanced downsampling over a tree of groups (sources) and clusters, quality-ranked inside each leaf.

The budget N is split top-down: at every node the children's shares follow size**T (T = 1 keeps the
distribution, T < 1 lifts the tail, T = 0 gives equal shares), capped by each child's size, and what a
capped child cannot use flows to its uncapped siblings (water-filling). Integer quotas come from largest
remainders with ties broken by the node's key, so the split is a pure function of the counts.

Only counts reach the driver (one row per leaf, O(clusters), never O(rows)). Inside a leaf rows are ranked
by the quality keys, then by xxhash64(id, seed), then id: a total order that does not depend on how the
data is partitioned, so the same input gives the same sample on 1 or 1000 partitions. Rows not kept are
dropped with reason `downsampled`; failed and already-dropped rows pass through untouched.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

STAGE = "downsample"
REASON = "downsampled"

_SORT_KEY = re.compile(r"^(?P<expr>.+?)(?:\s+(?P<dir>ASC|DESC))?(?:\s+NULLS\s+(?P<nulls>FIRST|LAST))?$", re.I)


# ---------------------------------------------------------------- the budget split (driver, no Spark)


def allocate(sizes, budget: int, temperature: float) -> list[int]:
    """Integer shares of `budget` among children of `sizes`: ~ size**T, capped at size, summing to budget.

    Water-filling: find lam such that sum(min(size_i, lam * size_i**T)) = budget. Children whose cap binds
    take their whole size; the rest share what is left in proportion to size**T.
    """
    s = np.asarray(sizes, dtype=np.float64)
    total = int(s.sum())
    budget = int(budget)
    if budget >= total:
        return [int(x) for x in s]
    if budget <= 0:
        return [0] * len(s)
    w = np.where(s > 0, np.power(s, temperature, where=s > 0, out=np.zeros_like(s)), 0.0)
    capped = s <= 0
    while True:  # each round caps at least one more child, or stops
        lam = (budget - s[capped].sum()) / w[~capped].sum()
        newly = ~capped & (lam * w >= s)
        if not newly.any():
            break
        capped |= newly
    x = np.where(capped, s, lam * w)
    return _round(x, s, budget)


def _round(x: np.ndarray, cap: np.ndarray, budget: int) -> list[int]:
    """Largest-remainder rounding of `x` to integers summing to `budget`, never above `cap`.

    Ties go to the lower index (the caller orders children by key), so the result is deterministic.
    """
    base = np.minimum(np.floor(x + 1e-9), cap).astype(np.int64)
    left = budget - int(base.sum())
    frac = x - base
    order = np.lexsort((np.arange(len(x)), -frac))  # largest remainder first, then index
    while left > 0:  # float error can leave more than one pass's worth; room is checked each time
        moved = False
        for i in order:
            if left == 0:
                break
            if base[i] < cap[i]:
                base[i] += 1
                left -= 1
                moved = True
        if not moved:
            raise AssertionError(f"cannot place {left} more rows: budget exceeds the sizes (a bug)")
    return [int(v) for v in base]


def key_order(key) -> str:
    """A total order over node keys of mixed types (strings, ints, nulls)."""
    return json.dumps(key, default=str)


def tree_quotas(leaf_sizes: dict[tuple, int], budget: int, temperatures: list[float]) -> dict[tuple, int]:
    """Quota of every leaf (a path tuple, one value per level) for a total of min(budget, rows)."""
    depth = len(temperatures)
    if any(len(p) != depth for p in leaf_sizes):
        raise ValueError(f"every leaf path must have {depth} levels")
    sizes: dict[tuple, int] = defaultdict(int)
    children: dict[tuple, set] = defaultdict(set)
    for path, n in leaf_sizes.items():
        for d in range(depth + 1):
            sizes[path[:d]] += n
            if d < depth:
                children[path[:d]].add(path[: d + 1])
    quotas = {(): min(int(budget), sizes[()])}
    frontier = [()]
    for d in range(depth):
        nxt = []
        for node in frontier:
            kids = sorted(children[node], key=key_order)
            split = allocate([sizes[k] for k in kids], quotas[node], temperatures[d])
            quotas.update(zip(kids, split))
            nxt.extend(kids)
        frontier = nxt
    return {p: quotas[p] for p in leaf_sizes}


def temperatures(cfg, depth: int) -> list[float]:
    """One temperature per level (groups first): the configured list, or the single temperature."""
    if cfg.level_temperatures is None:
        return [cfg.temperature] * depth
    if len(cfg.level_temperatures) != depth:
        raise ValueError(f"downsample.level_temperatures has {len(cfg.level_temperatures)} values but the tree has "
                         f"{depth} levels ({len(cfg.group_by)} group_by + cluster levels); give one per level")
    return list(cfg.level_temperatures)


# ---------------------------------------------------------------- Spark side


def in_play():
    """Rows that downsampling decides on: not failed and not dropped by an earlier stage."""
    from pyspark.sql import functions as F

    return F.col("error").isNull() & F.col("drop_reason").isNull()


def leaf_column(cfg):
    """The leaf of a row as a JSON array of strings: group values, then cluster ids (null stays null)."""
    from pyspark.sql import functions as F

    groups = [F.col(g).cast("string") for g in cfg.group_by]
    path = F.coalesce(F.col("cluster_path"), F.array().cast("array<int>"))
    if cfg.levels is not None:
        path = F.slice(path, 1, cfg.levels)
    clusters = F.transform(path, lambda x: x.cast("string"))
    return F.to_json(F.concat(F.array(*groups).cast("array<string>"), clusters))


def sort_keys(cfg):
    """Row order inside a leaf: the quality keys (if ordered by quality), then hash(id, seed), then id."""
    from pyspark.sql import functions as F

    keys = []
    if cfg.order == "quality":
        for k in cfg.quality:
            m = _SORT_KEY.match(k.strip())
            col = F.expr(m["expr"])
            desc = (m["dir"] or "ASC").upper() == "DESC"
            nulls_first = (m["nulls"] or "LAST").upper() == "FIRST"
            keys.append({(False, False): col.asc_nulls_last(), (False, True): col.asc_nulls_first(),
                         (True, False): col.desc_nulls_last(), (True, True): col.desc_nulls_first()}
                        [(desc, nulls_first)])
    return keys + [F.xxhash64(F.col("id"), F.lit(cfg.seed)).asc(), F.col("id").asc()]


def check(spark, schema, cfg) -> None:
    """Fail in seconds, before reading data, when a column or sort key does not fit the input schema."""
    from pyspark.errors import AnalysisException, ParseException

    empty = spark.createDataFrame([], schema)
    missing = [c for c in ("id", "cluster_path", "error", "drop_reason", *cfg.group_by) if c not in schema.fieldNames()]
    if missing:
        raise ValueError(f"downsample needs columns {missing}, which the input lacks; "
                         f"columns available: {', '.join(schema.fieldNames())}")
    try:
        empty.select(leaf_column(cfg)).orderBy(*sort_keys(cfg)).schema
    except (AnalysisException, ParseException) as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"downsample.quality {list(cfg.quality)} does not fit the input: {first}. "
                         f"Give Spark SQL sort keys such as 'aesthetic DESC'") from None


def leaf_sizes(df, cfg) -> dict[str, int]:
    """Rows in play per leaf key (one small aggregation; its result is O(leaves))."""
    rows = df.where(in_play()).groupBy(leaf_column(cfg).alias("_leaf")).count().collect()
    return {r["_leaf"]: int(r["count"]) for r in rows}


def leaf_paths(sizes: dict[str, int]) -> dict[str, tuple]:
    """Leaf key -> path tuple, padded with nulls to the deepest path so every leaf has the same depth."""
    parsed = {k: tuple(json.loads(k)) for k in sizes}
    depth = max((len(p) for p in parsed.values()), default=0)
    return {k: p + (None,) * (depth - len(p)) for k, p in parsed.items()}


def plan(df, cfg, size: int | None) -> dict:
    """Count the leaves and split the budget: {'sizes', 'quotas', 'paths', 'temperatures'} keyed by leaf."""
    sizes = leaf_sizes(df, cfg)
    paths = leaf_paths(sizes)
    depth = len(next(iter(paths.values()))) if paths else 0
    temps = temperatures(cfg, depth)
    total = sum(sizes.values())
    budget = total if size is None else min(size, total)
    by_path = tree_quotas({paths[k]: n for k, n in sizes.items()}, budget, temps)
    quotas = {k: by_path[paths[k]] for k in sizes}
    return {"sizes": sizes, "quotas": quotas, "paths": paths, "temperatures": temps, "budget": budget}


def apply_quotas(df, cfg, quotas: dict[str, int]):
    """Rank rows inside their leaf and drop those past the leaf's quota, with reason `downsampled`.

    Rows not in play skip the window (and its sort) and come back unchanged, with null ds_ columns.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = df.drop("ds_leaf", "ds_rank")  # a pool can be downsampled again; its old ranks mean nothing here
    qdf = df.sparkSession.createDataFrame(list(quotas.items()) or [("", 0)], "_leaf string, _quota long")
    play = df.where(in_play()).withColumn("_leaf", leaf_column(cfg)).join(F.broadcast(qdf), "_leaf", "left")
    rank = F.row_number().over(Window.partitionBy("_leaf").orderBy(*sort_keys(cfg)))
    play = play.withColumn("ds_rank", rank.cast("long"))
    drop = F.col("ds_rank") > F.coalesce(F.col("_quota"), F.lit(0))
    play = (
        play.withColumn("drop_stage", F.when(drop, F.lit(STAGE)).otherwise(F.col("drop_stage")))
        .withColumn("drop_reason", F.when(drop, F.lit(REASON)).otherwise(F.col("drop_reason")))
        .withColumn("drop_reasons", F.when(drop, F.array(F.lit(REASON))).otherwise(F.col("drop_reasons")))
        .withColumnRenamed("_leaf", "ds_leaf")
        .drop("_quota")
    )
    rest = df.where(~in_play()).withColumn("ds_leaf", F.lit(None).cast("string")) \
        .withColumn("ds_rank", F.lit(None).cast("long"))
    return play.unionByName(rest.select(*play.columns))


def downsample(df, cfg, size: int | None = None):
    """(decided DataFrame, plan): keep min(size, rows in play) rows balanced over the tree; `size` defaults to cfg."""
    p = plan(df, cfg, cfg.size if size is None else size)
    return apply_quotas(df, cfg, p["quotas"]), p
