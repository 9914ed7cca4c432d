"""Does TSCD give few-step students that draw what the teacher draws? Distil the toy base on CPU, judged.

1. Judge the teacher (the toy base, `train_toy.py`): every colour x shape prompt in zh and en, several seeds,
   30 Euler steps with CFG 3 (colour+shape by the toy judge CNN). Its generation is timed end to end.
2. Distil with the `tscd` term (objective.tscd: 8 -> 4 -> 2 -> 1 segments, teacher Euler + CFG 3 on a 48-step
   shifted grid, stop-gradient student target; the student all weights, or LoRA with --student lora). The wall
   budget is split between the phases by --shares; after each phase the EMA student is saved as that phase's
   k-step student (student_k8, _k4, _k2, _k1), as Hyper-SD ships one per step count.
3. Load each student from its folder and judge it as in 1 at its own step count (no CFG), timed the same way.
   Pass (issue 22): per language the 4-step student >= 95% and the 2-step >= 90% of the teacher's accuracy.
   Also judged: the teacher itself in 8, 4, 2, 1 Euler steps (what distillation adds). Speed-up end to end
   (prompt to decoded image): best of 5 for one image and for a batch of 12, teacher and students taking turns.

    .venv/bin/python -m benchmarks.train_toy --out runs/toy_base --minutes 25 --batch 16 --lr 1e-3
    .venv/bin/python -m benchmarks.bench_toy_tscd --base runs/toy_base/run/pipeline --out runs/toy_tscd --minutes 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log, require_base

PHASES = (8, 4, 2, 1)


def config(base: Path, export: Path, out: Path, a, phase_steps: list[int]) -> dict:
    return {
        "model": {"init_from": str(base)},
        "data": {"sources": {"toy": {"path": str(export)}}, "batch_size": a.batch, "styles": {"short": 1.0}},
        "objective": {"terms": {"tscd": 1.0}, "ref_tokens": 64, "base_shift": 1.0,
                      "tscd": {"schedule": [{"segments": k, "steps": s} for k, s in zip(PHASES, phase_steps)],
                               "solver_steps": 48, "cfg_scale": 3.0, "loss": "l2"}},
        "optim": {"lr": a.lr, "warmup": 20, "ema_decay": a.ema},
        "stage": {"name": "distill_tscd", "base": a.student, "conditioner": "frozen",
                  "lora": {"rank": 32, "alpha": 32}},
        "run": {"out_dir": str(out), "steps": sum(phase_steps), "log_every": 50, "resume": True},
    }


def judge(pipe, net, seeds: int, steps: int | None) -> dict:
    """Per language: colour+shape right, and the seconds spent generating (text, sampling, decode)."""
    from synthetic.toy_shapes import COLOURS, SHAPES, caption
    from synthetic.toy_shapes import judge as judge_content

    combos = [(c, s) for c in sorted(COLOURS) for s in sorted(SHAPES)]
    out = {}
    for lang in ("zh", "en"):
        prompts = [caption(c, s, lang) for c, s in combos]
        both, n, seconds = 0, 0, 0.0
        for seed in range(seeds):
            t0 = time.perf_counter()
            images = pipe(prompts, 32, 32, steps=steps, seed=seed)  # the pipeline's own sampler and CFG
            seconds += time.perf_counter() - t0
            both += sum(j == c for c, j in zip(combos, judge_content(net, images)))
            n += len(images)
        out[lang] = {"colour_shape": both / n, "samples": n, "gen_seconds": round(seconds, 2)}
    return out


def psnr_to(ref, pipe, steps: int | None, cfg: float | None = None, seeds: int = 2) -> float:
    """PSNR (dB) of the pipeline's images to the reference images (`ref`: same prompts and noise seeds), pixel
    values in [-1, 1]: how close a few-step sampler lands to the teacher's 30-step endpoints."""
    import torch

    from synthetic.toy_shapes import COLOURS, SHAPES, caption

    err, n = 0.0, 0
    for lang in ("zh", "en"):
        prompts = [caption(c, s, lang) for c in sorted(COLOURS) for s in sorted(SHAPES)]
        for seed in range(seeds):
            x = pipe.vae.decode(pipe.latents(prompts, 32, 32, steps, cfg, seed))
            y = ref[(lang, seed)]
            err, n = err + float(((x - y) ** 2).sum()), n + x.numel()
    if err == 0:
        return float("inf")  # the same images
    return round(float(10 * torch.log10(torch.tensor(4.0 / (err / n)))), 2)  # peak-to-peak 2: peak^2 = 4


def reference_images(teacher, seeds: int = 2) -> dict:
    from synthetic.toy_shapes import COLOURS, SHAPES, caption

    ref = {}
    for lang in ("zh", "en"):
        prompts = [caption(c, s, lang) for c in sorted(COLOURS) for s in sorted(SHAPES)]
        for seed in range(seeds):
            ref[(lang, seed)] = teacher.vae.decode(teacher.latents(prompts, 32, 32, 30, 3.0, seed))
    return ref


def latency(pipe, steps: int | None, repeats: int = 5) -> float:
    """Best-of-N seconds for one image end to end (batch 1)."""
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        pipe(["一个红色的圆"], 32, 32, steps=steps, seed=r)
        best = min(best, time.perf_counter() - t0)
    return best


def timings(pipes: dict, rounds: int = 5) -> dict:
    """Best-of-N seconds end to end for one image and for a batch of 12 prompts, per pipeline; the pipelines
    take turns within each round, so a change of machine load falls on all of them alike."""
    from synthetic.toy_shapes import COLOURS, SHAPES, caption

    batch = [caption(c, s, "en") for c in sorted(COLOURS) for s in sorted(SHAPES)]
    best = {name: {"1": float("inf"), "12": float("inf")} for name in pipes}
    for r in range(rounds):
        for name, (pipe, steps, cfg) in pipes.items():
            for key, prompts in (("1", batch[:1]), ("12", batch)):
                t0 = time.perf_counter()
                pipe(prompts, 32, 32, steps=steps, cfg_scale=cfg, seed=r)
                best[name][key] = min(best[name][key], time.perf_counter() - t0)
    return {name: {"batch1_s": round(v["1"], 4), "batch12_s": round(v["12"], 4)} for name, v in best.items()}


def pilot_speed(base: Path, export: Path, out: Path, a) -> tuple:
    """Seconds per step of the k=8 phase, measured on its first steps (which count: the run resumes from them)."""
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    tr = Trainer(TrainConfig.model_validate(config(base, export, out, a, [a.pilot, 1, 1, 1])))
    if tr.step >= a.pilot:
        return None, tr.step
    t0 = time.perf_counter()
    tr.run(steps=a.pilot)
    return (time.perf_counter() - t0) / a.pilot, tr.step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the teacher's pipeline folder (train_toy.py)")
    ap.add_argument("--export", type=Path, default=None, help="training data; default: the base run's export")
    ap.add_argument("--out", type=Path, default=Path("runs/toy_tscd"))
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget for distillation")
    ap.add_argument("--shares", default="0.15,0.35,0.3,0.2", help="budget share of the 8, 4, 2, 1-segment phases")
    ap.add_argument("--student", choices=("full", "lora"), default="full")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--ema", type=float, default=0.98, help="EMA decay of the exported students")
    ap.add_argument("--pilot", type=int, default=20, help="steps timed to size the phases")
    ap.add_argument("--seeds", type=int, default=10, help="samples per prompt when judging (12 prompts a language)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    from synthetic.toy_shapes import train_judge
    from training.config import TrainConfig
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline

    torch.set_num_threads(a.threads)
    require_base(a.base, __doc__.strip().splitlines()[-2].strip())
    export = a.export or a.base.parents[1] / "export"
    a.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    net = train_judge()
    result = {"cpu": cpu_model(), "threads": a.threads, "args": {k: str(v) for k, v in vars(a).items()}}
    log("judging the teacher (30 Euler steps, CFG 3)")
    teacher = Pipeline.load(a.base)
    result["teacher"] = {"steps": 30, "nfe": 60, **judge(teacher, net, a.seeds, 30)}
    log(json.dumps(result["teacher"], ensure_ascii=False))
    # what distillation adds: the teacher itself sampled in few Euler steps (with its CFG)
    ref = reference_images(teacher)
    result["teacher_few_steps"] = {k: {"nfe": 2 * k, **judge(teacher, net, a.seeds, k),
                                       "psnr_to_teacher30_db": psnr_to(ref, teacher, k, 3.0)} for k in (8, 4, 2, 1)}
    log(json.dumps(result["teacher_few_steps"], ensure_ascii=False))

    t0 = time.time()
    per_step, done = pilot_speed(a.base, export, a.out / "train", a)
    shares = [float(s) for s in a.shares.split(",")]
    budget = a.minutes * 60 - (time.time() - t0)
    if per_step is None:  # resumed past the pilot: reuse the sizes saved with the first run
        phase_steps = json.loads((a.out / "phase_steps.json").read_text())
    else:
        total = int(budget / per_step)
        phase_steps = [max(1, int(total * s)) for s in shares]
        phase_steps[0] = max(phase_steps[0], done)
        (a.out / "phase_steps.json").write_text(json.dumps(phase_steps))
    log(f"{per_step and round(per_step, 3)} s/step: phases of {phase_steps} steps for k = {PHASES}")
    tr = Trainer(TrainConfig.model_validate(config(a.base, export, a.out / "train", a, phase_steps)))
    end = 0
    result["phases"] = {}
    for k, n in zip(PHASES, phase_steps):
        end += n
        while tr.step < end:
            losses = tr.run(steps=min(end, tr.step + 100))  # a checkpoint every 100 steps
            log(f"  k={k} step {tr.step} loss {sum(losses) / len(losses):.5f} elapsed {time.time() - t0:.0f}s")
        with tr.ema.applied(tr.nets):
            tr.pipeline().save(a.out / f"student_k{k}")
        result["phases"][k] = {"steps": n, "until_step": end, "elapsed_s": round(time.time() - t0)}
    result["train_seconds"] = round(time.time() - t0)

    result["students"], pipes = {}, {"teacher_30": (teacher, 30, None)}
    for k in PHASES:
        student = Pipeline.load(a.out / f"student_k{k}")
        assert student.sampler["segments"] == k
        pipes[f"student_{k}"] = (student, None, None)
        res = {"steps": k, "nfe": k, **judge(student, net, a.seeds, None),
               "psnr_to_teacher30_db": psnr_to(ref, student, None)}
        for lang in ("zh", "en"):
            base_acc = result["teacher"][lang]["colour_shape"]
            res[lang]["of_teacher"] = res[lang]["colour_shape"] / base_acc if base_acc else None
        result["students"][k] = res
        log(f"student k={k}: {json.dumps(res, ensure_ascii=False)}")
    log("timing: teacher and students in turns")
    result["timing"] = timings(pipes)
    ref = result["timing"]["teacher_30"]
    for k in PHASES:
        mine = result["timing"][f"student_{k}"]
        result["students"][k]["speedup_batch1"] = ref["batch1_s"] / mine["batch1_s"]
        result["students"][k]["speedup_batch12"] = ref["batch12_s"] / mine["batch12_s"]
    s = result["students"]
    result["pass"] = all(s[4][lang]["of_teacher"] >= 0.95 and s[2][lang]["of_teacher"] >= 0.90 for lang in ("zh", "en"))
    result["wall_seconds"] = round(time.time() - began)
    (a.out / "toy_tscd_result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
