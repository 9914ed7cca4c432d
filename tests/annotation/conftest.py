"""A real Label Studio for the whole session (first start ~40 s of migrations) and a small labelled pool."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

N_SIGNALS = 6


def make_pool(folder: Path, n: int = 240, seed: int = 0, n_errors: int = 4) -> dict[str, str]:
    """A pool table (signals q_f*, captions, JPEG bytes) whose keep/drop truth is a noisy linear rule.

    Returns the ground truth {id: keep|drop}; rows with `error` get no truth (they cannot be selected).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_SIGNALS)).astype(np.float32)
    w = np.array([2.0, -1.5, 1.0, 0.0, 0.5, 0.0])
    y = (X @ w + 0.3 * rng.normal(size=n)) > 0
    X[rng.random((n, N_SIGNALS)) < 0.03] = np.nan  # missing signals are imputed, not fatal
    ids = [f"s{i:04d}" for i in range(n)]
    images = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (24, 16), tuple(int(v) for v in rng.integers(0, 255, 3))).save(buf, format="JPEG")
        images.append(buf.getvalue())
    errors = [None] * n
    for i in range(n_errors):
        errors[i] = "decode_failed: truncated"
    cols = {"id": ids, "uri": [f"file:///corpus/{s}.jpg" for s in ids],
            "alt_text": [f"样例 sample {i}" for i in range(n)], "error": errors, "image": images}
    cols.update({f"q_f{j}": X[:, j] for j in range(N_SIGNALS)})
    cols["s_detector"] = ["none"] * n  # a string signal column must be ignored as a feature
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), folder / "part-00000.parquet")
    return {ids[i]: ("keep" if y[i] else "drop") for i in range(n) if errors[i] is None}


@pytest.fixture(scope="session")
def pool_maker():
    return make_pool


def record_id(i: int) -> str:
    return hashlib.md5(f"gen-{i}".encode()).hexdigest()  # 32 hex characters, as the contract says


def png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_generated(folder: Path, n: int = 6, extra_lines: list[str] = ()) -> list[dict]:
    """A folder as the trainer's generator writes it: n good records (images written), then `extra_lines`.

    Returns the good records.
    """
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        rec = {"id": record_id(i), "file": f"img_{i:03d}.png", "prompt": f"a red circle {i} / 一个红色的圆",
               "aesthetic": "soft light" if i % 2 else "", "seed": 1000 + i, "model": "toy-dit@step200"}
        (folder / rec["file"]).write_bytes(png((40 * i % 255, 100, 200)))
        records.append(rec)
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + list(extra_lines)
    (folder / "generated.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return records


@pytest.fixture(scope="session")
def generated_maker():
    return write_generated


@pytest.fixture(scope="session")
def ls_env():
    """Admin user and a fresh random token, in the environment only (as users are told to do)."""
    saved = {k: os.environ.get(k) for k in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD",
                                             "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_URL")}
    os.environ.update({"LABEL_STUDIO_USERNAME": "admin@sluice.test",
                       "LABEL_STUDIO_PASSWORD": secrets.token_hex(8),
                       "LABEL_STUDIO_API_KEY": secrets.token_hex(20)})
    yield dict(os.environ)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory, ls_env):
    """A real Label Studio on a free loopback port, stopped by its pid at the end of the session."""
    from annotation import server

    if not (server.venv_path() / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio is not installed at {server.venv_path()}; run `sluice annotate server install`")
    data = tmp_path_factory.mktemp("ls_data")
    info = server.start(data, port=server.free_port())
    os.environ["LABEL_STUDIO_URL"] = info.url
    yield info
    server.stop(data)


@pytest.fixture(scope="session")
def ls_client(ls_server):
    from annotation.client import connect

    return connect(ls_server.url)
