"""Learning curves of the loop's selection strategies on a labelled task; random selection is the baseline.

Two pools:

* `generated` (default): 22,000 embedding-like vectors (64 dims, 40 clusters of very different sizes,
  one linear concept, 3% label noise), 2,000 of them held out for testing.
* `structure`: the project's labelled structure-defect generator (detector_factory/structure_data.py, train-split
  photos; "has a watermark, logo or text overlay"), with HOG + colour statistics reduced by PCA as the
  features. Stage-2 embeddings would need model weights that tests and benchmarks may not download, and
  these hand-made features turn out to carry little of the task (see docs/benchmarks.md).
* `signals`: the same task on the features stage 1 actually gives: every numeric q_* and s_* column of
  the real stage-1 signals (quality, layout, the shipped structure detector; no OCR), computed with
  curation.signals.analysis.ImageSignals on the JPEG-encoded image, exactly as stage 1 scores a row.
  Images are drawn over the held-out photo split, whose subjects the structure detector never saw.

Every strategy, seed and budget runs the loop's own code (annotation.selection.select and
annotation.probe.train, logistic regression) with answers from ground truth; Label Studio and the simulated
annotator are left out, as they do not change which samples are chosen. All strategies share the same
random first 100 labels per seed, then add 100 per round.

    .venv/bin/python -m benchmarks.bench_active_learning --pool generated --n 22000 --test 2000 --seeds 3
    .venv/bin/python -m benchmarks.bench_active_learning --pool structure --n 3000 --seeds 3
    .venv/bin/python -m benchmarks.bench_active_learning --pool signals --n 3000 --seeds 5
    .venv/bin/python -m benchmarks.bench_active_learning --pool signals --n 3000 --seeds 3 --model gboost

Prints a markdown table of held-out accuracy per budget and the budget at which each strategy first
reaches the accuracy random selection has with the largest budget.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from annotation.probe import train
from annotation.selection import select
from benchmarks.benchlib import cpu_model, log

# margin ranks exactly like entropy for two classes, so it is left out of the binary task
STRATEGIES = ("random", "entropy", "kcenter", "kmeans", "hybrid")
_PHOTOS = None


def _features(image) -> np.ndarray:
    from skimage.feature import hog

    rgb = np.asarray(image.convert("RGB").resize((96, 96)), dtype=np.float32) / 255.0
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    h = hog(gray, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), feature_vector=True)
    colour = np.concatenate([rgb.mean(axis=(0, 1)), rgb.std(axis=(0, 1)),
                             np.histogram(gray, bins=16, range=(0, 1))[0] / gray.size])
    return np.concatenate([h, colour]).astype(np.float32)


def _record(args) -> tuple[np.ndarray, int]:
    global _PHOTOS
    from detector_factory.structure_data import make_record, split_photos

    index, seed = args
    if _PHOTOS is None:
        _PHOTOS = split_photos("train")
    photos, pages = _PHOTOS
    r = make_record(photos, index, seed, pages, procedural=0.3)
    defect = int(any(r["labels"][k] for k in ("watermark", "logo", "text_overlay")))
    return _features(r["image"]), defect


_SIGNALS = None


def _signal_record(args) -> tuple[np.ndarray, int]:
    """One image's stage-1 signal vector (SIGNAL_COLUMNS; NaN where a signal gave nothing) and its label."""
    global _PHOTOS, _SIGNALS
    import pandas as pd

    from curation.signals.analysis import ImageSignals
    from curation.signals.layout import LayoutSignal
    from curation.signals.quality import QualitySignal
    from curation.signals.structure import StructureSignal
    from detector_factory.structure_data import encode_jpeg, make_record, split_photos

    index, seed = args
    if _PHOTOS is None:
        _PHOTOS = split_photos("heldout")  # subjects the shipped detector was not trained on
        _SIGNALS = ImageSignals((QualitySignal(), LayoutSignal(), StructureSignal()))
        _SIGNALS.load()
    photos, pages = _PHOTOS
    r = make_record(photos, index, seed, pages, procedural=0.3)
    defect = int(any(r["labels"][k] for k in ("watermark", "logo", "text_overlay")))
    quality = int(np.random.default_rng([seed, index, 7]).integers(60, 96))  # web JPEGs vary
    row = _SIGNALS(pd.DataFrame({"image": [encode_jpeg(r["image"], quality)]})).iloc[0]
    return np.array([pd.to_numeric(row.get(c), errors="coerce") for c in SIGNAL_COLUMNS], np.float32), defect


def signal_columns() -> list[str]:
    """The numeric q_*/s_* columns the three stage-1 signals write (s_detector is a name, not a number)."""
    from curation.signals.layout import LayoutSignal
    from curation.signals.quality import QualitySignal
    from curation.signals.structure import StructureSignal
    from plumbing.probe_format import signal_columns as numeric

    cols = {**QualitySignal.columns, **LayoutSignal.columns, **StructureSignal.columns}
    return numeric([c for c, t in cols.items() if str(t) != "string"])


SIGNAL_COLUMNS = signal_columns()


def make_data(n: int, seed: int, cache: Path, workers: int, record=_record) -> tuple[np.ndarray, np.ndarray]:
    if cache.exists():
        z = np.load(cache)
        if len(z["y"]) == n:
            return z["X"], z["y"]
    t0 = time.time()
    with mp.Pool(workers) as pool:
        out = pool.map(record, [(i, seed) for i in range(n)], chunksize=16)
    X, y = np.stack([o[0] for o in out]), np.array([o[1] for o in out])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, X=X, y=y)
    log(f"made {n} samples in {time.time() - t0:.0f} s; {y.mean():.0%} with a defect")
    return X, y


def make_generated(n: int, seed: int, dim: int = 64, clusters: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """An embedding-like pool: clusters of very different sizes, one linear concept across them, 3% label noise.

    Most samples lie far from the concept's boundary, as in a real pool where most images are obviously
    fine or obviously bad; that is the situation active learning is for.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(clusters, dim))
    sizes = 1.0 / np.arange(1, clusters + 1) ** 0.8
    which = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    X = centres[which] + rng.normal(size=(n, dim))
    w = rng.normal(size=dim)
    y = (X @ w / np.linalg.norm(w) + 0.25 * rng.normal(size=n) > 0.5).astype(np.int64)
    flip = rng.random(n) < 0.03
    y[flip] = 1 - y[flip]
    return X.astype(np.float32), y


def curve(strategy: str, seed: int, X, y, Xte, yte, budgets: list[int], start: int,
          calibrate: bool, kind: str = "logreg") -> list[float]:
    ids = [f"p{i}" for i in range(len(X))]
    Z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    labelled = list(select("random", start, ids, seed))  # the same first round for every strategy
    accs, model = [], None
    for budget in budgets:
        while len(labelled) < budget:
            rest = np.setdiff1d(np.arange(len(X)), labelled)
            proba = model.predict_proba(X[rest]) if model is not None else None
            picked = select(strategy, budget - len(labelled), [ids[i] for i in rest], seed + len(labelled),
                            proba=proba, X=Z[rest], labelled_X=Z[labelled])
            labelled += rest[picked].tolist()
        model, _ = train(X[labelled], y[labelled], kind, seed, calibrate=calibrate)
        accs.append(float((model.predict(Xte) == yte).mean()))
    return accs


def reduce(X: np.ndarray, dims: int, n_test: int) -> np.ndarray:
    """PCA fitted on the pool part only (no peeking at the test rows): an embedding-sized input."""
    if not dims or dims >= X.shape[1]:
        return X
    from sklearn.decomposition import PCA

    pca = PCA(dims, random_state=0).fit(X[n_test:])
    return pca.transform(X).astype(np.float32)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", choices=["generated", "structure", "signals"], default="generated",
                   help="generated embeddings, or structure-defect images with HOG features or stage-1 signals")
    p.add_argument("--n", type=int, default=3000, help="generated samples: pool + held-out test set")
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--start", type=int, default=100)
    p.add_argument("--step", type=int, default=100)
    p.add_argument("--max", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path("build/bench_active_learning.npz"))
    p.add_argument("--out", type=Path, default=Path("docs/active_learning.png"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--pca", type=int, default=64, help="project features to this many dims (0: keep all)")
    p.add_argument("--model", choices=["logreg", "gboost", "mlp"], default="logreg", help="the probe's model")
    p.add_argument("--calibrate", action="store_true", help="calibrate each probe as the loop does (6x slower)")
    args = p.parse_args(argv)
    if args.pool == "structure":
        X, y = make_data(args.n, 4242, args.cache, args.workers)
        X = reduce(X, args.pca, args.test)
    elif args.pool == "signals":  # a handful of columns: no PCA
        X, y = make_data(args.n, 4242, args.cache, args.workers, record=_signal_record)
        args.pca = 0
    else:
        X, y = make_generated(args.n, 4242)
    Xte, yte, Xp, yp = X[: args.test], y[: args.test], X[args.test:], y[args.test:]
    budgets = list(range(args.start, args.max + 1, args.step))
    results, t0 = {}, time.time()
    for s in STRATEGIES:
        results[s] = [curve(s, seed, Xp, yp, Xte, yte, budgets, args.start, args.calibrate, args.model)
                      for seed in range(args.seeds)]
        log(f"{s}: {np.mean(results[s], axis=0).round(3).tolist()} ({time.time() - t0:.0f} s)")
    report(results, budgets, args, len(Xp), len(Xte), float(y.mean()))


def report(results: dict, budgets: list[int], args, n_pool: int, n_test: int, pos_rate: float) -> None:
    mean = {s: np.mean(r, axis=0) for s, r in results.items()}
    std = {s: np.std(r, axis=0) for s, r in results.items()}
    target = mean["random"][-1]
    reach = {s: next((b for b, a in zip(budgets, mean[s]) if a >= target), None) for s in results}
    print(f"{args.pool} pool {n_pool}, held-out test {n_test}, {pos_rate:.0%} positive, {args.seeds} seeds, "
          f"{args.model} probe ({'calibrated' if args.calibrate else 'uncalibrated'}), PCA {args.pca or 'off'}, machine: {cpu_model()}\n")
    print("| labels | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for i, b in enumerate(budgets):
        print(f"| {b} | " + " | ".join(f"{mean[s][i]:.3f} ± {std[s][i]:.3f}" for s in results) + " |")
    print(f"\nlabels to reach random@{budgets[-1]} accuracy ({target:.3f}): "
          + ", ".join(f"{s} {reach[s] if reach[s] is not None else f'>{budgets[-1]}'}" for s in results))
    if args.json:
        args.json.write_text(json.dumps({"budgets": budgets, "results": results, "reach": reach}, indent=1))
    plot(mean, std, budgets, target, args.out, f"{args.pool} pool: active learning vs random selection")


def plot(mean, std, budgets, target, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for s in mean:
        ax.plot(budgets, mean[s], marker="o", ms=3, label=s, lw=2.2 if s == "random" else 1.4,
                color="black" if s == "random" else None)
        ax.fill_between(budgets, mean[s] - std[s], mean[s] + std[s], alpha=0.12)
    ax.axhline(target, ls=":", color="grey", lw=1)
    ax.set_xlabel("labels")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
