"""Does RLHF raise what a judge sees? Reward feedback learning over an under-trained toy base, on CPU, judged.

1. The base: a deliberately under-trained toy model (colour+shape right in 50-70% of samples), e.g.
       .venv/bin/python -m benchmarks.train_toy --out runs/toy_under --steps 700 --batch 16 --lr 1e-3 --soft-share 0.3
2. The reward, trained by the project (training/rewards/match.py): P(image matches prompt), a CNN + byte-level
   text model fitted on fresh toy shapes with their caption (zh or en) as positives and a caption with the colour
   or the shape changed as negatives. It is not the judge: the judge is another CNN (synthetic/toy_shapes.py
   train_judge) on other samples, which names colour and shape and never reads a prompt.
3. RLHF: the `rlhf` stage over the base (LoRA, frozen conditioner): the flow loss on real toy shapes plus
   reward_feedback (ReFL: the gradient through one late sampling step) with the learned reward, and the guard
   on the flow loss.
4. Judged per language, base and result: colour+shape accuracy over every colour x shape prompt and several
   seeds; diversity: the mean pixel distance between samples of one prompt across seeds (RMS in [0, 1]), beside
   the same measure on real toy shapes. Pass (issue 21): accuracy +15 points or more in each language, diversity
   not collapsed (at least half the base's).

    .venv/bin/python -m benchmarks.train_toy_rlhf --base runs/toy_under/run/pipeline --out runs/toy_rlhf --minutes 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log, require_base


def config(base: Path, out: Path, real: Path, reward: Path, a) -> dict:
    return {
        "model": {"init_from": str(base)},
        "data": {"sources": {"real": {"path": str(real)}}, "batch_size": a.batch, "styles": {"short": 1.0}},
        "objective": {"terms": {"flow_matching": a.flow_weight, **({} if a.control else {"reward_feedback": a.reward_weight})},
                      "ref_tokens": 64, "base_shift": 1.0,
                      "feedback": {"rewards": {"match": {"kind": "match", "path": str(reward),
                                                         "options": {"output": a.reward_output}}},
                                   "steps": a.rollout_steps, "window": a.window, "grad_steps": a.grad_steps,
                                   "cfg_scale": 3.0, "rows": a.rows,
                                   "guard": {"max_ratio": a.guard, "action": "scale"}}},
        "optim": {"lr": a.lr, "warmup": 20, "ema_decay": 0.99},
        "stage": {"name": "rlhf", "base": a.mode, "conditioner": "frozen", "lora": {"rank": a.rank, "alpha": a.rank}},
        "run": {"out_dir": str(out), "steps": 10 ** 6, "log_every": 25, "sample_steps": 30, "cfg_scale": 3.0,
                "resume": True},
    }


def train_reward(folder: Path, n: int, epochs: int) -> dict:
    """Fit and save the toy match reward; returns its held-out metrics."""
    import torch

    from synthetic.toy_shapes import match_data
    from training.rewards.match import MatchNet, evaluate, fit_match, save_match

    torch.manual_seed(0)
    net = MatchNet(size=32, width=48, text_layers=2)
    fit_match(net, *match_data(n, seed=777, soft_share=0.3), epochs=epochs, lr=3e-3, batch=32, noise=0.15)
    held = evaluate(net, *match_data(600, seed=778, soft_share=0.3))
    save_match(net, folder, {
        "name": "toy prompt-image match (sluice toy world)", "metrics": held, "made_by": "benchmarks/train_toy_rlhf.py",
        "summary": "P(the 32x32 toy image shows the colour and shape the zh or en prompt names).",
        "data": f"{n} fresh toy shapes (seed 777; 30% soft light): half with their own caption, half with the colour "
                "or the shape changed (hard negatives); gaussian pixel noise 0.15 in training",
        "limits": "toy world only: four colours, three shapes, 32 px, one shape per image"})
    return held


def prompts_for(lang: str):
    from synthetic.toy_shapes import COLOURS, SHAPES, caption

    combos = [(c, s) for c in sorted(COLOURS) for s in sorted(SHAPES)]
    return combos, [caption(c, s, lang) for c, s in combos]


def diversity(per_prompt: list[list]) -> float:
    """Mean over prompts of the mean pairwise RMS pixel distance (in [0, 1]) between that prompt's samples."""
    import numpy as np

    out = []
    for images in per_prompt:
        arr = [np.asarray(im, dtype=np.float32) / 255 for im in images]
        d = [float(np.sqrt(((arr[i] - arr[j]) ** 2).mean())) for i in range(len(arr)) for j in range(i + 1, len(arr))]
        if d:
            out.append(sum(d) / len(d))
    return sum(out) / len(out) if out else float("nan")


def real_diversity(per_prompt: int = 8) -> float:
    """The same measure on real toy shapes: what the data itself varies by."""
    from synthetic.toy_shapes import make_samples

    groups: dict[str, list] = {}
    for im, meta in make_samples(2000, 32, seed=4242, word_share=0.0, soft_share=0.3):
        groups.setdefault(meta["captions"]["short"]["en"], []).append(im)
    return diversity([g[:per_prompt] for g in groups.values()])


def judge(pipe, net, reward, seeds: int, save: Path | None = None) -> dict:
    """Per language: colour+shape accuracy, the reward's mean, and diversity across seeds."""
    import numpy as np
    from PIL import Image

    from synthetic.toy_shapes import judge as judge_content
    from training.rewards.score import score_images

    out = {}
    for lang in ("zh", "en"):
        combos, prompts = prompts_for(lang)
        per_prompt = [[] for _ in prompts]
        right, rewards = 0, []
        for seed in range(seeds):
            images = pipe(prompts, 32, 32, steps=30, cfg_scale=3.0, seed=seed)
            right += sum(j == c for c, j in zip(combos, judge_content(net, images)))
            rewards += score_images(reward, images, prompts)
            for k, im in enumerate(images):
                per_prompt[k].append(im)
        if save is not None:  # a row per seed (the first four), a column per prompt
            rows = [np.concatenate([np.asarray(p[s]) for p in per_prompt], 1) for s in range(min(4, seeds))]
            Image.fromarray(np.concatenate(rows, 0)).save(save.with_name(f"{save.name}_{lang}.png"))
        out[lang] = {"colour_shape": right / (seeds * len(prompts)), "reward": sum(rewards) / len(rewards),
                     "diversity": diversity(per_prompt), "samples": seeds * len(prompts)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the under-trained toy base's pipeline folder")
    ap.add_argument("--out", type=Path, default=Path("runs/toy_rlhf"))
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget for the RLHF stage's training")
    ap.add_argument("--max-steps", type=int, default=5000)
    ap.add_argument("--mode", choices=["lora", "full"], default="lora", help="stage.base")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16, help="real samples per step (the flow-loss anchor)")
    ap.add_argument("--rows", type=int, default=8, help="prompts rolled out per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--flow-weight", type=float, default=1.0)
    ap.add_argument("--reward-weight", type=float, default=1.0)
    ap.add_argument("--rollout-steps", type=int, default=10)
    ap.add_argument("--window", type=int, default=6, help="the gradient starts in the last `window` steps")
    ap.add_argument("--grad-steps", type=int, default=1)
    ap.add_argument("--guard", type=float, default=1.5, help="guard.max_ratio on the flow loss vs the reference")
    ap.add_argument("--reward-n", type=int, default=4000, help="toy samples the reward is fitted on")
    ap.add_argument("--reward-output", choices=["prob", "logprob"], default="logprob")
    ap.add_argument("--reward", type=Path, default=None, help="reuse a reward folder instead of fitting one")
    ap.add_argument("--reward-epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=8, help="samples per prompt when judging")
    ap.add_argument("--control", action="store_true",
                    help="the control: the same stage and steps with the flow loss only (what the anchor alone does)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    from synthetic.toy_shapes import make_samples, train_judge, write_shards
    from training.config import TrainConfig
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline
    from training.rewards import build_reward
    from training.rewards.config import RewardSpec

    torch.set_num_threads(a.threads)
    require_base(a.base, __doc__.split('e.g.')[1].splitlines()[1].strip(), what="the under-trained base")
    a.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    result = {"cpu": cpu_model(), "threads": a.threads, "args": {k: str(v) for k, v in vars(a).items()}}

    t = time.time()
    reward_dir = a.reward or a.out / "reward"
    if a.reward is None:
        result["reward"] = train_reward(reward_dir, a.reward_n, a.reward_epochs)
        result["reward"]["seconds"] = round(time.time() - t)
    else:
        result["reward"] = {"reused": str(a.reward), **json.loads((a.reward / "config.json").read_text())["card"]}
    log(f"reward: {result['reward']}")
    reward = build_reward("match", RewardSpec(kind="match", path=str(reward_dir)))
    net = train_judge()
    result["real_diversity"] = real_diversity()

    log("judging the base")
    result["base"] = judge(Pipeline.load(a.base), net, reward, a.seeds, a.out / "base")
    log(json.dumps(result["base"]))

    real = a.out / "real"
    if not (real / "_SUCCESS").exists():
        write_shards(make_samples(4000, 32, seed=31, word_share=0.0, soft_share=0.3), real, shard_size=500)
    tr = Trainer(TrainConfig.model_validate(config(a.base, a.out / "run", real, reward_dir, a)))
    t0, deadline, curve, batches = time.time(), time.time() + a.minutes * 60, [], iter(tr.data)
    while tr.step < a.max_steps and time.time() < deadline:
        ms = [tr.train_step(next(batches)) for _ in range(25)]  # each step's metrics: the reward's curve
        terms = {k: sum(m["terms"][k] for m in ms) / len(ms) for k in ms[-1]["terms"]}
        curve.append({"step": tr.step, "seconds": round(time.time() - t0), **{k: round(v, 4) for k, v in terms.items()}})
        log(f"  step {tr.step} {curve[-1]}")
    train_s = time.time() - t0
    tr.export()
    result["rlhf"] = {"steps": tr.step, "train_seconds": round(train_s), "curve": curve}
    with tr.ema.applied(tr.nets):
        result["rlhf"]["judged"] = judge(tr.pipeline(), net, reward, a.seeds, a.out / "rlhf")
    log(json.dumps(result["rlhf"]["judged"]))
    result["wall_seconds"] = round(time.time() - began)
    gain = {l: result["rlhf"]["judged"][l]["colour_shape"] - result["base"][l]["colour_shape"] for l in ("zh", "en")}
    div = {l: result["rlhf"]["judged"][l]["diversity"] / result["base"][l]["diversity"] for l in ("zh", "en")}
    result["gain_points"] = {l: round(100 * g, 1) for l, g in gain.items()}
    result["diversity_vs_base"] = {l: round(d, 3) for l, d in div.items()}
    result["pass"] = all(gain[l] >= 0.15 and div[l] >= 0.5 for l in ("zh", "en"))
    (a.out / "toy_rlhf_result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != "rlhf"} | {"rlhf": {
        k: v for k, v in result["rlhf"].items() if k != "curve"}}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
