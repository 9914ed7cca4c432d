"""Stage 3 on real local Spark: every kept input row comes out with its captions or its errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from curation.config import CurateConfig
from schemas.captions import CAPTION_LANGS
from plumbing import runs
from plumbing.tables import open_table

pytestmark = pytest.mark.spark

STYLES = ("short", "long", "text_in_image", "aesthetic", "imagination")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from synthetic.run import make_run

    base = tmp_path_factory.mktemp("s3run")
    kinds = make_run(base / "template", n=21)
    return base, kinds


def _fresh(synthetic, name):
    base, kinds = synthetic
    run = base / name
    shutil.copytree(base / "template", run)
    return run, kinds


def _captions(run):
    return open_table(run / "stage3", "captions").to_table().to_pandas()


def test_without_a_captioner_only_alt_text_is_kept_and_said(spark, synthetic):
    from curation.jobs import stage3

    run, kinds = _fresh(synthetic, "alt_only")
    m = stage3.run(spark, run, run / "stage3", CurateConfig())
    df = _captions(run)
    kept_in = set(kinds["kept"]) | set(kinds["broken"])
    assert set(df["id"]) == kept_in and len(df) == len(kept_in)  # one alt row per kept sample
    assert set(df["style"]) == {"alt"} and df["model"].eq("alt_text").all()
    assert df[["txt_emb", "emb_model", "clip_score"]].isna().all().all()  # stage3.embed_captions is off by default
    assert not set(df["id"]) & (set(kinds["dropped"]) | set(kinds["error"]))
    assert set(df["drop_reason"].dropna()) <= {"no_alt_text", "unsupported_language"}
    kept = df[df["drop_reason"].isna()]
    assert set(kept["lang"]) == {"zh", "en"} and kept["text"].notna().all()
    assert "only the cleaned alt text" in m["note"] and m["input"]["table"] == "stage1"
    assert m["output"]["samples"] == len(kept_in)
    # Done tables are skipped unless forced.
    assert stage3.run(spark, run, run / "stage3", CurateConfig())["written_at"] == m["written_at"]


def test_served_captioner_every_row_has_captions_or_errors(spark, synthetic):
    from curation.jobs import stage3
    from tests.fixtures.fake_openai_server import FakeOpenAIServer

    run, kinds = _fresh(synthetic, "served")
    with FakeOpenAIServer(latency_s=0.01, fail_rate=0.1, flaky_rate=0.2, malformed_rate=0.1,
                          boilerplate=True) as srv:
        cfg = CurateConfig.model_validate({"stage3": {"rows_per_task": 8, "captioner": {
            "backend": "served", "url": srv.url, "model": "fake-vlm", "concurrency": 4, "retries": 2,
            "backoff_s": 0.01, "timeout_s": 5}}})
        m = stage3.run(spark, run, run / "stage3", cfg)
    df = _captions(run)
    kept_in = set(kinds["kept"]) | set(kinds["broken"])
    assert set(df["id"]) == kept_in
    model_rows = df[df["style"] != "alt"]
    # Each kept sample: one row per (style, lang), text or drop reason or error, never missing.
    assert len(model_rows) == len(kept_in) * len(STYLES) * len(CAPTION_LANGS)
    assert not model_rows.duplicated(["id", "style", "lang"]).any()
    outcome = model_rows["text"].notna().astype(int) + model_rows["drop_reason"].notna() + model_rows["error"].notna()
    assert outcome.eq(1).all()
    assert model_rows["error"].dropna().str.contains("HTTP 503|malformed response").any()
    broken = model_rows[model_rows["id"].isin(kinds["broken"])]
    assert broken["error"].dropna().str.contains("could not be decoded").all()
    good = model_rows[model_rows["text"].notna()]
    assert len(good) > len(kept_in) * 4 and not good["text"].str.startswith(("The image", "这张图片")).any()
    assert (good["model"] == "fake-vlm").all() and good["prompt_version"].str.match(r"^[a-z_]+\.(zh|en)\.v1$").all()
    tii = good[good["style"] == "text_in_image"]
    assert len(tii) and tii["text"].str.contains('"|“').all()
    assert m["output"]["errors"]["caption_error"] == int(model_rows["error"].notna().sum())
    assert m["output"]["by_style"]["short_en"].get("kept", 0) > 0


def test_reads_the_latest_funnel_table_and_exports_its_tags(spark, synthetic):
    """With a pool table present, its kept rows are the input (not stage1's), and its tags and cluster
    path reach the shards."""
    from curation.jobs import export, stage3
    from synthetic.run import write_tagged

    run, kinds = _fresh(synthetic, "pool_input")
    rows = [dict(r) for r in kinds["stage1_rows"]]
    dropped_now = kinds["kept"][0]
    for n, r in enumerate(rows):
        r.update(tags=[{"concept": "cat", "score": 0.75}], cluster_path=[n % 2, n], aesthetic=5.5)
        if r["id"] == dropped_now:
            r.update(drop_stage="downsample", drop_reason="not_sampled", drop_reasons=["not_sampled"])
    write_tagged(run / "pool", rows, "pool")
    m = stage3.run(spark, run, run / "stage3", CurateConfig())
    assert m["input"]["table"] == "pool"
    assert dropped_now not in set(_captions(run)["id"])
    assert m["input"]["records"] == len(kinds["kept"]) + len(kinds["broken"]) - 1
    export.run(spark, run, run / "export", CurateConfig())
    index = open_table(run / "export", "shard_index").to_table().to_pandas()
    assert set(index["id"]) == set(kinds["kept"]) - {dropped_now}
    import json
    import tarfile

    shard = run / "export" / index["shard"].iloc[0]
    with tarfile.open(shard) as tf:
        meta = json.loads(tf.extractfile(f"{index['key'].iloc[0]}.json").read())
    assert meta["tags"] == [{"concept": "cat", "score": 0.75}] and len(meta["cluster_path"]) == 2
    assert meta["signals"]["aesthetic"] == 5.5 and "content_hash" not in meta["signals"]


def test_pipeline_chains_caption_stages_with_a_captioner_or_when_asked():
    from curation import pipeline

    plain = [s.name for s in pipeline.stages_until(None, CurateConfig())]
    assert "stage3" not in plain and "export" not in plain
    cfg = CurateConfig.model_validate({"stage3": {"captioner": {"backend": "transformers", "model": "x"}}})
    assert [s.name for s in pipeline.stages_until(None, cfg)][-2:] == ["stage3", "export"]
    assert pipeline.stage("export").reads == "stage3"
    # --until opts in without a captioner: stage 3 keeps the cleaned alt text only (what the demo exports)
    assert [s.name for s in pipeline.stages_until("export", CurateConfig())][-2:] == ["stage3", "export"]
    with pytest.raises(ValueError, match="not a stage"):
        pipeline.stages_until("stage9", CurateConfig())


def test_config_errors_say_what_to_set():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs stage3.captioner.url"):
        CurateConfig.model_validate({"stage3": {"captioner": {"backend": "served", "model": "m"}}})
    with pytest.raises(ValidationError, match="keep_alt"):
        CurateConfig.model_validate({"stage3": {"keep_alt": False}})


def test_missing_input_is_named(spark, tmp_path):
    from curation.jobs import stage3

    with pytest.raises(FileNotFoundError, match="sluice curate stage1"):
        stage3.run(spark, tmp_path, tmp_path / "stage3", CurateConfig())
    assert not runs.is_done(tmp_path / "stage3")


def test_cli_commands_plan_without_spark(run_cli, tmp_path):
    r = run_cli("curate", "stage3", "-o", str(tmp_path), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "stage3:" in r.stdout and "captioner:" in r.stdout
    served = ["--set", "stage3.captioner.backend=served", "--set", "stage3.captioner.model=m",
              "--set", "stage3.captioner.url=http://127.0.0.1:9/v1"]
    r = run_cli("curate", "run", "-i", str(tmp_path), "-o", str(tmp_path), "--dry-run", *served)
    assert r.returncode == 0, r.stderr
    plan = r.stdout.split("plan:")[1]
    assert "stage3:" in plan and "export:" in plan
    r = run_cli("curate", "run", "-i", str(tmp_path), "-o", str(tmp_path), "--dry-run")
    assert "stage3:" not in r.stdout.split("plan:")[1]
    r = run_cli("curate", "export", "-o", str(tmp_path))
    assert r.returncode == 2 and "sluice curate stage3" in r.stderr  # says what to run first


def test_transformers_captioner_runs_under_spark(spark, synthetic, tmp_path):
    """The in-process VLM through the Spark adapter: loaded once per worker, one row per style and language."""
    from curation.jobs import stage3
    from tests.fixtures.tiny_vlm import save_tiny_blip

    model = save_tiny_blip(tmp_path / "blip")
    run, kinds = _fresh(synthetic, "tiny_blip")
    cfg = CurateConfig.model_validate({"stage3": {"captioner": {
        "backend": "transformers", "model": str(model), "styles": ["short"], "langs": ["en"],
        "batch_size": 4, "device": "cpu", "max_tokens": 8}}})
    m = stage3.run(spark, run, run / "stage3", cfg)
    df = _captions(run)
    kept_in = set(kinds["kept"]) | set(kinds["broken"])
    vlm = df[df["style"] == "short"]
    assert set(vlm["id"]) == kept_in and len(vlm) == len(kept_in)  # every kept sample: a caption or an error
    assert vlm["model"].eq(str(model)).all() and vlm["prompt_version"].notna().all()
    assert (vlm["text"].notna() | vlm["drop_reason"].notna() | vlm["error"].notna()).all()
    assert m["output"]["samples"] == len(kept_in)


def test_gpu_scheduling_follows_the_transformers_captioner():
    from curation import pipeline
    from curation.cli import _spark_conf

    gpu = {"stage3": {"captioner": {"backend": "transformers", "model": "m", "gpus_per_task": 0.5}}}
    on_cluster = CurateConfig.model_validate({**gpu, "spark": {"master": "spark://head:7077"}})
    conf = _spark_conf(on_cluster, [pipeline.stage("stage3")])
    assert conf["spark.task.resource.gpu.amount"] == "0.5"
    assert conf["spark.executor.resource.gpu.discoveryScript"].endswith("gpu_discovery.sh")
    assert _spark_conf(CurateConfig.model_validate(gpu), [pipeline.stage("stage3")]) == {}  # local: none
    served = CurateConfig.model_validate({"spark": {"master": "spark://head:7077"}, "stage3": {"captioner": {
        "backend": "served", "model": "m", "url": "http://127.0.0.1:1/v1"}}})
    assert "spark.task.resource.gpu.amount" not in _spark_conf(served, [pipeline.stage("stage3")])


@pytest.fixture(scope="module")
def clip_run(spark, demo_run, tmp_path_factory):
    """The demo corpus's raw and stage-1 tables, then stage 2 with a tiny open_clip model (a text tower)."""
    from curation.jobs import stage2
    from tests.fixtures.tiny_clip import write_tiny_open_clip

    src, _ = demo_run
    run = tmp_path_factory.mktemp("s3clip") / "run"
    for name in ("raw", "stage1"):
        shutil.copytree(src / name, run / name)
    spec = write_tiny_open_clip(run.parent / "model")
    cfg = {"stage2": {"embed": {"model": spec, "device": "cpu", "batch_size": 16}, "concepts": {"enabled": False}},
           "stage3": {"embed_captions": True}}
    stage2.run(spark, run / "stage1", run / "raw", run / "stage2", CurateConfig.model_validate(cfg))
    return run, spec, cfg


def test_captions_are_embedded_with_stage2s_model_and_scored(spark, clip_run):
    """Demo corpus end to end: every kept caption (alt and a served model's) has a vector from stage 2's
    model and its cosine with the row's stored img_emb; dropped and failed captions have none."""
    from curation.jobs import stage3
    from curation.signals import embedding_codec as codec
    from curation.signals.embed import get_embedder
    from tests.fixtures.fake_openai_server import FakeOpenAIServer

    run, spec, cfg = clip_run
    with FakeOpenAIServer(latency_s=0.0, fail_rate=0.1) as srv:
        cfg = CurateConfig.model_validate({**cfg, "stage3": {**cfg["stage3"], "captioner": {
            "backend": "served", "url": srv.url, "model": "fake-vlm", "styles": ["short"], "retries": 0}}})
        m = stage3.run(spark, run, run / "stage3", cfg)
    df = _captions(run)
    s2 = open_table(run / "stage2").to_table(columns=["id", "img_emb", "drop_reason", "error"]).to_pandas()
    kept_in = s2[s2["drop_reason"].isna() & s2["error"].isna()]
    assert set(df["id"]) == set(kept_in["id"]) and m["input"]["table"] == "stage2"
    kept = df["text"].notna()
    assert kept.sum() > len(kept_in) and set(df.loc[kept, "style"]) == {"alt", "short"}
    assert df.loc[kept, "txt_emb"].notna().all() and df.loc[~kept, ["txt_emb", "clip_score"]].isna().all().all()
    assert df.loc[kept, "emb_model"].eq(spec).all() and df["error"].notna().any()
    img = dict(zip(kept_in["id"], kept_in["img_emb"]))
    k = df[kept]
    txt, imgs = codec.decode(k["txt_emb"]), codec.decode([img[i] for i in k["id"]])
    np.testing.assert_allclose(k["clip_score"].astype(float), (txt * imgs).sum(axis=1), atol=5e-3)
    again = get_embedder(spec, "cpu").encode_texts(k["text"].iloc[:4].tolist())  # the same model, reloaded
    np.testing.assert_allclose(txt[:4], again, atol=2e-3)
    assert m["caption_embedding"] == {"model": spec, "from": str(run / "stage2"), "embedded": int(kept.sum()),
                                      "with_clip_score": int(kept.sum())}
    _export_carries_clip_scores(spark, run, k)


def _export_carries_clip_scores(spark, run, kept_captions):
    """The shards give each passing caption its clip_score under the same style and language; NaN elsewhere."""
    import json
    import math
    import tarfile

    from curation.jobs import export

    export.run(spark, run, run / "export", CurateConfig.model_validate({"export": {"shard_size": 4}}))
    want = {(r.id, r.style, r.lang): float(r.clip_score) for r in kept_captions.itertuples()}
    seen = 0
    for tar in (run / "export" / "shards").rglob("*.tar"):
        with tarfile.open(tar) as tf:
            for member in (m for m in tf.getmembers() if m.name.endswith(".json")):
                meta = json.loads(tf.extractfile(member).read())
                for style, langs in meta["caption_clip_scores"].items():
                    for lang, score in langs.items():
                        if (meta["id"], style, lang) in want:
                            assert score == pytest.approx(want[meta["id"], style, lang], abs=1e-6)
                            seen += 1
                        else:
                            assert math.isnan(score)
    assert seen == len(want)


def test_embedding_captions_needs_a_text_tower_and_stage2(spark, demo_run, synthetic, tmp_path):
    from curation.jobs import stage3

    on = CurateConfig.model_validate({"stage3": {"embed_captions": True}})
    run, _ = demo_run  # stage 2 with the weight-free descriptor
    with pytest.raises(ValueError, match="no text tower"):
        stage3.run(spark, run, tmp_path / "s3", on)
    bare, _ = _fresh(synthetic, "no_stage2")  # stage 1 only
    with pytest.raises(FileNotFoundError, match="sluice curate stage2"):
        stage3.run(spark, bare, bare / "stage3", on)
    assert not runs.is_done(tmp_path / "s3") and not runs.is_done(bare / "stage3")
