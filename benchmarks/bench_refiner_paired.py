"""Is a bench_refiner.py win more than noise? Per-image paired differences, refiner (1 step) minus bicubic.

Rebuilds the run's held-out crops and inputs exactly as bench_refiner.py does (same crops, degradation seed and
sampler seeds, so the means equal the run's table), then reports per input kind the mean PSNR and SSIM gain, a
bootstrap 95% interval of each mean (2,000 resamples of the images), and the share of images the refiner wins.
Writes refiner_<world>_paired.json into the run folder.

    .venv/bin/python -m benchmarks.bench_refiner_paired --run runs/bench_refiner_photos --world photos
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a benchmarks.bench_refiner --out folder")
    ap.add_argument("--world", choices=("toy", "photos"), required=True)
    a = ap.parse_args()

    import numpy as np
    import torch
    from skimage.metrics import structural_similarity

    from benchmarks import bench_refiner as bench
    from training.data.degrade import upsample
    from training.refiner import Refiner

    torch.set_num_threads(1)
    args = json.loads((a.run / f"refiner_{a.world}_result.json").read_text())["args"]
    n, px = int(args["held_out"]), int(args["hr"])
    held = (bench.toy_images(n, px, seed=99) if a.world == "toy"
            else bench.photo_crops(bench.HELD_OUT, px, n // len(bench.HELD_OUT), "held"))
    hr = [np.asarray(im) for im, _ in held]
    ref = Refiner.load(a.run / "stage1" / "pipeline")
    rng, out = np.random.default_rng(0), {}

    def ci(d):
        return np.quantile([rng.choice(d, len(d)).mean() for _ in range(2000)], [0.025, 0.975]).round(4).tolist()

    def ssim(x, y):
        return structural_similarity(x, y, channel_axis=2, data_range=255)

    for kind in ("degraded", "clean"):
        lr = bench.inputs(held, kind, 2)
        bic = [np.asarray(upsample(im, (im.width * 2, im.height * 2))) for im in lr]
        refined = [np.asarray(o) for i in range(0, len(lr), 64) for o in ref.refine(lr[i:i + 64], steps=1, seed=7 + i)]
        dp = np.array([bench.psnr(r, h) - bench.psnr(b, h) for r, b, h in zip(refined, bic, hr)])
        ds = np.array([ssim(r, h) - ssim(b, h) for r, b, h in zip(refined, bic, hr)])
        out[kind] = {"psnr_gain_mean_db": round(float(dp.mean()), 4), "psnr_gain_ci95": ci(dp),
                     "psnr_better_share": round(float((dp > 0).mean()), 3),
                     "ssim_gain_mean": round(float(ds.mean()), 4), "ssim_gain_ci95": ci(ds),
                     "ssim_better_share": round(float((ds > 0).mean()), 3), "n": len(dp)}
    print(json.dumps(out, indent=1))
    (a.run / f"refiner_{a.world}_paired.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
