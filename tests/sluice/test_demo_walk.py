"""The demo walked end to end: the demo run -> mix -> stage 3 -> export -> readable by webdataset and HF
datasets -> two training steps of the toy and its sample -> the report shows it all; then a stage re-decided
makes the later tables stale and `sluice curate run` redoes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_demo_mix_stage3_export_trains_and_reports(spark, demo_run, demo_corpus, run_cli, tmp_path):
    from PIL import Image

    from curation import pipeline
    from curation.config import CurateConfig
    from curation.report.funnel import write_report
    from plumbing import runs
    from sluice import demo

    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run)  # the shared demo run stays as other tests expect it
    overrides = {"export": {"shard_size": 16, "max_side": 256}}
    cfg = CurateConfig.model_validate(overrides)
    for name in ("mix", "stage3", "export"):
        pipeline.run_stage(spark, pipeline.stage(name), cfg, None, run, force=False)
    assert runs.read_manifest(run / "stage3")["input"]["table"] == "mix"
    exported = runs.read_manifest(run / "export")
    assert exported["input"]["table"] == "mix" and exported["samples"] > 0

    counts = demo.check_readers(run / "export", tmp_path / "hf")
    assert counts == {"webdataset": exported["samples"], "datasets": exported["samples"]}

    m = demo.train_toy(run, run / "export", steps=2, batch=2)
    assert m["steps"] == 2 and m["label"].startswith("TOY MODEL, trained 2 steps")
    sample = Image.open(run / demo.FOLDER / "sample.png")
    assert sample.size == tuple(m["sample_size"])  # one prompt: one image at the training size
    assert (Path(m["pipeline"]) / "pipeline.json").is_file()  # what `sluice generate --model` reads

    page = write_report(run).read_text(encoding="utf-8")
    for heading in ("Stage 3: captions and caption checks", "Captions kept per style and language",
                    "Caption-check failures", "Shards per aspect bucket", "Exported samples", "TOY MODEL"):
        assert heading in page, heading
    assert (run / "report" / "demo_sample.png").is_file() and "demo_sample.png" in page
    assert "thumbs/captioned_000.jpg" in page and "thumbs/exported_000.jpg" in page

    # Re-decide stage 2 without the semantic-duplicate rule: more rows in play, everything after is stale.
    config = tmp_path / "fewer_rules.yaml"
    rules = [r for r in runs.read_manifest(run / "stage2")["config"]["stage2"]["rules"]
             if r["name"] != "semantic_duplicate"]
    import yaml

    config.write_text(yaml.safe_dump({"stage2": {"rules": rules}, **overrides}))
    kept_before = runs.read_manifest(run / "pool")["output"]["kept"]
    out = run_cli("curate", "decide", "-o", str(run), "--stage", "stage2", "-c", str(config))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "now stale: pool, mix, mix_audit, stage3, export" in out.stderr
    for t in ("pool", "mix", "stage3", "export"):
        assert runs.stale_reason(run / t).startswith("stage2 was re-decided"), t
    out = run_cli("curate", "run", "--input", str(demo_corpus), "-o", str(run), "--until", "export", "-c", str(config))
    assert out.returncode == 0, out.stderr[-2000:]
    for t in ("stage1", "stage2", "pool", "mix", "mix_audit", "stage3", "export"):
        assert runs.is_current(run / t), t
    assert runs.read_manifest(run / "pool")["output"]["kept"] > kept_before
    assert "Stale tables" not in (run / "report" / "index.html").read_text(encoding="utf-8")
