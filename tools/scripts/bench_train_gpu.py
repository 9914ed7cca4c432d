"""Training throughput and MFU: our 2B DiT preset vs diffusers SD3Transformer2DModel (SD3-medium shape).

Both models run the same step (bf16 autocast, forward + velocity MSE + backward + AdamW) on the same batch of
latents, eager and torch.compile'd, in one process on one GPU, so the ratio is the figure to read. FLOPs of
forward + backward are counted with torch.utils.flop_counter.FlopCounterMode, not estimated; MFU divides
them by the step time and the GPU's dense bf16 peak (training/engine/metrics.py).

    .venv/bin/python tools/scripts/bench_train_gpu.py --batch 8 --size 512      # on a GPU
    .venv/bin/python tools/scripts/bench_train_gpu.py --cpu-smoke               # tiny shapes, checks the script
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.scripts.benchlib import cpu_model, log  # noqa: E402

SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, pos_embed_max_size=192)
SD3_TINY = dict(sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16,
                num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=64, pooled_projection_dim=32,
                pos_embed_max_size=32)


def build(name: str, smoke: bool, device):
    """(model, step input builder) for 'ours' or 'sd3'."""
    from diffusers import SD3Transformer2DModel

    from training.models.dit import preset

    if name == "ours":
        m = preset("debug") if smoke else preset("2b")

        def call(x, t, text, pooled, mask):
            return m(x, t, text, mask, pooled)
    else:
        m = SD3Transformer2DModel(**(SD3_TINY if smoke else SD3_MEDIUM))

        def call(x, t, text, pooled, mask):  # SD3 takes no text mask (diffusers#10044); timesteps in [0, 1000]
            return m(hidden_states=x, timestep=t * 1000, encoder_hidden_states=text, pooled_projections=pooled).sample
    return m.to(device), call


def inputs(name: str, smoke: bool, batch: int, size: int, text_len: int, device):
    import torch

    c = 4 if smoke else 16
    lat = size // 8
    text_dim = 32 if smoke else (2048 if name == "ours" else 4096)
    pooled_dim = 32 if smoke else 2048
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, c, lat, lat, generator=g).to(device), torch.rand(batch, generator=g).to(device),
            torch.randn(batch, text_len, text_dim, generator=g).to(device),
            torch.randn(batch, pooled_dim, generator=g).to(device),
            torch.ones(batch, text_len, dtype=torch.bool, device=device))


def bench_one(name: str, compiled: bool, a, device) -> dict:
    import torch

    from training.engine.metrics import count_flops, peak_tflops

    model, call = build(name, a.cpu_smoke, device)
    if compiled:
        if name == "ours":
            from training.engine.parallel import apply_compile

            apply_compile(model)
        else:
            model.compile(dynamic=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    x, t, text, pooled, mask = inputs(name, a.cpu_smoke, a.batch, a.size, a.text_len, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def fwd_bwd():
        with amp:
            out = call(x, t, text, pooled, mask)
        ((out.float() - x) ** 2).mean().backward()

    def step():
        fwd_bwd()
        opt.step()
        opt.zero_grad(set_to_none=True)

    flops = count_flops(fwd_bwd) if not compiled else None
    opt.zero_grad(set_to_none=True)
    for _ in range(a.warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(a.iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"model": name, "compiled": compiled, "params": params, "step_s": statistics.median(times),
            "flops": flops, "peak_tflops": peak_tflops(device), "max_mem_gib": mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)  # the setting: 1024 px, batch 4
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels (latents are size/8; 1024 -> 4096 tokens)")
    ap.add_argument("--text-len", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny models on CPU: checks the script, no figures")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    a = ap.parse_args()

    import torch

    if a.cpu_smoke:
        a.batch, a.size, a.text_len, a.iters, a.warmup = 2, 128, 8, 2, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not a.cpu_smoke else "cpu")
    if device.type != "cuda" and not a.cpu_smoke:
        raise SystemExit("no GPU: run on a GPU, or pass --cpu-smoke to check the script on tiny shapes")
    rows = []
    for compiled in ([False] if a.no_compile else [False, True]):
        for name in ("sd3", "ours"):
            log(f"{name} compiled={compiled} ...")
            rows.append(bench_one(name, compiled, a, device))
            if device.type == "cuda":  # the model is gone with bench_one's frame: start the next one clean
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
    flops = {r["model"]: r["flops"] for r in rows if r["flops"]}
    for r in rows:
        r["flops"] = flops[r["model"]]  # counted eagerly; compiling does not change the model's FLOPs
        r["tflops_per_s"] = r["flops"] / r["step_s"] / 1e12
        r["mfu"] = r["tflops_per_s"] / r["peak_tflops"] if r["peak_tflops"] else None
    base = {c: next(r["step_s"] for r in rows if r["model"] == "sd3" and r["compiled"] == c) for c in {False, True}
            if any(r["compiled"] == c for r in rows)}
    for r in rows:
        r["time_vs_sd3"] = r["step_s"] / base[r["compiled"]]
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    tokens = (a.size // 16) ** 2
    print(f"machine: {machine}; batch {a.batch} at {a.size}px ({tokens} image + {a.text_len} text tokens)")
    print("| model | compiled | params | step s | TFLOP/step | TFLOP/s | MFU | time vs SD3 | max mem GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        mem = f"{r['max_mem_gib']:.1f}" if r["max_mem_gib"] is not None else "n/a"
        print(f"| {r['model']} | {r['compiled']} | {r['params'] / 1e9:.2f}B | {r['step_s']:.3f} | "
              f"{r['flops'] / 1e12:.2f} | {r['tflops_per_s']:.1f} | {mfu} | {r['time_vs_sd3']:.2f}x | {mem} |")
    if a.out:
        a.out.write_text(json.dumps({"machine": machine, "args": vars(a) | {"out": str(a.out)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
