"""Bit-sampling LSH for 64-bit perceptual hashes: near-dup candidates that scale to millions of rows.

The exact (pigeonhole) banding of `dedup.near_edges` cuts 64 bits into max_hamming + 1 bands; at the
default threshold 10 the bands are 5-6 bits, every bucket holds ~N/32 entries and verification costs
~0.8 N^2 pairs (hours at 10^6). Here each of `tables` hash tables is keyed by `bits` bit positions
sampled from the 64 (fixed by `seed`, so every partition and every run uses the same ones). Two hashes
d bits apart agree on one table's (distinct) bits with probability q = C(64-d, bits) / C(64, bits), so
they share a bucket in at least one table with

    P(collide | d) = 1 - (1 - q)^tables                                 (`collision_probability`)

(16 bits x 24 tables: >= 0.997 up to d=5, 0.986 at d=6, 0.88 at d=8, 0.65 at d=10.)

while a pair of unrelated hashes (d ~ 32) collides in a table with probability ~2^-bits. Buckets hold
~N/2^bits entries, so verification is ~tables * N^2 / 2^(bits+1) pairs instead of ~0.8 N^2.
Recall is below 1 at the threshold (pairs at d = max_hamming are found with P(collide | max_hamming));
`dedup.near_dedup(candidates="exact")` keeps the pigeonhole mode when recall 1 is needed.

Entries are grouped in Spark by (table, key) folded into `coarse` groups; inside a group, entries are
sorted by key and the pairs of each bucket are enumerated and verified in numpy, so only verified edges
leave a group and candidate pairs never become Spark rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from curation.steps.hashes import NULL_HASH, hash_matrix, pair_min_hamming

DEFAULT_BITS = 16
DEFAULT_TABLES = 24
DEFAULT_SEED = 0
ENTRIES_PER_GROUP = 100_000  # bucket entries per Spark group (pandas frame): ~10 MB
MAX_GROUPS = 4096
_PAIR_CHUNK = 4_000_000  # candidate pairs verified per numpy step: bounds memory in a skewed bucket


def collision_probability(d, bits: int = DEFAULT_BITS, tables: int = DEFAULT_TABLES):
    """P(two hashes `d` bits apart share a bucket in at least one table) (closed form, d may be an array).

    A table's bits are distinct, so it misses all d differing bits with C(64-d, bits) / C(64, bits)
    (not (1-d/64)^bits, which is for bits drawn with replacement and overstates recall: 0.81 vs 0.65
    at d=10 for 16 bits x 24 tables; measured 0.64 in tests/curation/test_dedup.py's setting).
    """
    from math import comb

    d = np.atleast_1d(np.asarray(d, dtype=int))
    q = np.array([comb(64 - int(x), bits) / comb(64, bits) for x in d.reshape(-1)]).reshape(d.shape)
    p = 1.0 - (1.0 - q) ** tables
    return p if p.size > 1 else float(p[0])


def sample_positions(tables: int, bits: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(tables, bits) distinct bit positions per table, a function of `seed` only."""
    if not 1 <= bits <= 40:
        raise ValueError(f"lsh bits must be 1..40 (the key is table * 2^bits + key in an int64), got {bits}")
    if tables < 1:
        raise ValueError(f"lsh tables must be >= 1, got {tables}")
    rng = np.random.default_rng([seed, tables, bits])
    return np.stack([np.sort(rng.choice(64, size=bits, replace=False)) for _ in range(tables)]).astype(np.uint64)


def table_keys(h: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """int64 hashes (n,) -> (n, tables) keys: table * 2^bits + the sampled bits of the hash."""
    tables, bits = positions.shape
    u = np.asarray(h, dtype=np.int64).view(np.uint64)
    sampled = (u[:, None, None] >> positions[None]) & np.uint64(1)  # (n, tables, bits)
    weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
    keys = (sampled * weights).sum(axis=2, dtype=np.uint64).astype(np.int64)
    return keys + (np.arange(tables, dtype=np.int64) << bits)[None, :]


def bucket_pairs(keys: np.ndarray):
    """Sorted `keys` (m,) -> index pairs (i, j), i < j, of entries with equal keys, in chunks.

    Offset o pairs each entry with the one o places later in its bucket; only entries whose bucket
    still has members o places on stay active, so the work is the number of pairs, not m * max bucket.
    """
    m = len(keys)
    if m < 2:
        return
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, m])
    pos = np.arange(m) - np.repeat(starts, sizes)
    left = np.repeat(sizes, sizes) - pos - 1  # members after this one in its bucket
    active = np.flatnonzero(left > 0)
    o = 1
    while len(active):
        for s in range(0, len(active), _PAIR_CHUNK):
            i = active[s:s + _PAIR_CHUNK]
            yield i, i + o
        o += 1
        active = active[left[active] >= o]


def group_edges(pdf: pd.DataFrame, hash_cols, max_hamming: int) -> pd.DataFrame:
    """One coarse group of entries (id, hashes, key) -> verified edges (a, b), a < b, deduplicated."""
    pdf = pdf.sort_values("key", kind="stable")
    ids = pdf["id"].to_numpy()
    h = hash_matrix(pdf, hash_cols)
    out_a, out_b = [], []
    for i, j in bucket_pairs(pdf["key"].to_numpy()):
        ok = (ids[i] != ids[j]) & (pair_min_hamming(h[i], h[j]) <= max_hamming)
        a, b = ids[i][ok], ids[j][ok]
        out_a.append(np.where(a < b, a, b))
        out_b.append(np.where(a < b, b, a))
    if not out_a:
        return pd.DataFrame({"a": pd.Series([], dtype=object), "b": pd.Series([], dtype=object)})
    out = pd.DataFrame({"a": np.concatenate(out_a), "b": np.concatenate(out_b)})
    return out.drop_duplicates().astype(object)


def lsh_edges(cand, hash_cols, max_hamming: int, bits: int = DEFAULT_BITS, tables: int = DEFAULT_TABLES,
              seed: int = DEFAULT_SEED, groups: int | None = None):
    """Verified near-duplicate pairs (a, b), a < b, among `cand` (columns id and hash_cols), LSH candidates.
    `groups`: Spark groups the buckets are folded into (the same edges for any value); by default about
    ENTRIES_PER_GROUP entries each (one count of `cand`): a tiny table is not cut into hundreds of pandas
    calls, a big one keeps each group's frame small."""
    from pyspark.sql import functions as F

    hash_cols = list(hash_cols)
    positions = sample_positions(tables, bits, seed)
    if groups is None:
        groups = int(np.clip(-(-cand.count() * tables * len(hash_cols) // ENTRIES_PER_GROUP), 1, MAX_GROUPS))
    fields = ", ".join(f"`{c}` bigint" for c in hash_cols)

    def entries(batches):
        # every non-null hash of a row enters every table, so a's mirror meets b's primary in a bucket
        for pdf in batches:
            for c in hash_cols:
                part = pdf[pdf[c] != NULL_HASH]  # a missing hash (e.g. no mirror) enters no table
                if len(part) == 0:
                    continue
                keys = table_keys(part[c].astype("int64").to_numpy(), positions)
                rep = part.loc[part.index.repeat(tables), ["id", *hash_cols]].reset_index(drop=True)
                rep["key"] = keys.reshape(-1)
                yield rep

    # nulls filled in Spark: a bigint column with nulls reaches pandas as float64 and loses low bits
    filled = [F.coalesce(F.col(c), F.lit(NULL_HASH)).alias(c) for c in hash_cols]
    ent = cand.select("id", *filled).mapInPandas(entries, f"id string, {fields}, key bigint")
    ent = ent.withColumn("_g", F.pmod(F.xxhash64("key"), F.lit(groups)))
    edges = ent.groupBy("_g").applyInPandas(lambda pdf: group_edges(pdf, hash_cols, max_hamming),
                                            "a string, b string")
    return edges.distinct()
