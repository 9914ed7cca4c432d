"""Aspect-ratio buckets: a ladder of (W, H) with W*H near resolution², sides multiples of `divisible`.

A sample goes to the bucket whose ratio is closest to its own in log space, so 2:1 and 1:2 are equally
far from 1:1. Same scheme as diffusers' `generate_aspect_ratio_buckets` / kohya's bucket resolutions.
"""

from __future__ import annotations

import math


def bucket_size(resolution: int, ratio: float, divisible: int) -> tuple[int, int]:
    """(W, H) with W/H ≈ ratio and W*H ≈ resolution², both sides multiples of `divisible`."""
    w = resolution * math.sqrt(ratio)
    h = resolution / math.sqrt(ratio)
    return (max(divisible, round(w / divisible) * divisible), max(divisible, round(h / divisible) * divisible))


def ladder(resolution: int, ratios, divisible: int = 64) -> list[tuple[int, int]]:
    """Distinct buckets of the ladder, ordered by ratio (rounding can merge neighbours)."""
    if resolution < divisible:
        raise ValueError(f"resolution {resolution} is below the bucket multiple {divisible}")
    bad = [r for r in ratios if not r > 0]
    if bad:
        raise ValueError(f"aspect ratios must be > 0, got {bad}")
    sizes = {bucket_size(resolution, r, divisible) for r in ratios}
    return sorted(sizes, key=lambda wh: wh[0] / wh[1])


def nearest(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket closest in log aspect ratio; ties go to the squarer bucket (first in a stable order)."""
    if not width or not height or width <= 0 or height <= 0:
        raise ValueError(f"cannot bucket an image of {width}x{height}")
    r = math.log(width / height)
    return min(buckets, key=lambda wh: (abs(math.log(wh[0] / wh[1]) - r), abs(math.log(wh[0] / wh[1]))))


def name(wh: tuple[int, int]) -> str:
    return f"{wh[0]}x{wh[1]}"


class Ladders:
    """The ladders of every target resolution; the first resolution is the primary one."""

    def __init__(self, resolutions, ratios, divisible: int = 64):
        self.resolutions = tuple(resolutions)
        self.ladders = {res: ladder(res, ratios, divisible) for res in self.resolutions}

    def assign(self, width: int, height: int) -> tuple[str, dict[str, str]]:
        """(primary bucket name, {resolution: bucket name}) for an image of width x height."""
        per = {str(res): name(nearest(width, height, lad)) for res, lad in self.ladders.items()}
        return per[str(self.resolutions[0])], per

    def describe(self) -> dict[str, list[str]]:
        return {str(res): [name(wh) for wh in lad] for res, lad in self.ladders.items()}
