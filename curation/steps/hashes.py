"""Perceptual hashes as numpy matrices, and their distances: what both near-dup candidate finders verify with.

A row's hashes are one matrix row: column 0 its own pHash, the others (e.g. the hash of its mirror image)
matched against the other row's column 0. A missing hash is NULL_HASH.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# 1 then 63 zeros: far from any real pHash (those have 32 ones), so a missing hash matches nothing
NULL_HASH = np.iinfo(np.int64).min


def hash_matrix(pdf: pd.DataFrame, hash_cols) -> np.ndarray:
    """(n, len(hash_cols)) int64: the hash columns of `pdf`, a missing hash as NULL_HASH."""
    return np.stack([pdf[c].fillna(NULL_HASH).astype("int64").to_numpy() for c in hash_cols], axis=1)


def min_hamming(hashes_a: np.ndarray, hashes_b: np.ndarray) -> np.ndarray:
    """(na, h), (nb, h) int64 -> (na, nb): the least distance of a's primary to b's hashes or b's primary
    to a's (column 0 is the primary hash; others, e.g. the mirrored hash, may be NULL_HASH)."""
    from curation.signals.phash import hamming

    best = hamming(hashes_a[:, :1], hashes_b[:, 0][None, :]).astype(np.int16)
    for c in range(1, hashes_a.shape[1]):
        for d in (hamming(hashes_a[:, c:c + 1], hashes_b[:, 0][None, :]),
                  hamming(hashes_a[:, :1], hashes_b[:, c][None, :])):
            best = np.minimum(best, d)
    return best


def pair_min_hamming(ha: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """Row-wise `min_hamming` of paired rows: (m, h), (m, h) -> (m,)."""
    from curation.signals.phash import hamming

    best = hamming(ha[:, 0], hb[:, 0])
    for c in range(1, ha.shape[1]):
        best = np.minimum(best, np.minimum(hamming(ha[:, c], hb[:, 0]), hamming(ha[:, 0], hb[:, c])))
    return best
