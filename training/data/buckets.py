"""Aspect-ratio bucketed batches from shards, with caption sampling, source mixing and an exact, resumable position.

Every batch holds samples of one bucket only (its key is the export's `W x H`, scaled to the training size).
Each source streams its rank/worker share of shards, reshuffled per epoch, forever, so every rank yields the
same number of batches. Which source gives the next sample, which caption (style, language) a sample gets and
the shard order are all hashes of (seed, ...) rather than RNG state, so the position (`state_dict`) is a few
counters plus the keys waiting in the bucket buffers, and resuming from it gives the same next batches.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from training.data.shards import Sample, iter_shard, read_keys, split_shards

log = logging.getLogger(__name__)


def unit_hash(*parts) -> float:
    """A deterministic number in [0, 1) from the parts (DESIGN rule 7: random choices are hashes)."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2 ** 64


def weighted_pick(options: list[tuple[str, float]], u: float) -> str | None:
    total = sum(w for _, w in options)
    if total <= 0:
        return None
    acc = 0.0
    for name, w in options:
        acc += w / total
        if u < acc:
            return name
    return options[-1][0]


def parse_bucket(bucket: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in bucket.lower().split("x"))
    except ValueError:
        raise ValueError(f"aspect bucket {bucket!r} is not of the form WxH, e.g. 1024x768") from None
    return w, h


def train_size(bucket: str, scale: float = 1.0, multiple: int = 16) -> tuple[int, int]:
    """(W, H) in pixels to train at: the bucket scaled, rounded to a multiple of the VAE factor x patch."""
    w, h = parse_bucket(bucket)
    return max(multiple, round(w * scale / multiple) * multiple), max(multiple, round(h * scale / multiple) * multiple)


def choose_caption(meta: dict, styles: dict[str, float], langs: dict[str, float], seed: int, epoch: int):
    """(style, lang, text) drawn by weight among the captions a sample has; None if it has none we want."""
    caps = meta.get("captions") or {}
    options = [(f"{s}\t{l}", styles.get(s, 0.0) * langs.get(l, 0.0))
               for s in sorted(caps) for l in sorted(caps[s]) if caps[s][l]]
    pick = weighted_pick([o for o in options if o[1] > 0], unit_hash("caption", meta.get("id"), seed, epoch))
    if pick is None:
        return None
    s, l = pick.split("\t")
    return s, l, caps[s][l]


def decode_to(jpg: bytes, size: tuple[int, int]):
    """JPEG bytes -> float tensor (3, H, W) in [-1, 1]: resized to cover the bucket, centre-cropped."""
    import numpy as np
    import torch
    from PIL import Image

    w, h = size
    im = Image.open(io.BytesIO(jpg)).convert("RGB")
    s = max(w / im.width, h / im.height)
    im = im.resize((max(w, round(im.width * s)), max(h, round(im.height * s))), Image.Resampling.BICUBIC)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    arr = np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass
class Source:
    name: str
    shards: list[str]
    weight: float = 1.0
    epoch: int = 0
    shard_pos: int = 0
    sample_pos: int = 0
    _it: Iterator | None = field(default=None, repr=False)

    def order(self, seed: int) -> list[str]:
        return sorted(self.shards, key=lambda s: unit_hash("shard", self.name, seed, self.epoch, s))

    def next(self, seed: int) -> Sample:
        """The next sample of this source; epochs roll over forever (so ranks never run dry)."""
        for _ in range(len(self.shards) * 2 + 2):
            if self._it is None:
                order = self.order(seed)
                self._it = iter_shard(order[self.shard_pos], skip=self.sample_pos)
            sample = next(self._it, None)
            if sample is not None:
                self.sample_pos += 1
                return sample
            self._it, self.sample_pos = None, 0
            self.shard_pos += 1
            if self.shard_pos >= len(self.shards):
                self.shard_pos, self.epoch = 0, self.epoch + 1
        raise RuntimeError(f"source {self.name!r} yields no readable samples; check its shards {self.shards[:3]}")


class BucketBatches:
    """Yields batches {pixels (B,3,H,W), captions, langs, styles, ids, sources, bucket}, one bucket per batch."""

    def __init__(self, sources: dict[str, tuple[list[str], float]], batch_size: int, seed: int = 0,
                 styles: dict[str, float] | None = None, langs: dict[str, float] | None = None,
                 resolution: str | None = None, scale: float = 1.0, multiple: int = 16, rank: int = 0,
                 world: int = 1, worker: int = 0, workers: int = 1):
        self.sources = [Source(n, split_shards(sorted(s), rank, world, worker, workers), w)
                        for n, (s, w) in sorted(sources.items())]
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.styles = styles or {"short": 1.0, "long": 1.0, "alt": 0.5, "text_in_image": 1.0}
        self.langs = langs or {"zh": 1.0, "en": 1.0}
        self.resolution, self.scale, self.multiple = resolution, scale, multiple
        self.drawn = 0  # samples drawn from the mixed stream so far
        self.pending: dict[str, list[tuple[str, Sample]]] = {}
        self.skipped = {"no_caption": 0, "bad_image": 0, "no_bucket": 0}

    def bucket_of(self, meta: dict) -> str | None:
        if self.resolution and isinstance(meta.get("aspect_buckets"), dict):
            return meta["aspect_buckets"].get(self.resolution)
        return meta.get("aspect_bucket")

    def _draw(self) -> tuple[str, Sample]:
        u = unit_hash("source", self.seed, self.rank, self.drawn)
        name = weighted_pick([(s.name, s.weight) for s in self.sources], u)
        self.drawn += 1
        src = next(s for s in self.sources if s.name == name)
        return name, src.next(self.seed)

    def __iter__(self):
        since = [s.epoch for s in self.sources]
        while True:
            if all(s.epoch - e >= 2 for s, e in zip(self.sources, since)):
                raise RuntimeError(f"two passes over the shards gave no batch (skipped: {self.skipped}); check that "
                                   f"samples have captions in data.styles x data.langs and a bucket")
            name, sample = self._draw()
            bucket = self.bucket_of(sample.meta)
            if not bucket:
                self.skipped["no_bucket"] += 1
                continue
            buf = self.pending.setdefault(bucket, [])
            buf.append((name, sample))
            if len(buf) >= self.batch_size:  # >=: a resume with a smaller batch size must not stall a buffer
                batch_items, self.pending[bucket] = buf[:self.batch_size], buf[self.batch_size:]
                if not self.pending[bucket]:
                    del self.pending[bucket]
                batch = self._collate(bucket, batch_items)
                if batch is not None:
                    since = [s.epoch for s in self.sources]
                    yield batch

    def _collate(self, bucket: str, items: list[tuple[str, Sample]]) -> dict | None:
        import torch

        size = train_size(bucket, self.scale, self.multiple)
        rows = []
        for name, s in items:
            src = next(x for x in self.sources if x.name == name)
            cap = choose_caption(s.meta, self.styles, self.langs, self.seed, src.epoch)
            if cap is None:
                self.skipped["no_caption"] += 1
                continue
            try:
                rows.append((decode_to(s.jpg, size), cap, s.key, name))
            except Exception as e:  # a corrupt JPEG must not stop a training run  # noqa: BLE001
                log.warning("sample %s of %s: image unreadable (%s); skipped", s.key, s.shard, e)
                self.skipped["bad_image"] += 1
        if not rows:
            return None
        return {"pixels": torch.stack([r[0] for r in rows]), "captions": [r[1][2] for r in rows],
                "styles": [r[1][0] for r in rows], "langs": [r[1][1] for r in rows], "ids": [r[2] for r in rows],
                "sources": [r[3] for r in rows], "bucket": bucket, "size": size}

    def state_dict(self) -> dict:
        """The exact position: counters per source and the keys waiting in each bucket buffer."""
        return {"drawn": self.drawn, "skipped": dict(self.skipped),
                "sources": {s.name: [s.epoch, s.shard_pos, s.sample_pos] for s in self.sources},
                "pending": {b: [(n, s.shard, s.key) for n, s in items] for b, items in self.pending.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.drawn, self.skipped = state["drawn"], dict(state["skipped"])
        for s in self.sources:
            s.epoch, s.shard_pos, s.sample_pos = state["sources"][s.name]
            s._it = None
        self.pending = {}
        for bucket, items in state["pending"].items():
            by_shard: dict[str, set] = {}
            for _, shard, key in items:
                by_shard.setdefault(shard, set()).add(key)
            found = {k: v for shard, keys in by_shard.items() for k, v in read_keys(shard, keys).items()}
            self.pending[bucket] = [(n, found[key]) for n, _, key in items if key in found]
