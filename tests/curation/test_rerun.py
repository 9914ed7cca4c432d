"""A job killed half way and run again gives the same table as an uninterrupted run, without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]


def ingest_cmd(corpus: Path, run: Path) -> list[str]:
    # local[1] and many partitions make the job long enough to be caught half way.
    return [sys.executable, "-m", "sluice.cli", "curate", "ingest", "--input", str(corpus), "--output", str(run),
            "--master", "local[1]", "--set", "ingest.partitions=24"]


def read_sorted(table: Path):
    return ds.dataset(str(table), format="parquet").to_table().sort_by("id")


def kill_half_way(corpus: Path, run: Path, timeout: float = 240) -> None:
    """Start ingest and SIGKILL it (driver and JVM) once some, not all, tasks have written output."""
    proc = subprocess.Popen(ingest_cmd(corpus, run), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temp = run / "raw" / "_temporary"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("ingest finished before it could be killed; make the job longer")
            if temp.exists() and sum(1 for p in temp.rglob("*.parquet")) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("ingest never wrote output to kill it half way")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_killed_ingest_reruns_to_the_same_table(demo_corpus, tmp_path, run_cli):
    killed = tmp_path / "killed"
    kill_half_way(demo_corpus, killed)
    assert not (killed / "raw" / "_SUCCESS").exists()
    assert any((killed / "raw").rglob("*.parquet")), "the kill left no partial output to recover from"

    rerun = subprocess.run(ingest_cmd(demo_corpus, killed), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    clean = tmp_path / "clean"
    done = subprocess.run(ingest_cmd(demo_corpus, clean), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    a, b = read_sorted(killed / "raw"), read_sorted(clean / "raw")
    assert a.num_rows == b.num_rows > 0
    ids = a.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate ids after the rerun"
    assert a.equals(b), "the rerun table differs from an uninterrupted run"
    n_images = sum(1 for p in demo_corpus.rglob("*") if p.suffix in (".jpg", ".png", ".webp"))
    assert a.num_rows == n_images
