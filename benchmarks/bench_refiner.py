"""Does the refiner beat bicubic upscaling? Train the 2x refiner on CPU and judge it on held-out images.

1. Data as export shards: clean HR crops, each with the stage-1 measures curation/signals/quality.py computes
   (`sharpness` as q_sharpness, `flat_frac` as q_flat_frac), measured on the crop at its own size (stage 1
   itself measures whole images at 512 px). --world toy: toy shapes (synthetic/toy_shapes.py) drawn at --hr px;
   --world photos: crops of scikit-image's and scikit-learn's photos, at full size and halved, some photos held
   out (HELD_OUT) for judging only.
2. Stage 1: the refiner (the `toy` DiT preset with patch --patch and position-only RoPE, from scratch, pixel
   space: no VAE) trains through the real loop on the sharp crops (min q_sharpness), each degraded on the fly
   (training/data/degrade.py, the degradations of training/configs/refiner.yaml), for --minutes. With no base to
   start from it predicts the residual over the condition (it starts as the bicubic upsampler), on the bridge
   path (training's x_t at t_max is the sampler's start); --t-min-frac 1 trains the one-step sampler only.
3. Stage 2 (--texture-minutes > 0): the texture LoRA over the stage-1 refiner on the texture-rich crops only
   (q_sharpness above its --texture-quantile, q_flat_frac <= 0.05: a source filter, as refiner_texture.yaml).
4. Judged on held-out crops: the LR input is (a) the HR crop bicubic-downscaled 2x ("clean") and (b) the HR crop
   through the training degradations with an unseen seed ("degraded"); each method's 2x output is compared with
   the HR crop: PSNR and SSIM (RGB, 0-255) and the sharpness ratio (stage 1's variance of the Laplacian of
   Gaussian of the output over that of the HR crop: 1 is the original's detail, bicubic is below 1). PSNR both
   as the mean over crops and per source image (image_psnr), each paired against bicubic with a bootstrap
   interval (paired), written to refiner_<world>_result.json.

    .venv/bin/python -m benchmarks.bench_refiner --world photos --out runs/bench_refiner_photos --minutes 20 \
        --lr 1e-3 --t-min-frac 1 --n 4400 --held-out 192 --threads 2 --augment    # docs/benchmarks.md, "Refiner"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log

# scikit-image photos (and scikit-learn's) by name; the held-out ones are never trained on
TRAIN_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle",
                "brick", "grass", "gravel", "camera", "sklearn:flower.jpg")
HELD_OUT = ("chelsea", "coffee", "sklearn:china.jpg")
CAPTION = {"short": {"en": "a photo", "zh": "一张照片"}}


def load_photo(name: str):
    import numpy as np
    from PIL import Image

    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        arr = getattr(skimage.data, name)()
        arr = arr[0] if isinstance(arr, tuple) else arr  # stereo_motorcycle: (left, right, disparity)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return Image.fromarray(np.asarray(arr)[..., :3].astype(np.uint8))


def signals(crop) -> dict:
    """Stage 1's sharpness and flatness measures (curation/signals/quality.py) on the crop at its own size."""
    import cv2
    import numpy as np

    from curation.signals.quality import flat_frac, sharpness

    luma = cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2GRAY)
    return {"q_sharpness": sharpness(luma), "q_flat_frac": flat_frac(luma)}


def augmented(crop, h: bytes):
    """One of the 8 flips/rotations and one of the 6 channel orders, picked by the hash h: a photo's content and
    colours in orientations and hues it never had, so 11 photos stand for more than their own subjects."""
    import numpy as np
    from PIL import Image

    arr = np.rot90(np.asarray(crop), h[0] % 4)
    arr = arr[:, ::-1] if h[1] % 2 else arr
    orders = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    return Image.fromarray(np.ascontiguousarray(arr[..., orders[h[2] % 6]]))


def photo_crops(names, hr: int, per_photo: int, salt: str, augment: bool = False) -> list[tuple]:
    """(image, export json) crops at places hashed from (photo, scale, index); half at full size, half halved.
    augment (training only): a third scale, 0.75, and a hashed flip/rotation and channel order per crop."""
    from PIL import Image

    out = []
    scales = (1.0, 0.75, 0.5) if augment else (1.0, 0.5)
    for name in names:
        photo = load_photo(name)
        for scale in scales:
            size = (int(photo.width * scale), int(photo.height * scale))
            im = photo if scale == 1 else photo.resize(size, Image.Resampling.BOX)
            for i in range(per_photo // len(scales)):
                h = hashlib.blake2b(f"{salt}:{name}:{scale}:{i}".encode(), digest_size=8).digest()
                x = int.from_bytes(h[:4], "big") % (im.width - hr + 1)
                y = int.from_bytes(h[4:], "big") % (im.height - hr + 1)
                crop = im.crop((x, y, x + hr, y + hr))
                if augment:
                    crop = augmented(crop, hashlib.blake2b(h, digest_size=3).digest())
                place = f"{salt}:{name}:{scale}:{x}:{y}" + (":aug" if augment else "")
                key = hashlib.sha1(place.encode()).hexdigest()[:32]
                out.append((crop, {"id": key, "key": key, "source": name, "uri": f"{name}@{scale}#xywh={x},{y},{hr},{hr}",
                                   "width": hr, "height": hr, "aspect_bucket": f"{hr}x{hr}", "captions": CAPTION,
                                   "styles": ["short_en", "short_zh"], "signals": signals(crop), "tags": [],
                                   "cluster_path": []}))
    return out


def source_image(meta: dict) -> str:
    """The whole image a held-out crop comes from: its URI without the media fragment that names the crop's
    region ("chelsea@0.5#xywh=10,20,32,32" -> "chelsea@0.5"); a toy image, whole, is its own."""
    return meta["uri"].split("#", 1)[0]


def toy_images(n: int, hr: int, seed: int) -> list[tuple]:
    from synthetic.toy_shapes import make_samples

    samples = make_samples(n, hr, seed=seed)
    for im, meta in samples:
        meta["signals"] = signals(im)
    return samples


def shipped_degrade() -> dict:
    """The degradations of training/configs/refiner.yaml, so the benchmark trains on what ships."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "training" / "configs" / "refiner.yaml"
    return yaml.safe_load(path.read_text())["objective"]["refiner"]["degrade"]


def config(a, export: Path, llm: Path, out: Path, init: Path | None = None, texture: dict | None = None) -> dict:
    source = {"path": str(export), "min_signals": {"q_sharpness": a.min_sharpness}}
    if texture:
        source = {"path": str(export), **texture}
    cfg = {
        "data": {"sources": {"main": source}, "batch_size": a.batch, "styles": {"short": 1.0}},
        "objective": {"terms": {"refine": 1.0}, "timesteps": "uniform",
                      "refiner": {"t_max": a.t_max, "t_min": a.t_max * a.t_min_frac, "steps": 4, "loss": a.loss,
                                  "predict": a.predict, "path": a.path, "degrade": shipped_degrade()}},
        "optim": {"lr": a.lr if init is None or not texture else a.texture_lr, "warmup": 100, "ema_decay": 0.995},
        "stage": {"name": "refiner", "base": "full", "conditioner": "frozen"},
        "run": {"out_dir": str(out), "steps": 10 ** 6, "log_every": 100, "sample_steps": 2, "resume": False},
    }
    if init is None:  # from scratch: position-only RoPE (rope_interp 0), so crops and whole images agree locally
        cfg["model"] = {"preset": "toy", "overrides": {"patch_size": a.patch, "rope_ref": a.hr // a.patch,
                                                       "rope_interp": 0.0}}
        cfg["text"] = {"llm": str(llm), "glyph": {"enabled": False}}
        cfg["vae"] = {"path": "pixel"}
    else:
        cfg["model"] = {"init_from": str(init)}
        cfg["stage"] = {"name": "refiner_texture", "base": "lora", "conditioner": "frozen", "lora": {"rank": 16}}
    return cfg


def train_for(cfg: dict, minutes: float, export_adapter: bool = False) -> tuple[Path, dict]:
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    tr = Trainer(TrainConfig.model_validate(cfg))
    start, losses = time.time(), []
    while time.time() < start + minutes * 60:
        chunk = tr.run(steps=tr.step + 100)
        losses.append(sum(chunk) / len(chunk))
        log(f"  step {tr.step} loss {losses[-1]:.4f} elapsed {time.time() - start:.0f}s")
    info = {"steps": tr.step, "train_seconds": round(time.time() - start), "loss_first_100": losses[0],
            "loss_last_100": losses[-1]}
    return tr.export(), info


def decibels(mse: float) -> float:
    """PSNR of a mean squared error on the 0-255 scale."""
    import numpy as np

    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def per_image(outputs, targets) -> dict:
    """PSNR, mean squared error, SSIM and sharpness ratio of each output against its HR target."""
    import cv2
    import numpy as np
    from skimage.metrics import structural_similarity

    from curation.signals.quality import sharpness

    luma = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)  # noqa: E731
    e, s, r = [], [], []
    for out, hr in zip(outputs, targets):
        o = np.asarray(out)
        e.append(float(((o.astype(np.float64) - hr.astype(np.float64)) ** 2).mean()))
        s.append(structural_similarity(o, hr, channel_axis=2, data_range=255))
        r.append(sharpness(luma(o)) / max(sharpness(luma(hr)), 1e-6))
    return {"psnr": np.array([decibels(x) for x in e]), "sq_err": np.array(e), "ssim": np.array(s), "sharpness_ratio": np.array(r)}


def image_psnr(sq_err, groups) -> float:
    """PSNR per source image (the squared error of all its crops pooled), averaged over images: PSNR as
    super-resolution benchmarks take it, on whole images. The crop mean of PSNR instead weighs a flat crop that
    both methods reproduce near-perfectly (45 dB against 42 dB: 1.4 against 2 grey levels RMS, nothing a person
    sees) as much as a crop of fur where every grey level of error shows."""
    import numpy as np

    return float(np.mean([decibels(sq_err[groups == g].mean()) for g in np.unique(groups)]))


def judge(scores: dict, groups) -> dict:
    import numpy as np

    return {"psnr": float(np.mean(scores["psnr"])), "psnr_image": image_psnr(scores["sq_err"], groups),
            "ssim": float(np.mean(scores["ssim"])), "sharpness_ratio": float(np.median(scores["sharpness_ratio"])),
            "sharpness_ratio_mean": float(np.mean(scores["sharpness_ratio"]))}


def paired(method: dict, baseline: dict, groups, seed: int = 0) -> dict:
    """Method minus baseline on the same images: the mean gain, a bootstrap 95% interval of it (2,000 resamples
    of the crops) and the share of crops the method wins, for crop PSNR and SSIM; and the gain in image PSNR
    with its interval. Is a win more than noise?"""
    import numpy as np

    rng, out, n = np.random.default_rng(seed), {}, len(groups)
    gain = {m: method[m] - baseline[m] for m in ("psnr", "ssim")}
    for m, d in gain.items():
        ci = np.quantile([rng.choice(d, n).mean() for _ in range(2000)], [0.025, 0.975])
        unit = "_db" if m == "psnr" else ""
        out |= {f"{m}_gain_mean{unit}": round(float(d.mean()), 4), f"{m}_gain_ci95": ci.round(4).tolist(),
                f"{m}_better_share": round(float((d > 0).mean()), 3)}

    def image_gain(i):
        return image_psnr(method["sq_err"][i], groups[i]) - image_psnr(baseline["sq_err"][i], groups[i])

    boot = [image_gain(rng.integers(0, n, n)) for _ in range(2000)]
    quarters = np.array_split(np.argsort(baseline["psnr"]), 4)  # where the crop-mean gain comes from
    out |= {"psnr_image_gain_db": round(image_gain(np.arange(n)), 4),
            "psnr_image_gain_ci95": np.quantile(boot, [0.025, 0.975]).round(4).tolist(),
            "images": len(np.unique(groups)),
            "psnr_gain_by_baseline_quarter": [{"baseline_psnr": round(float(baseline["psnr"][q].mean()), 2),
                                              "gain_db": round(float(gain["psnr"][q].mean()), 3)} for q in quarters]}
    return out | {"n": n}


def inputs(held: list[tuple], kind: str, scale: int):
    """Held-out LR images: bicubic 2x down ("clean") or the training degradations with an unseen seed."""
    import numpy as np
    from PIL import Image

    from training.data.degrade import DegradeConfig, degrade

    if kind == "clean":
        return [im.resize((im.width // scale, im.height // scale), Image.Resampling.BICUBIC) for im, _ in held]
    cfg = DegradeConfig(**{**shipped_degrade(), "scale": scale, "clean_prob": 0.0})  # every one degraded
    return [Image.fromarray(degrade(np.asarray(im), meta["key"], 12345, cfg)) for im, meta in held]


def evaluate(stage1: Path, texture: Path | None, held: list[tuple], a) -> dict:
    import numpy as np

    from training.data.degrade import upsample
    from training.refiner import Refiner

    hr = [np.asarray(im) for im, _ in held]
    groups = np.array([source_image(m) for _, m in held])
    methods = {"refiner_1step": (None, 1.0, 1), "refiner_4step": (None, 1.0, 4)}
    if texture is not None:
        methods |= {f"texture_w{w:g}_{s}step": (texture, w, s) for w in a.texture_scales for s in (1, 4)}
    refiners = {name: Refiner.load(stage1, texture=tex, texture_scale=w) for name, (tex, w, _) in methods.items()}
    res, gains, strips = {}, {}, {}
    for kind in ("clean", "degraded"):
        lr = inputs(held, kind, 2)
        outs = {"bicubic": [upsample(im, (im.width * 2, im.height * 2)) for im in lr]}
        for name, (_, _, steps) in methods.items():
            ref = refiners[name]
            outs[name] = [o for i in range(0, len(lr), 64)
                          for o in ref.refine(lr[i:i + 64], steps=steps, seed=7 + i)]
        scores = {name: per_image(o, hr) for name, o in outs.items()}
        res[kind] = {name: judge(sc, groups) for name, sc in scores.items()}
        gains[kind] = {name: paired(sc, scores["bicubic"], groups) for name, sc in scores.items() if name != "bicubic"}
        strips[kind] = outs
        log(f"  {kind}: " + json.dumps({k: {m: round(v, 3) for m, v in r.items()} for k, r in res[kind].items()}))
        log(f"  {kind}, paired against bicubic: " + json.dumps(gains[kind]))
    return res, gains, strips


def save_strip(path: Path, held, strips, names, n: int = 10) -> None:
    import numpy as np
    from PIL import Image

    rows = [np.concatenate([np.asarray(im) for im, _ in held[:n]], 1)]
    rows += [np.concatenate([np.asarray(o) for o in strips[m][:n]], 1) for m in names]
    Image.fromarray(np.concatenate(rows, 0)).resize((rows[0].shape[1] * 2, len(rows) * rows[0].shape[0] * 2),
                                                    Image.Resampling.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=("toy", "photos"), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=15.0, help="stage 1's wall-clock training budget")
    ap.add_argument("--texture-minutes", type=float, default=0.0, help="stage 2's budget; 0: no texture stage")
    ap.add_argument("--hr", type=int, default=32, help="HR crop side (px); the LR input is half")
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--texture-lr", type=float, default=5e-4)
    ap.add_argument("--t-max", type=float, default=0.35)
    ap.add_argument("--loss", choices=("velocity", "x0"), default="x0")
    ap.add_argument("--predict", choices=("velocity", "residual"), default="residual",
                    help="residual: from scratch the refiner starts as the bicubic upsampler (no base here)")
    ap.add_argument("--t-min-frac", type=float, default=0.25,
                    help="t_min as a share of t_max: 1/steps (0.25) covers 4-step sampling, 1 trains 1-step only")
    ap.add_argument("--path", choices=("flow", "bridge"), default="bridge",
                    help="bridge: training's x_t at t_max is the sampler's start (the noised condition)")
    ap.add_argument("--min-sharpness", type=float, default=5.0, help="stage 1's source filter on q_sharpness")
    ap.add_argument("--texture-quantile", type=float, default=0.6, help="stage 2 keeps crops above this quantile")
    ap.add_argument("--texture-scales", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--n", type=int, default=4000, help="training images (toy) or crops per photo x photos")
    ap.add_argument("--held-out", type=int, default=192)
    ap.add_argument("--augment", action="store_true",
                    help="photos: train on three scales, each crop flipped/rotated and its channels reordered")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.augment and a.world != "photos":
        ap.error("--augment applies to --world photos only: it augments crops of the few photos there are")

    import numpy as np
    import torch

    from synthetic.toy_shapes import build_tiny_llm, toy_corpus, write_shards

    torch.set_num_threads(a.threads)
    began = time.time()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.world == "toy":
        train, held = toy_images(a.n, a.hr, seed=0), toy_images(a.held_out, a.hr, seed=99)
    else:
        train = photo_crops(TRAIN_PHOTOS, a.hr, a.n // len(TRAIN_PHOTOS), "train", augment=a.augment)
        held = photo_crops(HELD_OUT, a.hr, a.held_out // len(HELD_OUT), "held")
    export = a.out / "export"
    write_shards(train, export, shard_size=1000)
    llm = build_tiny_llm(a.out / "llm", toy_corpus() + ["a photo", "一张照片"], hidden=32)
    sharp = np.array([m["signals"]["q_sharpness"] for _, m in train])
    flat = np.array([m["signals"]["q_flat_frac"] for _, m in train])
    texture_min = float(np.quantile(sharp, a.texture_quantile))
    texture = {"min_signals": {"q_sharpness": texture_min}, "max_signals": {"q_flat_frac": 0.05}}
    result = {"cpu": cpu_model(), "threads": a.threads, "args": {k: str(v) for k, v in vars(a).items()},
              "data": {"train": len(train), "held_out": len(held),
                       "stage1_kept": int((sharp >= a.min_sharpness).sum()),
                       "texture_kept": int(((sharp >= texture_min) & (flat <= 0.05)).sum()),
                       "texture_filter": texture, "q_sharpness_quartiles": np.quantile(sharp, [.25, .5, .75]).tolist()}}
    log(json.dumps(result["data"]))
    stage1, result["stage1"] = train_for(config(a, export, llm, a.out / "stage1"), a.minutes)
    tex = None
    if a.texture_minutes > 0:
        tex, result["stage2"] = train_for(config(a, export, llm, a.out / "stage2", stage1, texture), a.texture_minutes)
    result["eval"], result["paired_vs_bicubic"], strips = evaluate(stage1, tex, held, a)
    names = ["bicubic", "refiner_1step", "refiner_4step"] + ([f"texture_w{a.texture_scales[-1]:g}_4step"] if tex else [])
    for kind in strips:
        save_strip(a.out / f"refiner_{a.world}_{kind}.png", held, strips[kind], names)
    result["wall_seconds"] = round(time.time() - began)
    (a.out / f"refiner_{a.world}_result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
