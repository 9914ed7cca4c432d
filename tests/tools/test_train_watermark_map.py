"""The watermark map's trainer when it renders while it trains (a GPU box): a sample the generator fails on
is left out and counted, not allowed to end the run; a stream that yields nothing says so."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_watermark_map", REPO / "tools" / "scripts" / "train_watermark_map.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _render_failing_every_third(job):
    if job[0] % 3 == 0:
        raise ValueError("no room for the headline")
    return {"index": job[0], "x": np.zeros((3, 16, 16), np.uint8)}


def test_stream_leaves_out_and_counts_samples_the_generator_fails_on(script, monkeypatch):
    monkeypatch.setattr(script, "_render", _render_failing_every_third)
    monkeypatch.setattr(script, "_init_worker", lambda split, extra_photos=None: None)
    stream = script.StreamingSet(9, 0, 0.0, 1, None)  # workers fork with the patched module
    stream.thread.join(timeout=120)
    rows = stream.close()
    assert sorted(r["index"] for r in rows) == [1, 2, 4, 5, 7, 8]
    assert len(stream.errors) == 3 and all("ValueError: no room for the headline" in e for e in stream.errors)


def test_a_stream_that_renders_nothing_says_so(script, monkeypatch):
    monkeypatch.setattr(script, "_render", lambda job: 1 / 0)
    monkeypatch.setattr(script, "_init_worker", lambda split, extra_photos=None: None)
    stream = script.StreamingSet(4, 0, 0.0, 1, None)
    stream.thread.join(timeout=120)
    with pytest.raises(RuntimeError, match="no training sample"):
        stream.wait_for(2)
    stream.close()
    assert len(stream.errors) == 4
