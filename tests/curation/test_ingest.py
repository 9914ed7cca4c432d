"""Ingest loses nothing: every hostile input becomes exactly one row, named, and the job finishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.config import CurateConfig
from synthetic.bad_inputs import NULL_ROW_KEY, TRUNCATED_TAR_KEY, write_parquet

pytestmark = pytest.mark.spark


def ingest(spark, input_path, out: Path, **ingest_overrides):
    from curation.jobs import ingest as job

    cfg = CurateConfig(ingest=CurateConfig().ingest.model_copy(update=ingest_overrides))
    manifest = job.run(spark, str(input_path), out, cfg)
    rows = {r["key"]: r.asDict() for r in spark.read.parquet(str(out)).collect()}
    return manifest, rows


def check_case(case, row):
    if case.expect_error:
        assert row["error_kind"] == case.expect_error, (case.name, row["error"])
        assert row["error"], case.name
        return
    assert row["error"] is None, (case.name, row["error"])
    for k, v in case.expect.items():
        if k == "alt_text_warning":
            assert any(w.startswith(v) for w in row["warnings"]), (case.name, row["warnings"])
        else:
            assert row[k] == v, (case.name, k, row[k], v)
    assert row["image"] == case.data and row["bytes_len"] == len(case.data)


def test_folder_every_bad_input_is_one_named_row(spark, bad_cases, bad_folder, tmp_path):
    manifest, rows = ingest(spark, bad_folder, tmp_path / "raw")
    assert len(rows) == len(bad_cases) == manifest["output"]["rows"] == manifest["input"]["records"]
    for case in bad_cases:
        check_case(case, rows[case.filename])
    errors = manifest["output"]["errors"]
    assert sum(errors.values()) == sum(1 for c in bad_cases if c.expect_error)
    assert manifest["output"]["warnings"].get("caption_not_utf8") == 2  # gb18030 + undecodable
    ids = [r["id"] for r in rows.values()]
    assert len(set(ids)) == len(ids)


def test_webdataset_tar_with_a_cut_member(spark, bad_cases, bad_tar, tmp_path):
    manifest, rows = ingest(spark, bad_tar, tmp_path / "raw")
    assert manifest["input"]["format"] == "webdataset"
    assert len(rows) == len(bad_cases) + 1 == manifest["output"]["rows"]
    for case in bad_cases:
        row = rows[f"shard-00000/{case.name}"]
        check_case(case, row)
        assert row["uri"].endswith(f"shard-00000.tar::{case.filename}")
    broken = rows[f"shard-00000/{TRUNCATED_TAR_KEY}"]
    assert broken["error_kind"] == "broken_tar" and "unexpected end" in broken["error"]


def test_parquet_with_bytes_and_a_null_row(spark, bad_cases, tmp_path):
    write_parquet(bad_cases, tmp_path / "in" / "part-0.parquet")
    manifest, rows = ingest(spark, tmp_path / "in", tmp_path / "raw", )
    assert manifest["input"]["format"] == "parquet"
    assert len(rows) == len(bad_cases) + 1
    by_uri_row = {r["uri"].rsplit("#row=", 1)[1]: r for r in rows.values()}
    assert len(by_uri_row) == len(rows)
    null_row = [r for r in rows.values() if r["error_kind"] == "missing_image"]
    assert len(null_row) == 1 and null_row[0]["alt_text"]
    for case in bad_cases:
        (row,) = [r for r in rows.values() if r["image"] == case.data and r["error_kind"] != "missing_image"]
        if case.expect_error:
            assert row["error_kind"] == case.expect_error
        else:
            assert row["error"] is None and row["format"] == case.expect["format"]


def test_parquet_key_column_and_a_missing_column_error(spark, bad_cases, tmp_path):
    write_parquet(bad_cases, tmp_path / "in.parquet")
    _, rows = ingest(spark, tmp_path / "in.parquet", tmp_path / "raw",
                     parquet=CurateConfig().ingest.parquet.model_copy(update={"key_column": "key"}))
    assert NULL_ROW_KEY in rows and rows[NULL_ROW_KEY]["error_kind"] == "missing_image"
    with pytest.raises(ValueError, match="ingest.parquet.caption_column"):
        ingest(spark, tmp_path / "in.parquet", tmp_path / "raw2",
               parquet=CurateConfig().ingest.parquet.model_copy(update={"caption_column": "nope"}))


def test_hf_dataset_saved_to_disk(spark, bad_cases, tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    usable = [c for c in bad_cases]
    data = {"image": [{"bytes": c.data, "path": None} for c in usable] + [None],
            "text": [c.caption.decode("utf-8", "replace") if c.caption else None for c in usable] + ["no image"]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(data, features=feats),
                               "test": datasets.Dataset.from_dict({k: v[:2] for k, v in data.items()}, features=feats)})
    dd.save_to_disk(str(tmp_path / "ds"))
    manifest, rows = ingest(spark, tmp_path / "ds", tmp_path / "raw")
    assert manifest["input"]["format"] == "hf"
    assert len(rows) == len(usable) + 1 + 2
    for i, case in enumerate(usable):
        row = rows[f"train/{i}"]
        assert row["image"] == case.data
        assert row["error_kind"] == case.expect_error
    assert rows[f"train/{len(usable)}"]["error_kind"] == "missing_image"
    assert rows["test/1"]["image"] == usable[1].data


def test_finished_job_is_skipped_and_force_redoes_it(spark, bad_folder, tmp_path):
    from curation.jobs import ingest as job

    out = tmp_path / "raw"
    first = job.run(spark, str(bad_folder), out, CurateConfig())
    marker = (out / "_SUCCESS").stat().st_mtime_ns
    again = job.run(spark, str(bad_folder), out, CurateConfig())
    assert again == first and (out / "_SUCCESS").stat().st_mtime_ns == marker
    forced = job.run(spark, str(bad_folder), out, CurateConfig(), force=True)
    assert forced["output"] == first["output"]


def test_empty_folder_gives_an_empty_table(spark, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("not an image")
    manifest, rows = ingest(spark, tmp_path / "empty", tmp_path / "raw")
    assert rows == {} and manifest["output"]["rows"] == 0 and manifest["input"]["ignored_files"] == 1


def test_missing_input_fails_at_once(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest(spark, tmp_path / "nowhere", tmp_path / "raw")


def test_reading_back_checks_the_schema_version(spark, bad_folder, tmp_path):
    from curation.spark import read_table
    from schemas.registry import SchemaMismatch

    ingest(spark, bad_folder, tmp_path / "raw")
    assert read_table(spark, str(tmp_path / "raw"), "raw").count() > 0
    with pytest.raises(SchemaMismatch, match="expected 'labels'"):
        read_table(spark, str(tmp_path / "raw"), "labels")
    spark.createDataFrame([("x",)], "id string").write.parquet(str(tmp_path / "foreign"))
    with pytest.raises(SchemaMismatch, match="not written by Sluice"):
        read_table(spark, str(tmp_path / "foreign"), "raw")


def test_parquet_with_image_paths(spark, bad_cases, bad_folder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [str(bad_folder / c.filename) for c in bad_cases] + [str(bad_folder / "gone.jpg")]
    pq.write_table(pa.table({"path": paths, "caption": ["c"] * len(paths)}), tmp_path / "paths.parquet")
    parquet = CurateConfig().ingest.parquet.model_copy(update={"image_column": None, "path_column": "path"})
    _, rows = ingest(spark, tmp_path / "paths.parquet", tmp_path / "raw", parquet=parquet)
    assert len(rows) == len(paths)
    by_image = {r["uri"]: r for r in rows.values()}
    gone = [r for r in rows.values() if r["error_kind"] == "read_error"]
    assert len(gone) == 1 and "gone.jpg" in gone[0]["error"]
    assert sum(1 for r in by_image.values() if r["error"] is None) == sum(1 for c in bad_cases if not c.expect_error)


def test_oversized_file_is_an_error_row_not_read(spark, bad_folder, tmp_path):
    _, rows = ingest(spark, bad_folder, tmp_path / "raw", max_bytes=50_000)
    big = [r for r in rows.values() if r["error_kind"] == "too_large"]
    assert big and all(r["image"] is None and "ingest.max_bytes" in r["error"] for r in big)


def test_raw_image_column_skips_parquet_work_that_buys_nothing(spark, bad_folder, tmp_path):
    """Image bytes are written plain: no dictionary, no min/max statistics (the id column keeps its stats)."""
    import pyarrow.parquet as pq

    ingest(spark, bad_folder, tmp_path / "raw")
    for f in (tmp_path / "raw").glob("*.parquet"):
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            cols = {meta.row_group(g).column(i).path_in_schema: meta.row_group(g).column(i)
                    for i in range(meta.num_columns)}
            image = cols["image"]
            assert not image.is_stats_set and image.compression == "UNCOMPRESSED"
            assert not any("DICTIONARY" in e for e in image.encodings), image.encodings
            assert cols["id"].is_stats_set
