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


def table_counts(path) -> dict:
    """Counts of the table at `path`, read with pyarrow: only the few columns counted, and no Spark job.

    Run folders are local (or a shared filesystem), so the driver reads the finished table directly;
    two more Spark jobs per stage cost seconds of fixed start-up for what is a small scan.
    """
    import pyarrow.compute as pc

    from plumbing.tables import open_table

    dataset = open_table(path)
    cols = [c for c in CATEGORICAL if c in dataset.schema.names]
    if not cols:
        return {"rows": dataset.count_rows()}
    t = dataset.to_table(columns=cols)
    groups = t.group_by(cols, use_threads=False).aggregate([([], "count_all")]).to_pylist()
    for g in groups:
        g["count"] = g.pop("count_all")
    warnings = None
    if "warnings" in dataset.schema.names:
        warnings = {}
        for w in pc.list_flatten(dataset.to_table(columns=["warnings"])["warnings"]).to_pylist():
            k = w.split(":")[0]
            warnings[k] = warnings.get(k, 0) + 1
    return summarize(groups, warnings)
