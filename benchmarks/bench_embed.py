"""Stage-2 embedding cost per image on CPU: decode alone (baseline), descriptor-v1, and a ViT-B-32-sized
open_clip tower (random weights: the cost of the architecture, which real weights share).

    .venv/bin/python -m benchmarks.bench_embed [--n 64] [--threads 1] [--no-vit]

Prints a markdown table of images/s and the ratio of each to the decode baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.benchlib import cpu_model, log, sample_jpegs


def _best(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-vit", action="store_true")
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import pandas as pd

    from curation.signals.analysis import decode_for_analysis
    from curation.signals.embed import EmbedSignal

    data = sample_jpegs(a.n)
    batch = pd.DataFrame({"image": data, "alt_text": ["a photo of a flower"] * a.n})
    rows = {"decode (long side 256)": _best(lambda: [decode_for_analysis(d, 256) for d in data])}
    desc = EmbedSignal(model="descriptor-v1")
    desc.load()
    rows["descriptor-v1 (decode + embed)"] = _best(lambda: desc(batch))
    if not a.no_vit:
        import torch

        torch.set_num_threads(a.threads)
        log("building ViT-B-32 with random weights")
        vit = EmbedSignal(model="open_clip:ViT-B-32", device="cpu", batch_size=32)
        vit.load()
        rows["open_clip ViT-B-32 fp32 (decode + image + text)"] = _best(lambda: vit(batch), repeats=2)
    base = rows["decode (long side 256)"]
    print(f"\n{a.n} JPEGs 1024x768, {a.threads} thread(s), {cpu_model()}, best of 2-3\n")
    print("| step | images/s | time vs decode |\n|---|---|---|")
    for k, t in rows.items():
        print(f"| {k} | {a.n / t:.1f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
