"""Aspect-ratio bucketed batches from shards, with caption sampling, source mixing and an exact, resumable position.

Every batch holds samples of one bucket only (its key is the export's `W x H`, scaled to the training size).
Each source streams its rank/worker share of shards, reshuffled per epoch, forever, so every rank yields the
same number of batches. Which source gives the next sample, which caption (style, language) a sample gets and
the shard order are all hashes of (seed, ...) rather than RNG state, so the position (`state_dict`) is a few
counters plus the keys waiting in the bucket and shuffle buffers, and resuming from it gives the same next batches.

Export shards hold one bucket each, ordered by key, so reading them in tar order would put the same samples
together in a batch every epoch. An optional shuffle buffer (`shuffle_buffer` samples) breaks that up: each
sample entering it pushes out one picked by a hash of the position, and the buffer's keys are part of the state.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from schemas.shards import LOSE_MEMBER, SOURCE_MEMBER
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


# Second images a sample may carry -> the batch keys of their pixels and of the rows that have one.
EXTRA_IMAGES = {LOSE_MEMBER: ("pixels_lose", "has_lose"), SOURCE_MEMBER: ("pixels_src", "has_src")}


def aesthetic_text(meta: dict, lang: str) -> str:
    """The sample's `aesthetic` caption in `lang` (VMix's aesthetic part), "" when it has none."""
    caps = (meta.get("captions") or {}).get("aesthetic") or {}
    return caps.get(lang) or ""


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
    accept: Callable[[dict], bool] | None = None  # a sample filter (training/data/filters.py); None keeps all
    epoch: int = 0
    shard_pos: int = 0
    sample_pos: int = 0
    filtered: int = 0  # samples passed over by `accept` in this process (logged, not part of the position)
    _it: Iterator | None = field(default=None, repr=False)

    def order(self, seed: int) -> list[str]:
        return sorted(self.shards, key=lambda s: unit_hash("shard", self.name, seed, self.epoch, s))

    def next(self, seed: int) -> Sample:
        """The next sample of this source that its filter keeps; epochs roll over forever (so ranks never run dry)."""
        shard_turns = 0  # shards finished in this call without a sample to give
        while shard_turns <= len(self.shards) * 2 + 1:
            if self._it is None:
                order = self.order(seed)
                self._it = iter_shard(order[self.shard_pos], skip=self.sample_pos)
            sample = next(self._it, None)
            if sample is not None:
                self.sample_pos += 1
                if self.accept is None or self.accept(sample.meta):
                    return sample
                self.filtered += 1
                continue
            self._it, self.sample_pos = None, 0
            self.shard_pos += 1
            shard_turns += 1
            if self.shard_pos >= len(self.shards):
                self.shard_pos, self.epoch = 0, self.epoch + 1
        why = (f"its filter passed over all {self.filtered} samples read (check data.sources.{self.name}'s "
               "min_signals, max_signals, signal_in and labels against the export's signals)" if self.filtered else
               f"check its shards {self.shards[:3]}")
        raise RuntimeError(f"source {self.name!r} yields no readable samples: {why}")


class BucketBatches:
    """Yields batches {pixels (B,3,H,W), captions, aesthetics, langs, styles, ids, sources, bucket, size}, one
    bucket per batch; with `pixels_lose` (B,3,H,W) and `has_lose` (B,) when some sample is a preference pair,
    `pixels_src` and `has_src` when some sample is an edit pair (EXTRA_IMAGES).
    `aesthetics` is each sample's `aesthetic` caption in the language of its caption ("" when it has none)."""

    def __init__(self, sources: dict[str, tuple[list[str], float]], batch_size: int, seed: int = 0,
                 styles: dict[str, float] | None = None, langs: dict[str, float] | None = None,
                 resolution: str | None = None, scale: float = 1.0, multiple: int = 16, rank: int = 0,
                 world: int = 1, worker: int = 0, workers: int = 1, shuffle_buffer: int = 0,
                 filters: dict[str, Callable[[dict], bool]] | None = None, degrade=None):
        """degrade: a refiner stage's DegradeConfig (training/data/degrade.py): every batch then carries
        `pixels_src`, each image degraded as (its key, seed) says and brought back to its size, and `has_src`."""
        filters = filters or {}
        self.degrade = degrade
        self.sources = [Source(n, split_shards(sorted(s), rank, world, worker, workers), w, filters.get(n))
                        for n, (s, w) in sorted(sources.items())]
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        # the hashes of one stream; a lone worker keeps the historic (seed, rank) stream
        self.stream = (seed, rank) if workers == 1 else (seed, rank, worker)
        self.shuffle_buffer = shuffle_buffer
        self.shuffled: list[tuple[str, Sample]] = []  # the shuffle buffer, in a fixed (saved) order
        self._fill_from, self._warned = None, False  # where the shuffle buffer began to fill; warned once
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
        u = unit_hash("source", *self.stream, self.drawn)
        name = weighted_pick([(s.name, s.weight) for s in self.sources], u)
        self.drawn += 1
        src = next(s for s in self.sources if s.name == name)
        return name, src.next(self.seed)

    def _epochs(self) -> list[int]:
        return [s.epoch for s in self.sources]

    def _next_bucketed(self, since: list[int]) -> tuple[str, Sample, str] | None:
        """The next (source, sample, bucket), through the shuffle buffer; None for a sample without a bucket
        and while the buffer fills."""
        if all(s.epoch - e >= 2 for s, e in zip(self.sources, since)):
            raise RuntimeError(f"two passes over the shards gave no batch (skipped: {self.skipped}); check that "
                               f"samples have captions in data.styles x data.langs and a bucket")
        if len(self.shuffled) > self.shuffle_buffer:  # resumed with a smaller buffer: drain the surplus first
            return self._leave()
        name, sample = self._draw()
        bucket = self.bucket_of(sample.meta)
        if not bucket:
            self.skipped["no_bucket"] += 1
            return None
        if not self.shuffle_buffer:
            return name, sample, bucket
        self.shuffled.append((name, sample))
        if len(self.shuffled) < self.shuffle_buffer:
            since[:] = self._epochs()  # no batch can come while the shuffle buffer fills
            self._check_fill()
            return None
        return self._leave()

    def _check_fill(self) -> None:
        """Warn once when a source went round a whole epoch while the shuffle buffer filled."""
        now = [(s.epoch, s.shard_pos, s.sample_pos) for s in self.sources]
        if self._fill_from is None:
            self._fill_from = now
        elif not self._warned and any(p >= (f[0] + 1, *f[1:]) for p, f in zip(now, self._fill_from)):
            self._warned = True
            log.warning("the shuffle buffer (%d samples) is larger than this worker's share of the data, so "
                        "samples repeat in it; lower data.shuffle_buffer", self.shuffle_buffer)

    def _leave(self) -> tuple[str, Sample, str]:
        """Take one sample out of the shuffle buffer, picked by a hash of the position (swap-remove keeps the
        buffer's order a function of the state)."""
        i = int(unit_hash("shuffle", *self.stream, self.drawn, len(self.shuffled)) * len(self.shuffled))
        name, sample = self.shuffled[i]
        self.shuffled[i] = self.shuffled[-1]
        self.shuffled.pop()
        return name, sample, self.bucket_of(sample.meta)

    def __iter__(self):
        since = self._epochs()
        while True:
            got = self._next_bucketed(since)
            if got is None:
                continue
            name, sample, bucket = got
            buf = self.pending.setdefault(bucket, [])
            buf.append((name, sample))
            if len(buf) >= self.batch_size:  # >=: a resume with a smaller batch size must not stall a buffer
                batch_items, self.pending[bucket] = buf[:self.batch_size], buf[self.batch_size:]
                if not self.pending[bucket]:
                    del self.pending[bucket]
                batch = self._collate(bucket, batch_items)
                if batch is not None:
                    since = self._epochs()
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
                extra = {m: decode_to(s.extra[m], size) for m in EXTRA_IMAGES if m in s.extra}
                rows.append((decode_to(s.jpg, size), cap, s.key, name, aesthetic_text(s.meta, cap[1]), extra))
            except Exception as e:  # a corrupt JPEG must not stop a training run  # noqa: BLE001
                log.warning("sample %s of %s: image unreadable (%s); skipped", s.key, s.shard, e)
                self.skipped["bad_image"] += 1
        if not rows:
            return None
        batch = {"pixels": torch.stack([r[0] for r in rows]), "captions": [r[1][2] for r in rows],
                 "aesthetics": [r[4] for r in rows], "styles": [r[1][0] for r in rows],
                 "langs": [r[1][1] for r in rows], "ids": [r[2] for r in rows], "sources": [r[3] for r in rows],
                 "bucket": bucket, "size": size}
        zero = torch.zeros_like(rows[0][0])
        for member, (pixels, has) in EXTRA_IMAGES.items():
            if any(member in r[5] for r in rows):  # rows without this image get zeros and are masked out
                batch[pixels] = torch.stack([r[5].get(member, zero) for r in rows])
                batch[has] = torch.tensor([member in r[5] for r in rows])
        if self.degrade is not None:  # a refiner's condition: made here, in the data workers, not by the trainer
            from training.data.degrade import degrade_batch

            batch["pixels_src"], batch["has_src"] = degrade_batch(batch["pixels"], batch["ids"], self.seed,
                                                                  self.degrade)
        return batch

    def state_dict(self) -> dict:
        """The exact position: counters per source and the keys waiting in the bucket and shuffle buffers."""
        return {"drawn": self.drawn, "skipped": dict(self.skipped),
                "sources": {s.name: [s.epoch, s.shard_pos, s.sample_pos] for s in self.sources},
                "pending": {b: [(n, s.shard, s.key) for n, s in items] for b, items in self.pending.items()},
                "shuffled": [(n, s.shard, s.key) for n, s in self.shuffled]}

    def load_state_dict(self, state: dict) -> None:
        if "workers" in state:
            raise ValueError(f"the saved data position was read with data.workers={state['workers']}, this run "
                             f"reads in-process (data.workers=0); resume with data.workers={state['workers']}")
        self.drawn, self.skipped = state["drawn"], dict(state["skipped"])
        for s in self.sources:
            s.epoch, s.shard_pos, s.sample_pos = state["sources"][s.name]
            s._it = None
        shuffled = state.get("shuffled", [])  # absent in positions saved before the shuffle buffer existed
        found = _fetch([e for items in state["pending"].values() for e in items] + list(shuffled))
        self.pending = {b: [(n, found[shard, key]) for n, shard, key in items if (shard, key) in found]
                        for b, items in state["pending"].items()}
        self.pending = {b: items for b, items in self.pending.items() if items}
        self.shuffled = [(n, found[shard, key]) for n, shard, key in shuffled if (shard, key) in found]


def _fetch(entries: list[tuple[str, str, str]]) -> dict[tuple[str, str], Sample]:
    """Samples by (shard, key) for saved (source, shard, key) entries, reading each shard once."""
    by_shard: dict[str, set[str]] = {}
    for _, shard, key in entries:
        by_shard.setdefault(shard, set()).add(key)
    found = {(shard, k): v for shard, keys in by_shard.items() for k, v in read_keys(shard, keys).items()}
    missing = len({(sh, k) for _, sh, k in entries} - set(found))
    if missing:
        log.warning("%d buffered samples of the saved data position are gone from their shards; resuming "
                    "without them (were the shards rewritten since the checkpoint?)", missing)
    return found
