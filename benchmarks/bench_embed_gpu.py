"""Stage 2's embedding step on one GPU machine, without Spark: where the end-to-end rate is lost.

What the issue's check (d) would run in Spark, measured in pieces on the same machine:
  1. model only: a ViT-L/14 CLIP image tower (transformers, random weights, fp16) on ready 224x224 tensors;
  2. Pillow decode + resize to 224 of 1024x768 JPEGs, one process, then one process per core;
  3. end to end with Pillow: worker processes decode and resize, the main process batches and encodes;
  4. end to end with GPU decode: torchvision.io.decode_jpeg on the GPU (nvJPEG), resize and normalise on the GPU.
Each end-to-end rate is reported as a share of the model-only rate measured in the same run (goal: >= 60%).
The JPEGs are made from scikit-learn's two sample photos, cropped at random places.

    python -m benchmarks.bench_embed_gpu --out rows.jsonl     # on a GPU machine
    .venv/bin/python -m benchmarks.bench_embed_gpu --cpu-smoke  # a tiny tower on CPU: checks the script
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from multiprocessing import Pool
from pathlib import Path

from benchmarks.benchlib import cpu_model, log, sample_jpegs

SIDE = 224
MEAN, STD = (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)  # CLIP's normalisation
VIT_L_14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                patch_size=14, image_size=SIDE, projection_dim=768)
VIT_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
                image_size=SIDE, projection_dim=16)


def pil_prepare(jpeg: bytes):
    """Decode with draft mode (libjpeg's DCT scaling), shorter side to 224, centre crop: uint8 HWC."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:
        im.draft("RGB", (SIDE * 2, SIDE * 2))  # decode at 1/2 or 1/4 scale when the JPEG allows it
        im = im.convert("RGB")
        w, h = im.size
        s = SIDE / min(w, h)
        im = im.resize((max(SIDE, round(w * s)), max(SIDE, round(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - SIDE) // 2, (h - SIDE) // 2
        return np.asarray(im.crop((left, top, left + SIDE, top + SIDE)))


def _pool_init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def build_tower(smoke: bool, device):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device(device):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**(VIT_TINY if smoke else VIT_L_14)))
    return model.eval().to(torch.float16 if device.type == "cuda" else torch.float32)


def normalise(batch_uint8, device, dtype):
    """(B, H, W, 3) or (B, 3, H, W) uint8 on any device -> normalised (B, 3, 224, 224) on `device`."""
    import torch

    x = batch_uint8.to(device, non_blocking=True)
    if x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return ((x.float() / 255 - mean) / std).to(dtype)


def encode(model, x):
    import torch

    with torch.inference_mode():
        out = model(pixel_values=x).image_embeds
        return torch.nn.functional.normalize(out.float(), dim=-1)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(model, a, device, dtype) -> float:
    import torch

    x = torch.randn(a.batch, 3, SIDE, SIDE, device=device, dtype=dtype)
    for _ in range(2):
        encode(model, x)
    sync(device)
    t = time.perf_counter()
    for _ in range(a.model_batches):
        encode(model, x)
    sync(device)
    return a.batch * a.model_batches / (time.perf_counter() - t)


def pil_rates(jpegs: list[bytes], procs: int) -> tuple[float, float]:
    n1 = min(len(jpegs), 200)
    t = time.perf_counter()
    for j in jpegs[:n1]:
        pil_prepare(j)
    one = n1 / (time.perf_counter() - t)
    with Pool(procs, initializer=_pool_init) as pool:
        pool.map(pil_prepare, jpegs[:procs * 4], chunksize=4)  # workers started and warm
        t = time.perf_counter()
        pool.map(pil_prepare, jpegs, chunksize=16)
        many = len(jpegs) / (time.perf_counter() - t)
    return one, many


def end_to_end_pil(model, jpegs, a, device, dtype, procs: int) -> float:
    """Workers decode and resize (imap keeps them ahead), the main process batches and encodes."""
    import numpy as np
    import torch

    with Pool(procs, initializer=_pool_init) as pool:
        pool.map(pil_prepare, jpegs[:procs * 4], chunksize=4)

        def flush(arrays):
            x = torch.from_numpy(np.stack(arrays))
            encode(model, normalise(x.pin_memory() if device.type == "cuda" else x, device, dtype))

        t = time.perf_counter()
        batch = []
        for arr in pool.imap(pil_prepare, jpegs, chunksize=16):
            batch.append(arr)
            if len(batch) == a.batch:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        sync(device)
        return len(jpegs) / (time.perf_counter() - t)


def end_to_end_gpu_decode(model, jpegs, a, device, dtype) -> float:
    """nvJPEG decodes a batch on the GPU; resize (shorter side 224), centre crop and normalise there too."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg

    def prepare(chunk):
        data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in chunk]
        imgs = decode_jpeg(data, device=device)  # list of (3, H, W) uint8
        out = []
        for im in imgs:
            h, w = im.shape[-2:]
            s = SIDE / min(h, w)
            im = F.interpolate(im[None].float(), size=(max(SIDE, round(h * s)), max(SIDE, round(w * s))),
                               mode="bilinear", antialias=True, align_corners=False)
            h, w = im.shape[-2:]
            top, left = (h - SIDE) // 2, (w - SIDE) // 2
            out.append(im[..., top:top + SIDE, left:left + SIDE])
        return normalise(torch.cat(out).clamp(0, 255).to(torch.uint8), device, dtype)

    encode(model, prepare(jpegs[:a.batch]))  # warm-up: nvJPEG handles, kernels
    sync(device)
    t = time.perf_counter()
    for i in range(0, len(jpegs), a.batch):
        encode(model, prepare(jpegs[i:i + a.batch]))
    sync(device)
    return len(jpegs) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="JPEGs per end-to-end run")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--model-batches", type=int, default=20)
    ap.add_argument("--procs", type=int, default=0, help="decode processes (0: one per core, less one)")
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() and not a.cpu_smoke else "cpu")
    if device.type != "cuda" and not a.cpu_smoke:
        raise SystemExit("no GPU: run on a GPU machine, or pass --cpu-smoke to check the script")
    if a.cpu_smoke:
        a.n, a.batch, a.model_batches = 64, 16, 2
    procs = a.procs or max(1, (os.cpu_count() or 2) - 1)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    log(f"machine: {machine}; {os.cpu_count()} cores, {procs} decode processes; torch {torch.__version__}")
    jpegs = sample_jpegs(a.n, unique=512)
    model = build_tower(a.cpu_smoke, device)
    rows = {"machine": machine, "cores": os.cpu_count(), "procs": procs, "n": a.n, "batch": a.batch,
            "params": sum(p.numel() for p in model.parameters())}

    def step(name, fn):
        t = time.perf_counter()
        try:
            rows[name] = fn()
        except Exception as e:  # noqa: BLE001 - keep the other measurements
            rows[name] = f"{type(e).__name__}: {str(e)[:300]}"
        log(f"{name}: {rows[name]} ({time.perf_counter() - t:.1f} s)")
        if a.out:
            a.out.write_text(json.dumps(rows, indent=1))

    step("model_only_img_s", lambda: model_only(model, a, device, dtype))
    step("pil_img_s", lambda: dict(zip(("one_process", "all_processes"), pil_rates(jpegs, procs))))
    step("end_to_end_pil_img_s", lambda: end_to_end_pil(model, jpegs, a, device, dtype, procs))
    step("end_to_end_gpu_decode_img_s", lambda: end_to_end_gpu_decode(model, jpegs, a, device, dtype))
    base = rows["model_only_img_s"]
    print(f"machine: {machine}; {rows['cores']} cores; ViT-L/14 image tower ({rows['params'] / 1e6:.0f}M params, "
          f"random weights, {str(dtype).split('.')[-1]}), batch {a.batch}; {a.n} JPEGs 1024x768")
    print("| measurement | images/s | share of model only |\n|---|---|---|")
    for name in ("model_only_img_s", "end_to_end_pil_img_s", "end_to_end_gpu_decode_img_s"):
        v = rows[name]
        share = f"{v / base:.0%}" if isinstance(v, float) and isinstance(base, float) else "n/a"
        print(f"| {name} | {v if isinstance(v, str) else f'{v:.0f}'} | {share} |")
    p = rows["pil_img_s"]
    if isinstance(p, dict):
        print(f"| Pillow decode + resize, 1 process | {p['one_process']:.0f} | |")
        print(f"| Pillow decode + resize, {procs} processes | {p['all_processes']:.0f} | |")


if __name__ == "__main__":
    main()
