"""Dedup at three levels, all in Spark: exact (content hash), near (perceptual hash), semantic (embeddings).

Each step marks rows; the decide step drops them by named rules. A step fills three columns:

- `dup_level`: 'exact' | 'near' | 'semantic' on every member of a group the step found (kept member too);
- `dup_group`: the id of the group's kept member (on every member, the kept one included);
- `dup_of`: the id of the kept member on the other members; null on the kept member and unique rows.

Which member is kept is `order`, a Spark SQL ORDER BY expression over the table's columns (the first row
wins; ties always break by `id`), e.g. "q_sharpness DESC NULLS LAST" or "aesthetic DESC NULLS LAST".

Candidates are rows with no `error`, no `drop_reason` and no `dup_of` yet: a dropped or failed row is
never grouped, and a row an earlier level already marked is represented by its kept member. Run the
levels exact -> near -> semantic. A kept member of one level may become a duplicate at a later level;
`dup_of` then points at the member kept at that level, and its own followers keep pointing at it
(follow `dup_of` to the end to find the final keeper; they are dropped by the earlier level's rule anyway).

Every dropped member is compared with its kept member directly, so there is no chaining: inside a
connected component (near) or a cluster (semantic), members are visited in `order`; a member within the
threshold of an earlier kept member becomes its duplicate, any other member is kept. Kept members of one
component are therefore pairwise farther apart than the threshold.

Rules for the stage-2 config (the rule's name is the drop reason):

    - {name: duplicate,          keep_if: "dup_of IS NULL OR dup_level <> 'exact'"}
    - {name: near_duplicate,     keep_if: "dup_of IS NULL OR dup_level <> 'near'"}
    - {name: semantic_duplicate, keep_if: "dup_of IS NULL OR dup_level <> 'semantic'"}

Near-dup candidates come, by default (`candidates="lsh"`), from bit-sampling LSH (curation/steps/lsh.py:
24 tables of 16 sampled bits; recall 1-(1-C(64-d,16)/C(64,16))^24 for pairs d bits apart, scales to
10^6 rows). With `candidates="exact"` they come from banding (multi-index hashing): the 64 bits are cut into `bands` >=
max_hamming + 1 contiguous bands, so two hashes within `max_hamming` bits agree exactly on at least one band
(pigeonhole: recall 1 at the threshold). Rows are grouped by (band, band value) in Spark and each bucket
is verified in numpy (Hamming on the full hashes, mirrored hashes included); only verified edges leave a
bucket, so candidate pairs are never materialised as rows. Components are found with min-label
propagation plus pointer jumping (joins only, no GraphFrames), checkpointed every round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from curation.steps import lsh
from curation.steps.hashes import hash_matrix as _hash_matrix
from curation.steps.hashes import min_hamming

log = logging.getLogger(__name__)

DEFAULT_ORDER = "q_sharpness DESC NULLS LAST"
DEFAULT_MAX_HAMMING = 10  # chosen on synthetic/near_dup_data.py; see docs/benchmarks.md (bench:stage2)
DEFAULT_CANDIDATES = "lsh"  # near: exact pigeonhole banding is ~0.8 N^2 checks at max_hamming 10 (bench:stage2)
DEFAULT_SEMANTIC_THRESHOLD = 0.95
DUP_COLUMNS = ("dup_level", "dup_group", "dup_of")
# The decide rules for stage 2's config: a duplicate's drop reason names the level that found it.
DEDUP_RULES = [
    {"name": "duplicate", "keep_if": "dup_of IS NULL OR dup_level <> 'exact'"},
    {"name": "near_duplicate", "keep_if": "dup_of IS NULL OR dup_level <> 'near'"},
    {"name": "semantic_duplicate", "keep_if": "dup_of IS NULL OR dup_level <> 'semantic'"},
]
_BLOCK_CELLS = 8 * 2**20  # pairwise blocks of at most this many cells bound memory in a big bucket/cluster


# ---------------------------------------------------------------- shared plumbing


def with_dup_columns(df):
    """`df` with null dup columns added where missing."""
    from pyspark.sql import functions as F

    for c in DUP_COLUMNS:
        if c not in df.columns:
            df = df.withColumn(c, F.lit(None).cast("string"))
    return df


def _candidate(df, *required: str):
    """Column: the row may be grouped (not failed, not dropped, not yet a duplicate, has its inputs)."""
    from pyspark.sql import functions as F

    cond = F.col("dup_of").isNull()
    for c in ("error", "drop_reason"):
        if c in df.columns:
            cond &= F.col(c).isNull()
    for c in required:
        cond &= F.col(c).isNotNull()
    return cond


def _check_columns(df, cols, step: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{step} needs columns {missing}, which the table lacks (it has {sorted(df.columns)}); "
                         f"run the scorer that adds them first")


def _rank(key: str, order: str):
    """row_number() within `key` by the user's ORDER BY, ties by id: 1 = the member to keep."""
    from pyspark.sql import functions as F

    return F.expr(f"row_number() OVER (PARTITION BY `{key}` ORDER BY {order}, id ASC)")


def _merge(df, marks, level: str):
    """Write (id, dup_group, dup_of) of `marks` into `df`'s dup columns with `dup_level` = level."""
    from pyspark.sql import functions as F

    m = marks.select(F.col("id").alias("_mid"), F.col("dup_group").alias("_mg"), F.col("dup_of").alias("_mo"))
    out = df.join(m, df["id"] == m["_mid"], "left")
    hit = F.col("_mid").isNotNull()
    out = (out.withColumn("dup_level", F.when(hit, F.lit(level)).otherwise(F.col("dup_level")))
              .withColumn("dup_group", F.when(hit, F.col("_mg")).otherwise(F.col("dup_group")))
              .withColumn("dup_of", F.when(hit, F.col("_mo")).otherwise(F.col("dup_of"))))
    return out.select(*df.columns)


def greedy_keep(n: int, similar: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Members 0..n-1 in keep order -> index of each member's kept member (itself when kept).

    `similar(rows)` gives a (len(rows), n) bool matrix: is member j a duplicate of member i. A member is
    kept unless it is similar to an earlier kept member, and then it is that member's duplicate.
    """
    owner = np.full(n, -1, dtype=np.int64)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        sim = similar(rows)
        for r, i in enumerate(rows):
            if owner[i] != -1:
                continue
            owner[i] = i
            later = sim[r].copy()
            later[: i + 1] = False
            owner[later & (owner == -1)] = i
    return owner


def _groups_frame(ids: pd.Series, owner: np.ndarray) -> pd.DataFrame:
    """Rows of groups with more than one member: (id, dup_group, dup_of)."""
    ids = ids.to_numpy()
    kept_ids = ids[owner]
    sizes = np.bincount(owner, minlength=len(ids))
    in_group = sizes[owner] > 1
    dup_of = np.where(owner == np.arange(len(ids)), None, kept_ids).astype(object)
    return pd.DataFrame({"id": pd.Series(ids[in_group].tolist(), dtype=object),
                         "dup_group": pd.Series(kept_ids[in_group].tolist(), dtype=object),
                         "dup_of": pd.Series(dup_of[in_group].tolist(), dtype=object)})


_MARKS_SCHEMA = "id string, dup_group string, dup_of string"


# ---------------------------------------------------------------- exact


def exact_dedup(df, *, hash_col: str = "content_hash", order: str = DEFAULT_ORDER):
    """Group candidates with equal `hash_col` (sha256 of the bytes); keep the first by `order`."""
    from pyspark.sql import functions as F

    _check_columns(df, [hash_col, "id"], "exact_dedup")
    df = with_dup_columns(df)
    cand = df.filter(_candidate(df, hash_col))
    ranked = cand.select("id", F.col(hash_col).alias("_h"), _rank(hash_col, order).alias("_r"),
                         F.count(F.lit(1)).over(_window(hash_col)).alias("_n"))
    keepers = ranked.filter("_r = 1 AND _n > 1").select("_h", F.col("id").alias("_keep"))
    marks = (ranked.filter("_n > 1").join(keepers, "_h")
             .select("id", F.col("_keep").alias("dup_group"),
                     F.when(F.col("_r") > 1, F.col("_keep")).alias("dup_of")))
    return _merge(df, marks, "exact")


def _window(col: str):
    from pyspark.sql import Window

    return Window.partitionBy(col)


# ---------------------------------------------------------------- near (perceptual hash)


def band_edges(n_bands: int) -> list[tuple[int, int]]:
    """(shift, width) of `n_bands` contiguous bands covering 64 bits, widths differing by at most one."""
    if not 1 <= n_bands <= 64:
        raise ValueError(f"bands must be 1..64, got {n_bands}")
    widths = [64 // n_bands + (1 if b < 64 % n_bands else 0) for b in range(n_bands)]
    shifts = np.cumsum([0] + widths[:-1]).tolist()
    return list(zip(shifts, widths))


def _bucket_edges(hash_cols, max_hamming: int):
    """applyInPandas fn: one (band, value) bucket -> verified edges (a, b) with a < b."""

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.drop_duplicates("id")
        if len(pdf) < 2:
            return pd.DataFrame({"a": pd.Series([], dtype=object), "b": pd.Series([], dtype=object)})
        ids = pdf["id"].to_numpy()
        h = _hash_matrix(pdf, hash_cols)
        out_a, out_b = [], []
        block = max(1, _BLOCK_CELLS // len(ids))
        for s in range(0, len(ids), block):
            d = min_hamming(h[s:s + block], h)
            i, j = np.nonzero(d <= max_hamming)
            keep = ids[s + i] < ids[j]
            out_a.append(ids[s + i][keep])
            out_b.append(ids[j][keep])
        return pd.DataFrame({"a": pd.Series(np.concatenate(out_a).tolist(), dtype=object),
                             "b": pd.Series(np.concatenate(out_b).tolist(), dtype=object)})

    return run


def near_edges(cand, hash_cols, max_hamming: int, bands: int | None = None, candidates: str = "exact",
               lsh_bits: int = lsh.DEFAULT_BITS, lsh_tables: int = lsh.DEFAULT_TABLES, lsh_seed: int = 0):
    """Verified near-duplicate pairs (a, b), a < b, among `cand` (columns id and hash_cols).

    candidates "exact": pigeonhole banding, recall 1 at the threshold, ~0.8 N^2 checks at max_hamming 10;
    "lsh": bit-sampling LSH (curation/steps/lsh.py), recall `lsh.collision_probability(d)`, scales to 10^6+.
    """
    if candidates == "lsh":
        return lsh.lsh_edges(cand, hash_cols, max_hamming, bits=lsh_bits, tables=lsh_tables, seed=lsh_seed)
    if candidates != "exact":
        raise ValueError(f"near-dup candidates must be 'exact' or 'lsh', got {candidates!r}")
    from pyspark.sql import functions as F

    n_bands = bands or max_hamming + 1
    if n_bands < max_hamming + 1:
        log.warning("near_dedup: %d bands for max_hamming %d: pairs can be missed (pigeonhole needs %d)",
                    n_bands, max_hamming, max_hamming + 1)
    keys = []
    for b, (shift, width) in enumerate(band_edges(n_bands)):
        for c in hash_cols:  # a row's mirrored hash meets the other row's primary hash in a bucket
            key = F.shiftrightunsigned(F.col(c), shift)
            key = key if width == 64 else key.bitwiseAND(F.lit((1 << width) - 1))
            keys.append(F.struct(F.lit(b).alias("band"), key.alias("key")))
    entries = cand.select("id", *hash_cols, F.explode(F.array(*keys)).alias("_k")) \
        .filter(F.col("_k.key").isNotNull()).select("id", *hash_cols, "_k.band", "_k.key")
    edges = entries.groupBy("band", "key").applyInPandas(_bucket_edges(list(hash_cols), max_hamming),
                                                         "a string, b string")
    return edges.distinct()


def connected_components(edges, max_rounds: int = 40):
    """(id, comp) for every vertex of `edges` (a, b): comp = least id of its component.

    Min-label propagation along edges plus pointer jumping (label <- label of label), so a chain of
    length L settles in about log2(L) rounds. Each round is checkpointed, so the plan stays short.
    """
    from pyspark.sql import functions as F

    both = edges.select(F.col("a").alias("src"), F.col("b").alias("dst")) \
        .union(edges.select(F.col("b").alias("src"), F.col("a").alias("dst"))).localCheckpoint()
    labels = both.groupBy("src").agg(F.least(F.col("src"), F.min("dst")).alias("comp")) \
        .withColumnRenamed("src", "id").localCheckpoint()
    for rnd in range(max_rounds):
        nb = both.join(labels.withColumnRenamed("id", "src"), "src").groupBy("dst") \
            .agg(F.min("comp").alias("_n")).withColumnRenamed("dst", "id")
        step = labels.join(nb, "id", "left").select(
            "id", F.col("comp").alias("_old"), F.least("comp", F.coalesce("_n", "comp")).alias("comp"))
        parent = step.select(F.col("id").alias("comp"), F.col("comp").alias("_p"))
        jumped = step.join(parent, "comp", "left").select(
            "id", "_old", F.least("comp", F.coalesce("_p", "comp")).alias("comp")).localCheckpoint()
        changed = jumped.filter("comp <> _old").count()  # a scan of the checkpoint, no recomputation
        labels = jumped.drop("_old")
        if changed == 0:
            return labels
    raise RuntimeError(f"connected components did not settle in {max_rounds} rounds; the near-dup graph has a "
                       f"very long chain: lower max_hamming or raise max_rounds")


def near_dedup(df, *, hash_cols=("phash", "phash_flip"), max_hamming: int = DEFAULT_MAX_HAMMING,
               order: str = DEFAULT_ORDER, bands: int | None = None, candidates: str = DEFAULT_CANDIDATES,
               lsh_bits: int = lsh.DEFAULT_BITS, lsh_tables: int = lsh.DEFAULT_TABLES, lsh_seed: int = 0):
    """Group candidates whose perceptual hashes are within `max_hamming` bits (`hash_cols[0]` is the
    row's hash; the others, e.g. its mirror's hash, are matched against the other row's hash).
    `candidates`: how pairs to verify are found, "lsh" (default, scales) or "exact" (see `near_edges`)."""
    from pyspark.sql import functions as F

    hash_cols = list(hash_cols)
    _check_columns(df, ["id", *hash_cols], "near_dedup")
    df = with_dup_columns(df)
    cand = df.filter(_candidate(df, hash_cols[0]))
    edges = near_edges(cand.select("id", *hash_cols), hash_cols, max_hamming, bands, candidates,
                       lsh_bits, lsh_tables, lsh_seed)
    comps = connected_components(edges)
    members = cand.join(comps, "id").select("id", "comp", *hash_cols, _rank("comp", order).alias("_r"))

    def resolve(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("_r")
        h = _hash_matrix(pdf, hash_cols)
        owner = greedy_keep(len(pdf), lambda rows: min_hamming(h[rows], h) <= max_hamming)
        return _groups_frame(pdf["id"], owner)

    marks = members.groupBy("comp").applyInPandas(resolve, _MARKS_SCHEMA)
    return _merge(df, marks, "near")


# ---------------------------------------------------------------- semantic (embeddings)


def semantic_dedup(df, *, emb_col: str = "img_emb", cluster_col: str = "cluster_leaf",
                   threshold: float = DEFAULT_SEMANTIC_THRESHOLD, order: str = DEFAULT_ORDER):
    """SemDeDup: inside each cluster, a member whose cosine to an earlier kept member (by `order`)
    exceeds `threshold` is its duplicate. Without `cluster_col`, the last level of `cluster_path` is used."""
    from pyspark.sql import functions as F

    if cluster_col not in df.columns:
        _check_columns(df, ["cluster_path"], f"semantic_dedup (no {cluster_col!r}, so)")
        df = df.withColumn(cluster_col, F.element_at("cluster_path", -1))
        added = True
    else:
        added = False
    _check_columns(df, ["id", emb_col], "semantic_dedup")
    df = with_dup_columns(df)
    cand = df.filter(_candidate(df, emb_col, cluster_col))
    members = cand.select("id", cluster_col, emb_col, _rank(cluster_col, order).alias("_r"))

    def resolve(pdf: pd.DataFrame) -> pd.DataFrame:
        from curation.signals.embedding_codec import decode

        pdf = pdf.sort_values("_r")
        e = decode(pdf[emb_col])
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        owner = greedy_keep(len(pdf), lambda rows: (e[rows] @ e.T) > threshold)
        return _groups_frame(pdf["id"], owner)

    marks = members.groupBy(cluster_col).applyInPandas(resolve, _MARKS_SCHEMA)
    out = _merge(df, marks, "semantic")
    return out.drop(cluster_col) if added else out
