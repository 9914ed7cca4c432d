"""The command line as a user meets it: help, dry runs, fast failures, a full run, inspect and report."""

from __future__ import annotations

import json
import time

import pytest


def test_help_lists_the_commands(run_cli):
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("curate", "inspect", "report"):
        assert cmd in out.stdout
    sub = run_cli("curate", "--help")
    assert "run" in sub.stdout and "ingest" in sub.stdout


def test_dry_run_prints_config_and_plan_without_spark(run_cli, tmp_path):
    t0 = time.monotonic()
    out = run_cli("curate", "run", "--input", str(tmp_path), "--output", str(tmp_path / "run"), "--dry-run",
                  "--set", "ingest.max_pixels=1000000")
    assert out.returncode == 0, out.stderr
    assert "max_pixels: 1000000" in out.stdout and "ingest" in out.stdout and "raw" in out.stdout
    assert time.monotonic() - t0 < 30  # no JVM was started


@pytest.mark.parametrize("args, needle", [
    (["--set", "ingest.max_pixels=lots"], "ingest.max_pixels"),
    (["--set", "ingest.nope=1"], "ingest.nope: unknown key"),
    (["--spark-conf", "executor.memory=1g"], "spark."),
    (["--until", "stage9"], "not a stage"),
])
def test_bad_config_fails_at_once_naming_the_key(run_cli, tmp_path, args, needle):
    out = run_cli("curate", "run", "--input", str(tmp_path), "--output", str(tmp_path / "run"), *args)
    assert out.returncode == 2
    assert needle in out.stderr, out.stderr


def test_missing_input_fails_before_spark_starts(run_cli, tmp_path):
    t0 = time.monotonic()
    out = run_cli("curate", "run", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "run"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert time.monotonic() - t0 < 30


@pytest.mark.spark
def test_full_run_then_inspect_and_report(run_cli, demo_corpus, demo_run, tmp_path):
    run, out = demo_run
    report_line = [line for line in out.stdout.splitlines() if line.startswith("report: ")]
    assert report_line, out.stdout
    report = run / "report" / "index.html"
    assert report_line[-1] == f"report: {report}"
    manifest = json.loads((run / "raw" / "_manifest.json").read_text())
    assert manifest["input"]["records"] == manifest["output"]["rows"] > 0
    assert manifest["output"]["errors"], "the demo corpus has broken files; they must show as errors"
    assert manifest["config"]["ingest"]["format"] == "auto" and manifest["code_version"]
    stage1 = json.loads((run / "stage1" / "_manifest.json").read_text())
    assert stage1["output"]["rows"] == manifest["output"]["rows"]  # every raw row is a stage-1 row
    assert stage1["output"]["errors"] == manifest["output"]["errors"]  # failed rows keep their error
    assert stage1["output"]["dropped"] and stage1["output"]["kept"] > 0
    assert sum(stage1["output"]["dropped"].values()) + stage1["output"]["kept"] == stage1["output"]["usable"]

    page = report.read_text(encoding="utf-8")
    assert page.count("<svg") >= 3 and "Failed records by kind" in page
    thumbs = list((run / "report" / "thumbs").glob("*.jpg"))
    assert thumbs and all(f'thumbs/{t.name}' in page for t in thumbs)

    again = run_cli("curate", "run", "--input", str(demo_corpus), "--output", str(run))
    assert again.returncode == 0 and "raw" in again.stdout + again.stderr
    assert json.loads((run / "raw" / "_manifest.json").read_text()) == manifest  # skipped, not redone

    shown = run_cli("inspect", str(run / "raw"), "--rows", "3")
    assert shown.returncode == 0, shown.stderr
    assert "table=raw" in shown.stdout and "errors:" in shown.stdout and "error_kind" in shown.stdout

    bad = run_cli("inspect", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
