"""Does the trainer learn? Train the toy DiT on synthetic bilingual shapes on CPU, then judge its samples.

1. Write a synthetic export (synthetic/toy_shapes.py: coloured shapes and rendered words, captions in zh and en).
2. Build a tiny random-init Qwen3 as the "LLM" (a stand-in: nothing may be downloaded) and train the `toy`
   DiT preset in PIXEL SPACE (identity "VAE", 32x32) through the real loop, for at most --minutes.
3. Sample every colour x shape prompt in zh and in en with the EMA weights, and let a small CNN, trained on the
   same synthetic data, name colour and shape. Pass: both right for >= 80% of prompts in each language.

    .venv/bin/python -m benchmarks.train_toy --out runs/toy --minutes 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log


def config(out: Path, steps: int, batch: int, lr: float) -> dict:
    return {
        "model": {"preset": "toy"},
        "text": {"llm": str(out / "llm"), "drop_text": 0.1, "drop_glyph": 0.1,
                 "glyph": {"t5": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 1, "num_heads": 4}}},
        "data": {"sources": {"toy": {"path": str(out / "export")}}, "batch_size": batch, "styles": {"short": 1.0}},
        "vae": {"path": "pixel"},
        "objective": {"ref_tokens": 64, "base_shift": 1.0},
        "optim": {"lr": lr, "warmup": 100, "ema_decay": 0.995},
        "run": {"out_dir": str(out / "run"), "steps": steps, "log_every": 50, "sample_steps": 30, "cfg_scale": 3.0,
                "resume": True},
    }


def judge_samples(trainer, seeds: int) -> dict:
    """Sample each colour x shape prompt per language with several seeds; the judge's verdicts per language."""
    from synthetic.toy_shapes import COLOURS, SHAPES, caption, judge, train_judge

    net = train_judge()
    pipe = trainer.pipeline()
    result = {}
    with trainer.ema.applied(trainer.nets):
        for lang in ("zh", "en"):
            combos = [(c, s) for c in sorted(COLOURS) for s in sorted(SHAPES)]
            prompts = [caption(c, s, lang) for c, s in combos]
            ok = colour_ok = shape_ok = 0
            for seed in range(seeds):
                images = pipe(prompts, 32, 32, steps=30, cfg_scale=3.0, seed=seed)
                if lang == "zh" and seed == 0:
                    from PIL import Image
                    import numpy as np

                    Image.fromarray(np.concatenate([np.asarray(i) for i in images], 1)).save(
                        Path(trainer.out) / "judged_zh_seed0.png")
                for (c, s), (jc, js) in zip(combos, judge(net, images)):
                    colour_ok, shape_ok, ok = colour_ok + (jc == c), shape_ok + (js == s), ok + (jc == c and js == s)
            n = len(combos) * seeds
            result[lang] = {"both": ok / n, "colour": colour_ok / n, "shape": shape_ok / n, "samples": n}
    return result


def judge_sanity() -> float:
    """The judge's own accuracy on fresh clean synthetic shapes (so a pass is not the judge's fault)."""
    from synthetic.toy_shapes import judge, make_samples, train_judge

    net = train_judge()
    data = [(im, m["toy"]) for im, m in make_samples(600, 32, seed=999, word_share=0.0)]
    seen = judge(net, [im for im, _ in data])
    return sum((c, s) == (lab["colour"], lab["shape"]) for (c, s), (_, lab) in zip(seen, data)) / len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/toy"))
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget for training")
    ap.add_argument("--steps", type=int, default=20000, help="upper bound on steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--n", type=int, default=4000, help="synthetic samples")
    ap.add_argument("--seeds", type=int, default=3, help="samples per prompt when judging")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--soft-share", type=float, default=0.0,
                    help="share of shapes drawn in the soft light, never named in captions (a base for train_toy_sft)")
    ap.add_argument("--split-cjk", action="store_true",
                    help="tokenize Chinese by character (the default BPE makes each zh caption one token)")
    a = ap.parse_args()

    import torch

    from synthetic.toy_shapes import build_tiny_llm, make_samples, write_shards
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    torch.set_num_threads(a.threads)
    if not (a.out / "export" / "_SUCCESS").exists():
        write_shards(make_samples(a.n, 32, seed=0, soft_share=a.soft_share), a.out / "export", shard_size=500)
    if not (a.out / "llm" / "config.json").exists():
        build_tiny_llm(a.out / "llm", hidden=64, split_cjk=a.split_cjk)
    trainer = Trainer(TrainConfig.model_validate(config(a.out, a.steps, a.batch, a.lr)))
    start, deadline = time.time(), time.time() + a.minutes * 60
    first_step = trainer.step
    while trainer.step < a.steps and time.time() < deadline:
        losses = trainer.run(steps=min(a.steps, trainer.step + 100))  # checkpoint every 100 steps
        log(f"step {trainer.step} loss {sum(losses) / len(losses):.4f} elapsed {time.time() - start:.0f}s")
    train_s = time.time() - start
    trainer.export()
    result = {"steps": trainer.step, "steps_this_run": trainer.step - first_step, "train_seconds": round(train_s),
              "batch": a.batch, "threads": a.threads, "soft_share": a.soft_share, "split_cjk": a.split_cjk,
              "cpu": cpu_model(), "vae": trainer.vae.kind,
              "judge_clean_accuracy": judge_sanity(), "judged": judge_samples(trainer, a.seeds)}
    result["pass"] = all(v["both"] >= 0.8 for v in result["judged"].values())
    (a.out / "toy_result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
