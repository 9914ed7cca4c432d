"""Stage 2 end to end: a hand-built raw + stage-1 run with known duplicates, and the demo run."""

import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from curation.jobs.stage2 import scale_levels

pytestmark = pytest.mark.spark


def test_cluster_levels_scale_down_to_the_data():
    assert scale_levels((64, 16, 4), 10_000, 8) == [64, 16, 4]
    assert scale_levels((64, 16, 4), 100, 8) == [12, 12, 4]
    assert scale_levels((64, 16, 4), 3, 8) == [1, 1, 1]


def test_tiers_first_match_wins_and_nulls_never_lift(spark):
    from curation.config import Cut, Tier
    from curation.steps.tiers import TierError, assign_aesthetic_tier, assign_tiers, check_tiers

    df = spark.createDataFrame(
        [("a", 7.0, 50.0, None, None), ("b", 5.0, 50.0, None, None), ("c", None, 50.0, None, None),
         ("d", 9.0, 1.0, None, None), ("e", 9.0, 50.0, "broken", None), ("f", 9.0, 50.0, None, "blurry")],
        "id string, aesthetic double, q_sharpness double, error string, drop_reason string")
    tiers = (Tier(name="A", when="aesthetic >= 6 AND q_sharpness >= 20"), Tier(name="B", when="q_sharpness >= 20"))
    out = assign_tiers(df, tiers, "C")
    out = assign_aesthetic_tier(out, (Cut(name="good", min=5.5), Cut(name="professional", min=6.5)), "poor")
    got = {r.id: (r.tier, r.aesthetic_tier) for r in out.collect()}
    assert got == {"a": ("A", "professional"), "b": ("B", "poor"), "c": ("B", None), "d": ("C", "professional"),
                   "e": (None, None), "f": (None, None)}
    with pytest.raises(TierError, match="tier 'A' when 'nope > 1' is invalid"):
        check_tiers(spark, df.schema, (Tier(name="A", when="nope > 1"),), where="stage2.tiers")


def _photos():
    from PIL import Image, ImageDraw
    from sklearn.datasets import load_sample_images

    china, flower = (Image.fromarray(a) for a in load_sample_images().images)
    out = [china, flower, china.crop((0, 0, 320, 240)).resize((480, 360)), flower.crop((300, 180, 640, 427))]
    rng = np.random.default_rng(0)
    for n, (bg, fg) in enumerate([((200, 30, 30), (250, 220, 0)), ((10, 60, 160), (240, 240, 240)),
                                  ((20, 120, 40), (90, 40, 10)), ((40, 40, 40), (0, 200, 220))]):
        im = Image.new("RGB", (400, 300), bg)
        d = ImageDraw.Draw(im)
        for _ in range(6 + 4 * n):
            x, y, r = rng.integers(0, 400), rng.integers(0, 300), rng.integers(10, 60)
            (d.ellipse if n % 2 else d.rectangle)((x, y, x + r, y + r * (n + 1) // 2), fill=fg)
        out.append(im)
    return out


def _jpeg(im, q=92) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def _run_dir(spark, root):
    """raw + stage1 tables: 8 distinct photos, an exact copy, a re-encoded copy, a mirrored copy, a row stage 1
    kept whose bytes no longer decode, a row stage 1 dropped and one it could not read."""
    from PIL import ImageOps

    from curation.spark import write_table
    from schemas.registry import get_schema
    from schemas.spark import to_spark
    from plumbing import runs

    photos = _photos()
    rows = [(f"p{i}", _jpeg(p), 40.0 - i, None, None, "一张照片" if i % 2 else "a photo") for i, p in enumerate(photos)]
    rows += [("exact", rows[0][1], 10.0, None, None, "a copy"),
             ("near", _jpeg(photos[1].resize((320, 213)), q=60), 5.0, None, None, None),
             ("mirror", _jpeg(ImageOps.mirror(photos[2])), 5.0, None, None, None),
             ("corrupt", b"\xff\xd8\xff\xe0 not really a jpeg", 30.0, None, None, None),
             ("dropped", _jpeg(photos[3]), 1.0, None, "blurry", None),
             ("failed", b"", None, "empty file", None, None)]
    raw_rows, s1_rows = [], []
    for id_, data, sharp, err, reason, alt in rows:
        ident = {"id": id_, "source": "t", "key": id_, "uri": f"/x/{id_}.jpg", "width": 640, "height": 427,
                 "format": "JPEG", "alt_text": alt, "alt_lang": None, "error": err,
                 "error_kind": "empty_file" if err else None}
        raw_rows.append({**ident, "content_hash": hashlib.sha256(data).hexdigest(), "image": data})
        s1_rows.append({**ident, "q_sharpness": sharp, "drop_reason": reason,
                        "drop_stage": "stage1" if reason else None, "drop_reasons": [reason] if reason else None})
    for name, data in (("raw", raw_rows), ("stage1", s1_rows)):
        schema = get_schema(name)
        pdf = pd.DataFrame([{f: r.get(f) for f in schema.names} for r in data])
        write_table(spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None), to_spark(schema)),
                    str(root / name), name)
    kept = sum(1 for r in s1_rows if not r["error"] and not r["drop_reason"])
    for name in ("raw", "stage1"):
        runs.write_manifest(root / name, {"output": {"path": str(root / name), "rows": len(rows), "kept": kept}})
    return root, len(rows)


@pytest.fixture(scope="module")
def tiny_run(spark, tmp_path_factory):
    """Stage 2 on the hand-built run with a tiny bilingual CLIP and a LAION-layout head, as a user configures it."""
    torch = pytest.importorskip("torch")
    from curation.aesthetic_train import build_head
    from curation.config import CurateConfig
    from curation.jobs import stage2
    from tests.fixtures.tiny_clip import write_tiny_hf_clip

    root = tmp_path_factory.mktemp("s2run")
    run, n = _run_dir(spark, root)
    spec = write_tiny_hf_clip(root / "model", "chinese_clip")
    torch.manual_seed(0)
    torch.save(build_head(16).state_dict(), root / "head.pth")
    cfg = CurateConfig.model_validate({"stage2": {
        "embed": {"model": spec, "device": "cpu", "batch_size": 4},
        "aesthetic": {"head": str(root / "head.pth")}, "concepts": {"top_k": 3},
        "dedup": {"semantic_threshold": 0.9999, "keep_order": "q_sharpness DESC NULLS LAST"},
        "cluster": {"levels": [8, 2], "min_rows_per_cluster": 2},
        "tiers": [{"name": "A", "when": "q_sharpness >= 30"}],
        "rules": [{"name": "duplicate", "keep_if": "dup_of IS NULL OR dup_level <> 'exact'"},
                  {"name": "near_duplicate", "keep_if": "dup_of IS NULL OR dup_level <> 'near'"}]}})
    manifest = stage2.run(spark, run / "stage1", run / "raw", run / "stage2", cfg)
    from plumbing.tables import open_table

    df = open_table(run / "stage2", expected="stage2").to_table().to_pandas().set_index("id")
    return manifest, df, n, spec


def test_every_row_comes_out_once_and_earlier_decisions_pass_through(tiny_run):
    manifest, df, n, _ = tiny_run
    assert len(df) == n == manifest["output"]["rows"] and df.index.is_unique
    assert df.loc["dropped", "drop_stage"] == "stage1" and df.loc["dropped", "drop_reason"] == "blurry"
    assert df.loc["dropped", "img_emb"] is None  # stage 2 spends nothing on rows stage 1 dropped
    assert df.loc["failed", "error"] == "empty file" and df.loc["failed", "drop_reason"] is None
    assert df.loc["corrupt", "error_kind"] == "decode_error" and "decode" in df.loc["corrupt", "error"]


def test_duplicates_are_dropped_by_their_rule_and_the_best_copy_kept(tiny_run):
    _, df, _, _ = tiny_run
    assert df.loc["exact", ["drop_reason", "dup_of"]].tolist() == ["duplicate", "p0"]
    assert df.loc["p0", "drop_reason"] is None and df.loc["p0", "dup_group"] == "p0"
    assert df.loc["near", ["drop_reason", "dup_of"]].tolist() == ["near_duplicate", "p1"]
    assert df.loc["mirror", ["drop_reason", "dup_of"]].tolist() == ["near_duplicate", "p2"]
    assert df.loc["exact", "drop_stage"] == "stage2"


def test_signals_of_a_bilingual_clip_model(tiny_run):
    from curation.signals import embedding_codec as codec

    manifest, df, _, spec = tiny_run
    live = df[df["error"].isna() & df["drop_stage"].ne("stage1")]
    assert (live["emb_model"] == spec).all() and len(live) == 11
    img, txt = codec.decode(live.loc[["p0", "p1"], "img_emb"]), codec.decode(live.loc[["p0", "p1"], "txt_emb"])
    np.testing.assert_allclose(live.loc[["p0", "p1"], "clip_score"], (img * txt).sum(axis=1), atol=1e-2)
    assert live.loc["p1", "clip_score"] is not None  # a Chinese alt text is scored too
    assert np.isnan(live.loc["near", "clip_score"])  # no alt text, no alignment
    assert all(len(t) == 3 for t in live["tags"]) and live["aesthetic"].notna().all()
    assert live["aesthetic_tier"].notna().all() and set(live["tier"]) <= {"A", "C"}
    assert (live["cluster_path"].map(len) == 2).all()
    assert manifest["embedding"] == {"model": spec, "weight_free": False} and "embedding" not in manifest["notes"]
    assert manifest["clusters"]["levels_used"] == [4, 2]  # 8 rows that are no duplicate, 2 per cluster
    assert manifest["summary"]["duplicates"] == {"exact": 1, "near": 2} and manifest["summary"]["top_tags"]


def test_bad_config_fails_before_any_work(spark, tmp_path):
    from curation.config import CurateConfig
    from curation.jobs import stage2
    from curation.steps.decide import RuleError

    for patch, err, needle in (
            ({"rules": [{"name": "x", "keep_if": "no_such_col > 1"}]}, RuleError, "no_such_col"),
            ({"dedup": {"keep_order": "aesthetic DESCENDING"}}, ValueError, "keep_order"),
            ({"embed": {"model": "clip-large"}}, ValueError, "open_clip:NAME"),
            ({"aesthetic": {"head": str(tmp_path / "none.pth")}}, FileNotFoundError, "does not exist"),
            ({"concepts": {"vocabularies": ["nope"]}}, FileNotFoundError, "nope")):
        with pytest.raises(err, match=needle):
            stage2.check(spark, CurateConfig.model_validate({"stage2": patch}))


def test_demo_run_stage2_is_weight_free_and_says_so(demo_run):
    from plumbing.tables import open_table

    run, _ = demo_run
    m = json.loads((run / "stage2" / "_manifest.json").read_text())
    s1 = json.loads((run / "stage1" / "_manifest.json").read_text())
    assert m["output"]["rows"] == s1["output"]["rows"] and m["embedding"]["weight_free"]
    assert "not CLIP" in m["notes"]["embedding"] and "text tower" in m["notes"]["concepts"]
    t = open_table(run / "stage2").to_table(columns=["id", "drop_stage", "drop_reason", "emb_model", "tier"]).to_pandas()
    one = open_table(run / "stage1").to_table(columns=["id", "drop_reason"]).to_pandas()
    merged = t.merge(one, on="id", suffixes=("", "_s1"))
    was_dropped = merged["drop_reason_s1"].notna()
    assert (merged.loc[was_dropped, "drop_reason"] == merged.loc[was_dropped, "drop_reason_s1"]).all()
    kept = merged[merged["drop_reason"].isna() & merged["emb_model"].notna()]
    assert len(kept) and (kept["emb_model"] == "descriptor-v1").all() and kept["tier"].notna().all()
