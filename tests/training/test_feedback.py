"""Reward feedback learning (ReFL / DRaFT-K): where gradients go, the guard against reward hacking, the
reward rising on a toy problem, and an RLHF stage through the real loop; preference pairs from rewards and
from Label Studio's pairwise template."""

import json
import math

import pytest

torch = pytest.importorskip("torch")


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


class Brightness:
    """A test tool: a differentiable reward with a frozen random conv (so it has weights a bug could train)."""

    differentiable = True

    def __init__(self, name="bright", spec=None):
        self.name, self.spec = name, spec
        torch.manual_seed(1)
        self.net = torch.nn.Conv2d(3, 1, 1).requires_grad_(False)

    def load(self):
        pass

    def to(self, device):
        return self

    def __call__(self, pixels, prompts):
        return self.net(pixels).mean((1, 2, 3)) + pixels.mean((1, 2, 3))


def _feedback_term(monkeypatch, **feedback):
    """A RewardFeedback term over the Brightness reward (registered for the test only)."""
    import sys
    import types

    from training.config import ObjectiveConfig
    from training.objectives.feedback import RewardFeedback

    mod = types.ModuleType("brightness_reward_for_tests")
    mod.Brightness = Brightness
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(__import__("training.rewards", fromlist=["REWARDS"]).REWARDS, "match",
                        f"{mod.__name__}:Brightness")
    spec = {"kind": "match", "path": "unused"}
    obj = ObjectiveConfig(feedback={"rewards": {"bright": spec}, "steps": 6, "window": 3, "grad_steps": 1,
                                    "cfg_scale": 1.0, "guard": {"max_ratio": None}, **feedback})
    cfg = type("Cfg", (), {"objective": obj, "stage": type("S", (), {"conditioner": "frozen"})()})()
    return RewardFeedback(cfg), obj


def _inputs(obj, net, x0, decode=None, gen_seed=0):
    from training.objectives.base import StepInputs

    vel = lambda x, t, rows=None: net(x)  # noqa: E731
    return StepInputs(x0, vel, None, torch.Generator().manual_seed(gen_seed), obj, 2,
                      captions=["a red circle"] * len(x0), decode=decode or (lambda z: z.clamp(-1, 1)),
                      guided=lambda x, t, cfg_scale=1.0, rows=None: net(x))


# ---- where the gradient goes --------------------------------------------------------------------------------

@pytest.mark.parametrize("window,grad_steps", [(3, 1), (2, 2), (4, 3)])
def test_the_rollout_keeps_a_graph_only_for_the_last_k_steps(window, grad_steps):
    from training.objectives.feedback import rollout
    from training.objectives.flow_matching import sigmas

    net = torch.nn.Conv2d(3, 3, 1)
    steps, start = 8, 8 - window
    trace, seen = [], []

    def guided(x, t, cfg, rows):
        seen.append(x.requires_grad)
        return net(x)

    x0 = rollout(guided, torch.randn(2, 3, 4, 4), sigmas(steps, 1.0), start, grad_steps, 1.0, trace=trace)
    assert [j for j, _ in trace] == list(range(start + grad_steps))
    assert [g for _, g in trace] == [False] * start + [True] * grad_steps
    assert seen[:start + 1] == [False] * (start + 1)  # the latent entering the first graph step is a leaf-free input
    assert x0.requires_grad
    x0.sum().backward()
    assert net.weight.grad.abs().sum() > 0


def test_feedback_gradient_reaches_the_model_and_never_the_reward_or_the_vae(monkeypatch):
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKL

    from training.models.vae import KLVAE

    term, obj = _feedback_term(monkeypatch)
    torch.manual_seed(0)
    vae = KLVAE(AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                              up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                              layers_per_block=1, sample_size=16))
    net = torch.nn.Conv2d(4, 4, 1)
    out = term(_inputs(obj, net, torch.randn(2, 4, 8, 8), decode=vae.decode))
    out.loss.backward()
    assert net.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vae.parameters())
    assert all(p.grad is None for p in term.rewards["bright"].net.parameters())
    assert set(out.metrics) >= {"reward/bright", "feedback_loss", "feedback_t"}


def test_the_reward_rises_within_fifty_cpu_steps(monkeypatch):
    term, obj = _feedback_term(monkeypatch, window=2)
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    curve = []
    for step in range(50):
        out = term(_inputs(obj, net, torch.zeros(4, 3, 8, 8), gen_seed=step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        curve.append(out.metrics["reward/bright"])
    assert sum(curve[-5:]) / 5 > sum(curve[:5]) / 5 + 0.2


def test_a_hinge_stops_pulling_once_the_reward_passes_its_margin():
    from training.objectives.feedback import reward_loss
    from training.rewards.config import RewardSpec

    class Const:
        def __init__(self, v):
            self.v = v

        def __call__(self, pixels, prompts):
            return pixels.mean((1, 2, 3)) * 0 + self.v

    pixels = torch.zeros(2, 3, 4, 4, requires_grad=True)
    specs = {"a": RewardSpec(kind="ocr", margin=0.5), "b": RewardSpec(kind="ocr", weight=0.0)}
    loss, metrics = reward_loss({"a": Const(0.9), "b": Const(0.1)}, specs, pixels, ["", ""])
    assert loss.item() == 0.0 and metrics == {"reward/a": pytest.approx(0.9), "reward/b": pytest.approx(0.1)}
    loss, _ = reward_loss({"a": Const(0.2), "b": Const(0.1)}, specs, pixels, ["", ""])
    assert loss.item() == pytest.approx(0.3)  # relu(0.5 - 0.2); b is logged, not optimised


# ---- the guard ----------------------------------------------------------------------------------------------

def test_the_guard_scales_down_or_stops_when_the_pretraining_loss_leaves_its_bound():
    from training.objectives.feedback import Guard
    from training.rewards.config import GuardConfig

    g = Guard(GuardConfig(max_ratio=1.2, factor=0.5, recover=2.0, ema=0.0, warmup=1))
    assert g.update(1.0, 1.0) == 1.0  # warm-up
    assert g.update(1.5, 1.0) == 0.5 and g.update(1.5, 1.0) == 0.25
    assert g.update(1.0, 1.0) == 0.5  # back within the bound: recovers
    assert g.metrics()["guard/tripped"] == 2.0
    stop = Guard(GuardConfig(max_ratio=1.2, action="stop", ema=0.0, warmup=0))
    assert stop.update(1.1, 1.0) == 1.0 and stop.update(2.0, 1.0) == 0.0 and stop.update(1.0, 1.0) == 0.0
    assert stop.metrics()["guard/scale"] == 0.0


# ---- an RLHF stage through the real loop -------------------------------------------------------------------

@pytest.fixture(scope="module")
def match_reward(tmp_path_factory):
    from training.rewards.match import MatchNet, save_match

    torch.manual_seed(0)
    return save_match(MatchNet(size=32, width=16, text_layers=1), tmp_path_factory.mktemp("reward") / "m",
                      {"name": "random match model (test)"})


def _rlhf_stage(stage_config, reward, **guard):
    stage_config["stage"] = {"name": "rlhf", "base": "lora", "conditioner": "frozen", "lora": {"rank": 4}}
    stage_config["objective"] = {"terms": {"flow_matching": 1.0, "reward_feedback": 0.5}, "feedback": {
        "rewards": {"toy": {"kind": "match", "path": str(reward)}}, "steps": 4, "window": 2, "rows": 2,
        "cfg_scale": 2.0, "guard": {"max_ratio": 1.5, "warmup": 0, **guard}}}
    return stage_config


def test_an_rlhf_step_trains_only_lora_and_logs_each_reward_and_the_guard(stage_config, match_reward):
    from training.engine.loop import Trainer

    tr = Trainer(_cfg(_rlhf_stage(stage_config, match_reward)))
    assert tr.reference is not None  # the guard compares with the model the stage started from
    batch = next(iter(tr.data))
    loss, _, _, metrics = tr.loss(batch)
    loss.backward()
    got = {n for n, p in tr.nets.named_parameters() if p.grad is not None}
    assert got and all("lora_" in n for n in got)
    reward_net = tr.terms["reward_feedback"].rewards["toy"].net
    assert all(p.grad is None for p in reward_net.parameters())
    assert 0 <= metrics["reward/toy"] <= 1 and metrics["guard/flow_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert "flow_loss" in metrics


def test_the_guard_state_resumes_exactly(stage_config, match_reward):
    from training.engine.loop import Trainer

    cfg = _cfg({**_rlhf_stage(stage_config, match_reward), "run": {**stage_config["run"], "steps": 2}})
    tr = Trainer(cfg)
    tr.run()
    state = tr.terms["reward_feedback"].state_dict()["guard"]
    assert state["seen"] == 2
    again = Trainer(cfg)
    assert again.step == 2 and again.terms["reward_feedback"].state_dict()["guard"] == state


def test_two_rlhf_runs_with_one_seed_are_identical(stage_config, match_reward, tmp_path):
    from training.engine.loop import Trainer

    cfg = _rlhf_stage(stage_config, match_reward)
    runs = []
    for name in ("a", "b"):
        tr = Trainer(_cfg({**cfg, "run": {**cfg["run"], "out_dir": str(tmp_path / name)}}))
        runs.append(tr.train_step(next(iter(tr.data))))
    assert runs[0]["loss"] == runs[1]["loss"] and runs[0]["terms"] == runs[1]["terms"]


def test_feedback_refuses_a_reward_it_cannot_follow_before_training(stage_config, match_reward):
    pytest.importorskip("rapidocr")
    from training.engine.loop import Trainer
    from training.rewards import RewardLoadError

    cfg = _rlhf_stage(stage_config, match_reward)
    cfg["objective"]["feedback"]["rewards"]["ocr"] = {"kind": "ocr", "weight": 1.0}
    with pytest.raises(RewardLoadError, match="not differentiable.*weight.*0.*build_ranked_pairs"):
        Trainer(_cfg(cfg))
    cfg["objective"]["feedback"]["rewards"]["toy"]["path"] = "/nowhere"
    with pytest.raises(RewardLoadError, match="not a match model folder"):
        Trainer(_cfg(cfg))


def test_feedback_without_rewards_or_with_a_trained_conditioner_is_refused(stage_config, match_reward):
    from training.engine.loop import Trainer

    cfg = _rlhf_stage(stage_config, match_reward)
    with pytest.raises(ValueError, match="stage.conditioner=frozen"):
        Trainer(_cfg({**cfg, "stage": {**cfg["stage"], "conditioner": "train"}}))
    cfg["objective"]["feedback"]["rewards"] = {}
    with pytest.raises(ValueError, match="needs reward models"):
        Trainer(_cfg(cfg))


# ---- preference pairs from rewards and from Label Studio's pairwise template -------------------------------

def _generated(tmp_path, n=8):
    from synthetic.toy_shapes import make_samples
    from training.data.preference import write_generated

    images = [im for im, _ in make_samples(n, 32, seed=4, word_share=0.0)]
    prompts = ['the word "CAT"'] * (n // 2) + ["a red circle"] * (n // 2)
    return write_generated(tmp_path / "gen", images, prompts, [""] * n, seed=0, model="toy")


def test_a_reward_ranks_generated_images_into_pairs_best_against_worst(tmp_path):
    from training.data.preference import build_ranked_pairs

    recs = _generated(tmp_path)
    scores = {r["id"]: s for r, s in zip(recs, [1.0, 0.2, 0.6, 0.55, float("nan")] + [0.5] * 3)}
    counts = build_ranked_pairs(tmp_path / "gen", scores, tmp_path / "pairs", margin=0.1)
    rows = [json.loads(line) for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r["outcome"] for r in rows}
    assert counts["pairs"] == 1 and len(rows) == len(recs)  # 1.0 vs 0.2; 0.6 vs 0.55 is within the margin
    assert by_id[recs[0]["id"]] == "winner" and by_id[recs[1]["id"]] == "loser"
    assert by_id[recs[2]["id"]] == by_id[recs[3]["id"]] == "unpaired" and by_id[recs[4]["id"]] == "no_score"
    assert all(by_id[r["id"]] == "unpaired" for r in recs[5:])  # all equal: nothing to prefer


def test_label_studio_pairwise_answers_become_preference_pairs(tmp_path):
    import pandas as pd

    from annotation.labels import write_labels  # the tests may use annotation's writer; training only reads
    from training.data.preference import build_pairwise_pairs, write_pairwise

    recs = _generated(tmp_path, 6)
    ids = [r["id"] for r in recs]
    tasks = write_pairwise(tmp_path / "gen", [(ids[0], ids[1]), (ids[2], ids[3]), (ids[4], ids[5])])
    rows = [{"id": t["id"], "uri": None, "task": "preference", "label": lab, "annotator": "sim-1", "round": None,
             "source": "human", "agreement": 1.0, "flag": None, "ls_task_id": i, "created_at": None}
            for i, (t, lab) in enumerate(zip(tasks, ["right", "left"]))]  # the third task is unanswered
    write_labels(pd.DataFrame(rows), tmp_path / "labels")
    counts = build_pairwise_pairs(tmp_path / "gen", tmp_path / "labels", tmp_path / "pairs")
    manifest = json.loads((tmp_path / "pairs" / "_manifest.json").read_text())["counts"]
    assert counts["pairs"] == 2 and manifest["winner"] == 2 and manifest["loser"] == 2 and manifest["unpaired"] == 2
    rows = {json.loads(line)["id"]: json.loads(line)["outcome"]
            for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()}
    assert rows[ids[1]] == "winner" and rows[ids[0]] == "loser" and rows[ids[2]] == "winner"
