"""A probe trained by the annotation loop, as a scorer: adds its probability column (e.g. `p_valuable`).

Stage rules then use it by that name (`{name: not_valuable, keep_if: "p_valuable >= 0.5"}`). The probe is
a folder written by `sluice annotate round` (`<loop>/probe`: probe.joblib + probe.json); its card says
which columns it reads and what it writes, so this module needs nothing from `annotation`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from plumbing.probe_format import CARD_FILE, feature_matrix, read_card, sha256


class ProbeError(ValueError):
    """A configured probe cannot be used: no such folder, not a probe, or it reads columns the stage lacks."""


class Probe:
    """Scorer of one exported probe; `requires` and `columns` come from its card."""

    name = "probe"
    needs_image = False

    def __init__(self, path: str | Path, output: str | None = None):
        """`output` renames the card's column (a stage config writes p_<name> whatever the card says)."""
        self.path = str(Path(path).absolute())
        self.card = read_card(Path(self.path))
        try:
            spec = self.card["input"]
            self.requires = (spec["column"],) if spec["kind"] == "embedding" else tuple(spec["columns"])
            self.output = output or self.card["output_column"]
        except (KeyError, TypeError) as e:
            raise ProbeError(f"{self.path} is not a probe card (no {e}); export the probe again with "
                             f"`sluice annotate`.") from None
        self.columns = {self.output: pa.float32()}
        self._model = None

    def __repr__(self) -> str:  # the adapter keys one loaded scorer per worker by its repr
        return f"Probe({self.path!r}, output={self.output!r})"

    def load(self) -> None:
        from plumbing.deps import require
        from plumbing.probe_format import load_probe

        require("sklearn", "annotate")
        self._model, _ = load_probe(Path(self.path))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            self.load()
        X = feature_matrix(batch, self.card["input"])
        p = np.full(len(batch), np.nan, dtype=np.float32)
        if self.card["input"]["kind"] == "embedding":
            ok = ~np.isnan(X).any(axis=1)  # a row without an embedding gets null, not a guess
        else:  # missing signals are imputed as in training; a row with none of them (a failed one) gets null
            ok = ~np.isnan(X).all(axis=1)
        if ok.any():
            p[ok] = self._model.predict_proba(X[ok])[:, 1]
        return pd.DataFrame({self.output: pd.Series(p, index=batch.index).where(ok, None)}, index=batch.index)


def stage_probes(refs, columns: list[str], where: str) -> tuple[Probe, ...]:
    """The probes of a stage config (`ProbeRef`s), checked against the stage's `columns` before any work:
    the folder and card exist, the model file is the one the card names, every input column is there."""
    probes = []
    for ref in refs:
        label = f"{where}: probe {ref.name!r} ({ref.path})"
        try:
            probe = Probe(ref.path, output=f"p_{ref.name}")
        except (FileNotFoundError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise ProbeError(f"{label}: {e}") from None
        model = Path(probe.path if Path(probe.path).is_dir() else Path(probe.path).parent) / probe.card.get(
            "model_file", "probe.joblib")
        if not model.exists() or sha256(model) != probe.card.get("sha256"):
            raise ProbeError(f"{label}: {model} is missing or is not the model {CARD_FILE} describes; "
                             f"export the probe again.")
        missing = [c for c in probe.requires if c not in columns]
        if missing:
            raise ProbeError(f"{label} reads columns {missing}, which this stage does not have (it has "
                             f"{', '.join(c for c in columns if c.startswith(('q_', 's_', 'ocr_', 'img_')))}); "
                             f"train the probe on this stage's columns or use it in the stage that has them.")
        if probe.output in columns:
            raise ProbeError(f"{label}: its column {probe.output} is already a column of this stage; rename it.")
        probes.append(probe)
    return tuple(probes)


def with_probe_columns(schema, probes):
    """A Spark schema plus each probe's float column: what the stage's rules and tiers are checked against."""
    from pyspark.sql import types as T

    return T.StructType(list(schema.fields) + [T.StructField(p.output, T.FloatType(), True) for p in probes])


def probe_manifest(probes) -> list[dict]:
    """What a stage manifest says about its probes: where, which column, trained on what, how good."""
    keys = ("task", "positive_label", "model", "calibration", "n_train", "round", "metrics", "sha256", "created_at")
    return [{"column": p.output, "path": p.path, "input": p.card["input"], **{k: p.card.get(k) for k in keys}}
            for p in probes]
