"""64-bit DCT perceptual hash (pHash) of the shared reduced decode, and of its mirror image.

The hash is the sign of the 8x8 lowest DCT-II frequencies of a 32x32 luma thumbnail against their median
(the classic pHash, as in the `imagehash` package). A plain pHash does not match a mirrored copy, so the
scorer also stores `phash_flip`, the hash of the horizontally mirrored image. It costs no second DCT:
mirroring x -> N-1-x multiplies the coefficient of horizontal frequency u by (-1)^u. The near-dup step
compares a row's `phash` with the other row's `phash` and `phash_flip`.

Hashes are stored as signed int64 (Spark has no unsigned 64-bit type); the bits are what matter, and
Spark's `bit_count(a ^ b)` is their Hamming distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.signals.analysis import Decoded

HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
THUMB = 32  # DCT input side: 4x the hash side, as in pHash


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: (n, n), row u is frequency u."""
    x = np.arange(n)
    m = np.cos(np.pi * (2 * x[None, :] + 1) * np.arange(n)[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(THUMB)
_MIRROR_SIGN = np.where(np.arange(HASH_SIZE) % 2 == 0, 1.0, -1.0)[None, :]  # (1, 8): (-1)^u over columns


def _bits_to_int64(bits: np.ndarray) -> int:
    """64 booleans, most significant first -> a signed int64 with the same bits."""
    value = 0
    for b in bits.ravel():
        value = (value << 1) | int(b)
    return int(np.int64(np.uint64(value)))


def low_frequencies(luma: np.ndarray) -> np.ndarray:
    """(THUMB, THUMB) luma -> (8, 8) lowest DCT frequencies (rows: vertical, columns: horizontal)."""
    coef = _DCT @ luma.astype(np.float64) @ _DCT.T
    return coef[:HASH_SIZE, :HASH_SIZE]


def hash_low(low: np.ndarray) -> int:
    return _bits_to_int64(low > np.median(low))


def phash_pair(image) -> tuple[int, int]:
    """(phash, phash of the horizontal mirror) of a PIL image."""
    from PIL import Image

    thumb = image.convert("L").resize((THUMB, THUMB), Image.Resampling.LANCZOS)
    low = low_frequencies(np.asarray(thumb, dtype=np.float64))
    return hash_low(low), hash_low(low * _MIRROR_SIGN)


def hamming(a, b) -> np.ndarray:
    """Bitwise Hamming distance of int64 arrays (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)).view(np.uint64)
    return np.bitwise_count(x) if hasattr(np, "bitwise_count") else _popcount(x)


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    return np.unpackbits(x.reshape(-1, 1).view(np.uint8), axis=1).sum(axis=1).reshape(x.shape)


@dataclass(frozen=True)
class PHashSignal:
    """`phash` and `phash_flip` from the shared reduced decode (an ImageSignal for `ImageSignals`)."""

    name: ClassVar[str] = "phash"
    columns: ClassVar[dict[str, pa.DataType]] = {"phash": pa.int64(), "phash_flip": pa.int64()}

    def load(self) -> None:
        pass

    def score_image(self, img: Decoded) -> dict:
        h, hf = phash_pair(img.image)
        return {"phash": h, "phash_flip": hf}
