"""Hierarchical k-means over image embeddings, after Vo et al. 2024 (arXiv 2405.15613).

Fit on a sample on the driver, assign every row in Spark:

- `sample_embeddings(df, n, seed)`: the n rows with the least xxhash64(id, seed), a distributed top-n,
  so the sample does not depend on partitioning and only it reaches the driver;
- `fit_hierarchical_kmeans(sample, levels, seed)`: level 0 clusters the sample into levels[0] centroids,
  level l clusters the level l-1 centroids into levels[l] (so levels go from fine to coarse, e.g.
  [1000, 100, 10]); optional resampling rounds at the upper levels re-fit on a cluster-balanced pool of
  the points closest to each centroid, which moves centroids toward a uniform spread over concepts;
- `assign_cluster_path(df, centroids)`: every row gets `cluster_path: array<int>`, coarse to fine
  ([top, ..., leaf]); the leaf is the nearest level-0 centroid and each coarser id is the cluster of the
  finer centroid, so paths form a tree. Centroids travel as a broadcast; rows never leave the executors.

Embeddings are L2-normalised (float16 cells, `curation/signals/embedding_codec.py`), so L2 k-means is
spherical k-means. Backends: faiss (default) or scikit-learn's MiniBatchKMeans (the benchmark baseline).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

BACKENDS = ("faiss", "sklearn")


def kmeans(x: np.ndarray, k: int, seed: int, backend: str = "faiss", niter: int = 20, nredo: int = 1) -> np.ndarray:
    """(n, d) points -> (k, d) float32 centroids; `nredo` restarts keep the best (k-means has local minima)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not 1 <= k <= len(x):
        raise ValueError(f"cannot make {k} clusters from {len(x)} points; lower the level's cluster count")
    if backend == "faiss":
        from plumbing.deps import require

        faiss = require("faiss", "embed")
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, nredo=nredo, verbose=False)
        km.cp.min_points_per_centroid = 1  # upper levels cluster few centroids; that is intended
        km.train(x)
        return np.asarray(km.centroids, dtype=np.float32)
    if backend == "sklearn":
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if len(x) <= 4096:  # one mini-batch would hold it all: plain Lloyd is cheaper and steadier
            km = KMeans(n_clusters=k, random_state=seed, n_init=nredo, max_iter=niter)
        else:
            km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=nredo, max_iter=niter)
        return km.fit(x).cluster_centers_.astype(np.float32)
    raise ValueError(f"unknown k-means backend {backend!r}; use one of {BACKENDS}")


def nearest(x: np.ndarray, centroids: np.ndarray, block: int = 4096) -> np.ndarray:
    """Index of the nearest centroid (L2) of each row of x."""
    c = np.asarray(centroids, dtype=np.float32)
    c2 = (c * c).sum(axis=1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), block):
        out[s:s + block] = np.argmin(c2[None, :] - 2.0 * (x[s:s + block] @ c.T), axis=1)
    return out


def _resample(points: np.ndarray, centroids: np.ndarray, k: int, seed: int, backend: str, niter: int,
              steps: int, sample_size: int) -> np.ndarray:
    """Vo et al.'s resampling: re-fit on the `sample_size` points nearest each centroid, `steps` times."""
    for step in range(steps):
        lab = nearest(points, centroids)
        d = ((points - centroids[lab]) ** 2).sum(axis=1)
        pool = []
        for c in range(len(centroids)):
            idx = np.nonzero(lab == c)[0]
            pool.append(idx[np.argsort(d[idx], kind="stable")[:sample_size]])
        pooled = points[np.concatenate(pool)]
        if len(pooled) < k:
            break
        centroids = kmeans(pooled, k, seed + step + 1, backend, niter)
    return centroids


def fit_hierarchical_kmeans(sample: np.ndarray, levels: list[int], seed: int, backend: str = "faiss",
                            niter: int = 20, resampling_steps: int = 0, sample_size: int = 3,
                            nredo: int = 1) -> list[np.ndarray]:
    """Centroids per level, finest first: level 0 on `sample`, level l on level l-1's centroids."""
    levels = [int(k) for k in levels]
    if not levels or any(b > a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"levels must be a non-empty list of cluster counts, fine to coarse, e.g. "
                         f"[1000, 100, 10]; got {levels}")
    if len(sample) < levels[0]:
        raise ValueError(f"the fitting sample has {len(sample)} rows, fewer than the {levels[0]} clusters of "
                         f"level 0; draw a larger sample or ask for fewer clusters")
    sample = np.asarray(sample, dtype=np.float32)
    out = [kmeans(sample, levels[0], seed, backend, niter, nredo)]
    for lvl, k in enumerate(levels[1:], start=1):
        points = out[-1]
        cents = kmeans(points, k, seed + lvl, backend, niter, nredo)
        if resampling_steps:
            cents = _resample(points, cents, k, seed + 100 * lvl, backend, niter, resampling_steps, sample_size)
        out.append(cents)
    return out


def parents(centroids: list[np.ndarray]) -> list[np.ndarray]:
    """parents[l][i] = the level l+1 cluster of level-l centroid i."""
    return [nearest(centroids[lvl], centroids[lvl + 1]) for lvl in range(len(centroids) - 1)]


def paths(x: np.ndarray, centroids: list[np.ndarray], up: list[np.ndarray]) -> np.ndarray:
    """(n, d) embeddings -> (n, levels) int32 cluster ids, coarse to fine."""
    ids = [nearest(x, centroids[0])]
    for p in up:
        ids.append(p[ids[-1]])
    return np.stack(ids[::-1], axis=1).astype(np.int32)


def assign_cluster_path(df, centroids: list[np.ndarray], *, emb_col: str = "img_emb",
                        out_col: str = "cluster_path"):
    """Add `out_col` (array<int>, coarse to fine) to every row with an embedding; null elsewhere."""
    import pyarrow as pa

    from curation.spark import output_schema

    if emb_col not in df.columns:
        raise ValueError(f"assign_cluster_path needs column {emb_col!r}; run the embedding scorer first")
    cents = [np.asarray(c, dtype=np.float32) for c in centroids]
    bc = df.sparkSession.sparkContext.broadcast((cents, parents(cents)))
    schema = output_schema(df.schema, {out_col: pa.list_(pa.int32())})

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from curation.signals.embedding_codec import decode

        cs, up = bc.value
        for pdf in batches:
            has = pdf[emb_col].notna().to_numpy()
            col: list = [None] * len(pdf)
            if has.any():
                found = iter(paths(decode(pdf.loc[has, emb_col]), cs, up).tolist())
                col = [next(found) if h else None for h in has]
            pdf[out_col] = pd.Series(col, index=pdf.index, dtype=object)
            yield pdf

    return df.mapInPandas(run, schema)


def sample_embeddings(df, n: int, seed: int, emb_col: str = "img_emb") -> np.ndarray:
    """(<= n, d) float32: the embeddings of the n usable rows with the least xxhash64(id, seed)."""
    from pyspark.sql import functions as F

    from curation.signals.embedding_codec import decode

    usable = F.col(emb_col).isNotNull()
    for c in ("error", "drop_reason"):
        if c in df.columns:
            usable &= F.col(c).isNull()
    rows = (df.filter(usable).select(F.xxhash64("id", F.lit(seed)).alias("_h"), "id", emb_col)
            .orderBy("_h", "id").limit(n).select(emb_col).collect())
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return decode(pd.Series([r[0] for r in rows]))
