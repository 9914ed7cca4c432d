"""Aesthetic score: a LAION-style head (linear layers over L2-normalised CLIP image embeddings).

Loads the published LAION weights (the MLP of improved-aesthetic-predictor, keys `layers.{0,2,4,6,7}.*`,
or the linear v1 head, keys `weight`/`bias`) from a .pth/.pt/.safetensors path, or a head trained by
`sluice curate train-aesthetic`, whose card (`<head>.json`) names the embedding model it was trained on.
The layers have no activation between them, so inference is a few matrix products in numpy: no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from curation.signals import embedding_codec as codec

_LAYER = re.compile(r"^(?:layers\.)?(\d+)\.(weight|bias)$")


def read_state(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a head file as numpy arrays (safetensors without torch; .pth/.pt with torch)."""
    if not path.is_file():
        raise FileNotFoundError(f"aesthetic head {path} does not exist; give stage2.aesthetic.head a weights file")
    from plumbing.deps import require

    if path.suffix == ".safetensors":
        return dict(require("safetensors.numpy", extra="embed").load_file(str(path)))
    torch = require("torch", extra="embed")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    return {k: v.float().numpy() for k, v in state.items()}


def layers_of(state: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W (out, in), b) per linear layer, in order; accepts the LAION MLP and linear layouts."""
    if set(state) == {"weight", "bias"}:
        return [(state["weight"], state["bias"])]
    by_index: dict[int, dict[str, np.ndarray]] = {}
    for k, v in state.items():
        m = _LAYER.match(k.removeprefix("model."))
        if not m:
            raise ValueError(f"aesthetic head: unexpected tensor {k!r}; expected LAION keys layers.N.weight/bias")
        by_index.setdefault(int(m.group(1)), {})[m.group(2)] = v
    layers = [(d["weight"], d["bias"]) for _, d in sorted(by_index.items())]
    for (w0, _), (w1, _) in zip(layers, layers[1:]):
        if w0.shape[0] != w1.shape[1]:
            raise ValueError(f"aesthetic head layers do not chain: {w0.shape} then {w1.shape}")
    if not layers or layers[-1][0].shape[0] != 1:
        raise ValueError("aesthetic head must end in one output (a score)")
    return layers


def collapse(layers) -> tuple[np.ndarray, float]:
    """The head as one affine map x @ w + b (exact: LAION's MLP has only dropout between layers)."""
    w = np.eye(layers[0][0].shape[1], dtype=np.float64)
    b = np.zeros(layers[0][0].shape[1], dtype=np.float64)
    for wi, bi in layers:
        w, b = w @ wi.T.astype(np.float64), b @ wi.T.astype(np.float64) + bi.astype(np.float64)
    return w[:, 0].astype(np.float32), float(b[0])


def read_card(path: Path) -> dict | None:
    card = path.with_suffix(".json")
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None


@dataclass(frozen=True)
class AestheticSignal:
    """`aesthetic` for rows whose img_emb came from `model`; the head's input size must match."""

    head: str
    model: str

    name: ClassVar[str] = "aesthetic"
    requires: ClassVar[tuple[str, ...]] = ("img_emb", "emb_model")
    columns: ClassVar[dict[str, pa.DataType]] = {"aesthetic": pa.float32()}

    def load(self) -> None:
        path = Path(self.head).expanduser()
        card = read_card(path)
        if card and card.get("emb_model") not in (None, self.model):
            raise ValueError(f"aesthetic head {path} was trained on {card['emb_model']} embeddings, but stage 2 "
                             f"embeds with {self.model}; use the same stage2.embed.model or retrain the head")
        w, b = collapse(layers_of(read_state(path)))
        object.__setattr__(self, "_w", w)
        object.__setattr__(self, "_b", b)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = pd.Series([None] * len(batch), index=batch.index, dtype=object)
        pos, x = codec.embedded_rows(batch, self.model)
        if pos:
            if x.shape[1] != self._w.shape[0]:
                raise ValueError(f"aesthetic head {self.head} takes {self._w.shape[0]}-d embeddings, {self.model} "
                                 f"gives {x.shape[1]}-d; use the head made for this model")
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
            for n, s in zip(pos, x @ self._w + self._b):
                out.iat[n] = float(s)
        return pd.DataFrame({"aesthetic": out})
