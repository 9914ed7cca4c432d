"""Training throughput and MFU: our 2B DiT preset vs diffusers SD3Transformer2DModel (SD3-medium shape).

Both models run the same step (bf16 autocast, forward + velocity MSE + backward + fused AdamW) on the same
batch of latents, eager and torch.compile'd, in one process on one GPU, so the ratio is the figure to read.
FLOPs of forward + backward are counted with torch.utils.flop_counter.FlopCounterMode, not estimated; MFU
divides them by the step time and the GPU's dense bf16 peak (training/engine/metrics.py).

First it times the attention kernels alone (fwd + bwd at the run's shapes) and our model uses the fastest
for its head width (the trainer's `run.attention`); SD3 runs as diffusers ships it (torch's default order),
plus one eager row with our kernel so the kernel's share of the gap is visible. Rows are appended to --out
(JSON lines) as they finish, so a run cut short still leaves what it measured.

    .venv/bin/python -m benchmarks.bench_train_gpu --out rows.jsonl          # on a GPU: the issue's setting
    .venv/bin/python -m benchmarks.bench_train_gpu --cpu-smoke               # tiny shapes, checks the script
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log

SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, pos_embed_max_size=192)
SD3_TINY = dict(sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16,
                num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=64, pooled_projection_dim=32,
                pos_embed_max_size=32)


def build(name: str, smoke: bool, device, variant: dict):
    """(model, step call) for 'ours' (the 2b preset with `variant` overrides) or 'sd3', built on the device."""
    import torch
    from diffusers import SD3Transformer2DModel

    from training.models.dit import preset

    with torch.device(device):  # initialise on the GPU: a 2B-parameter init on the host takes minutes
        if name == "ours":
            m = preset("debug") if smoke else preset("2b", **variant)

            def call(x, t, text, pooled, mask):
                return m(x, t, text, mask, pooled)
        else:
            m = SD3Transformer2DModel(**(SD3_TINY if smoke else SD3_MEDIUM))

            def call(x, t, text, pooled, mask):  # SD3 takes no text mask (diffusers#10044); timesteps in [0, 1000]
                return m(hidden_states=x, timestep=t * 1000, encoder_hidden_states=text, pooled_projections=pooled).sample
    return m, call


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


def _timed(fn, iters: int, warmup: int, device) -> list[float]:
    import torch

    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def bench_attention(a, device) -> list[dict]:
    """Each SDPA kernel alone, fwd + bwd, at the run's joint sequence: SD3's 24x64 heads and our 12x128."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n = (a.size // 16) ** 2 + a.text_len
    rows = []
    for heads, dim in ((24, 64), (12, 128)) if not a.cpu_smoke else ((2, 16),):
        q, k, v = (torch.randn(a.batch, heads, n, dim, device=device, dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        grad = torch.randn_like(q)
        flops = 4 * a.batch * heads * n * n * dim * 3.5  # fwd 4BHN^2d, bwd 2.5x fwd (FlopCounterMode's rule)
        for kernel in ("flash", "cudnn", "efficient"):
            backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                       "efficient": SDPBackend.EFFICIENT_ATTENTION}[kernel]

            def step():
                with sdpa_kernel([backend]):
                    F.scaled_dot_product_attention(q, k, v).backward(grad)

            try:
                t = statistics.median(_timed(step, 5, 2, device))
                rows.append({"heads": heads, "head_dim": dim, "kernel": kernel, "ms": t * 1e3,
                             "tflops_per_s": flops / t / 1e12})
            except RuntimeError as e:  # a kernel this build or card lacks
                rows.append({"heads": heads, "head_dim": dim, "kernel": kernel, "error": str(e).splitlines()[0]})
        del q, k, v, grad
    return rows


def bench_one(name: str, compiled: bool, attention: str, variant: dict, a, device) -> dict:
    import torch

    from training.engine.metrics import count_flops, peak_tflops
    from training.engine.parallel import apply_compile, attention_kernel

    model, call = build(name, a.cpu_smoke, device, variant)
    if compiled:
        if name == "ours":
            apply_compile(model)  # per block, as the trainer does (run.compile)
        else:
            model.compile(dynamic=False)  # whole model, the usual way to compile a diffusers model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    x, t, text, pooled, mask = inputs(name, a.cpu_smoke, a.batch, a.size, a.text_len, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def fwd_bwd():
        with amp, attention_kernel(attention):
            out = call(x, t, text, pooled, mask)
        ((out.float() - x) ** 2).mean().backward()

    def step():
        fwd_bwd()
        opt.step()
        opt.zero_grad(set_to_none=True)

    flops = None
    if not compiled:  # counted eagerly, where every kernel is registered with the counter
        with attention_kernel("flash" if device.type == "cuda" else "math"):
            flops = count_flops(fwd_bwd)
        opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    times = _timed(step, a.iters, a.warmup, device)
    params = sum(p.numel() for p in model.parameters())
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    prof = profile_steps(step, 2, device) if a.profile and compiled else None
    return {"model": name, "variant": variant, "compiled": compiled, "attention": attention, "params": params,
            "step_s": statistics.median(times), "warmup_and_timed_s": time.perf_counter() - t0, "flops": flops,
            "peak_tflops": peak_tflops(device), "max_mem_gib": mem, "profile": prof}


KERNEL_KINDS = (("attention", ("flash", "fmha", "cudnn", "attn", "sdpa")),
                ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "sm90", "cublas", "matmul")),
                ("optimizer", ("adam", "foreach", "multi_tensor")),
                ("fused by inductor", ("triton",)))


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "other")


def profile_steps(step, steps: int, device) -> dict:
    """GPU time per step by kernel kind (matmul, attention, optimizer, inductor's fused kernels, other), and the
    costliest kernels: where a step's time goes, read from torch.profiler's CUDA trace."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"  # on CPU (--cpu-smoke) the CPU ops stand in, to check the script
    with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
        if on_gpu:
            torch.cuda.synchronize(device)
    kinds: dict[str, float] = {}
    top = []
    for e in prof.key_averages():
        us = e.device_time_total if on_gpu else e.self_cpu_time_total
        if not us:
            continue
        kinds[kernel_kind(e.key)] = kinds.get(kernel_kind(e.key), 0.0) + us / 1e3 / steps
        top.append((us / 1e3 / steps, e.count // steps, e.key[:90]))
    top.sort(reverse=True)
    return {"ms_per_step_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            "gpu_ms_per_step": sum(kinds.values()), "top_kernels": [list(t) for t in top[:15]]}


def free(device) -> None:
    """Drop the last model; reset dynamo's caches only if something still holds GPU memory."""
    import torch

    gc.collect()
    if device.type != "cuda":
        return
    torch.cuda.empty_cache()
    if torch.cuda.memory_allocated(device) > 2**30:
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()
    log(f"  allocated after free: {torch.cuda.memory_allocated(device) / 2**30:.1f} GiB")
    torch.cuda.reset_peak_memory_stats(device)


def parse_variant(text: str) -> dict:
    """'23,2' -> depth_double=23, depth_single=2; '14,0,2048,16' also sets hidden_size and num_heads."""
    keys = ("depth_double", "depth_single", "hidden_size", "num_heads")
    values = [int(v) for v in text.split(",")]
    if len(values) not in (2, 4):
        raise SystemExit(f"variant {text!r}: give depth_double,depth_single[,hidden_size,num_heads]")
    return dict(zip(keys, values))


def table(rows: list[dict], batch: int) -> list[str]:
    flops = {(r["model"], json.dumps(r["variant"])): r["flops"] for r in rows if r.get("flops")}
    base = {r["compiled"]: r["step_s"] for r in rows if r["model"] == "sd3" and r["attention"] == "auto"}
    out = ["| model | compiled | attention | params | step s | samples/s | vs SD3 (same mode) | TFLOP/step | "
           "TFLOP/s | MFU | max mem GiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = flops.get((r["model"], json.dumps(r["variant"])))
        name = r["model"] + ("" if not r["variant"] else " " + ",".join(f"{k}={v}" for k, v in r["variant"].items()))
        tf = f / r["step_s"] / 1e12 if f else None
        mfu = f"{tf / r['peak_tflops']:.1%}" if tf and r["peak_tflops"] else "n/a"
        vs = f"{base[r['compiled']] / r['step_s']:.2f}x" if r["compiled"] in base else "n/a"
        mem = f"{r['max_mem_gib']:.1f}" if r["max_mem_gib"] is not None else "n/a"
        out.append(f"| {name} | {r['compiled']} | {r['attention']} | {r['params'] / 1e9:.3f}B | {r['step_s']:.3f} | "
                   f"{batch / r['step_s']:.2f} | {vs} | {f / 1e12 if f else float('nan'):.2f} | "
                   f"{tf or float('nan'):.1f} | {mfu} | {mem} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)  # the setting: 1024 px, batch 4
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels (latents are size/8; 1024 -> 4096 tokens)")
    ap.add_argument("--text-len", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["23,2", "24,0"],
                    help="our 2b preset's depth_double,depth_single to run; the first is the preset's own")
    ap.add_argument("--attention", default="best", help="our kernel: best (fastest measured for 128-wide heads) or a name")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--profile", action="store_true", help="compiled rows: GPU time per step by kernel kind")
    ap.add_argument("--skip-extras", action="store_true", help="only the four rows of the issue's comparison")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny models on CPU: checks the script, no figures")
    ap.add_argument("--out", type=Path, default=None, help="append each row here as a JSON line when it finishes")
    a = ap.parse_args()

    import torch

    if a.cpu_smoke:
        a.batch, a.size, a.text_len, a.iters, a.warmup = 2, 128, 8, 2, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not a.cpu_smoke else "cpu")
    if device.type != "cuda" and not a.cpu_smoke:
        raise SystemExit("no GPU: run on a GPU, or pass --cpu-smoke to check the script on tiny shapes")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    log(f"machine: {machine}; torch {torch.__version__}")

    def emit(row: dict) -> None:
        log(json.dumps(row))
        if a.out:
            with a.out.open("a") as f:
                f.write(json.dumps({"machine": machine, "torch": torch.__version__} | row) + "\n")

    attn = bench_attention(a, device)
    for r in attn:
        emit({"kind": "attention"} | r)
    ours_kernel = a.attention
    if ours_kernel == "best":
        ok = [r for r in attn if "ms" in r and r["head_dim"] == max(x["head_dim"] for x in attn)]
        ours_kernel = min(ok, key=lambda r: r["ms"])["kernel"] if ok and device.type == "cuda" else "auto"
    variants = [{} if a.cpu_smoke else parse_variant(v) for v in a.variants]
    if a.cpu_smoke:
        variants = variants[:1]
    # the comparison the issue asks for first, extras after: a run cut short keeps the main figures
    plan = [("sd3", False, "auto", {}), ("ours", False, ours_kernel, variants[0])]
    if not a.no_compile:
        plan += [("ours", True, ours_kernel, variants[0]), ("sd3", True, "auto", {})]
    if not a.skip_extras:
        plan += [("ours", False, ours_kernel, v) for v in variants[1:]]
        if not a.no_compile:
            plan += [("ours", True, ours_kernel, v) for v in variants[1:]]
        if ours_kernel != "auto":
            plan.append(("sd3", False, ours_kernel, {}))
    rows = []
    for name, compiled, kernel, variant in plan:
        log(f"{name} {variant} compiled={compiled} attention={kernel} ...")
        try:
            rows.append(bench_one(name, compiled, kernel, variant, a, device))
            emit({"kind": "step", "batch": a.batch, "size": a.size, "text_len": a.text_len} | rows[-1])
        except Exception as e:  # noqa: BLE001 - one failed row (OOM, a kernel this torch lacks) must not lose the rest
            emit({"kind": "error", "model": name, "variant": variant, "compiled": compiled, "attention": kernel,
                  "error": f"{type(e).__name__}: {str(e)[:400]}"})
        free(device)
    print(f"machine: {machine}; torch {torch.__version__}; batch {a.batch} at {a.size}px "
          f"({(a.size // 16) ** 2} image + {a.text_len} text tokens)")
    print("| heads x dim | kernel | fwd+bwd ms | TFLOP/s |\n|---|---|---|---|")
    for r in attn:
        print(f"| {r['heads']}x{r['head_dim']} | {r['kernel']} | "
              + (f"{r['ms']:.2f} | {r['tflops_per_s']:.0f} |" if "ms" in r else f"failed: {r['error'][:60]} | |"))
    print("\n".join(table(rows, a.batch)))
    for r in rows:
        if r.get("profile"):
            p = r["profile"]
            kinds = ", ".join(f"{k} {v:.1f}" for k, v in p["ms_per_step_by_kind"].items())
            print(f"\n{r['model']} {r['variant'] or ''} compiled: GPU {p['gpu_ms_per_step']:.1f} ms/step of "
                  f"{r['step_s'] * 1e3:.1f} wall; by kind (ms): {kinds}")
            for ms, n, name in p["top_kernels"]:
                print(f"  {ms:7.2f} ms  x{n:<4d} {name}")


if __name__ == "__main__":
    main()
