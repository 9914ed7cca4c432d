"""Knowledge-injection mixing: draw each pool's quota of the training mix, repeating short pools up to a cap.

A pool is the kept rows of a table matching a filter. Pool p gets target_p = quota_p x size rows (largest
remainder, so the targets add up to size exactly). A pool with enough rows gives its target_p rows of
smallest xxhash64(id, seed, pool); a short one gives every row floor(target_p / rows) times, and the
remainder once more, never more than `max_copies` times in all. The top-k is exact without a global sort:
rows are bucketed by the top bits of their hash, the bucket counts (4096 numbers) fix the cut, and only the
bucket the cut falls in is ranked. Nothing depends on partitioning.
"""

from __future__ import annotations

import math

import numpy as np

HASH_BUCKET_SHIFT = 52  # top 12 bits of the 64-bit hash: 4096 buckets, ordered like the hash itself


def targets(quotas: list[float], size: int) -> list[int]:
    """Integer rows per pool: quota x size rounded by largest remainder (ties to the earlier pool)."""
    x = np.asarray(quotas, dtype=np.float64) * size / sum(quotas)
    base = np.floor(x + 1e-9).astype(np.int64)
    order = np.lexsort((np.arange(len(x)), -(x - base)))
    base[order[: max(0, size - int(base.sum()))]] += 1
    return [int(v) for v in base]


def default_size(quotas: list[float], available: list[int]) -> int:
    """The largest mix in which no pool has to repeat a row."""
    return int(min(math.floor(a / q + 1e-9) for q, a in zip(quotas, available)))


def copies(target: int, available: int, max_copies: int) -> tuple[int, int]:
    """(copies every row gets, rows that get one more) so that the pool gives `target` rows, capped."""
    if available == 0:
        return 0, 0
    base = target // available
    if base >= max_copies:
        return max_copies, 0
    return base, target - base * available


def pool_filter(concepts, min_score: float, where: str | None) -> str | None:
    """The pool's filter as one Spark SQL expression: any of `concepts` tagged at >= min_score, and `where`."""
    parts = []
    if concepts:
        bad = [c for c in concepts if "'" in c or "\\" in c]
        if bad:
            raise ValueError(f"concept ids {bad} hold quotes or backslashes; concept ids are snake_case names")
        names = ", ".join(f"'{c}'" for c in concepts)
        parts.append(f"exists(tags, t -> t.concept IN ({names}) AND t.score >= {min_score:g})")
    if where:
        parts.append(f"({where})")
    return " AND ".join(parts) or None


def kept_rows(df, where: str | None):
    """The pool: rows not failed and not dropped (when the table has those columns), matching `where`."""
    from pyspark.sql import functions as F

    for col in ("error", "drop_reason"):
        if col in df.columns:
            df = df.where(F.col(col).isNull())
    return df.where(F.expr(where)) if where else df


def check_where(spark, schema, name: str, where: str | None) -> None:
    """Fail before any work when a pool's filter does not parse or names a column the table lacks."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    if not where:
        return
    try:
        spark.createDataFrame([], schema).select(F.expr(where).cast("boolean")).schema
    except (AnalysisException, ParseException) as e:
        raise ValueError(f"mix pool {name!r}: where {where!r} is invalid: {str(e).strip().splitlines()[0]}. "
                         f"Columns available: {', '.join(schema.fieldNames())}") from None


def _hash(name: str, seed: int):
    from pyspark.sql import functions as F

    return F.xxhash64(F.col("id"), F.lit(seed), F.lit(name))


def first_k(df, k: int, name: str, seed: int):
    """A boolean column: the row is among the k of smallest (hash(id, seed, name), id). Exact, one small count."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if k <= 0:
        return df.withColumn("_extra", F.lit(False))
    df = df.withColumn("_h", _hash(name, seed)).withColumn("_b", F.shiftright(F.col("_h"), HASH_BUCKET_SHIFT))
    counts = sorted((int(r["_b"]), int(r["count"])) for r in df.groupBy("_b").count().collect())
    seen = 0
    for bucket, n in counts:  # the bucket where the cut falls, and how many of it are needed
        if seen + n >= k:
            cut, need = bucket, k - seen
            break
        seen += n
    else:
        return df.withColumn("_extra", F.lit(True)).drop("_h", "_b")
    # Only the cut's bucket (~1/4096 of the rows) is sorted; the others are decided by their bucket.
    rank = F.row_number().over(Window.partitionBy("_b").orderBy("_h", "id"))
    at_cut = df.where(F.col("_b") == F.lit(cut)).withColumn("_extra", rank <= F.lit(need))
    others = df.where(F.col("_b") != F.lit(cut)).withColumn("_extra", F.col("_b") < F.lit(cut))
    return others.unionByName(at_cut).drop("_h", "_b")


def draw(df, name: str, target: int, available: int, max_copies: int, seed: int):
    """(rows of the pool with `mix_pool` and `mix_copy`, one per copy; the audit numbers)."""
    from pyspark.sql import functions as F

    base, extra = copies(target, available, max_copies)
    marked = first_k(df, extra, name, seed)
    n_copies = F.lit(base) + F.col("_extra").cast("int")
    out = (marked.where(n_copies > 0)
           .withColumn("mix_copy", F.explode(F.sequence(F.lit(0), n_copies - 1)))
           .withColumn("mix_copy", F.col("mix_copy").cast("int"))
           .withColumn("mix_pool", F.lit(name)).drop("_extra"))
    achieved = base * available + extra
    audit = {"target_rows": target, "available_rows": available, "achieved_rows": achieved,
             "distinct_rows": available if base > 0 else extra, "max_copies": base + (1 if extra else 0),
             "short": achieved < target}
    audit["repeated_rows"] = achieved - audit["distinct_rows"]
    return out, audit
