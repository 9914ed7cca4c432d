"""Prompt engineering: the rewriter's SFT and DPO (trl) on tiny random models built here, the quoted-text guard,
the candidate reward, pairs from exports and from Label Studio's pairwise answers, and `sluice generate --pe`.
Nothing is downloaded."""

import json
import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

COLOURS = ["red", "green", "blue", "yellow", "black"]
SHAPES = ["circle", "square", "triangle", "star"]
ZH = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "black": "黑色", "circle": "圆",
      "square": "正方形", "triangle": "三角形", "star": "星"}


def _pairs(n=20):
    """n bilingual (terse, full) prompt pairs."""
    out = []
    for i in range(n):
        c, s = COLOURS[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        if i % 2:
            out.append({"user": f"{ZH[c][0]}{ZH[s]}", "rewrite": f"一个{ZH[c]}的{ZH[s]}"})
        else:
            out.append({"user": f"{s}, {c}", "rewrite": f"a {c} {s}"})
    return out


QUOTED = ['a poster that says "SUMMER SALE"', "一幅写着“山水画”的海报", 'the word "CAT" on a wall', "招牌上写着「老字号」",
          'a mug with "早安" and "good morning"', "‘OPEN’ on a shop door", "一张写着『福』字的红纸", 'a sign "EXIT"',
          "霓虹灯“酒吧”", 'a t-shirt printed "I ♥ NY"', "封面写着“三体”和“刘慈欣”", 'a book titled "Dune"',
          "一个写着＂禁止吸烟＂的标志", 'a cake with "Happy 30th"', "路牌上写着“长安街”", 'a label "NO. 5"']


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """GPT-2 (2 layers, 32-d) with a byte-level BPE trained on the fly: random weights, not a language model."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [x for p in _pairs(40) for x in (p["user"], p["rewrite"])] + QUOTED + ["Rephrase:"]
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _cfg(model, **kw):
    from training.pe.config import PEConfig

    return PEConfig(model=str(model), max_new_tokens=16, **kw)


@pytest.fixture(scope="module")
def sft_run(tiny_gpt2, tmp_path_factory):
    pytest.importorskip("trl")
    from training.pe.sft import train_sft

    cfg = _cfg(tiny_gpt2, sft={"steps": 40, "batch_size": 10, "lr": 3e-3, "log_every": 1})
    return train_sft(cfg, _pairs(20), tmp_path_factory.mktemp("pe_sft"))


# ---- SFT and DPO ----------------------------------------------------------------------------------------

def test_sft_loss_falls_on_20_pairs(sft_run):
    folder, losses = sft_run
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses
    meta = json.loads((folder / "pe.json").read_text())
    assert meta["stage"] == "sft" and meta["base"] is None and "{prompt}" in meta["template"]


def test_a_saved_rewriter_loads_and_rewrites(sft_run):
    from training.pe.rewrite import Rewriter

    rw = Rewriter.load(sft_run[0])
    out = rw.rewrite(["circle, red", "红圆"])
    assert len(out) == 2 and all(isinstance(g.text, str) and g.text for g in out)
    assert all(g.status in ("ok", "repaired", "fallback") for g in out)


def _prefs():
    return [{"user": p["user"], "chosen": p["rewrite"], "rejected": p["user"]} for p in _pairs(12)]


def test_dpo_loss_at_init_is_log_2_and_falls(sft_run, tmp_path):
    from training.pe.dpo import dpo_trainer, train_dpo

    cfg = _cfg(sft_run[0], dpo={"steps": 8, "batch_size": 6, "lr": 1e-3, "log_every": 1, "beta": 0.1})
    trainer, _, _ = dpo_trainer(cfg, _prefs(), tmp_path / "probe", eval_pairs=_prefs())
    # the reference is the SFT rewriter itself (not the random model its config was first loaded from)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-4)
    folder, losses = train_dpo(cfg, _prefs(), tmp_path / "dpo")
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
    assert min(losses[-3:]) < losses[0] - 0.01, losses
    assert json.loads((folder / "pe.json").read_text())["stage"] == "dpo"


def test_dpo_with_lora_saves_an_adapter_over_its_base(sft_run, tmp_path):
    from training.pe.dpo import dpo_trainer, train_dpo
    from training.pe.rewrite import Rewriter

    cfg = _cfg(sft_run[0], lora={"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["c_attn", "c_proj"]},
               dpo={"steps": 3, "batch_size": 6, "lr": 1e-3, "log_every": 1})
    trainer, _, _ = dpo_trainer(cfg, _prefs(), tmp_path / "probe", eval_pairs=_prefs())
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-4)  # adapter off = reference
    folder, _ = train_dpo(cfg, _prefs(), tmp_path / "dpo")
    meta = json.loads((folder / "pe.json").read_text())
    assert meta["base"] == str(sft_run[0]) and (folder / "adapter_config.json").is_file()
    assert Rewriter.load(folder).rewrite(["红圆"])[0].text


def test_empty_pairs_and_a_bad_model_say_what_to_do(tmp_path):
    pytest.importorskip("trl")
    from training.pe.config import PEConfig
    from training.pe.rewrite import Rewriter, load_lm
    from training.pe.sft import sft_dataset

    with pytest.raises(ValueError, match="no \\(u, r\\) pairs"):
        sft_dataset(_cfg(tmp_path), [])
    with pytest.raises(ValueError, match="causal LM"):
        load_lm(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="not a PE folder"):
        Rewriter.load(tmp_path)
    with pytest.raises(ValueError, match="prompt"):
        PEConfig(model="x", template="Rephrase:")


# ---- the quoted-text guard ------------------------------------------------------------------------------

@pytest.mark.parametrize("user,rewrite,status,text", [
    ('a sign "EXIT"', 'a green sign that says "EXIT", at night', "ok", 'a green sign that says "EXIT", at night'),
    ("写着“山水”", '一幅写着"山水"的画', "ok", '一幅写着"山水"的画'),  # other quote marks, same text
    ('a sign "EXIT"', 'a sign that says "EXlT"', "repaired", 'a sign that says "EXIT"'),  # garbled: put back
    ('"A" and "B"', 'with "A" and "C"', "repaired", 'with "A" and "B"'),
    ('"A" and "B"', 'just "A"', "fallback", '"A" and "B"'),  # lost: nowhere to put it back
    ('a sign "EXIT"', "a sign", "fallback", 'a sign "EXIT"'),
    ("a red circle", 'a red circle with "HELLO"', "fallback", "a red circle"),  # added text the user never asked
    ('"A" "A"', 'one "A"', "fallback", '"A" "A"'),  # each span counts as often as it is quoted
])
def test_guard_keeps_repairs_or_falls_back(user, rewrite, status, text):
    from training.pe.guard import guard, keeps_quotes

    g = guard(user, rewrite)
    assert (g.status, g.text, g.rewrite) == (status, text, rewrite)
    assert keeps_quotes(user, g.text)
    assert guard(user, rewrite, mode="fallback").status == ("ok" if status == "ok" else "fallback")


def test_pe_keeps_every_quoted_span_on_a_test_set(sft_run):
    """The rewriter never saw quoted text in training; unguarded it loses spans, guarded it keeps all of them."""
    from training.pe.guard import span_survival
    from training.pe.rewrite import Rewriter

    rw = Rewriter.load(sft_run[0])
    raw = [g.rewrite for g in rw.rewrite(QUOTED, use_guard=False)]
    guarded = [g.text for g in rw.rewrite(QUOTED)]
    assert span_survival(QUOTED, raw)["survival"] < 1.0  # the test set can fail without the guard
    result = span_survival(QUOTED, guarded)
    assert result["spans"] >= 18 and result["survival"] == 1.0 and result["exact_prompts"] == len(QUOTED)


# ---- candidates: the reward, its scorer, the selection ------------------------------------------------------

def test_candidate_reward_hinges_at_0_28_and_follows_the_quality_difference():
    from training.pe.candidates import candidate_reward

    assert candidate_reward(6.0, 5.0) == 1.0 and candidate_reward(5.0, 6.0) == -1.0
    assert candidate_reward(6.0, 5.0, relevance=0.30) == 1.0  # above the hinge: no penalty
    assert candidate_reward(6.0, 5.0, relevance=0.28) == 1.0
    assert candidate_reward(6.0, 5.0, relevance=0.25) == pytest.approx(1.0 - 20 * 0.03)
    assert candidate_reward(6.0, 5.0, relevance=0.0) == pytest.approx(1.0 - 5.6)  # Promptist: 20 * CLIP - 5.6


class _StubPipe:
    """Renders prompt i as an image of constant value len(prompt) / 100: a test tool, not a model."""

    class vae:
        @staticmethod
        def decode(x):
            return x

    def __init__(self):
        self.seen = []

    def latents(self, prompts, w, h, steps, cfg, seed):
        self.seen.append((list(prompts), seed))
        return torch.stack([torch.full((3, h, w), len(p) / 100) for p in prompts])


def test_candidate_scorer_scores_images_against_the_users_prompt():
    from training.pe.candidates import CandidateScorer

    read = []

    def quality(pixels, prompts):
        read.extend(prompts)
        return pixels.mean((1, 2, 3))

    pipe = _StubPipe()
    scorer = CandidateScorer(pipe, {"q": (quality, 2.0)}, seeds=(0, 1), width=4, height=4)
    r = scorer("abc", ["abcdefgh", "a"])
    assert r == pytest.approx([2 * (0.08 - 0.03), 2 * (0.01 - 0.03)])
    assert set(read) == {"abc"}  # every image is judged against what the user asked for
    assert [s for _, s in pipe.seen] == [0, 1] and pipe.seen[0][0] == ["abc", "abcdefgh", "a"]
    relevance = lambda pixels, prompts: torch.full((len(prompts),), 0.18)  # noqa: E731
    scorer = CandidateScorer(pipe, {"q": (quality, 1.0)}, relevance=(relevance, 0.28, 20.0), width=4, height=4)
    assert scorer("abc", ["abcdefgh"]) == pytest.approx([0.05 - 2.0])


def test_improve_pairs_keeps_the_best_candidate_that_keeps_the_quotes():
    from training.pe.candidates import improve_pairs

    proposals = {'a sign "EXIT"': ['a red sign "EXIT"', 'a sign "EXlT"', 'a tall sign "EXIT" at dusk', ""],
                 "cat": ["a cat", "a fluffy cat"], "dog": ["a dog"], "fox": ['a "fox"']}
    rewards = {'a red sign "EXIT"': 0.2, 'a tall sign "EXIT" at dusk': 0.9, "a cat": -0.5, "a fluffy cat": -0.1,
               "a dog": 0.3}
    scored = []

    def score(u, cands):
        scored.extend(cands)
        return [rewards[c] for c in cands]

    sft, pref, outcomes = improve_pairs(list(proposals), proposals.get, score, min_margin=0.1)
    assert 'a sign "EXlT"' not in scored and 'a "fox"' not in scored  # lost or added quoted text: never scored
    assert sft == [{"user": 'a sign "EXIT"', "rewrite": 'a tall sign "EXIT" at dusk', "source": "reward",
                    "reward": 0.9}, {"user": "dog", "rewrite": "a dog", "source": "reward", "reward": 0.3}]
    assert [(p["user"], p["chosen"], p["rejected"]) for p in pref] == [
        ('a sign "EXIT"', 'a tall sign "EXIT" at dusk', 'a red sign "EXIT"'), ("cat", "a fluffy cat", "a cat")]
    by_user = {o["user"]: o for o in outcomes}
    assert [by_user[u]["outcome"] for u in proposals] == ["improved", "no_gain", "improved", "no_candidate"]
    assert by_user['a sign "EXIT"']["lost_quotes"] == 1 and by_user["fox"]["lost_quotes"] == 1


# ---- pairs from an export and from Label Studio -----------------------------------------------------------

def test_pairs_from_an_exports_long_and_short_captions(tmp_path):
    from synthetic.toy_shapes import make_samples, write_shards
    from training.pe.data import pairs_from_export, read_pairs, write_jsonl

    samples = make_samples(5, 16, seed=0, word_share=0.0)
    longs = [("一个红色的圆", "画面中央是一个红色的圆形，背景是白色"), ("a red circle", "a red circle in the middle of a white page"),
             ("a sign", 'a sign that says "OPEN"'), ("same", "same"), ("a red circle", "a red circle in the middle of a white page")]
    for (im, meta), (short, long) in zip(samples, longs):
        lang = "zh" if short.startswith("一") else "en"
        meta["captions"] = {"short": {"zh": "", "en": ""}, "long": {"zh": "", "en": ""}}
        meta["captions"]["short"][lang], meta["captions"]["long"][lang] = short, long
    write_shards(samples, tmp_path / "export", shard_size=2)
    pairs, counts = pairs_from_export(tmp_path / "export")
    assert sorted((p["user"], p["lang"]) for p in pairs) == [("a red circle", "en"), ("一个红色的圆", "zh")]
    assert counts == {"samples": 5, "pairs": 2, "missing": 5, "same": 1, "duplicate": 1, "quotes_differ": 1}
    back = read_pairs(write_jsonl(tmp_path / "pairs.jsonl", pairs))
    assert back == pairs
    (tmp_path / "bad.jsonl").write_text('{"user": "x"}\n')
    with pytest.raises(ValueError, match="rewrite"):
        read_pairs(tmp_path / "bad.jsonl")


def test_label_studio_pairwise_answers_become_rewrite_preferences(tmp_path):
    import pandas as pd

    from annotation.labels import write_labels  # the tests may use annotation's writer; training only reads
    from training.pe.data import pairs_from_pairwise, write_pairwise_candidates

    class Pipe:
        def __call__(self, prompts, w, h, seed=0):
            from PIL import Image

            return [Image.new("RGB", (w, h), (len(p) * 7 % 255, 0, 0)) for p in prompts]

    users = ["红圆", 'a sign "EXIT"', "cat"]
    cands = [["一个红色的圆", "红色圆形"], ['a red sign "EXIT"', 'a sign "EXIT" at night', 'a sign "EXIT" in fog'], ["a cat"]]
    counts = write_pairwise_candidates(Pipe(), users, cands, tmp_path / "gen", width=8, height=8)
    assert counts == {"records": 5, "tasks": 4}  # 1 + 3 tasks; "cat" has one candidate, nothing to compare
    tasks = [json.loads(line) for line in (tmp_path / "gen" / "pairwise.jsonl").read_text().splitlines()]
    answers = ["right", "left", "right"]  # the fourth task is unanswered
    rows = [{"id": t["id"], "uri": None, "task": "preference", "label": lab, "annotator": "sim-1", "round": None,
             "source": "human", "agreement": 1.0, "flag": None, "ls_task_id": i, "created_at": None}
            for i, (t, lab) in enumerate(zip(tasks, answers))]
    write_labels(pd.DataFrame(rows), tmp_path / "labels")
    pairs, counts = pairs_from_pairwise(tmp_path / "gen", tmp_path / "labels")
    assert counts["tasks"] == 4 and counts["pairs"] == 3 and counts["unanswered"] == 1
    assert pairs[0] == {"user": "红圆", "chosen": "红色圆形", "rejected": "一个红色的圆", "source": "pairwise",
                        "task": tasks[0]["id"]}
    assert pairs[1]["chosen"] == 'a red sign "EXIT"' and pairs[2]["user"] == 'a sign "EXIT"'


# ---- sluice generate --pe, and lazy imports -------------------------------------------------------------

def test_generate_with_pe_records_the_users_prompt_beside_the_contract(base_pipeline, sft_run, tmp_path):
    from typer.testing import CliRunner

    from sluice.cli import app
    from training.data.preference import FIELDS

    out = tmp_path / "gen"
    res = CliRunner().invoke(app, ["generate", "--model", str(base_pipeline), "--pe", str(sft_run[0]), "-p", "红圆",
                                   "-p", 'a sign "EXIT"', "--out", str(out), "--width", "32", "--height", "32",
                                   "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "generated.jsonl").read_text().splitlines()]
    rews = {json.loads(line)["id"]: json.loads(line) for line in (out / "rewrites.jsonl").read_text().splitlines()}
    assert all(set(r) == set(FIELDS) for r in recs)  # the annotation contract forbids extra fields
    assert [rews[r["id"]]["user_prompt"] for r in recs] == ["红圆", 'a sign "EXIT"']
    assert all(rews[r["id"]]["prompt"] == r["prompt"] for r in recs)  # the DiT saw the rewrite
    from training.pe.guard import keeps_quotes

    assert keeps_quotes('a sign "EXIT"', recs[1]["prompt"])
    bad = CliRunner().invoke(app, ["generate", "--model", str(base_pipeline), "--pe", str(tmp_path), "-p", "x",
                                   "--out", str(out)])
    assert bad.exit_code == 2 and "not a PE folder" in bad.output


def test_pe_modules_import_no_torch():
    code = ("import sys; import training.pe.config, training.pe.data, training.pe.guard, training.pe.rewrite, "
            "training.pe.candidates, training.pe.sft, training.pe.dpo; "
            "bad = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sluice_pe_builds_pairs_and_trains_from_the_command_line(tiny_gpt2, tmp_path):
    pytest.importorskip("trl")
    from typer.testing import CliRunner

    from sluice.cli import app
    from synthetic.toy_shapes import make_samples, write_shards

    samples = make_samples(3, 16, seed=1, word_share=0.0)
    for (_, meta), (short, long) in zip(samples, [("红圆", "一个红色的圆"), ("circle, red", "a red circle"),
                                                  ("蓝方", "一个蓝色的正方形")]):
        lang = "en" if short.isascii() else "zh"
        meta["captions"] = {"short": {"zh": "", "en": ""}, "long": {"zh": "", "en": ""}}
        meta["captions"]["short"][lang], meta["captions"]["long"][lang] = short, long
    write_shards(samples, tmp_path / "export")
    runner = CliRunner()
    res = runner.invoke(app, ["pe", "export-pairs", str(tmp_path / "export"), "-o", str(tmp_path / "pairs.jsonl")])
    assert res.exit_code == 0 and "3 pairs" in res.output, res.output
    res = runner.invoke(app, ["pe", "train", "sft", "--pairs", str(tmp_path / "pairs.jsonl"), "--model", str(tiny_gpt2),
                              "-o", str(tmp_path / "pe"), "--set", "sft.steps=2", "--set", "sft.log_every=1"])
    assert res.exit_code == 0 and (tmp_path / "pe" / "pe.json").is_file(), res.output
    bad = runner.invoke(app, ["pe", "train", "sft", "--pairs", str(tmp_path / "pairs.jsonl"), "--model", "x",
                              "-o", str(tmp_path / "pe2"), "--set", "sft.steps=0"])
    assert bad.exit_code == 2 and "sft.steps" in bad.output
    bad = runner.invoke(app, ["pe", "train", "dpo", "--pairs", str(tmp_path / "pairs.jsonl"), "--model", "x",
                              "-o", str(tmp_path / "pe2")])
    assert bad.exit_code == 2 and "chosen" in bad.output  # SFT pairs given to DPO: says what each line needs
