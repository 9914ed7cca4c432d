"""The exported probe: a scikit-learn model (joblib) plus a JSON card, shared by its writer and its reader.

`annotation` trains and writes probes; `curation.signals.probe` reads them. Neither imports the other
(DESIGN rule 1), so the file format and the one way rows become a feature matrix live here.

Card fields: name, output_column (e.g. p_valuable), task, positive_label, input ({"kind": "embedding",
"column": "img_emb", "dim": D} or {"kind": "signals", "columns": [...]}), model, metrics, sha256 of the
joblib file (checked before unpickling, so only the file the card describes is ever loaded), versions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

MODEL_FILE = "probe.joblib"
CARD_FILE = "probe.json"
EMBEDDING_COLUMN = "img_emb"
SIGNAL_PREFIXES = ("q_", "s_", "ocr_")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_probe(model, card: dict, out_dir: Path) -> Path:
    import joblib

    out_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out_dir / MODEL_FILE)
    card = {**card, "model_file": MODEL_FILE, "sha256": sha256(out_dir / MODEL_FILE)}
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    return out_dir


def read_card(path: Path) -> dict:
    path = Path(path)
    card_path = path / CARD_FILE if path.is_dir() else path
    if not card_path.exists():
        raise FileNotFoundError(f"{card_path} does not exist; give the folder `sluice annotate` exported the "
                                f"probe to (it holds {CARD_FILE} and {MODEL_FILE}).")
    return json.loads(card_path.read_text())


def load_probe(path: Path):
    """(model, card) of the probe folder at `path`; refuses a model file the card does not describe."""
    import joblib

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    card = read_card(path)
    model_path = folder / card["model_file"]
    if sha256(model_path) != card["sha256"]:
        raise ValueError(f"{model_path} does not match the sha256 in its card; re-export the probe "
                         f"(a pickle is only loaded when it is the one the card was written with).")
    return joblib.load(model_path), card


def signal_columns(names: list[str], types: dict | None = None) -> list[str]:
    """The numeric stage-1 signal columns among `names` (q_*, s_*, ocr_*), in a stable order."""
    cols = [n for n in names if n.startswith(SIGNAL_PREFIXES)]
    if types is not None:
        cols = [n for n in cols if types.get(n) == "numeric"]
    return sorted(cols)


def feature_matrix(batch, spec: dict) -> np.ndarray:
    """Rows of a pandas batch as the probe's inputs: (N, D) float32; a missing value is NaN (imputed later)."""
    if spec["kind"] == "embedding":
        dim = int(spec["dim"])
        out = np.full((len(batch), dim), np.nan, dtype=np.float32)
        for i, blob in enumerate(batch[spec["column"]].tolist()):
            if blob is not None and len(blob) == 2 * dim:
                out[i] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        return out
    cols = spec["columns"]
    missing = [c for c in cols if c not in batch.columns]
    if missing:
        raise ValueError(f"the probe needs columns {missing}, which this table lacks; score it with the stage "
                         f"that writes them first (or train the probe on columns this table has).")
    import pandas as pd

    return np.stack([pd.to_numeric(batch[c], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
                     for c in cols], axis=1) if cols else np.zeros((len(batch), 0), np.float32)
