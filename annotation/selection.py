"""Which unlabelled samples to label next: uncertainty, diversity, their hybrid, and random as the baseline.

Every strategy returns indices into the candidate arrays, most wanted first, and is a pure function of its
inputs and seed (random order is a hash of (id, seed), so it does not depend on the pool's order; DESIGN
rule 7).
"""

from __future__ import annotations

import hashlib

import numpy as np

STRATEGIES = ("random", "entropy", "margin", "kcenter", "kmeans", "hybrid")


def hash_order(ids: list[str], seed: int) -> np.ndarray:
    """Indices of `ids` in the order of sha1(id, seed): a random order that survives reshuffled input."""
    keys = [hashlib.sha1(f"{seed}:{i}".encode()).digest()[:8] for i in ids]
    return np.array(sorted(range(len(ids)), key=keys.__getitem__), dtype=np.int64)


def entropy(proba: np.ndarray) -> np.ndarray:
    """Predictive entropy per row of an (N, C) probability matrix (higher = less sure)."""
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """1 - (top1 - top2) per row (higher = less sure)."""
    s = np.sort(proba, axis=1)
    return 1.0 - (s[:, -1] - s[:, -2])


def _top(scores: np.ndarray, n: int, ids: list[str], seed: int) -> np.ndarray:
    # Ties (common with calibrated probabilities) are broken by the hash order, never by input position.
    tie = np.empty(len(ids), dtype=np.int64)
    tie[hash_order(ids, seed)] = np.arange(len(ids))
    return np.lexsort((tie, -scores))[:n]


def kcenter_greedy(X: np.ndarray, n: int, labelled: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Greedy k-center: repeatedly take the point farthest from everything labelled or taken so far."""
    if n <= 0 or len(X) == 0:
        return np.zeros(0, dtype=np.int64)
    if labelled is not None and len(labelled):
        dist = _min_dist(X, labelled)
        first = None
    else:
        dist = np.full(len(X), np.inf, dtype=np.float32)
        first = int(np.random.default_rng(seed).integers(len(X)))
    chosen: list[int] = []
    for _ in range(min(n, len(X))):
        i = first if first is not None and not chosen else int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, ((X - X[i]) ** 2).sum(axis=1))
        dist[i] = -1.0
    return np.array(chosen, dtype=np.int64)


def _min_dist(X: np.ndarray, Y: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.full(len(X), np.inf, dtype=np.float32)
    y2 = (Y ** 2).sum(axis=1)
    for s in range(0, len(X), chunk):
        x = X[s:s + chunk]
        d = (x ** 2).sum(axis=1)[:, None] - 2 * x @ Y.T + y2[None, :]
        out[s:s + chunk] = np.maximum(d.min(axis=1), 0)
    return out


def kmeans_diverse(X: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """k-means (faiss) with k = n; from each cluster the member nearest its centroid."""
    from plumbing.deps import require

    faiss = require("faiss", "annotate")
    n = min(n, len(X))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    Xc = np.ascontiguousarray(X, dtype=np.float32)
    km = faiss.Kmeans(Xc.shape[1], n, niter=20, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(Xc)
    _, assign = km.index.search(Xc, 1)
    dist = ((Xc - km.centroids[assign[:, 0]]) ** 2).sum(axis=1)
    chosen = []
    for c in range(n):
        members = np.flatnonzero(assign[:, 0] == c)
        if len(members):
            chosen.append(int(members[np.argmin(dist[members])]))
    return np.array(chosen, dtype=np.int64)


def select(strategy: str, n: int, ids: list[str], seed: int, proba: np.ndarray | None = None,
           X: np.ndarray | None = None, labelled_X: np.ndarray | None = None,
           hybrid_factor: int = 5) -> np.ndarray:
    """Indices of the `n` candidates `strategy` wants labelled next."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    n = min(n, len(ids))
    needs_model = strategy in ("entropy", "margin", "hybrid")
    if strategy == "random" or (needs_model and proba is None):
        return hash_order(ids, seed)[:n]  # the first round has no model yet: start from a random sample
    if strategy in ("entropy", "margin"):
        return _top(entropy(proba) if strategy == "entropy" else margin(proba), n, ids, seed)
    if strategy == "kcenter":
        return kcenter_greedy(X, n, labelled_X, seed)
    if strategy == "kmeans":
        return kmeans_diverse(X, n, seed)
    # hybrid: the most uncertain hybrid_factor * n, then spread out over them with k-center, so one batch
    # is not n near-copies of the same confusing example.
    short = _top(entropy(proba), min(len(ids), hybrid_factor * n), ids, seed)
    picked = kcenter_greedy(X[short], n, labelled_X, seed)
    return short[picked]
