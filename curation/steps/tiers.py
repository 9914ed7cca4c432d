"""Quality tiers and the aesthetic tier: labels from configured expressions, for rules and downsampling.

`tier` is the first configured tier whose `when` (Spark SQL over the stage's columns) is true, else the
default tier; a null expression counts as false, so a missing signal never lifts a row. `aesthetic_tier`
is the first cut point the aesthetic score reaches. Rows failed or dropped earlier get no tier: they are
not in play. Like rules, tiers are computed from stored signals, so changing them never rescores.
"""

from __future__ import annotations


class TierError(ValueError):
    """A tier expression does not parse or names a column the table does not have."""


def check_tiers(spark, schema, tiers, where: str) -> None:
    """Analyse every tier expression against `schema` (no data read): fail in seconds, naming the tier."""
    from curation.steps.decide import check_expressions

    check_expressions(spark, schema, [(t.name, t.when) for t in tiers], where, "tier", "when", TierError)


def _in_play():
    from pyspark.sql import functions as F

    return F.col("error").isNull() & F.col("drop_reason").isNull()


def assign_tiers(df, tiers, default: str, col: str = "tier"):
    """`col` = name of the first tier whose expression holds, else `default`; null for rows not in play."""
    from pyspark.sql import functions as F

    expr = F.lit(default)
    for t in reversed(tiers):  # built inside out so the first tier in config order wins
        expr = F.when(F.coalesce(F.expr(t.when).cast("boolean"), F.lit(False)), F.lit(t.name)).otherwise(expr)
    return df.withColumn(col, F.when(_in_play(), expr))


def assign_aesthetic_tier(df, cuts, below: str, score: str = "aesthetic", col: str = "aesthetic_tier"):
    """`col` from `score` and cut points (highest first); null without a score or for rows not in play."""
    from pyspark.sql import functions as F

    ordered = sorted(cuts, key=lambda c: -c.min)
    expr = F.lit(below)
    for c in reversed(ordered):
        expr = F.when(F.col(score) >= F.lit(float(c.min)), F.lit(c.name)).otherwise(expr)
    return df.withColumn(col, F.when(_in_play() & F.col(score).isNotNull(), expr))
