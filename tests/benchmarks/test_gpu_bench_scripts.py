"""The GPU benchmark scripts run end to end on tiny shapes on the CPU (--cpu-smoke).

They are run for real only on a lent GPU machine, minutes a session: a script that breaks there wastes them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--cpu-smoke", *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_train_gpu_smoke_writes_every_row_and_the_profile(tmp_path):
    out = tmp_path / "rows.jsonl"
    table = _run("benchmarks.bench_train_gpu", "--profile", "--skip-extras", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    assert [(r["model"], r["compiled"]) for r in steps] == [("sd3", False), ("ours", False), ("ours", True),
                                                            ("sd3", True)]
    assert all(r["step_s"] > 0 for r in steps) and steps[0]["flops"] > 0
    assert all(r["profile"]["ms_per_step_by_kind"] for r in steps if r["compiled"])
    assert not [r for r in rows if r["kind"] == "error"]
    assert "| ours | True |" in table and "vs SD3 (same mode)" in table


def test_bench_embed_gpu_smoke_reports_each_rate_against_the_model(tmp_path):
    out = tmp_path / "embed.json"
    table = _run("benchmarks.bench_embed_gpu", "--out", str(out))
    rows = json.loads(out.read_text())
    for name in ("model_only_img_s", "end_to_end_pil_img_s", "end_to_end_gpu_decode_img_s"):
        assert isinstance(rows[name], float) and rows[name] > 0, rows[name]
    assert rows["pil_img_s"]["one_process"] > 0
    assert "| model_only_img_s |" in table and "100%" in table
