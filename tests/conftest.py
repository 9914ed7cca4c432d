"""Shared fixtures: one real local Spark session for the whole run, and the hostile-input corpus."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spark():
    """A real embedded Spark (local[2]); starting one costs ~10 s, so the whole run shares it."""
    from curation.spark import session

    s = session("local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield s
    s.stop()


@pytest.fixture(scope="session")
def bad_cases():
    from synthetic.bad_inputs import bad_cases as make

    return make()


@pytest.fixture(scope="session")
def bad_folder(tmp_path_factory, bad_cases):
    from synthetic.bad_inputs import write_folder

    d = tmp_path_factory.mktemp("bad_folder")
    write_folder(bad_cases, d)
    return d


@pytest.fixture(scope="session")
def bad_tar(tmp_path_factory, bad_cases):
    from synthetic.bad_inputs import write_webdataset_tar

    d = tmp_path_factory.mktemp("bad_tar")
    write_webdataset_tar(bad_cases, d / "shard-00000.tar", broken_member=True)
    return d


def sluice_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sluice.cli", *args]


@pytest.fixture(scope="session")
def run_cli():
    """Run `sluice ...` in a fresh interpreter, as a user would; returns the CompletedProcess."""
    import subprocess

    def run(*args: str, timeout: float = 600, env: dict | None = None):
        return subprocess.run(sluice_command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    return run


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """A small demo corpus (real photos, defects, a few broken files) made by the project's generator."""
    from synthetic.sample_corpus import write_demo_corpus

    d = tmp_path_factory.mktemp("demo_corpus")
    write_demo_corpus(d, n_images=120, seed=1)
    return d / "images"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_corpus, run_cli):
    """`sluice curate run` on the demo corpus, every stage and signal on, as `make demo` does it.

    Returns (run folder, the CompletedProcess); shared because stage 1's OCR is the slowest step here.
    """
    run = tmp_path_factory.mktemp("demo_run") / "run"
    out = run_cli("curate", "run", "--input", str(demo_corpus), "--output", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    return run, out
