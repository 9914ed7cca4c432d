"""Counts for manifests and `sluice inspect`: rows, errors by kind, drops by reason, warnings."""

from __future__ import annotations

from collections import Counter

# Low-cardinality columns worth a count per value, when a table has them.
CATEGORICAL = ("error_kind", "drop_reason", "format", "alt_lang")


def summarize(groups: list[dict], warnings: dict[str, int] | None = None) -> dict:
    """Turn rows of (categorical columns..., count) into the manifest's counts."""
    per: dict[str, Counter] = {c: Counter() for c in CATEGORICAL}
    rows = usable = kept = 0
    for g in groups:
        n = int(g["count"])
        rows += n
        failed = g.get("error_kind") is not None
        usable += 0 if failed else n
        kept += 0 if failed or g.get("drop_reason") is not None else n
        for c in CATEGORICAL:
            if c in g and (g[c] is not None or c == "alt_lang"):
                per[c][g[c] if g[c] is not None else "none"] += n
    out: dict = {"rows": rows, "usable": usable}
    present = set().union(*(g.keys() for g in groups)) if groups else set()
    if "drop_reason" in present:
        out["kept"] = kept
        out["dropped"] = dict(sorted(per["drop_reason"].items()))
    out["errors"] = dict(sorted(per["error_kind"].items()))
    if warnings is not None:
        out["warnings"] = dict(sorted(warnings.items()))
    for c, name in (("format", "formats"), ("alt_lang", "alt_lang")):
        if c in present:
            out[name] = dict(sorted(per[c].items()))
    return out


def table_counts(spark, path: str) -> dict:
    """Counts of the table at `path`, in one aggregation (plus one for warnings); reads only those columns."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(path)
    cats = [c for c in CATEGORICAL if c in df.columns]
    groups = [r.asDict() for r in df.groupBy(*cats).count().collect()] if cats else \
        [{"count": df.count()}]
    warnings = None
    if "warnings" in df.columns:
        w = df.select(F.explode("warnings").alias("w")).select(F.split("w", ":")[0].alias("w"))
        warnings = {r["w"]: int(r["count"]) for r in w.groupBy("w").count().collect()}
    return summarize(groups, warnings)
