"""Trainer data loader throughput: in-process reading vs DataLoader workers, and the shuffle buffer's cost.

Writes toy export shards with photo-like JPEGs (shapes plus noise, so the JPEGs are as heavy to decode as photos
of that size), then times batches out of the same shards in one run: in-process (data.workers=0) with and
without the shuffle buffer, and with 2 worker processes, taking turns over a few rounds (medians). The ratios
are the figures to read; the workers' gain is bounded by the free cores. It also times
restoring a saved position (re-reading the keys held in the shuffle buffer and the bucket buffers).

    .venv/bin/python -m benchmarks.bench_train_data --n 600 --size 768 --batches 15 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.benchlib import cpu_model, log


def write_export(folder: Path, n: int, size: int) -> list[str]:
    import numpy as np
    from PIL import Image

    from synthetic.toy_shapes import make_samples, write_shards
    from training.data.shards import list_shards

    rng = np.random.default_rng(0)
    samples = []
    for im, meta in make_samples(n, size, seed=0):
        noisy = np.clip(np.asarray(im, dtype=np.int16) + rng.integers(-40, 40, (size, size, 3)), 0, 255)
        samples.append((Image.fromarray(noisy.astype(np.uint8)), meta))
    write_shards(samples, folder, shard_size=50)
    return list_shards(folder)


def make(shards: list[str], batch: int, shuffle: int, scale: float):
    from training.data.buckets import BucketBatches

    return partial(BucketBatches, {"bench": (shards, 1.0)}, batch, 0, scale=scale, shuffle_buffer=shuffle)


def rates(streams: dict, rounds: int, count: int, skip: int, step_s: float = 0.0) -> dict[str, float]:
    """Median samples/s per stream over `rounds` rounds of `count` batches, the streams taking turns (so a
    shared machine's load falls on all alike); the first `skip` batches of a turn are not timed (workers
    read ahead while the others run). `step_s` of sleep per batch stands in for a GPU step that leaves the
    CPU free: in-process reading adds to it, workers overlap with it."""
    its = {k: iter(v) for k, v in streams.items()}
    got: dict[str, list[float]] = {k: [] for k in streams}
    for r in range(rounds):
        for k, it in its.items():
            for _ in range(skip):
                next(it)
            t0, n = time.perf_counter(), 0
            for _ in range(count):
                n += len(next(it)["ids"])
                time.sleep(step_s)
            got[k].append(n / (time.perf_counter() - t0))
            log(f"round {r}: {k} {got[k][-1]:.1f} samples/s")
    return {k: statistics.median(v) for k, v in got.items()}


def resume_seconds(factory) -> tuple[float, int]:
    """(seconds to restore a position, samples it re-read) after the stream has run a while."""
    a = factory()
    it = iter(a)
    for _ in range(10):
        next(it)
    state = a.state_dict()
    held = len(state["shuffled"]) + sum(len(v) for v in state["pending"].values())
    t0 = time.perf_counter()
    factory().load_state_dict(state)
    return time.perf_counter() - t0, held


def main() -> None:
    import torch

    from training.data.loader import WorkerBatches

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--size", type=int, default=768, help="side of the square JPEGs in the shards")
    ap.add_argument("--scale", type=float, default=0.5, help="train at bucket size x scale (decode + resize)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=15, help="timed batches per stream and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shuffle", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--step-ms", type=int, default=150, help="a stand-in training step per batch (sleep); 0: none")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"writing {args.n} samples of {args.size}px")
        shards = write_export(Path(tmp), args.n, args.size)
        mb = sum(os.path.getsize(s) for s in shards) / 2 ** 20
        res = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": os.getloadavg()[0], "samples": args.n,
               "jpeg_px": args.size, "shard_mb": round(mb, 1), "batch": args.batch, "rounds": args.rounds,
               "batches_per_round": args.batches}
        loader = WorkerBatches(make(shards, args.batch, args.shuffle, args.scale), args.workers)
        streams = {"inproc_plain": make(shards, args.batch, 0, args.scale)(),
                   "inproc_shuffle": make(shards, args.batch, args.shuffle, args.scale)(),
                   f"workers{args.workers}_shuffle": loader}
        for it in streams.values():  # fill the shuffle buffers and start the workers before timing
            next(iter(it))
        res.update(rates(streams, args.rounds, args.batches, 2 * args.workers))
        if args.step_ms:
            del streams["inproc_plain"]
            step = rates(streams, args.rounds, args.batches, 2 * args.workers, args.step_ms / 1000)
            res.update({f"{k}_step{args.step_ms}ms": v for k, v in step.items()})
        loader.close()
        res["resume_s_shuffle"], res["resume_held_shuffle"] = resume_seconds(make(shards, args.batch, args.shuffle,
                                                                                  args.scale))
        res["resume_s_plain"], res["resume_held_plain"] = resume_seconds(make(shards, args.batch, 0, args.scale))
        res["load_after"] = os.getloadavg()[0]
    res["shuffle_vs_plain"] = res["inproc_shuffle"] / res["inproc_plain"]
    res["workers_vs_inproc"] = res[f"workers{args.workers}_shuffle"] / res["inproc_shuffle"]
    if args.step_ms:
        res["workers_vs_inproc_with_step"] = (res[f"workers{args.workers}_shuffle_step{args.step_ms}ms"]
                                              / res[f"inproc_shuffle_step{args.step_ms}ms"])
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
