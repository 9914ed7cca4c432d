"""Does the edit model learn to edit? Instruction editing on the toy world on CPU, judged per language.

1. Rule-made edit pairs (synthetic/toy_shapes.py `make_edit_pairs`): change a shape's colour ("把红色的圆变成蓝色" /
   "make the red circle blue"), change its shape, or add/replace a rendered word; source and target drawn from
   one random state, so only the asked-for attribute differs.
2. The `edit` stage (model.edit: the toy base + a zero-gated source path; the whole model trains; flow loss)
   starts from a toy base (`train_toy.py`), for at most --minutes.
3. Held-out pairs (another seed) are edited with their zh and their en instruction, 30 Euler steps, CFG 3 on the
   text (both branches see the source). Judged: the toy judge CNN names colour and shape, a word CNN names the
   word. A shape edit is correct when the judged shape is the asked one, and preserves when the judged colour
   is the source's (and the reverse for a colour edit); a word edit is correct when the judged word is the asked
   one. The pixel change outside the edited object is the mean absolute difference (0-255) between the output and
   the source where the ground-truth target equals the source. Pass (issue 23): edit correct >= 80% and the
   attribute not asked for preserved >= 90%, per language.
   The same judging of the model before training (the base with its gates at zero, which ignores the source)
   is reported as the baseline.

    .venv/bin/python -m benchmarks.train_toy_edit --base runs/toy_base/run/pipeline --out runs/toy_edit --minutes 25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log, require_base


def config(base: Path, export: Path, out: Path, a) -> dict:
    return {
        "model": {"init_from": str(base), "edit": True},
        "data": {"sources": {"edits": {"path": str(export)}}, "batch_size": a.batch, "styles": {"short": 1.0}},
        "objective": {"terms": {"flow_matching": 1.0}, "ref_tokens": 64, "base_shift": 1.0},
        "optim": {"lr": a.lr, "warmup": 100, "ema_decay": 0.995},
        "stage": {"name": "edit", "base": "full"},
        "run": {"out_dir": str(out), "steps": 10 ** 6, "log_every": 50, "resume": True},
    }


def train_word_judge(size: int = 32, seed: int = 5, steps: int = 300):
    """A small CNN naming the rendered word (or none, a blank picture); noise-augmented like the toy judge."""
    import random

    import torch

    from synthetic.toy_shapes import WORDS, _judge_net, blank, draw_word, to_tensor

    torch.manual_seed(seed)
    rng = random.Random(seed)
    names = [None, *WORDS]
    x = to_tensor([draw_word(w, size, rng) if w else blank(size, rng) for w in names])
    y = torch.arange(len(names))
    net = _judge_net(size, len(names))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(names), (32,))
        loss = torch.nn.functional.cross_entropy(net(x[idx] + 0.25 * torch.randn(32, *x.shape[1:])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), names


def judge_edits(pipe, pairs, judges, lang: str, seed: int = 0) -> dict:
    """Edit every held-out pair with its `lang` instruction; correctness, preservation and outside change."""
    import numpy as np
    import torch

    from synthetic.toy_shapes import judge, to_tensor

    shape_net, (word_net, words) = judges
    sources = [extra["src.jpg"] for _, _, extra in pairs]
    outs = []
    for i in range(0, len(pairs), 64):
        outs += pipe.edit(sources[i:i + 64], [m["captions"]["short"][lang] for _, m, _ in pairs[i:i + 64]],
                          steps=30, cfg_scale=3.0, seed=seed + i)
    seen = judge(shape_net, outs)
    with torch.no_grad():
        seen_words = [words[k] for k in word_net(to_tensor(outs)).argmax(1).tolist()]
    stats = {k: {"n": 0, "correct": 0, "preserved": 0} for k in ("colour", "shape", "word")}
    outside = []
    for (tgt, meta, extra), out, (colour, shape), word in zip(pairs, outs, seen, seen_words):
        e, s = meta["edit"], stats[meta["edit"]["kind"]]
        s["n"] += 1
        if e["kind"] == "word":
            s["correct"] += word == e["after"]["word"]  # nothing else to keep: see the outside change
        else:
            other = "shape" if e["kind"] == "colour" else "colour"
            s["correct"] += {"colour": colour, "shape": shape}[e["kind"]] == e["after"][e["kind"]]
            s["preserved"] += {"colour": colour, "shape": shape}[other] == e["before"][other]
        src, gt, o = (np.asarray(im.convert("RGB"), np.float32) for im in (extra["src.jpg"], tgt, out))
        keep = np.abs(gt - src).max(-1) < 1  # where the edit should change nothing
        if keep.any():
            outside.append(float(np.abs(o - src).max(-1)[keep].mean()))
    shapes = stats["colour"]["n"] + stats["shape"]["n"]
    return {
        "edit_correct": sum(s["correct"] for s in stats.values()) / len(pairs),
        "not_asked_preserved": (stats["colour"]["preserved"] + stats["shape"]["preserved"]) / max(1, shapes),
        "by_kind": {k: {"n": s["n"], "correct": s["correct"] / max(1, s["n"]),
                        "preserved": s["preserved"] / max(1, s["n"]) if k != "word" else None}
                    for k, s in stats.items()},
        "outside_change_mean": float(np.mean(outside)) if outside else None,
        "outs": outs,
    }


def save_strip(path: Path, pairs, outs, n: int = 12) -> None:
    import numpy as np
    from PIL import Image

    rows = [np.concatenate([np.asarray(x.convert("RGB")) for x in col], 1)
            for col in ([e["src.jpg"] for _, _, e in pairs[:n]], outs[:n], [t for t, _, _ in pairs[:n]])]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the toy base's pipeline folder (train_toy.py)")
    ap.add_argument("--out", type=Path, default=Path("runs/toy_edit"))
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget for training")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--n", type=int, default=4000, help="training pairs")
    ap.add_argument("--held-out", type=int, default=200, help="held-out pairs judged per language")
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    from synthetic.toy_shapes import make_edit_pairs, train_judge, write_shards
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    torch.set_num_threads(a.threads)
    require_base(a.base, "python -m benchmarks.train_toy --out runs/toy")
    a.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    export = a.out / "edits"
    if not (export / "_SUCCESS").exists():
        write_shards(make_edit_pairs(a.n, 32, seed=21), export, shard_size=500)
    held_out = make_edit_pairs(a.held_out, 32, seed=99)
    judges = (train_judge(), train_word_judge())
    tr = Trainer(TrainConfig.model_validate(config(a.base, export, a.out / "run", a)))
    result = {"cpu": cpu_model(), "threads": a.threads, "args": {k: str(v) for k, v in vars(a).items()}}
    with tr.ema.applied(tr.nets):  # before training: the base, its source gates at zero
        result["before"] = {lang: {k: v for k, v in judge_edits(tr.pipeline(), held_out, judges, lang).items()
                                   if k != "outs"} for lang in ("zh", "en")}
    log(json.dumps(result["before"]))
    start = time.time()
    while tr.step < a.max_steps and time.time() < start + a.minutes * 60:
        losses = tr.run(steps=min(a.max_steps, tr.step + 100))  # a checkpoint every 100 steps
        log(f"  step {tr.step} loss {sum(losses) / len(losses):.4f} elapsed {time.time() - start:.0f}s")
    result["steps"], result["train_seconds"] = tr.step, round(time.time() - start)
    tr.export()
    result["after"] = {}
    with tr.ema.applied(tr.nets):
        for lang in ("zh", "en"):
            judged = judge_edits(tr.pipeline(), held_out, judges, lang)
            save_strip(a.out / f"edits_{lang}.png", held_out, judged.pop("outs"))
            result["after"][lang] = judged
    result["wall_seconds"] = round(time.time() - began)
    result["pass"] = all(r["edit_correct"] >= 0.8 and r["not_asked_preserved"] >= 0.9 for r in result["after"].values())
    (a.out / "toy_edit_result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
