"""Train the structure detector (watermark, logo, text overlay) on generated data; export ONNX and a model card.

    pip install torch==2.13.0 onnx   # CPU torch; no torchvision or timm needed
    python -m detector_factory.train_structure_detector [--n-train 18000] [--n-val 800] [--budget-min 19]
        [--epochs 10] [--seed 0] [--workers 2] [--threads 2] [--cache /tmp/structure_data]

1. Renders a training set with `detector_factory.structure_data` from the TRAIN photo subjects (plus procedural
   backgrounds) and a held-out set from the HELD-OUT subjects and other seeds. Each image goes through a
   JPEG round trip and `decode_for_analysis`, then `curation.signals.structure.to_input`, exactly as
   stage 1 sees it.
2. Trains a small CNN (patchify stem, plain 3x3 convs, avg+max pooled, three sigmoid heads) with AdamW
   and a cosine schedule, stopping at `--budget-min` minutes or `--epochs`, whichever comes first.
3. Exports `curation/signals/weights/<DEFAULT_NAME>.onnx` (opset 17; input "image" N x 3 x 256 x 256 RGB in
   [0, 1]; output "probs" N x 3 sigmoid), scores the held-out set through `StructureSignal` (the ONNX model,
   as stage 1 runs it), measures one-core latency, and writes STRUCTURE_MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from curation.signals.analysis import decode_for_analysis
from curation.signals.structure import DEFAULT_NAME, HEADS, INPUT_SIZE, StructureSignal, to_input
from detector_factory import structure_data as sd
from plumbing.cli_options import reproducible_args

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("train_structure")
WEIGHTS = REPO / "curation" / "signals" / "weights"
VAL_SEED_OFFSET = 10_000  # held-out seeds never overlap training seeds
CELLS = INPUT_SIZE // 32  # the final feature map: 8 x 8 cells, each also supervised with where the marks are
DENSE_FULL = 0.03  # a cell whose area is this much covered by a mark is a full positive


# ---------------------------------------------------------------- data

_SPLIT: dict = {}


def _init_worker(split: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    _SPLIT["photos"], _SPLIT["pages"] = sd.split_photos(split)


def _cells(mask: np.ndarray) -> np.ndarray:
    """Share of each of the CELLS x CELLS cells (of the squashed image) a mask covers, as uint8 0..255."""
    from PIL import Image

    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((CELLS, CELLS), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def _render(job: tuple[int, int, float, bool]) -> tuple:
    """One record as the stage sees it: JPEG bytes -> analysis decode -> detector input (uint8)."""
    index, seed, procedural, train = job
    r = sd.make_record(_SPLIT["photos"], index, seed, _SPLIT["pages"], procedural, masks=True)
    q_rng = np.random.default_rng([seed, index, 1])
    quality = int(q_rng.integers(60, 96)) if train else int(q_rng.integers(75, 96))
    decoded = decode_for_analysis(sd.encode_jpeg(r["image"], quality))
    x = np.rint(to_input(decoded.image, INPUT_SIZE) * 255).astype(np.uint8)
    dense = np.stack([_cells(r["masks"][h]) if h in r["masks"] else np.zeros((CELLS, CELLS), np.uint8)
                      for h in HEADS])
    return x, [r["labels"][k] for k in sd.LABELS], r["shown"], dense


CHUNK = 6000  # sets are rendered and cached in chunks, so a larger --n-train reuses what is there


def render_set(split: str, n: int, seed: int, procedural: float, workers: int, cache: Path | None) -> dict:
    parts = [_render_chunk(split, start, min(n, start + CHUNK), seed, procedural, workers, cache)
             for start in range(0, n, CHUNK)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _render_chunk(split: str, start: int, stop: int, seed: int, procedural: float, workers: int,
                  cache: Path | None) -> dict:
    where = f"n{stop}" if start == 0 else f"i{start}-{stop}"
    key = f"{split}-{where}-s{seed}-p{procedural}-{INPUT_SIZE}-{sd.generator_digest()}.npz"
    if cache and (cache / key).is_file():
        z = np.load(cache / key)
        log.info("loaded %s from cache", key)
        return {k: z[k] for k in ("x", "y", "kind", "dense")}
    t0 = time.time()
    jobs = [(i, seed, procedural, split == "train") for i in range(start, stop)]
    with Pool(workers, initializer=_init_worker, initargs=(split,)) as pool:
        out = pool.map(_render, jobs, chunksize=16)
    data = {"x": np.stack([o[0] for o in out]), "y": np.array([o[1] for o in out], np.int8),
            "kind": np.array([o[2] for o in out]), "dense": np.stack([o[3] for o in out])}
    log.info("rendered %s images %d..%d in %.0f s", split, start, stop, time.time() - t0)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / key, **data)
    return data


# ---------------------------------------------------------------- model


def build_model(widths=(32, 48, 96, 160)):
    import torch
    from torch import nn

    from detector_factory.structure_nets import LocalContrast
    from detector_factory.structure_nets import conv_bn_relu as conv

    class StructureNet(nn.Module):
        """RGB + local-contrast luma, patchify stem (4x4, stride 4), three stride-2 stages of 3x3 convs,
        avg+max pool, 3 logits."""

        def __init__(self):
            super().__init__()
            a, b, c, d = widths
            self.contrast = LocalContrast()
            layers = [nn.Conv2d(4, a, 4, 4, bias=False), nn.BatchNorm2d(a), nn.ReLU(inplace=True)]  # (B, a, 64, 64)
            layers += conv(a, a) + conv(a, b, 2) + conv(b, b)  # (B, b, 32, 32)
            layers += conv(b, c, 2) + conv(c, c)  # (B, c, 16, 16)
            layers += conv(c, d, 2) + conv(d, d)  # (B, d, 8, 8)
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(2 * d, len(HEADS)))
            self.dense = nn.Conv2d(d, len(HEADS), 1)  # training only: where each kind of mark is
            self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

        def forward(self, x, dense: bool = False):  # x: (B, 3, S, S) RGB in [0, 1]
            z = torch.cat([(x - self.mean) / self.std, self.contrast(x)], 1)  # (B, 4, S, S)
            f = self.features(z)  # (B, d, S/32, S/32)
            # Max pooling keeps a small corner mark's evidence that averaging would wash out.
            logits = self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))  # (B, 3)
            return (logits, self.dense(f)) if dense else logits  # dense: (B, 3, S/32, S/32)

    return StructureNet()


def predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch]).float().div_(255).contiguous(memory_format=torch.channels_last)
            out.append(torch.sigmoid(model(xb)).numpy())
    return np.concatenate(out)


def train(model, data: dict, val: dict, args) -> dict:
    import torch
    import torch.nn.functional as F

    from detector_factory.structure_nets import warmup_cosine

    torch.manual_seed(args.seed)
    model = model.to(memory_format=torch.channels_last)
    x, y = data["x"], data["y"][:, :len(HEADS)].astype(np.float32)
    n = len(x)
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    head_w = torch.tensor(args.head_weights, dtype=torch.float32)  # faint watermarks need the most push
    rng = np.random.default_rng(args.seed)
    budget, warmup = args.budget_min * 60, max(1, min(100, total // 10))
    t0, step, history = time.time(), 0, []
    done = False
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(n)
        losses = []
        for b in range(steps_per_epoch):
            progress = max(step / total, (time.time() - t0) / budget)
            if progress >= 1:
                done = True
                break
            lr = warmup_cosine(args.lr, step, warmup, progress)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = np.sort(order[b * args.batch:(b + 1) * args.batch])
            xb = torch.from_numpy(x[idx]).float().div_(255)
            db = torch.from_numpy(data["dense"][idx]).float().div_(255 * DENSE_FULL).clamp_(0, 1)
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb[flip], db[flip] = xb[flip].flip(3), db[flip].flip(3)  # mirrored marks are still marks
            if progress < args.low_res_frac:  # early steps at a lower resolution: more of them per minute
                xb = F.interpolate(xb, size=(args.low_res, args.low_res), mode="area")
                db = F.adaptive_avg_pool2d(db, args.low_res // 32)
            xb = xb.contiguous(memory_format=torch.channels_last)
            logits, dense = model(xb, dense=True)
            loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y[idx]), weight=head_w) \
                + args.dense_weight * F.binary_cross_entropy_with_logits(dense, db, weight=head_w.view(1, -1, 1, 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % 50 == 0:
                log.info("epoch %d step %d loss %.4f lr %.2e elapsed %.0f s", epoch, step, np.mean(losses[-50:]),
                         lr, time.time() - t0)
        p = predict(model, val["x"])
        m = head_metrics(val["y"], p)
        history.append({"epoch": epoch, "steps": step, "loss": float(np.mean(losses)) if losses else None,
                        "val": {h: round(m[h]["auc"], 4) for h in HEADS}, "elapsed_s": round(time.time() - t0)})
        log.info("epoch %d done: %s", epoch, history[-1])
        if done:
            break
    return {"steps": step, "samples_seen": step * args.batch, "train_s": time.time() - t0, "history": history}


# ---------------------------------------------------------------- evaluation


def head_metrics(y: np.ndarray, p: np.ndarray, thr: float = 0.5) -> dict:
    from sklearn.metrics import roc_auc_score

    out = {}
    scene = y[:, sd.LABELS.index("scene_text")] == 1
    for j, head in enumerate(HEADS):
        t, s = y[:, j] == 1, p[:, j] >= thr
        tp, fp, fn = int((t & s).sum()), int((~t & s).sum()), int((t & ~s).sum())
        neg_scene = scene & ~t
        out[head] = {
            "n_pos": int(t.sum()), "n_neg": int((~t).sum()),
            "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
            "auc": float(roc_auc_score(t, p[:, j])) if 0 < t.sum() < len(t) else float("nan"),
            "scene_text_fp_rate": float(s[neg_scene].mean()) if neg_scene.any() else float("nan"),
            "n_scene_neg": int(neg_scene.sum()),
        }
    return out


def kind_recall(y: np.ndarray, p: np.ndarray, kinds: np.ndarray, thr: float = 0.5) -> dict:
    """How often each head fires per kind shown (its recall for its own head, false alarms for the others).

    `kinds` are the parts that show (a mark too faint to see is not counted as drawn); two combined kinds are
    pooled by their groups, e.g. "combo scene+text_overlay".
    """
    group_of = {k: g for g, ks in sd.GROUPS.items() for k in ks}
    names = np.array([k if "+" not in k else "combo " + "+".join(group_of[part] for part in k.split("+"))
                      for k in kinds.tolist()])
    out = {}
    for kind in sorted(set(names.tolist()), key=lambda k: (k.startswith("combo"), k)):
        m = names == kind
        out[kind] = {"n": int(m.sum()), **{h: round(float((p[m, j] >= thr).mean()), 3) for j, h in enumerate(HEADS)}}
    return out


def score_with_signal(onnx_path: Path, val_split_seed: int, n: int) -> np.ndarray:
    """Held-out probabilities through the stage's own code path (JPEG -> decode -> StructureSignal)."""
    sig = StructureSignal(model=str(onnx_path), threads=2)
    photos, pages = sd.split_photos("heldout")
    probs = []
    for i in range(n):
        r = sd.make_record(photos, i, val_split_seed, pages, 0.0)
        q = int(np.random.default_rng([val_split_seed, i, 1]).integers(75, 96))
        row = sig.score_image(decode_for_analysis(sd.encode_jpeg(r["image"], q)))
        probs.append([row[f"s_{h}"] for h in HEADS])
    return np.array(probs, np.float32)


def measure_latency(onnx_path: Path, reps: int = 60) -> dict:
    """Per-image ms on one core (preprocessing included) for 1024x768 analysis decodes."""
    import io

    photos, _ = sd.split_photos("heldout")
    imgs = []
    for i, (_, photo) in enumerate(photos):
        buf = io.BytesIO()
        photo.resize((1024, 768)).save(buf, "JPEG", quality=90)
        imgs.append(decode_for_analysis(buf.getvalue()))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        sig = StructureSignal(model=str(onnx_path), threads=1)
        sig.load()
        for img in imgs:
            sig.score_image(img)
        times = []
        for k in range(reps):
            t = time.perf_counter()
            sig.score_image(imgs[k % len(imgs)])
            times.append((time.perf_counter() - t) * 1000)
        batch_t = time.perf_counter()
        for _ in range(3):
            sig.score_images(imgs * 4)
        batch_ms = (time.perf_counter() - batch_t) * 1000 / (3 * 4 * len(imgs))
        pre_t = time.perf_counter()
        for k in range(reps):
            to_input(imgs[k % len(imgs)].image)
        pre_ms = (time.perf_counter() - pre_t) * 1000 / reps
    finally:
        os.sched_setaffinity(0, before)
    return {"median_ms": float(np.median(times)), "best_ms": float(np.min(times)), "p90_ms": float(np.percentile(times, 90)),
            "batch_ms_per_image": batch_ms, "preprocess_ms": pre_ms}


# ---------------------------------------------------------------- export and card


def export_onnx(model, path: Path, size: int) -> None:
    import torch

    from detector_factory.structure_nets import export_sigmoid_onnx

    export_sigmoid_onnx(model, path, torch.rand(1, 3, size, size), "probs",
                        {"image": {0: "batch"}, "probs": {0: "batch"}},
                        {"detector": DEFAULT_NAME, "heads": ",".join(HEADS), "input_size": str(size),
                         "preprocessing": "RGB squashed to SxS with area averaging (PIL BOX), float32 in [0,1], NCHW"})


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def write_card(path: Path, info: dict) -> None:
    m, lat, tr = info["metrics"], info["latency"], info["training"]
    rows = "\n".join(f"| {h} | {m[h]['n_pos']} / {m[h]['n_neg']} | {_fmt(m[h]['precision'])} | {_fmt(m[h]['recall'])} | "
                     f"{_fmt(m[h]['auc'])} | {_fmt(m[h]['scene_text_fp_rate'])} |" for h in HEADS)
    kinds = "\n".join(f"| {k} | {v['n']} | {v['watermark']:.2f} | {v['logo']:.2f} | {v['text_overlay']:.2f} |"
                      for k, v in info["kinds"].items())
    hist = "\n".join(f"| {e['epoch']} | {e['steps']} | {e['loss']:.4f} | {e['val']['watermark']:.3f} | "
                     f"{e['val']['logo']:.3f} | {e['val']['text_overlay']:.3f} | {e['elapsed_s']} |" for e in tr["history"])
    a = info["args"]
    bar = "; ".join(f"{h} {'meets it' if min(m[h]['precision'], m[h]['recall']) >= 0.9 else 'does not'} "
                    f"(P {m[h]['precision']:.2f}, R {m[h]['recall']:.2f})" for h in ("watermark", "text_overlay"))
    text = f"""# {DEFAULT_NAME}: watermark, logo and text-overlay detector

`{DEFAULT_NAME}.onnx` gives `s_watermark`, `s_logo` and `s_text_overlay` in stage 1 (`curation/signals/structure.py`).
No published watermark/overlay model can be had offline and the published ones are English-centric, so Sluice
trains this one itself on data it generates (DESIGN rule 9). Retrain it with the command at the end.

## Data

Made by `detector_factory/structure_data.py` (deterministic in the seed), over real photos from `synthetic.sample_corpus.real_photos()`
with random crops, rescales (long side 320-960), flips and colour jitter. In training {a['procedural']:.0%} of the
backgrounds are made up: 70% dead-leaves collages (shapes cut from the training photos, large to small: new
layouts and texture boundaries from few photos), 30% gradients, fractal noise and blobs. Phrases are Chinese and English (WenQuanYi Micro Hei for CJK; the
Latin fonts fontconfig lists: DejaVu, Liberation). Labels (multi-label, 0/1):

* **watermark**: semi-transparent text or emblems: centred, diagonal, tiled, corner marks (`© 摄影网`, `stock photo`,
  `@user_123`), alpha 0.15-0.6 (corner marks 0.35-0.9), outline or shadow sometimes.
* **logo**: opaque brand-like badge (circle, badge, hexagon, ring ... with a short word such as `新闻`, `NEWS TV`) in a corner.
* **text_overlay**: caption bars (news lower thirds with a tag), subtitles (outline or shadow, zh/en/both),
  meme text, promotional stickers (`限时特价`, `SALE -50%`), speech bubbles, decorative titles.
* **negatives**: clean photos, letterbox bars, and **scene text** that belongs to the picture: signs, posters,
  book pages and painted words warped in with a homography, lit by the photo's own light, textured and blurred,
  and skimage's real photos of printed text (`page` in training, `text` held out). About 22% of samples
  combine two kinds (e.g. a TV logo with subtitles, a sign with a subtitle).

Marks are drawn to be seen (light on dark pictures, dark on light ones, mostly), and a mark is labelled only
if it shows at the detector's scale: in a {sd.VISIBILITY_SIDE}-px thumbnail its mean change must reach {sd.MIN_STRENGTH} grey
levels and {sd.MIN_CONTRAST} x the picture's local texture, else its label stays 0 (a faint mark on gravel can be invisible).

Every image goes through a JPEG round trip (quality 60-95 in training, 75-95 held out) and
`decode_for_analysis`, as stage 1 decodes it.

| split | photo subjects | seeds | images |
|---|---|---|---|
| train | {', '.join(sorted(set(s for s, _ in sd.real_photos()) - set(sd.HELDOUT_SUBJECTS)))}; page; collages and gradients/noise (40% of backgrounds) | {a['seed']} | {a['n_train']} |
| held-out | {', '.join(sd.HELDOUT_SUBJECTS)}; text | {a['seed'] + VAL_SEED_OFFSET} | {a['n_val']} |

## Model

{info['arch']}. {info['params']:,} parameters; ONNX file {info['size_mb']:.2f} MB (float32).
Input `image`: N x 3 x {INPUT_SIZE} x {INPUT_SIZE} float32 RGB in [0, 1], the whole image squashed to
{INPUT_SIZE}x{INPUT_SIZE} with area averaging (`curation.signals.structure.to_input`; normalisation is inside the
graph). Output `probs`: N x 3 sigmoid probabilities, order `watermark, logo, text_overlay` (also in the ONNX
metadata `heads`). Opset 17.

## Training

AdamW (lr {a['lr']}, weight decay {a['wd']}), batch {a['batch']}, warm-up then cosine decay; loss = BCE per head
(head weights {', '.join(f'{w:g}' for w in a['head_weights'])})
+ {a['dense_weight']} x per-cell BCE against the marks' coverage of each 32x32 cell (full at {DENSE_FULL:.0%});
random horizontal flips; the first {a['low_res_frac']:.0%} of training at {a['low_res']} px (area-downsampled), the rest at
{INPUT_SIZE} px; CPU, torch {info['torch']}, {a['threads']} thread(s), seed {a['seed']}.
{tr['steps']} steps ({tr['samples_seen']:,} samples seen) in {tr['train_s'] / 60:.1f} min of training
(data rendering {info['render_s'] / 60:.1f} min, {a['workers']} processes) on a shared 2-core machine.
Training stops at `--budget-min` of wall time, so a faster or slower machine runs a different number of steps
and gives similar, not identical, weights; held-out AUCs of the early epochs are measured at 256 px while
training ran at the lower resolution.

| epoch | steps | train loss | held-out AUC watermark | logo | text_overlay | elapsed s |
|---|---|---|---|---|---|---|
{hist}

## Held-out metrics (threshold 0.5, scored through `StructureSignal` on JPEG decodes)

{a['n_val']} images from held-out subjects and seeds. "scene FP" is the share of scene-text images that are
negative for the head but scored >= 0.5 (for text_overlay: the false-drop rate of text that belongs to the scene).

| head | pos / neg | precision | recall | AUC | scene FP |
|---|---|---|---|---|---|
{rows}

Against the issue's bar (precision and recall >= 0.9 at 0.5 for watermark and text_overlay): {bar}.

Share of images flagged (>= 0.5) by each head, per kind that shows (two kinds combined are pooled by group):

| kind | n | watermark | logo | text_overlay |
|---|---|---|---|---|
{kinds}

## Speed

One core, onnxruntime {info['ort']} with 1 intra-op thread, 1024x768 analysis decodes, preprocessing included:
median {lat['median_ms']:.1f} ms per image (best {lat['best_ms']:.1f}, p90 {lat['p90_ms']:.1f}; preprocessing alone
{lat['preprocess_ms']:.1f} ms); batched (`score_images`) {lat['batch_ms_per_image']:.1f} ms per image. Measured on a
shared machine; expect less on a quiet one.

## Limits

* Trained only on synthetic marks over {len(sd.split_photos("train")[0])} bundled photos: it knows the generator's styles, one CJK
  font, and these backgrounds. Real web images have marks it never saw (fancy brand logos, hand-drawn stickers,
  vertical Chinese text, frames); check it on labelled real data (the annotation loop) before trusting a rule
  built on it, and retrain with more photos and fonts when they are available.
* A semi-transparent emblem counts as `watermark`, an opaque corner badge as `logo`; text-only corner marks are
  `watermark` whatever their opacity.
* Scene text that looks like an overlay (a flat poster filling the frame, a screenshot) is genuinely ambiguous.

## Retrain

```bash
python3 -m venv /tmp/sttrain && /tmp/sttrain/bin/pip install torch==2.13.0 onnx onnxruntime -e ".[vision]"
/tmp/sttrain/bin/python -m detector_factory.train_structure_detector {info['command_args']}
```

Add `--cache DIR` to keep the rendered sets between runs (about 3.5 GB for 18,000 images).
"""
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=18000)
    p.add_argument("--procedural", type=float, default=0.4,
                   help="share of training backgrounds made up: collages of the train photos (70%%), gradients/noise")
    p.add_argument("--n-val", type=int, default=800)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--budget-min", type=float, default=19.0, help="stop training after this many minutes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=0.02)
    p.add_argument("--dense-weight", type=float, default=1.0, help="weight of the per-cell mark loss")
    p.add_argument("--head-weights", type=float, nargs=3, default=[2.0, 1.0, 1.0],
                   help="loss weight of each head (watermark, logo, text_overlay)")
    p.add_argument("--low-res", type=int, default=192, help="input size of the early, cheaper steps")
    p.add_argument("--low-res-frac", type=float, default=0.5, help="share of training run at --low-res")
    p.add_argument("--save-torch", type=Path, default=None, help="also save the torch state dict here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes rendering data")
    # One thread: on a shared machine two OpenMP threads wait on each other at every barrier, and a
    # training step measured 3x slower with two than with one while other jobs ran (0.23 vs 0.42 s quiet).
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--cache", type=Path, default=None, help="folder to keep rendered sets between runs")
    p.add_argument("--out", type=Path, default=WEIGHTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    data = render_set("train", args.n_train, args.seed, args.procedural, args.workers, args.cache)
    val_seed = args.seed + VAL_SEED_OFFSET
    val = render_set("heldout", args.n_val, val_seed, 0.0, args.workers, args.cache)
    render_s = time.time() - t0
    log.info("train positives per label %s; held-out %s", dict(zip(sd.LABELS, data["y"].sum(0).tolist())),
             dict(zip(sd.LABELS, val["y"].sum(0).tolist())))

    model = build_model()
    params = sum(q.numel() for q in model.parameters())
    log.info("model: %d parameters", params)
    training = train(model, data, val, args)

    if args.save_torch:
        torch.save(model.state_dict(), args.save_torch)
    onnx_path = args.out / f"{DEFAULT_NAME}.onnx"
    export_onnx(model, onnx_path, INPUT_SIZE)
    torch_probs = predict(model, val["x"][:64])
    sess = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probs = sess.run(None, {"image": val["x"][:64].astype(np.float32) / 255})[0]
    log.info("ONNX vs torch max abs diff %.2e", float(np.abs(onnx_probs - torch_probs).max()))

    probs = score_with_signal(onnx_path, val_seed, args.n_val)
    metrics = head_metrics(val["y"], probs)
    kinds = kind_recall(val["y"], probs, val["kind"])
    latency = measure_latency(onnx_path)
    log.info("held-out metrics %s", json.dumps(metrics, indent=1))
    log.info("per kind %s", json.dumps(kinds, indent=1))
    log.info("latency %s", latency)
    info = {
        "metrics": metrics, "kinds": kinds, "latency": latency, "training": training, "render_s": render_s,
        "params": params, "size_mb": onnx_path.stat().st_size / 2**20, "args": vars(args) | {"out": str(args.out)},
        "torch": torch.__version__, "ort": onnxruntime.__version__,
        "arch": "A plain CNN over RGB plus a local-contrast-normalised luma channel (luma minus its Gaussian "
                "mean, over its local spread, sigma 2 px; fixed weights inside the graph, so faint marks on flat "
                "areas stand out); 4x4 stride-4 patchify stem (32 ch, 64x64), 3x3 conv-BN-ReLU stages of 32, 48, 96 "
                "and 160 channels at 64, 32, 16 and 8 px (two convs each, stride-2 convs between), global average "
                "and max pooling concatenated, dropout 0.1, one linear layer to 3 logits. During training a 1x1 conv "
                "on the 8x8 feature map also predicts where each kind of mark is (targets from the generator's "
                "masks), which teaches the features where to look; it is not exported",
        "command_args": reproducible_args(argv if argv is not None else sys.argv[1:]),
    }
    write_card(args.out / "STRUCTURE_MODEL_CARD.md", info)
    print(json.dumps({"metrics": metrics, "latency": latency, "steps": training["steps"],
                      "train_min": training["train_s"] / 60, "render_min": render_s / 60,
                      "size_mb": info["size_mb"]}, indent=1))


if __name__ == "__main__":
    main()
