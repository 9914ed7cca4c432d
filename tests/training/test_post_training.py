"""Post-training stages: what a stage trains, the VMix adapter, Diffusion-DPO, CT mixing, preference pairs."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from tests.training.conftest import VMIX_PAIRS, random_inputs  # noqa: E402


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


@pytest.fixture(scope="module")
def aesthetic_export(tmp_path_factory):
    """Toy shapes, half in the soft light, each with an `aesthetic` caption naming its light."""
    from synthetic.toy_shapes import make_samples, write_shards

    d = tmp_path_factory.mktemp("aesthetic_export")
    write_shards(make_samples(48, 32, seed=3, soft_share=0.5, aesthetic_captions=True), d, shard_size=12)
    return d


def _vmix_stage(stage_config, export, base="lora"):
    stage_config["data"]["sources"] = {"toy": {"path": str(export)}}
    stage_config["data"]["styles"] = {"short": 1.0}
    stage_config["stage"] = {"name": "sft_vmix", "base": base, "conditioner": "frozen",
                             "lora": {"rank": 4}, "vmix": {"pairs": VMIX_PAIRS, "drop": 0.0}}
    return stage_config


# ---- what a stage trains -----------------------------------------------------------------------------------

@pytest.mark.parametrize("base,conditioner,vmix", [("full", "train", False), ("full", "frozen", False),
                                                   ("lora", "frozen", True), ("frozen", "frozen", True),
                                                   ("lora", "train", False)])
def test_a_stage_config_trains_exactly_what_it_names(stage_config, aesthetic_export, base, conditioner, vmix):
    from training.engine.loop import Trainer

    _vmix_stage(stage_config, aesthetic_export, base)
    stage_config["stage"]["conditioner"] = conditioner
    if not vmix:
        del stage_config["stage"]["vmix"]
    tr = Trainer(_cfg(stage_config))
    trains = {n for n, p in tr.nets.named_parameters() if p.requires_grad}
    dit = {n for n in trains if n.startswith("dit.")}
    if base == "full":
        assert dit == {n for n, _ in tr.nets.named_parameters() if n.startswith("dit.")}
    elif base == "lora":
        assert dit and all("lora_" in n for n in dit)
    else:
        assert not dit
    cond = {n for n in trains if n.startswith("cond.")}
    assert not any(n.startswith(("cond.llm.llm.", "cond.glyph.t5.")) for n in cond)  # frozen encoders stay frozen
    assert bool(cond) == (conditioner == "train")
    assert ("vmix" in tr.nets) == vmix
    if vmix:
        assert all(p.requires_grad for p in tr.nets["vmix"].parameters())


def test_only_adapter_and_lora_parameters_get_gradients(stage_config, aesthetic_export):
    from training.engine.loop import Trainer

    tr = Trainer(_cfg(_vmix_stage(stage_config, aesthetic_export)))
    batch = next(iter(tr.data))
    assert any(batch["aesthetics"])
    loss, *_ = tr.loss(batch)
    loss.backward()
    got = {n for n, p in tr.nets.named_parameters() if p.grad is not None}
    assert got and all("lora_" in n or n.startswith("vmix.") for n in got)
    assert any(n.startswith("vmix.values") for n in got) and any("lora_B" in n for n in got)
    assert all(p.grad is None for n, p in tr.nets.named_parameters() if n.startswith("dit.") and "lora_" not in n)


def test_lora_or_frozen_stages_need_a_base_and_dpo_a_frozen_conditioner(stage_config):
    from plumbing.config import ConfigError
    from training.config import load_train_config

    with pytest.raises(Exception, match="model.init_from"):
        _cfg({**stage_config, "model": {}, "text": {"llm": "x"}, "stage": {"base": "lora"}})
    with pytest.raises(Exception, match="stage.conditioner=frozen"):
        _cfg({**stage_config, "objective": {"terms": {"diffusion_dpo": 1.0}}})
    with pytest.raises(Exception, match="unknown objective terms"):
        _cfg({**stage_config, "objective": {"terms": {"reward": 1.0}}})
    with pytest.raises(ConfigError, match="differs from the base pipeline"):
        load_train_config(None, [f"{k}={json.dumps(v)}" for k, v in (
            ("model.init_from", stage_config["model"]["init_from"]), ("text.llm", "/elsewhere"),
            ("data.sources.toy.path", stage_config["data"]["sources"]["toy"]["path"]))])


def test_a_stage_takes_text_and_vae_from_its_base_pipeline(stage_config, base_pipeline):
    from training.config import read_pipeline_meta, resolve_base

    cfg = resolve_base(_cfg(stage_config))
    meta = read_pipeline_meta(base_pipeline)
    assert cfg.text.model_dump(mode="json") == meta["text"] and cfg.vae.path == "pixel"


# ---- VMix --------------------------------------------------------------------------------------------------

def test_label_choices_read_either_language_and_either_side():
    from training.config import VMixConfig
    from training.models.adapters import NEGATIVE, POSITIVE, UNSET, label_choices

    cfg = VMixConfig(pairs=VMIX_PAIRS + [{"positive": ["vivid"], "negative": ["dull"]}])
    got = label_choices(["Soft light, vivid", "平光", "", "soft light and flat light"], cfg).tolist()
    assert got == [[POSITIVE, POSITIVE], [NEGATIVE, UNSET], [UNSET, UNSET], [UNSET, UNSET]]


def test_adapted_model_at_init_equals_the_base_bit_for_bit(stage_config, aesthetic_export, base_pipeline):
    from training.engine.loop import Trainer
    from training.pipeline import load_trained

    tr = Trainer(_cfg(_vmix_stage(stage_config, aesthetic_export)))
    base, _ = load_trained(base_pipeline)
    x, t, text, mask, pooled = random_inputs(base)
    with torch.no_grad():
        want = base(x, t, text, mask, pooled)
        assert want.abs().sum() > 0  # a trained base, not the all-zero init
        adapted = tr.dit(x, t, text, mask, pooled, tr.vmix(tr.vmix.choose(["soft light", "平光", "柔光"])))
    assert torch.equal(adapted, want)


def _trained_vmix(tr):
    """Give every zero-initialised adapter path random weights, as training would."""
    with torch.no_grad():
        for name, p in tr.vmix.named_parameters():
            if name.startswith(("values", "cond", "pair_embed")):
                p.normal_(0, 0.2)
    return tr.vmix


def test_value_mixing_keeps_each_blocks_content_attention_map(stage_config, aesthetic_export, monkeypatch):
    import training.models.dit as dit_module
    from training.engine.loop import Trainer

    tr = Trainer(_cfg(_vmix_stage(stage_config, aesthetic_export)))
    vmix = _trained_vmix(tr)
    maps = []
    real = dit_module.attention

    def recording(q, k, v, cos, sin, key_mask):
        from training.models.rope import apply_rope

        qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = qr @ kr.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        maps.append(scores.softmax(-1))
        return real(q, k, v, cos, sin, key_mask)

    monkeypatch.setattr(dit_module, "attention", recording)
    block, dit = tr.dit.double_blocks[0], tr.dit
    x, t, text, mask, pooled = random_inputs(dit)
    with torch.no_grad():
        img = dit.x_embed(dit.patchify(x))
        txt = dit.context_embed(text)
        c = dit.t_embed(dit_module.timestep_embedding(t, 256)) + dit.pooled_embed(pooled)
        from training.models.rope import joint_tables

        cos, sin = joint_tables(4, 4, txt.shape[1], dit.head_dim, dit.config.rope_ref, dit.config.rope_theta, 1.0, 0.0)
        key_mask = torch.cat([torch.ones(3, 16, dtype=torch.bool), mask], 1)
        plain = block(img, txt, c, cos, sin, key_mask)
        delta = vmix(vmix.choose(["soft light"] * 3)).values[0]
        mixed = block(img, txt, c, cos, sin, key_mask, delta)
    assert torch.equal(maps[0], maps[1])  # the same attention map ...
    assert not torch.equal(plain[0], mixed[0])  # ... over other values: a different output


def test_no_aesthetic_label_means_no_change_even_after_training(stage_config, aesthetic_export):
    from training.engine.loop import Trainer

    tr = Trainer(_cfg(_vmix_stage(stage_config, aesthetic_export)))
    vmix = _trained_vmix(tr)
    x, t, text, mask, pooled = random_inputs(tr.dit)
    with torch.no_grad():
        none = tr.dit(x, t, text, mask, pooled, vmix(vmix.choose(["", "", "nothing known"])))
        plain = tr.dit(x, t, text, mask, pooled)
        soft = tr.dit(x, t, text, mask, pooled, vmix(vmix.choose(["soft light"] * 3)))
        flat = tr.dit(x, t, text, mask, pooled, vmix(vmix.choose(["flat light"] * 3)))
    assert torch.equal(none, plain)  # CFG's unconditional branch is exactly the base
    assert not torch.equal(soft, flat)  # (a base trained 4 steps has small gates: small, but a difference)


def test_swapping_the_labels_changes_the_output_after_a_few_steps(stage_config, aesthetic_export):
    from training.engine.loop import Trainer

    stage_config["run"]["steps"] = 20
    stage_config["optim"]["lr"] = 3e-3
    tr = Trainer(_cfg(_vmix_stage(stage_config, aesthetic_export)))
    tr.run()
    x, t, text, mask, pooled = random_inputs(tr.dit)
    with torch.no_grad():
        soft = tr.dit(x, t, text, mask, pooled, tr.vmix(tr.vmix.choose(["soft light"] * 3)))
        flat = tr.dit(x, t, text, mask, pooled, tr.vmix(tr.vmix.choose(["flat light"] * 3)))
    # relative to the output: the debug base is trained a few steps, so its outputs (and gates) are small
    assert (soft - flat).abs().mean() > 1e-3 * soft.abs().mean()


def test_adapter_saves_and_loads_on_its_own_and_generate_uses_it(stage_config, aesthetic_export, base_pipeline,
                                                                 tmp_path):
    from typer.testing import CliRunner

    from sluice.cli import app
    from training.data.preference import read_generated
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline

    tr = Trainer(_cfg(_vmix_stage(stage_config, aesthetic_export)))
    tr.run()
    _trained_vmix(tr)
    with torch.no_grad():  # some LoRA weight too, so that a LoRA that failed to load would show
        next(p for n, p in tr.dit.named_parameters() if "lora_B" in n).normal_(0, 0.1)
    tr.ema.shadow = {k: v.clone() for k, v in ((n, p.detach().float()) for n, p in tr.nets.named_parameters()
                                                if p.requires_grad)}
    folder = tr.export()
    assert folder.name == "adapter" and not (tr.out / "pipeline").exists()  # the base did not train
    loaded = Pipeline.load(base_pipeline, adapter=folder)
    live = tr.pipeline()
    for aes in (["soft light", "flat light"], None):
        a = loaded.latents(["a red circle", "一个蓝色的圆"], 32, 32, steps=2, aesthetics=aes)
        b = live.latents(["a red circle", "一个蓝色的圆"], 32, 32, steps=2, aesthetics=aes)
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="names none of the adapter's labels"):
        loaded(["a red circle"], 32, 32, steps=1, aesthetics=["dramatic"])

    runner = CliRunner()
    out = tmp_path / "gen"
    res = runner.invoke(app, ["generate", "-m", str(base_pipeline), "--adapter", str(folder), "--aesthetic", "柔光",
                              "-p", "a red circle", "-p", "一个红色的圆", "-o", str(out), "--width", "32",
                              "--height", "32", "--steps", "2"])
    assert res.exit_code == 0, res.output
    records, bad = read_generated(out)
    assert not bad and [r["aesthetic"] for r in records] == ["柔光", "柔光"]
    assert all((out / r["file"]).is_file() and len(r["id"]) == 32 for r in records)
    res = runner.invoke(app, ["generate", "-m", str(base_pipeline), "--aesthetic", "柔光", "-p", "x", "-o",
                              str(out), "--width", "32", "--height", "32", "--steps", "1"])
    assert res.exit_code == 2 and "needs a VMix adapter" in res.output
    res = runner.invoke(app, ["generate", "-m", str(base_pipeline), "--adapter", str(tmp_path), "-p", "x"])
    assert res.exit_code == 2 and "not an adapter folder" in res.output


# ---- Diffusion-DPO -----------------------------------------------------------------------------------------

def _dpo_inputs(model, ref, x0, x0_lose, beta=1000.0):
    from training.config import ObjectiveConfig
    from training.objectives.base import StepInputs

    return StepInputs(x0, lambda x, t, rows=None: model(x), lambda x, t, rows=None: ref(x),
                      torch.Generator().manual_seed(0), ObjectiveConfig(dpo={"beta": beta}), 2, x0_lose,
                      torch.ones(len(x0), dtype=torch.bool))


def test_dpo_is_log2_at_the_reference_and_identical_pairs_give_no_gradient():
    from training.objectives.dpo import diffusion_dpo_term

    net = torch.nn.Conv2d(3, 3, 1)
    ref = torch.nn.Conv2d(3, 3, 1)
    ref.load_state_dict(net.state_dict())
    ref.requires_grad_(False)
    x0, x1 = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    out = diffusion_dpo_term(_dpo_inputs(net, ref, x0, x1))
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    out.loss.backward()
    distinct = net.weight.grad.abs().max().item()
    assert distinct > 0 and ref.weight.grad is None  # the reference gets no gradient
    net.zero_grad()
    same = diffusion_dpo_term(_dpo_inputs(net, ref, x0, x0.clone()))
    same.loss.backward()
    # analytically zero; what is left is float rounding of +g and -g summed in the conv's backward
    assert net.weight.grad.abs().max().item() < 1e-6 * distinct


def test_dpo_learns_to_prefer_the_winners():
    from training.objectives.dpo import diffusion_dpo_term

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 1)
    ref = torch.nn.Conv2d(3, 3, 1).requires_grad_(False)
    ref.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    win, lose = torch.full((8, 3, 4, 4), 0.8), torch.full((8, 3, 4, 4), -0.8)
    for _ in range(30):
        out = diffusion_dpo_term(_dpo_inputs(net, ref, win + 0.05 * torch.randn_like(win), lose, beta=50.0))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.metrics["dpo_implicit_acc"] > 0.9 and out.loss.item() < math.log(2)


def test_an_sft_step_mixes_flow_on_positives_with_dpo_on_pairs(stage_config, aesthetic_export, tmp_path):
    from training.data.preference import build_pairs, write_generated
    from training.engine.loop import Trainer
    from synthetic.toy_shapes import make_samples

    samples = make_samples(8, 32, seed=9, word_share=0.0)
    images = [im for im, _ in samples]
    prompts = ["a red circle"] * 4 + ["a blue square"] * 4
    recs = write_generated(tmp_path / "gen", images, prompts, ["soft light"] * 8, seed=0, model="toy")
    verdicts = {r["id"]: ("good" if i % 2 else "bad") for i, r in enumerate(recs)}
    counts = build_pairs(tmp_path / "gen", verdicts, tmp_path / "pairs", shard_size=2)
    assert counts["pairs"] == 4
    _vmix_stage(stage_config, aesthetic_export)
    stage_config["data"]["sources"] = {"positives": {"path": str(aesthetic_export), "weight": 1.0},
                                       "pairs": {"path": str(tmp_path / "pairs"), "weight": 1.0}}
    stage_config["data"]["batch_size"] = 8
    stage_config["objective"] = {"terms": {"flow_matching": 1.0, "diffusion_dpo": 0.5}}
    tr = Trainer(_cfg(stage_config))
    batch = next(iter(tr.data))
    assert batch["has_lose"].any() and not batch["has_lose"].all()
    loss, losses, t, metrics = tr.loss(batch)
    assert metrics["dpo_loss"] == pytest.approx(math.log(2), abs=1e-5)  # the adapter starts as the reference
    assert metrics["dpo_pairs"] == float(batch["has_lose"].sum()) and losses.shape == (8,)
    m = tr.train_step(batch)
    assert math.isfinite(m["loss"]) and "dpo_implicit_acc" in m["terms"]


# ---- preference pairs --------------------------------------------------------------------------------------

def test_every_generated_record_gets_one_outcome(tmp_path):
    from PIL import Image

    from training.data.preference import build_pairs, write_generated
    from training.data.shards import iter_shard, list_shards

    ims = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(7)]
    prompts = ["a red circle"] * 3 + ["一个蓝色的圆"] * 2 + ["lonely"] * 2
    recs = write_generated(tmp_path / "g", ims, prompts, [""] * 7, seed=1, model="m")
    verdicts = {recs[0]["id"]: "good", recs[1]["id"]: "bad", recs[2]["id"]: "bad",
                recs[3]["id"]: "good", recs[4]["id"]: "bad", recs[5]["id"]: "good"}  # recs[6]: no verdict
    (tmp_path / "g" / recs[4]["file"]).write_bytes(b"not an image")
    with open(tmp_path / "g" / "generated.jsonl", "a") as f:
        f.write("{not json\n")
    counts = build_pairs(tmp_path / "g", verdicts, tmp_path / "p")
    rows = [json.loads(line) for line in (tmp_path / "p" / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == counts["records"] == 8
    outcome = {r["id"]: r["outcome"] for r in rows if r["id"]}
    assert [outcome[r["id"]] for r in recs] == ["winner", "loser", "loser", "unpaired", "bad_image", "unpaired",
                                                 "no_verdict"]
    assert counts["pairs"] == 2 and counts["bad_record"] == 1
    samples = [s for shard in list_shards(tmp_path / "p") for s in iter_shard(shard)]
    assert len(samples) == 2 and all(s.lose_jpg for s in samples)
    assert {s.meta["pair"]["win"] for s in samples} == {recs[0]["id"]}
    assert samples[0].meta["captions"]["short"]["en"] == "a red circle"


def test_a_missing_generated_folder_says_what_to_give(tmp_path):
    from training.data.preference import build_pairs

    with pytest.raises(FileNotFoundError, match="sluice generate --out"):
        build_pairs(tmp_path / "nope", {}, tmp_path / "out")


# ---- continue training: sources and filters ---------------------------------------------------------------

@pytest.fixture(scope="module")
def scored_export(tmp_path_factory):
    """Toy shapes whose signals carry an aesthetic score and tier, as stage 2 writes them into the export."""
    from synthetic.toy_shapes import make_samples, write_shards

    samples = make_samples(60, 32, seed=4, word_share=0.0)
    for i, (_, meta) in enumerate(samples):
        meta["signals"] = {"aesthetic": [3.0, 5.0, 6.5, float("nan")][i % 4], "tier": "ABC"[i % 3]}
    d = tmp_path_factory.mktemp("scored_export")
    write_shards(samples, d, shard_size=10)
    return d, samples


def test_source_filters_keep_only_what_they_name(scored_export, tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.labels import LABELS
    from schemas.registry import TAG_KEY, tag
    from training.config import SourceConfig
    from training.data.filters import source_filter

    export, samples = scored_export
    f = source_filter(SourceConfig(path=str(export), min_signals={"aesthetic": 5.0}, signal_in={"tier": ["A", "B"]}))
    kept = [m["id"] for _, m in samples if f(m)]
    want = [m["id"] for _, m in samples if m["signals"]["aesthetic"] >= 5.0 and m["signals"]["tier"] in "AB"]
    assert kept == want and 0 < len(kept) < len(samples)  # NaN (no score) never passes

    ids = [m["id"] for _, m in samples]
    df = pd.DataFrame({"id": ids[:4], "uri": None, "task": "showcase", "label": ["art", "none", "design", "art"],
                       "annotator": "a", "round": None, "source": "human", "agreement": None,
                       "flag": [None, None, None, "skipped"], "ls_task_id": None, "created_at": None})
    fields = [fl.with_metadata({TAG_KEY.encode(): json.dumps(tag("labels")).encode()}) if fl.name == "id" else fl
              for fl in LABELS]
    (tmp_path / "labels").mkdir()
    pq.write_table(pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False),
                   tmp_path / "labels" / "part-0.parquet")
    human = source_filter(SourceConfig(path=str(export), labels={"path": str(tmp_path / "labels"),
                                                                 "keep": ["art", "photography", "design"]}))
    assert human.ids == {ids[0], ids[2]}  # "none" is not kept, a skipped answer counts for nothing
    with pytest.raises(ValueError, match="label some in Label Studio"):
        source_filter(SourceConfig(path=str(export), labels={"path": str(tmp_path / "labels"), "keep": ["photo"]}))


def test_ct_mix_matches_its_ratio_within_two_percent_over_ten_thousand_draws(scored_export):
    from training.config import SourceConfig
    from training.data.buckets import BucketBatches
    from training.data.filters import source_filter
    from training.data.shards import list_shards

    export, samples = scored_export
    shards = list_shards(export)
    machine = source_filter(SourceConfig(path=str(export), min_signals={"aesthetic": 5.0}))
    bb = BucketBatches({"machine": (shards, 0.7), "human": (shards, 0.3)}, batch_size=4, seed=1,
                       filters={"machine": machine})
    counts = {"machine": 0, "human": 0}
    for _ in range(10_000):
        name, sample = bb._draw()
        counts[name] += 1
        assert name == "human" or machine(sample.meta)
    assert abs(counts["machine"] / 10_000 - 0.7) < 0.02 and abs(counts["human"] / 10_000 - 0.3) < 0.02


def test_a_filter_that_passes_nothing_fails_with_the_fix(scored_export):
    from training.config import SourceConfig
    from training.data.buckets import BucketBatches
    from training.data.filters import source_filter
    from training.data.shards import list_shards

    export, _ = scored_export
    none = source_filter(SourceConfig(path=str(export), min_signals={"aesthetic": 9.0}))
    bb = BucketBatches({"machine": (list_shards(export), 1.0)}, batch_size=4, filters={"machine": none})
    with pytest.raises(RuntimeError, match="min_signals"):
        next(iter(bb))


# ---- shipped stage configs and the commands ------------------------------------------------------------------

# Each shipped stage config and the paths a user must give it (none: it validates as shipped).
SHIPPED_CONFIGS = {
    "pretrain_2b.yaml": [],
    "ct.yaml": ["model.init_from={base}", "data.sources.machine.path={export}", "data.sources.human.path={export}",
                "data.sources.human.labels.path={export}/labels"],
    "sft_vmix.yaml": ["model.init_from={base}", "data.sources.positives.path={export}"],
    "rlhf.yaml": ["model.init_from={base}", "data.sources.real.path={export}",
                  "objective.feedback.rewards.alignment.path=hf:{export}/clip",
                  "objective.feedback.rewards.aesthetic.path={export}/aesthetic_head.safetensors",
                  "objective.feedback.rewards.text.path={export}/text_proxy"],
    "distill_tscd.yaml": ["model.init_from={base}", "data.sources.main.path={export}"],
    "qat_int8.yaml": ["model.init_from={base}", "data.sources.main.path={export}"],
    "edit.yaml": ["model.init_from={base}", "data.sources.edits.path={export}"],
    "refiner.yaml": ["model.init_from={base}", "data.sources.main.path={export}"],
    "refiner_texture.yaml": ["model.init_from={base}", "data.sources.texture.path={export}"],
}


@pytest.mark.parametrize("name", sorted(SHIPPED_CONFIGS))
def test_shipped_stage_configs_validate_once_their_paths_are_given(name, base_pipeline, toy_export):
    from pathlib import Path

    from plumbing.config import ConfigError
    from training.config import load_train_config

    path = Path(__file__).parents[2] / "training" / "configs" / name
    paths = [p.format(base=base_pipeline, export=toy_export) for p in SHIPPED_CONFIGS[name]]
    if len(paths) > 1:  # leave out all but the base: every REQUIRED path is named in the error
        with pytest.raises(ConfigError, match="path") as e:
            load_train_config(path, paths[:1])
        assert all(p.partition("=")[0] in str(e.value) for p in paths[1:])
    cfg = load_train_config(path, paths)
    assert cfg.model.preset in ("debug", "toy", "2b", "8b") and cfg.text is not None
    assert cfg.stage.name == name.removesuffix(".yaml").replace("pretrain_2b", "pretrain")


def test_round_two_goes_on_from_round_ones_adapter(stage_config, aesthetic_export, tmp_path):
    from training.engine.loop import Trainer

    _vmix_stage(stage_config, aesthetic_export)
    r1 = Trainer(_cfg(stage_config))
    _trained_vmix(r1)
    r1.ema.shadow = {n: p.detach().float().clone() for n, p in r1.nets.named_parameters() if p.requires_grad}
    adapter = r1.export()
    r2 = Trainer(_cfg({**stage_config, "model": {**stage_config["model"], "adapter_from": str(adapter)},
                       "run": {**stage_config["run"], "out_dir": str(tmp_path / "r2")}}))
    for (n1, p1), (n2, p2) in zip(r1.nets.named_parameters(), r2.nets.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    bad = {**stage_config, "model": {**stage_config["model"], "adapter_from": str(adapter)},
           "stage": {**stage_config["stage"], "lora": {"rank": 2}}}
    with pytest.raises(ValueError, match="make stage.lora and stage.vmix the same"):
        Trainer(_cfg(bad))


def test_train_pairs_command_reads_label_studio_labels(tmp_path):
    import pandas as pd
    from PIL import Image
    from typer.testing import CliRunner

    from annotation.labels import write_labels
    from sluice.cli import app
    from training.data.preference import write_generated

    recs = write_generated(tmp_path / "g", [Image.new("RGB", (32, 32), (9 * i, 0, 0)) for i in range(3)],
                           ["a red circle"] * 3, ["soft light"] * 3, seed=0, model="m")
    rows = [{"id": r["id"], "uri": r["file"], "task": "generated", "label": lab, "annotator": "sim-1", "round": None,
             "source": "human", "agreement": 1.0, "flag": None, "ls_task_id": i, "created_at": None}
            for i, (r, lab) in enumerate(zip(recs, ["good", "bad", "bad"]))]
    write_labels(pd.DataFrame(rows), tmp_path / "g" / "labels")
    res = CliRunner().invoke(app, ["pairs", "--generated", str(tmp_path / "g"), "--labels",
                                   str(tmp_path / "g" / "labels"), "-o", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "2 pairs" in res.output and (tmp_path / "p" / "_SUCCESS").exists()
    res = CliRunner().invoke(app, ["pairs", "--generated", str(tmp_path / "nope"), "--labels",
                                   str(tmp_path / "g" / "labels"), "-o", str(tmp_path / "p2")])
    assert res.exit_code == 2 and "sluice generate --out" in res.output


def test_a_ct_stage_trains_on_machine_and_human_selected_sources(stage_config, scored_export, tmp_path):
    import pandas as pd

    from annotation.labels import write_labels
    from training.engine.loop import Trainer

    export, samples = scored_export
    picked = [m["id"] for _, m in samples[:12]]
    rows = [{"id": i, "uri": None, "task": "showcase", "label": "photography", "annotator": "a", "round": 1,
             "source": "human", "agreement": 1.0, "flag": None, "ls_task_id": k, "created_at": None}
            for k, i in enumerate(picked)]
    write_labels(pd.DataFrame(rows), tmp_path / "labels")
    stage_config["data"]["sources"] = {
        "machine": {"path": str(export), "weight": 0.7, "min_signals": {"aesthetic": 5.0}, "signal_in": {"tier": ["A"]}},
        "human": {"path": str(export), "weight": 0.3,
                  "labels": {"path": str(tmp_path / "labels"), "keep": ["art", "photography", "design"]}}}
    stage_config["stage"] = {"name": "ct", "base": "full"}
    tr = Trainer(_cfg(stage_config))
    signals = {m["id"]: m["signals"] for _, m in samples}
    seen = set()
    for _, batch in zip(range(4), tr.data):
        for sid, src in zip(batch["ids"], batch["sources"]):
            seen.add(src)
            s = signals[sid]
            assert (src == "human" and sid in picked) or (src == "machine" and s["aesthetic"] >= 5 and s["tier"] == "A")
    assert seen == {"machine", "human"}
    assert math.isfinite(tr.train_step(batch)["loss"])
