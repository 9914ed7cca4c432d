"""Stage 1 with signals turned off still writes the whole stage-1 schema (nulls where nothing was computed)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curation.config import CurateConfig, Rule

pytestmark = pytest.mark.spark


def test_ocr_and_detector_off_give_null_columns_and_rules_on_them_keep(spark, bad_folder, tmp_path):
    from curation.jobs import ingest, stage1

    cfg = CurateConfig.model_validate({"stage1": {
        "signals": {"ocr": {"enabled": False}, "structure": {"enabled": False}},
        "rules": [{"name": "watermark", "keep_if": "s_watermark < 0.5"},
                  {"name": "too_small", "keep_if": "least(width, height) >= 1"}]}})
    assert cfg.stage1.rules[0] == Rule(name="watermark", keep_if="s_watermark < 0.5")
    raw = tmp_path / "raw"
    rows = ingest.run(spark, str(bad_folder), raw, cfg)["output"]["rows"]
    out = stage1.run(spark, raw, tmp_path / "stage1", cfg)["output"]
    assert out["rows"] == rows

    table = pq.read_table(tmp_path / "stage1").to_pandas()
    usable = table[table["error"].isna()]
    assert len(usable) > 0
    assert usable["ocr_boxes"].isna().all() and usable["s_watermark"].isna().all()
    assert usable["q_sharpness"].notna().all()  # what was on was computed
    assert (usable["drop_reason"] != "watermark").all()  # a null signal never drops a row
