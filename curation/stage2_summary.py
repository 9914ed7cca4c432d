"""What a stage-2 table holds, for its manifest and the report: dedup, tiers, tags, clusters (pyarrow only)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def summarize(table_dir: Path, top_tags: int = 15) -> dict:
    """Counts of duplicates per level, tier and aesthetic-tier shares, the most frequent tags, embedding models."""
    from plumbing.tables import open_table

    t = open_table(table_dir).to_table(
        columns=["dup_level", "dup_of", "tier", "aesthetic_tier", "tags", "emb_model", "cluster_path"]).to_pydict()
    dups = Counter(lvl for lvl, of in zip(t["dup_level"], t["dup_of"]) if of is not None)
    tiers = Counter(x for x in t["tier"] if x is not None)
    aest = Counter(x for x in t["aesthetic_tier"] if x is not None)
    tags = Counter(tag["concept"] for row in t["tags"] if row for tag in row[:1])
    leaves = {tuple(p) for p in t["cluster_path"] if p}
    n_tier = sum(tiers.values()) or 1
    return {
        "duplicates": dict(sorted(dups.items())),
        "tiers": {k: {"rows": v, "share": round(v / n_tier, 4)} for k, v in sorted(tiers.items())},
        "aesthetic_tiers": dict(sorted(aest.items())),
        "top_tags": dict(tags.most_common(top_tags)),
        "emb_models": dict(Counter(m for m in t["emb_model"] if m is not None)),
        "clusters": len(leaves),
    }
