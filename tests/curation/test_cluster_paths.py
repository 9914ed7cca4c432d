"""Hierarchical k-means: fitted on a sample, assigned in Spark; paths form a tree and do not depend on
partitioning; rows without an embedding get no path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curation.signals.embedding_codec import encode
from curation.steps.cluster import assign_cluster_path, fit_hierarchical_kmeans, paths, parents, sample_embeddings

LEVELS = [12, 4, 2]


def blobs(n: int = 600, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 12 centres that come in 4 well-separated families of 3."""
    rng = np.random.default_rng(seed)
    eye = np.eye(dim)
    centres = np.repeat(eye[:4], 3, axis=0) + 0.7 * eye[4:16]  # blob b: its family's axis + its own axis
    label = rng.integers(0, 12, size=n)
    x = centres[label] + rng.normal(size=(n, dim)) * 0.05
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), label


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_fit_gives_a_tree_that_recovers_the_blobs(backend):
    x, label = blobs()
    cents = fit_hierarchical_kmeans(x, LEVELS, seed=1, backend=backend, nredo=5)
    assert [c.shape for c in cents] == [(k, x.shape[1]) for k in LEVELS]
    p = paths(x, cents, parents(cents))
    assert p.shape == (len(x), 3)
    leaf, top = p[:, -1], p[:, 0]
    # every true blob lands in one leaf, and a leaf has one parent
    purity = np.mean([np.bincount(leaf[label == b]).max() / (label == b).sum() for b in range(12)])
    assert purity > 0.95
    for lf in np.unique(leaf):
        assert len(np.unique(p[leaf == lf], axis=0)) == 1
    # the 4 families stay together at the middle level
    fam = label // 3
    assert np.mean([np.bincount(p[fam == f, 1]).max() / (fam == f).sum() for f in range(4)]) > 0.95
    assert len(np.unique(top)) == 2


def test_resampling_and_bad_levels():
    x, _ = blobs(300)
    cents = fit_hierarchical_kmeans(x, LEVELS, seed=2, resampling_steps=2, sample_size=2)
    assert [len(c) for c in cents] == LEVELS
    with pytest.raises(ValueError, match="fine to coarse"):
        fit_hierarchical_kmeans(x, [2, 4], seed=0)
    with pytest.raises(ValueError, match="fewer clusters"):
        fit_hierarchical_kmeans(x[:5], [10], seed=0)


@pytest.mark.spark
def test_spark_assignment_matches_numpy_and_ignores_partitioning(spark):
    x, _ = blobs(400)
    ids = [f"r{i:04d}" for i in range(len(x))]
    cells = encode(x)
    pdf = pd.DataFrame({"id": ids, "img_emb": pd.Series(cells, dtype=object), "error": None})
    pdf.loc[5, "img_emb"] = None  # no embedding: no path
    pdf.loc[6, "error"] = "decode_error"
    df = spark.createDataFrame(pdf, "id string, img_emb binary, error string")

    sample = sample_embeddings(df.repartition(3), 200, seed=4)
    assert sample.shape == (200, x.shape[1])
    assert np.array_equal(sample, sample_embeddings(df.repartition(1), 200, seed=4))
    cents = fit_hierarchical_kmeans(sample, LEVELS, seed=4)

    def run(parts: int) -> dict:
        out = assign_cluster_path(df.repartition(parts), cents).collect()
        return {r["id"]: r["cluster_path"] for r in out}

    got = run(4)
    assert got == run(1)
    assert len(got) == len(x) and got["r0005"] is None
    want = paths(np.stack([np.frombuffer(c, "<f2").astype(np.float32) for c in cells]), cents, parents(cents))
    for i, rid in enumerate(ids):
        if rid != "r0005":
            assert list(got[rid]) == want[i].tolist()
