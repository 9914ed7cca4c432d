"""stage_job, the one way jobs write tables: skip, clear, count, manifest, then _SUCCESS."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plumbing import runs


def write_rows(folder, n: int, drop_every: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    reasons = [("blurry" if drop_every and i % drop_every == 0 else None) for i in range(n)]
    pq.write_table(pa.table({"id": [str(i) for i in range(n)], "drop_reason": pa.array(reasons, pa.string())}),
                   folder / "part-0.parquet")


def job_writing(n: int, expected: int | None, calls: list):
    def work(job: runs.StageJob) -> dict:
        calls.append(job.out_dir)
        with job.phase("write"):
            write_rows(job.out_dir, n, drop_every=3)
        job.count(expected)
        return {"input": {"records": expected}, "extra": 1}

    return work


def test_writes_manifest_then_success_and_skips_a_current_table(tmp_path):
    calls = []
    out = tmp_path / "run" / "stage1"
    m = runs.stage_job("stage1", {"stage1": out}, job_writing(9, 9, calls), config={"a": 1})
    assert list(m)[:4] == ["written_at", "code_version", "job", "table"]
    assert m["job"] == "stage1" and m["table"] == "stage1" and m["input"] == {"records": 9} and m["extra"] == 1
    assert m["output"]["path"] == str(out) and m["output"]["rows"] == 9 and m["output"]["kept"] == 6
    assert m["config"] == {"a": 1} and set(m["timings_s"]) == {"write", "count"}
    assert runs.is_current(out) and json.loads((out / runs.MANIFEST).read_text()) == m

    again = runs.stage_job("stage1", {"stage1": out}, job_writing(9, 9, calls), config={"a": 1})
    assert again == m and len(calls) == 1  # current: nothing ran
    runs.stage_job("stage1", {"stage1": out}, job_writing(9, 9, calls), config={"a": 1}, force=True)
    assert len(calls) == 2


def test_clears_a_stale_or_half_written_table_before_writing(tmp_path):
    out = tmp_path / "stage1"
    write_rows(out, 5)
    (out / "part-old.parquet").write_bytes((out / "part-0.parquet").read_bytes())  # a killed run's leftover
    runs.stage_job("stage1", {"stage1": out}, job_writing(4, 4, []))
    assert runs.read_manifest(out)["output"]["rows"] == 4 and not (out / "part-old.parquet").exists()
    assert runs.mark_stale(out, "raw was redone")
    runs.stage_job("stage1", {"stage1": out}, job_writing(3, 3, []))
    assert runs.is_current(out) and runs.read_manifest(out)["output"]["rows"] == 3


def test_a_lost_row_fails_and_leaves_the_table_unfinished(tmp_path):
    out = tmp_path / "stage1"
    with pytest.raises(RuntimeError, match="stage1 wrote 8 rows .*, 9 expected"):
        runs.stage_job("stage1", {"stage1": out}, job_writing(8, 9, []))
    assert not runs.is_done(out)


def test_every_table_must_be_counted(tmp_path):
    def work(job):
        write_rows(job.out_dir, 2)
        return {}

    with pytest.raises(RuntimeError, match="never counted"):
        runs.stage_job("x", {"x": tmp_path / "x"}, work)
    assert not runs.is_done(tmp_path / "x")


def test_two_tables_share_a_manifest_and_the_first_finishes_last(tmp_path):
    mix, audit = tmp_path / "mix", tmp_path / "mix_audit"

    def work(job):
        write_rows(job.dirs["mix"], 6)
        job.count(6)
        write_rows(job.dirs["mix_audit"], 2)
        job.count(2, table="mix_audit")
        return {"mix": {"size": 6}}

    m = runs.stage_job("mix", {"mix": mix, "mix_audit": audit}, work)
    a = runs.read_manifest(audit)
    assert m["table"] == "mix" and a["table"] == "mix_audit" and a["mix"] == m["mix"] == {"size": 6}
    assert a["output"] == {"path": str(audit), "rows": 2, "usable": 2, "kept": 2, "dropped": {}, "errors": {}}
    assert (mix / runs.SUCCESS).stat().st_mtime_ns >= (audit / runs.SUCCESS).stat().st_mtime_ns
    (audit / runs.SUCCESS).unlink()  # one table unfinished: the job runs again
    calls = []
    runs.stage_job("mix", {"mix": mix, "mix_audit": audit}, lambda job: calls.append(1) or work(job))
    assert calls and runs.is_current(audit)


def test_in_place_replaces_the_table_once_complete_and_keeps_its_manifest(tmp_path):
    table = tmp_path / "stage1"
    first = runs.stage_job("stage1", {"stage1": table}, job_writing(5, 5, []), config={"v": 1})
    before = runs.read_manifest(table)

    def work(job):
        assert job.out_dir == tmp_path / "stage1.redecide" and runs.is_done(table)  # the old table is still there
        write_rows(job.out_dir, 5, drop_every=1)
        job.count(5)
        return {**before, "redecided_from": before["written_at"]}

    m = runs.stage_job("redecide", {"stage1": table}, work, config={"v": 2}, in_place=True)
    assert m["job"] == "stage1" and m["config"] == {"v": 2} and m["redecided_from"] == first["written_at"]
    assert m["output"] == {**first["output"], "kept": 0, "dropped": {"blurry": 5}}
    assert "write" in m["timings_s"] and runs.is_current(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1"]
    with pytest.raises(FileNotFoundError, match="not a finished table"):
        runs.stage_job("redecide", {"stage1": tmp_path / "none"}, work, in_place=True)
