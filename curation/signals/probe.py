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

from tools.probe_format import feature_matrix, read_card


class Probe:
    """Scorer of one exported probe; `requires` and `columns` come from its card."""

    name = "probe"
    needs_image = False

    def __init__(self, path: str | Path):
        self.path = str(Path(path).absolute())
        self.card = read_card(Path(self.path))
        spec = self.card["input"]
        self.requires = (spec["column"],) if spec["kind"] == "embedding" else tuple(spec["columns"])
        self.output = self.card["output_column"]
        self.columns = {self.output: pa.float32()}
        self._model = None

    def __repr__(self) -> str:  # the adapter keys one loaded scorer per worker by its repr
        return f"Probe({self.path!r})"

    def load(self) -> None:
        from tools.deps import require
        from tools.probe_format import load_probe

        require("sklearn", "annotate")
        self._model, _ = load_probe(Path(self.path))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            self.load()
        X = feature_matrix(batch, self.card["input"])
        p = np.full(len(batch), np.nan, dtype=np.float32)
        if self.card["input"]["kind"] == "embedding":
            ok = ~np.isnan(X).any(axis=1)  # a row without an embedding gets null, not a guess
        else:
            ok = np.ones(len(batch), dtype=bool)  # missing signals are imputed as in training
        if ok.any():
            p[ok] = self._model.predict_proba(X[ok])[:, 1]
        return pd.DataFrame({self.output: pd.Series(p, index=batch.index).where(ok, None)}, index=batch.index)
