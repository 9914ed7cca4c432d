"""Named rules -> decision columns. A rule's name is the drop reason; scores are never recomputed here.

A rule is `{name, keep_if}` with `keep_if` a Spark SQL expression over the table's columns. A row is
dropped when any rule's expression is false; `drop_reason` is the first such rule in config order and
`drop_reasons` all of them. A rule that cannot be evaluated on a row (a null signal) does not drop it.
Rows that failed (`error`) or were dropped by an earlier stage keep what they had.
"""

from __future__ import annotations

import re

RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RuleError(ValueError):
    """A rule does not parse or names a column the table does not have."""


def check_expressions(spark, schema, named: list[tuple[str, str]], where: str, kind: str, field: str,
                      error: type[ValueError], duplicate_hint: str = "") -> None:
    """Analyse each (name, boolean SQL expression) against `schema` (no data is read): fail in seconds
    with `error`, naming the `kind` (rule, tier), its `field` (keep_if, when) and the columns there are.
    Names must differ: they become drop reasons or labels."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    seen = set()
    for name, _ in named:
        if name in seen:
            raise error(f"{where}: two {kind}s are named {name!r}{duplicate_hint}")
        seen.add(name)
    empty = spark.createDataFrame([], schema)
    for name, expr in named:
        try:
            empty.select(F.expr(expr).cast("boolean")).schema
        except (AnalysisException, ParseException) as e:
            first = str(e).strip().splitlines()[0]
            raise error(f"{where}: {kind} {name!r} {field} {expr!r} is invalid: {first}. "
                        f"Columns available: {', '.join(schema.fieldNames())}") from None


def check_rules(spark, schema, rules, where: str) -> None:
    """Analyse every rule against `schema` (no data is read): fail in seconds, naming the rule."""
    check_expressions(spark, schema, [(r.name, r.keep_if) for r in rules], where, "rule", "keep_if", RuleError,
                      duplicate_hint="; rule names are drop reasons and must differ")


def decide(df, rules, stage: str):
    """Set drop_stage / drop_reason / drop_reasons from `rules` on rows still in play."""
    from pyspark.sql import functions as F

    failed = [F.when(~F.coalesce(F.expr(r.keep_if).cast("boolean"), F.lit(True)), F.lit(r.name)) for r in rules]
    reasons = F.filter(F.array(*failed), lambda x: x.isNotNull()) if failed else F.array().cast("array<string>")
    in_play = F.col("error").isNull() & F.col("drop_reason").isNull() if "drop_reason" in df.columns \
        else F.col("error").isNull()
    if "drop_reason" not in df.columns:
        df = df.withColumn("drop_stage", F.lit(None).cast("string")) \
               .withColumn("drop_reason", F.lit(None).cast("string")) \
               .withColumn("drop_reasons", F.lit(None).cast("array<string>"))
    df = df.withColumn("_in_play", in_play).withColumn("_reasons", reasons)
    new_drop = F.col("_in_play") & (F.size("_reasons") > 0)
    return (
        df.withColumn("drop_reasons", F.when(new_drop, F.col("_reasons")).otherwise(F.col("drop_reasons")))
        .withColumn("drop_reason", F.when(new_drop, F.col("_reasons")[0]).otherwise(F.col("drop_reason")))
        .withColumn("drop_stage", F.when(new_drop, F.lit(stage)).otherwise(F.col("drop_stage")))
        .drop("_in_play", "_reasons")
    )


def clear_stage(df, stage: str):
    """Undo the decisions `stage` made, so a new set of rules can decide again without rescoring."""
    from pyspark.sql import functions as F

    # Flag first: clearing drop_stage would otherwise change what "mine" means for the next column.
    df = df.withColumn("_mine", F.coalesce(F.col("drop_stage") == F.lit(stage), F.lit(False)))
    for col in ("drop_stage", "drop_reason", "drop_reasons"):
        df = df.withColumn(col, F.when(F.col("_mine"), F.lit(None)).otherwise(F.col(col)))
    return df.drop("_mine")
