"""Does prompt engineering help? A toy rewriter turns terse prompts into ones the toy DiT renders better, judged.

The toy base (train_toy.py) learnt its captions, "一个红色的圆" / "a red circle", and renders them right; terse
prompts that mean the same ("红圆", "circle, red") it renders badly, because its text encoder is a random
LLM (synthetic/toy_shapes.py build_tiny_llm) whose features of unseen phrasings the DiT never learnt to read.

1. Terse prompts: every colour x shape in three terse forms per language (TERSE); a quarter of the
   (colour x shape, form) prompts, spread over forms and combos, are held out as the test set.
2. A reward model: a learned image-text match model (training/rewards/match.py), trained on fresh toy shapes
   with captions in every form, right or with the colour or shape changed. It reads the user's prompt u.
3. SFT pairs, two ways: (1) improved: for each training u, candidate rewrites (a proposer standing in for an
   LLM that understands u: the other phrasings of its language, one of them with a wrong colour) are drawn by
   the frozen base and scored with the reward (training/pe/candidates.py); the best that beats u itself is
   kept; (2) shortened: a toy export whose short captions are terse and long captions canonical
   (training/pe/data.py pairs_from_export), for two of the six forms.
4. SFT a tiny causal LM from scratch (random Qwen3, byte-level BPE trained here; trl SFTTrainer).
5. DPO (trl DPOTrainer) on (u, best, worst) by the reward: over the proposer's candidates and over 4 samples
   of the SFT rewriter per u.
6. Judge: for every u, the base draws u and the guarded rewrite r (3 seeds the scorer never used); the toy judge
   CNN checks colour+shape against u's. Reported per language, for held-out and training prompts. The guard is
   checked on quoted prompts the rewriter never saw.

    .venv/bin/python -m benchmarks.train_toy --out /tmp/toybase --minutes 25 --batch 16 --lr 1e-3 --soft-share 0.3
    .venv/bin/python -m benchmarks.train_toy_pe --base /tmp/toybase/run/pipeline --out runs/toy_pe
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from plumbing.cli_options import reproducible_args
from benchmarks.benchlib import cpu_model, log, require_base

ZH_SHORT_SHAPE = {"circle": "圆", "square": "方", "triangle": "三角"}
LANGS = ("zh", "en")


def terse(form: str, c: str, s: str) -> str:
    """The terse forms the base renders badly (measured: 8-25% colour+shape, against 93-98% for the captions)."""
    from synthetic.toy_shapes import COLOURS, SHAPES

    zc, zs = COLOURS[c][1], SHAPES[s]
    return {"en_cs": f"{c} {s}", "en_s,c": f"{s}, {c}", "en_sc": f"{s} {c}",
            "zh_cs1": zc[0] + ZH_SHORT_SHAPE[s], "zh_cs": zc + zs, "zh_s,c": f"{zs}，{zc}"}[form]


FORMS = ("zh_cs1", "zh_cs", "zh_s,c", "en_cs", "en_s,c", "en_sc")
EXPORT_FORMS = ("zh_cs1", "en_s,c")  # the export's short captions (pairs shortened back to u) use these two


def prompt_set(test_share: float = 0.25) -> list[dict]:
    """Every (combo, terse form) as {u, c, s, lang, form, split}; a quarter of each form's combos is held out."""
    from synthetic.toy_shapes import COLOURS, SHAPES

    combos = [(c, s) for c in sorted(COLOURS) for s in sorted(SHAPES)]
    every = round(1 / test_share)
    rows = []
    for k, form in enumerate(FORMS):
        # every `every`-th combo, shifted per form: each held-out set mixes colours and shapes, and every colour
        # and shape word is still seen in training in every form
        test = {j for j in range(len(combos)) if (j + k) % every == 0}
        for i, (c, s) in enumerate(combos):
            rows.append({"u": terse(form, c, s), "c": c, "s": s, "lang": form[:2], "form": form,
                         "split": "test" if i in test else "train"})
    return rows


def proposer(rows: list[dict]):
    """u -> candidate rewrites: what an LLM that understands u might offer (its caption, its other terse
    phrasings, and a mistaken caption with another colour); the reward decides which helps."""
    from synthetic.toy_shapes import COLOURS, caption

    meaning = {r["u"]: r for r in rows}

    def propose(u: str) -> list[str]:
        r = meaning[u]
        forms = [f for f in FORMS if f[:2] == r["lang"]]
        wrong = sorted(COLOURS)[(sorted(COLOURS).index(r["c"]) + 1) % len(COLOURS)]
        return [caption(r["c"], r["s"], r["lang"]), *(terse(f, r["c"], r["s"]) for f in forms),
                caption(wrong, r["s"], r["lang"])]

    return propose


def match_data(n: int, seed: int):
    """(pixels, texts, targets): toy shapes with a caption in any form and language, right (1) or with the
    colour or the shape changed (0)."""
    import torch

    from synthetic.toy_shapes import COLOURS, SHAPES, caption, make_samples
    from training.rewards.base import to_pixels

    rng = random.Random(seed)
    samples = make_samples(n, 32, seed, word_share=0.0)
    texts, targets = [], []
    for _, meta in samples:
        c, s = meta["toy"]["colour"], meta["toy"]["shape"]
        if rng.random() < 0.5:
            if rng.random() < 0.5:
                c = rng.choice([x for x in sorted(COLOURS) if x != c])
            else:
                s = rng.choice([x for x in sorted(SHAPES) if x != s])
            targets.append(0.0)
        else:
            targets.append(1.0)
        form = rng.choice(FORMS + ("zh", "en"))
        texts.append(caption(c, s, form) if form in LANGS else terse(form, c, s))
    return to_pixels([im for im, _ in samples]), texts, torch.tensor(targets)


def train_reward(folder: Path, n: int, epochs: int, seed: int) -> dict:
    import torch

    from training.rewards.match import MatchNet, evaluate, fit_match, save_match

    torch.manual_seed(seed)
    net = MatchNet(size=32, width=48, text_layers=2)
    fit_match(net, *match_data(n, seed=901), epochs=epochs, lr=3e-3, batch=32, noise=0.15)
    metrics = evaluate(net, *match_data(600, seed=902))
    save_match(net, folder, {"name": "toy prompt-image match (every phrasing)", "metrics": metrics,
                             "summary": "P(the toy image shows the colour and shape the prompt names), any form",
                             "data": f"{n} toy shapes, captions in 8 phrasings, half with colour or shape changed",
                             "made_by": "benchmarks/train_toy_pe.py"})
    return metrics


def export_pairs(rows: list[dict], folder: Path) -> None:
    """A toy export whose samples' short caption is a terse training prompt and long caption the canonical one."""
    from synthetic.toy_shapes import caption, make_samples, write_shards

    chosen = [r for r in rows if r["split"] == "train" and r["form"] in EXPORT_FORMS]
    samples = make_samples(len(chosen), 32, seed=77, word_share=0.0)
    for (_, meta), r in zip(samples, chosen):
        caps = {"short": {"zh": "", "en": ""}, "long": {"zh": "", "en": ""}}
        caps["short"][r["lang"]], caps["long"][r["lang"]] = r["u"], caption(r["c"], r["s"], r["lang"])
        meta["captions"], meta["styles"] = caps, sorted(f"{k}_{r['lang']}" for k in caps)
    write_shards(samples, folder, shard_size=50)


def judge_prompts(pipe, net, rows: list[dict], prompts: list[str], seeds: list[int]) -> list[float]:
    """Share of seeds whose image the judge sees as the colour and shape of each row's u."""
    from synthetic.toy_shapes import judge

    hits = [0] * len(rows)
    for seed in seeds:
        seen = judge(net, pipe(prompts, 32, 32, steps=30, cfg_scale=3.0, seed=seed))
        for i, (r, j) in enumerate(zip(rows, seen)):
            hits[i] += j == (r["c"], r["s"])
    return [h / len(seeds) for h in hits]


def summarise(rows: list[dict], acc: list[float]) -> dict:
    out = {}
    for split in ("test", "train"):
        for lang in LANGS:
            vals = [a for r, a in zip(rows, acc) if r["split"] == split and r["lang"] == lang]
            out[f"{split}_{lang}"] = round(sum(vals) / len(vals), 4)
    return out


def rewrite_all(folder: Path, rows: list[dict]) -> tuple[list[str], dict]:
    """Guarded greedy rewrites of every u; how many are the canonical caption, and what the guard did."""
    from synthetic.toy_shapes import caption
    from training.pe.rewrite import Rewriter

    rw = Rewriter.load(folder)
    out = rw.rewrite([r["u"] for r in rows])
    canon = [g.text == caption(r["c"], r["s"], r["lang"]) for r, g in zip(rows, out)]
    stats = {"canonical_test": sum(c for c, r in zip(canon, rows) if r["split"] == "test"),
             "canonical_train": sum(c for c, r in zip(canon, rows) if r["split"] == "train"),
             "guard": {s: sum(g.status == s for g in out) for s in ("ok", "repaired", "fallback")},
             "examples": {r["u"]: g.text for r, g in list(zip(rows, out)) if r["split"] == "test"}}
    return [g.text for g in out], stats


def sft_stage(a, rows: list[dict], propose, scorer, result: dict):
    """SFT pairs both ways, then SFT of a fresh tiny rewriter: (PEConfig, SFT PE folder, the reward's pairs)."""
    from synthetic.toy_shapes import build_tiny_llm, caption, toy_corpus
    from training.pe.candidates import improve_pairs
    from training.pe.config import PEConfig
    from training.pe.data import pairs_from_export, write_jsonl
    from training.pe.sft import train_sft

    train = [r for r in rows if r["split"] == "train"]
    # (1) improved: candidates drawn by the frozen base, scored by the reward against u
    t = time.time()
    sft1, pref1, outcomes1 = improve_pairs([r["u"] for r in train], propose, scorer, min_gain=0.05, min_margin=0.2)
    write_jsonl(a.out / "improved_outcomes.jsonl", outcomes1)
    result["improved"] = {"users": len(train), "sft_pairs": len(sft1), "preference_pairs": len(pref1),
                          "best_is_caption": sum(p["rewrite"] == caption(r["c"], r["s"], r["lang"]) for p in sft1
                                                 for r in rows if r["u"] == p["user"]),
                          "seconds": round(time.time() - t)}
    log(json.dumps(result["improved"]))
    # (2) shortened back to u: an export's short and long captions
    export_pairs(rows, a.out / "export")
    sft2, result["shortened"] = pairs_from_export(a.out / "export")
    pairs = sft1 + sft2
    write_jsonl(a.out / "sft_pairs.jsonl", pairs)
    # the rewriter: a random tiny Qwen3 with a tokenizer trained on the toy words (nothing downloaded)
    corpus = toy_corpus() + [r["u"] for r in train] + [p["rewrite"] for p in pairs] + ["Rephrase:"]
    # split_cjk: the rewriter must compose and emit Chinese captions character by character
    llm = build_tiny_llm(a.out / "rewriter_init", corpus, hidden=a.hidden, split_cjk=True, vocab_size=500,
                         max_positions=128)
    cfg = PEConfig(model=str(llm), max_new_tokens=24,
                   sft={"steps": a.sft_steps, "batch_size": 16, "lr": a.sft_lr, "weight_decay": 0.01, "log_every": 20},
                   dpo={"steps": a.dpo_steps, "batch_size": 16, "lr": a.dpo_lr, "beta": a.beta, "rpo": a.rpo,
                        "log_every": 1})
    t = time.time()
    sft_dir, losses = train_sft(cfg, pairs, a.out / "pe_sft")
    result["sft"] = {"pairs": len(pairs), "steps": a.sft_steps, "loss_first": round(losses[0], 4),
                     "loss_last": round(losses[-1], 4), "seconds": round(time.time() - t)}
    log(json.dumps(result["sft"]))
    return cfg, sft_dir, pref1


def run_dpo(a, cfg, sft_dir: Path, users: list[str], propose, scorer, fallback_pairs: list[dict]):
    """DPO from the SFT rewriter on best vs worst by the reward, over the proposer's candidates and the SFT
    rewriter's own samples; (PE folder, figures), the folder None when the reward separated no pair."""
    from training.pe.candidates import improve_pairs
    from training.pe.config import PEConfig
    from training.pe.data import write_jsonl
    from training.pe.dpo import train_dpo
    from training.pe.rewrite import Rewriter

    t = time.time()
    samples = dict(zip(users, Rewriter.load(sft_dir).sample(users, a.samples, temperature=1.0)))
    _, prefs, outcomes = improve_pairs(users, lambda u: samples[u] + propose(u), scorer, min_gain=0.05,
                                       min_margin=0.2)
    write_jsonl(a.out / "dpo_outcomes.jsonl", outcomes)
    prefs = prefs or fallback_pairs
    write_jsonl(a.out / "preference_pairs.jsonl", prefs)
    if not prefs:
        log("DPO skipped: the reward separated no two candidates of any prompt by the margin")
        return None, {"pairs": 0, "skipped": "no preference pair"}
    dpo_dir, losses = train_dpo(PEConfig(**{**cfg.model_dump(), "model": str(sft_dir)}), prefs, a.out / "pe_dpo")
    logged = json.loads((dpo_dir / "pe.json").read_text())
    info = {"pairs": len(prefs), "steps": a.dpo_steps, "beta": a.beta, "rpo": a.rpo,
            "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
            "margin_first": round(logged["margins"][0], 4), "margin_last": round(logged["margins"][-1], 4),
            "accuracy_last": logged["accuracies"][-1], "seconds": round(time.time() - t)}
    log(json.dumps(info))
    return dpo_dir, info


QUOTED = ['the word "CAT"', "写着“山”的图片", 'a sign "SUN" on a red circle', "一个写着「水」的蓝色正方形",
          'the words "CAT" and "SUN"', "“山”和“水”两个字", "circle, red, text 'CAT'", '"SUN", yellow']


def quote_check(folder: Path) -> dict:
    from training.pe.guard import span_survival
    from training.pe.rewrite import Rewriter

    rw = Rewriter.load(folder)
    raw = [g.rewrite for g in rw.rewrite(QUOTED, use_guard=False)]
    guarded = rw.rewrite(QUOTED)
    return {"unguarded": span_survival(QUOTED, raw), "guarded": span_survival(QUOTED, [g.text for g in guarded]),
            "guard": {s: sum(g.status == s for g in guarded) for s in ("ok", "repaired", "fallback")}}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the toy base's pipeline folder (train_toy.py)")
    ap.add_argument("--out", type=Path, default=Path("runs/toy_pe"))
    ap.add_argument("--reward-n", type=int, default=6000, help="toy shapes the match reward trains on")
    ap.add_argument("--reward-epochs", type=int, default=8)
    ap.add_argument("--score-seeds", type=int, default=2, help="images per candidate when scoring")
    ap.add_argument("--judge-seeds", type=int, default=3, help="images per prompt when judging")
    ap.add_argument("--sft-steps", type=int, default=400)
    ap.add_argument("--sft-lr", type=float, default=2e-3)
    ap.add_argument("--dpo-steps", type=int, default=60)
    ap.add_argument("--dpo-lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--rpo", type=float, default=1.0, help="weight of the SFT loss on the chosen rewrite in DPO")
    ap.add_argument("--reward-seed", type=int, default=1, help="init of the match reward (seed 0 merged blue and "
                    "green: see docs/benchmarks.md)")
    ap.add_argument("--samples", type=int, default=4, help="SFT rewriter samples per u, as DPO candidates")
    ap.add_argument("--hidden", type=int, default=128, help="the rewriter's width (2 layers, from scratch)")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def main() -> None:
    a = parse_args()

    import torch

    from synthetic.toy_shapes import caption, train_judge
    from training.pe.candidates import CandidateScorer
    from training.pipeline import Pipeline
    from training.rewards import build_reward
    from training.rewards.config import RewardSpec

    torch.set_num_threads(a.threads)
    require_base(a.base, __doc__.strip().splitlines()[-2].strip())
    a.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    command = "python -m benchmarks.train_toy_pe " + reproducible_args(sys.argv[1:])
    result = {"cpu": cpu_model(), "threads": a.threads, "command": command, "timings": {}}
    t = time.time()
    net = train_judge()
    result["reward"] = train_reward(a.out / "reward", a.reward_n, a.reward_epochs, a.reward_seed)
    result["timings"]["judge_and_reward"] = round(time.time() - t)
    log(f"reward held-out: {result['reward']}")

    rows = prompt_set()
    train = [r for r in rows if r["split"] == "train"]
    canonical = {r["u"]: caption(r["c"], r["s"], r["lang"]) for r in rows}
    pipe = Pipeline.load(a.base)
    judge_seeds = list(range(100, 100 + a.judge_seeds))

    t = time.time()
    canon = judge_prompts(pipe, net, rows, [canonical[r["u"]] for r in rows], judge_seeds)
    base_u = judge_prompts(pipe, net, rows, [r["u"] for r in rows], judge_seeds)
    result["judged"] = {"caption (ceiling)": summarise(rows, canon), "u (terse)": summarise(rows, base_u)}
    result["per_form_u"] = {f: round(sum(x for r, x in zip(rows, base_u) if r["form"] == f) / 12, 3) for f in FORMS}
    result["timings"]["judge_base"] = round(time.time() - t)
    log(json.dumps(result["judged"]))

    propose = proposer(rows)
    reward = build_reward("match", RewardSpec(kind="match", path=str(a.out / "reward")))
    scorer = CandidateScorer(pipe, {"match": (reward, 1.0)}, seeds=tuple(range(a.score_seeds)), width=32, height=32,
                             steps=30, cfg_scale=3.0)
    cfg, sft_dir, pref1 = sft_stage(a, rows, propose, scorer, result)
    r_sft, result["sft"]["rewrites"] = rewrite_all(sft_dir, rows)
    t = time.time()
    acc_sft = judge_prompts(pipe, net, rows, r_sft, judge_seeds)
    result["judged"]["r (SFT)"] = summarise(rows, acc_sft)
    result["timings"]["judge_sft"] = round(time.time() - t)
    log(json.dumps(result["judged"]["r (SFT)"]))

    t = time.time()
    dpo_dir, result["dpo"] = run_dpo(a, cfg, sft_dir, [r["u"] for r in train], propose, scorer, pref1)
    final = sft_dir
    if dpo_dir is not None:
        final = dpo_dir
        r_dpo, result["dpo"]["rewrites"] = rewrite_all(dpo_dir, rows)
        acc_dpo = judge_prompts(pipe, net, rows, r_dpo, judge_seeds)
        result["judged"]["r (SFT+DPO)"] = summarise(rows, acc_dpo)
    result["timings"]["dpo_and_judge"] = round(time.time() - t)

    result["quotes"] = quote_check(final)  # quoted prompts the rewriter never saw, with and without the guard
    result["wall_seconds"] = round(time.time() - began)
    (a.out / "toy_pe_result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: result[k] for k in ("judged", "quotes", "wall_seconds")}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
