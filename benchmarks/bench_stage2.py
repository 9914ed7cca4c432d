"""Stage-2 dedup and clustering at scale, side by side in one run on this machine.

    python -m benchmarks.bench_stage2 [--hashes 1000000] [--baseline-hashes 20000] [--rows 1000000]
                                         [--dim 512] [--levels 1000 100 10] [--sample 100000] [--cores 2]
                                         [--skip a b c e] [--json FILE]

(e) near-dup quality: the benchmark of synthetic/near_dup_data.py (every usable tile of the bundled photos,
    6 edited copies per group) through `near_dedup` at its default threshold, LSH and exact candidates:
    precision and recall of the dropped rows, recall per edit, largest group, share of pairs within the
    threshold found as edges.
(a) perceptual dedup of `--hashes` synthetic 64-bit hashes (uniform, 10% planted copies with 0..8 bits
    flipped, a mirrored hash per row) in Spark local mode with LSH candidates: wall time and peak memory
    (RSS of this process, the JVM and the Python workers, sampled every 0.2 s), planted copies found;
    baseline in the same run: exact and LSH candidates at `--baseline-hashes`.
(b) `--rows` x `--dim` float16 embeddings (planted duplicate groups), generated in Spark and written to
    Parquet first (untimed); then timed: drawing the fitting sample, fitting the hierarchical k-means with
    faiss and with scikit-learn MiniBatchKMeans (ratio), assigning every row's path in Spark, semantic dedup
    over the leaves. Only the sample reaches the driver.
(c) open_clip ViT-B-32 (random weights, pretrained=None) image-embedding throughput on CPU, one thread:
    images/s/core at batch 32.
(d) GPU end to end: not run here (no GPU in this session).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.benchlib import cpu_model, log


class PeakRSS:
    """Peak summed RSS (bytes) of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    def _tree(self) -> int:
        kids: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                kids.setdefault(ppid, []).append(int(d))
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            todo += kids.get(pid, [])
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree())
            self._stop.wait(self.every)

    def __enter__(self):
        self.peak = self.start = self._tree()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def synthetic_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(phash, phash_flip) for row ids; rows >= 0.9 n copy row (i - 0.9n) with 0..8 bits flipped."""
    with np.errstate(over="ignore"):
        cut = int(n * 0.9)
        src = np.where(ids >= cut, ids - cut, ids)
        h = _splitmix(src)
        flips = np.zeros(len(ids), dtype=np.uint64)
        copy = ids >= cut
        k = (_splitmix(ids + np.uint64(7 << 40)) % np.uint64(9)).astype(np.int64)
        for r in range(8):
            pos = _splitmix(ids * np.uint64(31) + np.uint64(r)) % np.uint64(64)
            flips |= np.where(copy & (r < k), np.uint64(1) << pos, np.uint64(0))
        return (h ^ flips).view(np.int64), _splitmix(src + np.uint64(1 << 50)).view(np.int64)


def bench_near_quality() -> dict:
    """(e) the real-photo near-dup benchmark through near_dedup at the default threshold."""
    from curation.signals.analysis import decode_for_analysis
    from curation.signals.phash import PHashSignal
    from curation.spark import session
    from synthetic.near_dup_data import jpeg_bytes, make_benchmark, originals

    n_tiles = len(originals())
    groups = int(n_tiles * 0.6)
    items = make_benchmark(n_groups=groups, copies=6, n_singletons=n_tiles - groups, seed=11)
    sig = PHashSignal()
    rows = [{"id": it.id, "phash": h["phash"], "phash_flip": h["phash_flip"], "q_sharpness": float(i % 97)}
            for i, it in enumerate(items) for h in [sig.score_image(decode_for_analysis(jpeg_bytes(it.image)))]]
    spark = session(f"local[{ARGS.cores}]")
    df = spark.createDataFrame(rows, "id string, phash bigint, phash_flip bigint, q_sharpness double")
    return {c: near_quality_run(df, items, groups, rows, c) for c in ("lsh", "exact")}


def near_quality_run(df, items, groups: int, rows, candidates: str) -> dict:
    """Precision/recall of near_dedup with one candidate generator, and the share of all pairs within
    the threshold (brute force) that it finds as edges (1 for exact by the pigeonhole argument)."""
    from curation.steps.dedup import DEFAULT_MAX_HAMMING, _hash_matrix, min_hamming, near_dedup, near_edges

    import pandas as pd

    h = _hash_matrix(pd.DataFrame(rows), ["phash", "phash_flip"])
    ids = np.array([r["id"] for r in rows])
    ii, jj = np.nonzero(np.triu(min_hamming(h, h) <= DEFAULT_MAX_HAMMING, 1))
    within = {tuple(sorted(p)) for p in zip(ids[ii], ids[jj])}
    edges = {(r["a"], r["b"]) for r in near_edges(df, ["phash", "phash_flip"], DEFAULT_MAX_HAMMING,
                                                   candidates=candidates).collect()}
    out = near_dedup(df, candidates=candidates).collect()
    marks = {r["id"]: r["dup_of"] for r in out}
    grouped = {r["id"]: r["dup_group"] for r in out}
    group = {it.id: it.group for it in items}
    edit = {it.id: it.edit for it in items}
    dropped = [(i, of) for i, of in marks.items() if of]
    right = [i for i, of in dropped if group[i] == group[of]]
    per_edit = {}
    for e in sorted({it.edit for it in items} - {"original"}):
        # a copy is found when it ends in the same dup group as its original (either may be the kept one)
        members = [it.id for it in items if it.edit == e]
        per_edit[e] = round(sum(grouped[m] is not None and grouped[m] == grouped[group[m]] for m in members)
                            / len(members), 3)
    sizes = {}
    for i, of in dropped:
        sizes[of] = sizes.get(of, 1) + 1
    return {"candidates": candidates, "images": len(items), "groups": groups, "copies_per_group": 6,
            "max_hamming": DEFAULT_MAX_HAMMING, "pairs_within_threshold": len(within),
            "edge_recall_within_threshold": round(len(edges & within) / max(1, len(within)), 4),
            "edges_outside_threshold": len(edges - within),
            "precision": round(len(right) / max(1, len(dropped)), 4),
            "recall": round(len(right) / (groups * 6), 4), "recall_by_edit": per_edit,
            "largest_group": max(sizes.values(), default=1), "edit_of": sorted(set(edit.values()))}


def bench_near_scale(workdir: Path) -> dict:
    """(a) near_dedup (LSH candidates) of ARGS.hashes synthetic hashes; baseline: exact and LSH at a small N."""
    out = {"lsh": near_scale_run(workdir, ARGS.hashes, "lsh")}
    if ARGS.baseline_hashes:
        out["baseline"] = {c: near_scale_run(workdir, ARGS.baseline_hashes, c) for c in ("exact", "lsh")}
        b = out["baseline"]
        out["baseline"]["exact_over_lsh_wall"] = round(b["exact"]["wall_s"] / max(b["lsh"]["wall_s"], 1e-9), 2)
    return out


def near_scale_run(workdir: Path, n: int, candidates: str) -> dict:
    """near_dedup of `n` synthetic hashes in Spark local mode with the given candidate generator."""
    import pandas as pd

    from curation.spark import session
    from curation.steps.dedup import DEFAULT_MAX_HAMMING, near_dedup
    from curation.steps.lsh import DEFAULT_BITS, DEFAULT_TABLES
    spark = session(f"local[{ARGS.cores}]", driver_memory="4g")
    path = str(workdir / f"hashes_{n}")

    def gen(batches):
        for pdf in batches:
            ids = pdf["id"].to_numpy().astype(np.uint64)
            h, f = synthetic_hashes(ids, n)
            yield pd.DataFrame({"id": [f"h{i:09d}" for i in ids], "phash": h, "phash_flip": f,
                                "q_sharpness": (ids % 101).astype(float)})

    spark.range(n, numPartitions=max(4, n // 100_000)).mapInPandas(
        gen, "id string, phash bigint, phash_flip bigint, q_sharpness double").write.mode("overwrite").parquet(path)
    df = spark.read.parquet(path)
    with PeakRSS() as m:
        out = near_dedup(df, candidates=candidates).cache()
        dropped = out.filter("dup_of IS NOT NULL").count()
    planted = n - int(n * 0.9)
    # planted copies whose kept member is their source row (ids h<src> and h<src + 0.9n>)
    cut = int(n * 0.9)
    found = out.filter("dup_of IS NOT NULL").selectExpr("int(substr(id, 2)) AS i", "int(substr(dup_of, 2)) AS o") \
        .filter(f"(i >= {cut} AND i - {cut} = o) OR (o >= {cut} AND o - {cut} = i)").count()
    out.unpersist()
    return {"hashes": n, "candidates": candidates, "max_hamming": DEFAULT_MAX_HAMMING,
            "lsh_bits_tables": [DEFAULT_BITS, DEFAULT_TABLES] if candidates == "lsh" else None,
            "wall_s": round(m.wall, 1), "planted_found": found,
            "rss_before_gib": round(m.start / 2**30, 2), "peak_rss_gib": round(m.peak / 2**30, 2),
            "dropped": dropped, "planted_copies": planted}


def bench_embeddings(workdir: Path) -> dict:
    """(b) sample, hierarchical k-means (faiss vs sklearn), Spark assignment, semantic dedup."""
    import pandas as pd

    from curation.signals.embedding_codec import encode
    from curation.spark import session
    from curation.steps.cluster import assign_cluster_path, fit_hierarchical_kmeans, sample_embeddings
    from curation.steps.dedup import semantic_dedup

    n, dim = ARGS.rows, ARGS.dim
    spark = session(f"local[{ARGS.cores}]", driver_memory="4g")
    path = str(workdir / f"emb_{n}_{dim}")
    centres = np.random.default_rng(0).normal(size=(2000, dim)).astype(np.float32)

    def gen(batches):
        for pdf in batches:
            ids = pdf["id"].to_numpy()
            src = np.where(ids % 20 == 19, ids - 1, ids)  # 5% planted near-copies of their neighbour
            rng = np.random.default_rng(int(ids[0]))
            base = np.stack([np.random.default_rng(int(s)).normal(size=dim) for s in src]).astype(np.float32)
            x = centres[src % len(centres)] + 0.7 * base + rng.normal(size=(len(ids), dim)).astype(np.float32) * 0.02
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield pd.DataFrame({"id": [f"e{i:09d}" for i in ids], "img_emb": encode(x),
                                "q_sharpness": (ids % 101).astype(float)})

    spark.range(n, numPartitions=max(4, n // 50_000)).mapInPandas(
        gen, "id string, img_emb binary, q_sharpness double").write.mode("overwrite").parquet(path)
    df = spark.read.parquet(path)
    out: dict = {"rows": n, "dim": dim, "levels": ARGS.levels, "sample": ARGS.sample,
                 "load_avg_1m_start": os.getloadavg()[0]}
    with PeakRSS() as m:
        sample = sample_embeddings(df, ARGS.sample, seed=0)
    out["sample_s"], out["sample_peak_rss_gib"] = round(m.wall, 1), round(m.peak / 2**30, 2)
    fits = {}
    for backend in ("faiss", "sklearn"):
        with PeakRSS() as m:
            fits[backend] = fit_hierarchical_kmeans(sample, ARGS.levels, seed=0, backend=backend)
        out[f"fit_{backend}_s"], out[f"fit_{backend}_peak_rss_gib"] = round(m.wall, 1), round(m.peak / 2**30, 2)
    out["fit_sklearn_over_faiss"] = round(out["fit_sklearn_s"] / max(out["fit_faiss_s"], 1e-9), 2)
    with PeakRSS() as m:
        paths = assign_cluster_path(df, fits["faiss"]).cache()
        paths.count()
    out["assign_s"], out["assign_peak_rss_gib"] = round(m.wall, 1), round(m.peak / 2**30, 2)
    out["rss_before_assign_gib"] = round(m.start / 2**30, 2)
    with PeakRSS() as m:
        dups = semantic_dedup(paths, threshold=0.95, order="q_sharpness DESC").filter("dup_of IS NOT NULL").count()
    out["semantic_s"], out["semantic_peak_rss_gib"] = round(m.wall, 1), round(m.peak / 2**30, 2)
    out["semantic_dropped"], out["planted_copies"] = dups, n // 20
    out["load_avg_1m_end"] = os.getloadavg()[0]
    return out


def bench_vit() -> dict:
    """(c) open_clip ViT-B-32, random weights, CPU, one thread."""
    import torch

    import open_clip

    torch.set_num_threads(1)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    x = torch.randn(32, 3, 224, 224)
    with torch.inference_mode():
        model.encode_image(x[:4])  # warm-up
        t, cpu = time.perf_counter(), time.process_time()
        reps = 3
        for _ in range(reps):
            model.encode_image(x)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    # per CPU-second is what one dedicated core would do; wall rate shows how shared the machine was
    return {"batch": 32, "threads": 1, "images_per_s_per_core": round(32 * reps / wall, 2),
            "images_per_cpu_s": round(32 * reps / cpu, 2), "load_avg_1m": os.getloadavg()[0]}


def main() -> None:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hashes", type=int, default=1_000_000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--levels", type=int, nargs="+", default=[1000, 100, 10])
    p.add_argument("--sample", type=int, default=100_000)
    p.add_argument("--baseline-hashes", type=int, default=20_000, help="(a): exact vs LSH at this N (0: skip)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c", "e"])
    p.add_argument("--workdir", default="/tmp/bench_stage2")
    p.add_argument("--json")
    ARGS = p.parse_args()
    workdir = Path(ARGS.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    res: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs", "args": vars(ARGS)}
    for key, fn in (("e", bench_near_quality), ("c", bench_vit), ("a", lambda: bench_near_scale(workdir)),
                    ("b", lambda: bench_embeddings(workdir))):
        if key in ARGS.skip:
            continue
        log(f"running ({key}) ...")
        res[key] = fn()
        log(json.dumps(res[key]))
    res["d"] = "not run: no GPU in this session"
    text = json.dumps(res, indent=1)
    print(text)
    if ARGS.json:
        Path(ARGS.json).write_text(text)


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
