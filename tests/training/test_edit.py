"""Instruction editing: the pair data, the source-image path of the edit model, its terms, pipeline and commands."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.training.conftest import random_inputs, trained_like  # noqa: E402


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


@pytest.fixture(scope="module")
def edit_export(tmp_path_factory):
    from synthetic.toy_shapes import make_edit_pairs, write_shards

    d = tmp_path_factory.mktemp("edit_export")
    write_shards(make_edit_pairs(32, 32, seed=2), d, shard_size=8)
    return d


def _edit_stage(stage_config, export):
    stage_config["model"]["edit"] = True
    stage_config["data"]["sources"] = {"edits": {"path": str(export)}}
    stage_config["data"]["styles"] = {"short": 1.0}
    stage_config["stage"] = {"name": "edit", "base": "full"}
    return stage_config


# ---- pair data ----------------------------------------------------------------------------------------------

def test_toy_edit_pairs_are_deterministic_and_change_only_what_they_say():
    from synthetic.toy_shapes import draw_shape, make_edit_pairs

    a, b = make_edit_pairs(30, 32, seed=7), make_edit_pairs(30, 32, seed=7)
    for (ta, ma, ea), (tb, mb, eb) in zip(a, b):
        assert ma == mb and ta.tobytes() == tb.tobytes() and ea["src.jpg"].tobytes() == eb["src.jpg"].tobytes()
    kinds = {m["edit"]["kind"] for _, m, _ in a}
    assert kinds == {"colour", "shape", "word"}
    for tgt, meta, extra in a:
        e = meta["edit"]
        changed = [k for k in e["after"] if e["after"][k] != e["before"].get(k)]
        assert changed == [{"colour": "colour", "shape": "shape", "word": "word"}[e["kind"]]]
        if e["kind"] == "colour":  # same place and size: only the shape's own pixels differ
            diff = np.abs(np.asarray(tgt, np.int16) - np.asarray(extra["src.jpg"], np.int16)).max(-1)
            assert (diff > 0).mean() < 0.6  # the largest shape, a square of 23 x 23 px, covers 52%
            assert diff[:3, :3].max() == diff[:3, -3:].max() == diff[-3:, :3].max() == diff[-3:, -3:].max() == 0
    zh = [m["captions"]["short"]["zh"] for _, m, _ in a]
    assert any(z.startswith("把") and "变成" in z for z in zh)
    assert any(m["captions"]["short"]["en"].startswith("make the ") for _, m, _ in a)


def test_edit_shards_carry_the_source_image_into_batches(edit_export):
    from training.data.buckets import BucketBatches
    from training.data.shards import iter_shard, list_shards

    shards = list_shards(edit_export)
    assert all(s.src_jpg for shard in shards for s in iter_shard(shard))
    batch = next(iter(BucketBatches({"edits": (shards, 1.0)}, 4, styles={"short": 1.0})))
    assert batch["pixels_src"].shape == batch["pixels"].shape and bool(batch["has_src"].all())
    assert not torch.equal(batch["pixels_src"], batch["pixels"])


# ---- the edit model ----------------------------------------------------------------------------------------

def test_edit_model_at_init_equals_the_base_bit_for_bit():
    from training.models.dit import as_edit_model, preset

    base = trained_like(preset("debug", in_channels=3))
    edit = as_edit_model(base)
    x, t, text, mask, pooled = random_inputs(base, 2)
    source = torch.randn_like(x)
    with torch.no_grad():
        want = base(x, t, text, mask, pooled)
        assert torch.equal(edit(x, t, text, mask, pooled, source=source), want)
        edit.source_gates.fill_(0.3)
        assert not torch.equal(edit(x, t, text, mask, pooled, source=source), want)
        # a row without a source (source_rows False) is the base's, whatever the gates
        rows = torch.tensor([True, False])
        got = edit(x, t, text, mask, pooled, source=source, source_rows=rows)
        assert torch.equal(got[1], want[1]) and not torch.equal(got[0], want[0])
        assert torch.equal(edit(x, t, text, mask, pooled), want)  # no source at all: text-to-image as before


def test_source_tokens_sit_at_the_image_positions_and_only_image_queries_read_them(monkeypatch):
    import training.models.dit as dit_module
    from training.models.dit import as_edit_model, preset
    from training.models.rope import joint_tables

    edit = as_edit_model(trained_like(preset("debug", in_channels=3)))
    with torch.no_grad():
        edit.source_gates.fill_(0.3)
    calls = []
    real = dit_module.attention

    def recording(q, k, v, cos, sin, key_mask):
        calls.append((q.shape, k.shape, cos, key_mask))
        return real(q, k, v, cos, sin, key_mask)

    monkeypatch.setattr(dit_module, "attention", recording)
    x, t, text, mask, pooled = random_inputs(edit, 2)
    with torch.no_grad():
        edit(x, t, text, mask, pooled, source=torch.randn_like(x))
    n = (8 // edit.config.patch_size) ** 2  # image tokens
    joint, src = calls[0], calls[1]  # the first dual block: joint attention, then the source branch
    assert joint[1][2] == n + 5 and src[0][2] == n and src[1][2] == n  # image queries x source keys only
    cos, _ = joint_tables(4, 4, 5, edit.head_dim, edit.config.rope_ref, edit.config.rope_theta, 1.0, 0.0)
    torch.testing.assert_close(src[2], cos[:n], rtol=0, atol=0)  # source token i has image token i's position
    assert src[3] is None  # every source token may be attended
    # the text stream of a block is not changed by the source (text queries never read it)
    blk = edit.double_blocks[0]
    img, txt = edit.x_embed(edit.patchify(x)), edit.context_embed(text)
    c = edit.t_embed(dit_module.timestep_embedding(t, 256)) + edit.pooled_embed(pooled)
    cos, sin = joint_tables(4, 4, 5, edit.head_dim, edit.config.rope_ref, edit.config.rope_theta, 1.0, 0.0)
    source = (edit.source_tokens(torch.randn_like(x)), edit.source_gates[0], torch.ones(2, 1, 1))
    with torch.no_grad():
        i0, t0 = blk(img, txt, c, cos, sin, None)
        i1, t1 = blk(img, txt, c, cos, sin, None, None, source)
    assert torch.equal(t0, t1) and not torch.equal(i0, i1)


def test_a_plain_dit_refuses_a_source_with_the_fix():
    from training.models.dit import preset

    dit = preset("debug", in_channels=3)
    x, t, text, mask, pooled = random_inputs(dit, 2)
    with pytest.raises(ValueError, match="model.edit=true"):
        dit(x, t, text, mask, pooled, source=x)


# ---- training, the pipeline and the commands ---------------------------------------------------------------

def test_an_edit_stage_trains_the_source_path_and_edits_through_the_pipeline_and_cli(stage_config, edit_export,
                                                                                     tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from sluice.cli import app
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline

    stage_config["run"]["steps"] = 3
    tr = Trainer(_cfg(_edit_stage(stage_config, edit_export)))
    batch = next(iter(tr.data))
    loss, *_ = tr.loss(batch)
    loss.backward()
    assert tr.dit.source_gates.grad.abs().sum() > 0  # the zero gate is where learning starts
    tr.run()
    folder = tr.export()
    pipe = Pipeline.load(folder)
    assert pipe.dit.config.edit_source
    src = Image.new("RGB", (33, 33), (220, 30, 30))  # not a multiple of the patch (2): resized
    out = pipe.edit([src], ["make the red circle blue"], steps=2)
    assert out[0].size == (32, 32)

    src_path = tmp_path / "in.png"
    src.save(src_path)
    runner = CliRunner()
    res = runner.invoke(app, ["edit", "-m", str(folder), "-i", str(src_path), "-t", "把红色的圆变成蓝色",
                              "-o", str(tmp_path / "out.png"), "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    res = runner.invoke(app, ["edit", "-m", str(folder), "-i", str(bad), "-t", "x", "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 2 and f"cannot read input image {bad}" in res.output and "PNG or JPEG" in res.output
    res = runner.invoke(app, ["edit", "-m", str(stage_config["model"]["init_from"]), "-i", str(src_path), "-t", "x",
                              "-o", str(tmp_path / "o.png"), "--steps", "1"])
    assert res.exit_code == 2 and "not an edit model" in res.output


@pytest.fixture(scope="module")
def feature_nets(tmp_path_factory):
    """Tiny random TorchScript networks standing for a perceptual feature net and a face embedder."""
    d = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return [h, torch.relu(self.b(h))]

    embed = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 16))
    # both file kinds a user may give: an exported program and a TorchScript archive
    batch = torch.export.Dim("batch")  # an exported network needs a free batch size (documented in FeatureNetConfig)
    torch.export.save(torch.export.export(Features(), (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},)),
                      d / "features.pt2")
    torch.jit.save(torch.jit.script(embed), d / "embed.pt")
    return d


def test_identity_terms_reach_the_model_but_not_their_networks(stage_config, edit_export, feature_nets):
    from training.engine.loop import Trainer

    _edit_stage(stage_config, edit_export)
    stage_config["objective"] = {"terms": {"flow_matching": 1.0, "perceptual": 0.5, "identity": 0.5},
                                 "perceptual": {"model": str(feature_nets / "features.pt2")},
                                 "identity": {"model": str(feature_nets / "embed.pt"), "t_max": 0.3}}
    tr = Trainer(_cfg(stage_config))
    batch = next(iter(tr.data))
    tr.nets.zero_grad()
    loss, _, _, metrics = tr.loss(batch)
    loss.backward()
    assert math.isfinite(loss.item()) and metrics["perceptual_loss"] > 0 and -1 <= metrics["identity_cos"] <= 1
    assert tr.dit.proj_out.weight.grad.abs().sum() > 0
    for term in ("perceptual", "identity"):
        assert all(p.grad is None and not p.requires_grad for p in tr.terms[term].net.parameters())
    assert not any("net." in n for n in tr.nets.state_dict())  # the frozen networks are not trained or saved


def test_an_identity_term_that_cannot_load_fails_before_training(stage_config, edit_export, tmp_path):
    from training.engine.loop import Trainer

    _edit_stage(stage_config, edit_export)
    stage_config["objective"] = {"terms": {"flow_matching": 1.0, "identity": 1.0}}
    with pytest.raises(ValueError, match="objective.identity.model"):
        Trainer(_cfg(stage_config))
    stage_config["objective"]["identity"] = {"model": str(tmp_path / "missing.pt")}
    with pytest.raises(FileNotFoundError, match="TorchScript"):
        Trainer(_cfg(stage_config))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    stage_config["objective"]["identity"] = {"model": str(tmp_path / "junk.pt")}
    with pytest.raises(ValueError, match="neither a TorchScript archive"):
        Trainer(_cfg(stage_config))


# ---- edit pairs drawn by the base model -------------------------------------------------------------------

def test_edit_pairs_drawn_by_the_base_share_their_trajectory_and_every_spec_gets_an_outcome(base_pipeline, tmp_path):
    from training.data.edit_pairs import make_edit_pairs, shared_trajectory
    from training.data.shards import iter_shard, list_shards
    from training.pipeline import Pipeline

    pipe = Pipeline.load(base_pipeline)
    src, tgt = shared_trajectory(pipe, "a red circle", "a blue circle", 16, 16, steps=4, seed=3, t_share=1.0)
    plain = pipe.latents(["a red circle"], 16, 16, steps=4, cfg_scale=3.0, seed=3)
    torch.testing.assert_close(src, plain)  # branching at t=1 is plain sampling of each prompt
    s0, t0 = shared_trajectory(pipe, "a red circle", "a blue circle", 16, 16, steps=4, seed=3, t_share=0.0)
    assert torch.equal(s0, t0)  # sharing every step: one image

    specs = tmp_path / "specs.jsonl"
    specs.write_text("\n".join([
        json.dumps({"prompt": "a red circle", "edit_prompt": "a blue circle",
                    "instruction": {"en": "make the circle blue", "zh": "把圆变成蓝色"}}),
        "{broken",
        json.dumps({"prompt": "a red circle", "edit_prompt": "a red square", "instruction": {"en": ""}}),
        json.dumps({"prompt": "a red circle", "edit_prompt": "a red square", "instruction": {"en": "make it a square"}}),
    ]) + "\n")
    counts = make_edit_pairs(pipe, specs, tmp_path / "pairs", None, 16, 16, steps=4)
    rows = [json.loads(line) for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert counts["specs"] == len(rows) == 4 and counts["kept"] == 2 and counts["bad_spec"] == 2
    samples = [s for sh in list_shards(tmp_path / "pairs") for s in iter_shard(sh)]
    assert len(samples) == 2 and all(s.src_jpg for s in samples)
    assert {s.meta["captions"]["short"]["en"] for s in samples} == {"make the circle blue", "make it a square"}
    with pytest.raises(FileNotFoundError, match="JSONL of edit specs"):
        make_edit_pairs(pipe, tmp_path / "none.jsonl", tmp_path / "p2")


def test_edit_pairs_are_filtered_by_clip_direction_and_similarity(base_pipeline, tmp_path):
    pytest.importorskip("open_clip")
    from tests.fixtures.tiny_clip import write_tiny_hf_clip
    from training.data.edit_pairs import make_edit_pairs
    from training.pipeline import Pipeline
    from training.rewards.clip import load_clip

    clip = load_clip(write_tiny_hf_clip(tmp_path / "clip"))
    specs = tmp_path / "specs.jsonl"
    specs.write_text(json.dumps({"prompt": "a red circle", "edit_prompt": "a blue circle",
                                 "instruction": {"en": "make the circle blue"}}) + "\n")
    pipe = Pipeline.load(base_pipeline)
    keep = make_edit_pairs(pipe, specs, tmp_path / "a", clip, 16, 16, steps=2, min_direction=-1.0, min_similarity=-1.0)
    drop = make_edit_pairs(pipe, specs, tmp_path / "b", clip, 16, 16, steps=2, min_direction=1.01)
    assert keep["kept"] == 1 and drop.get("kept", 0) == 0 and drop["dropped"] == 1
    row = json.loads((tmp_path / "b" / "pairs.jsonl").read_text())
    assert "directional similarity" in row["reason"] and -1 <= row["direction"] <= 1
