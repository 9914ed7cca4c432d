"""Gradient-boosted trees as plain arrays: a scikit-learn model shipped without pickles or version pins.

`export_hgb` turns fitted binary `HistGradientBoostingClassifier`s (one per head) into flat numpy arrays;
`BoostedTrees` predicts from those arrays alone, all trees of a head stepped at once, so scoring needs
neither scikit-learn nor its private classes, and an .npz written by one scikit-learn version loads under
any other.
"""

from __future__ import annotations

import json

import numpy as np

NODE_FIELDS = ("feature", "threshold", "left", "right", "leaf", "value", "missing_left")


def export_hgb(models: dict, feature_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays for an .npz from {head: fitted binary HistGradientBoostingClassifier} (numeric features only)."""
    out: dict[str, np.ndarray] = {"heads": np.array(list(models)), "features": np.array(feature_names)}
    for head, model in models.items():
        if len(model.classes_) != 2 or model.n_features_in_ != len(feature_names):
            raise ValueError(f"{head}: need a binary classifier over {len(feature_names)} features")
        cols: dict[str, list] = {k: [] for k in NODE_FIELDS}
        roots, offset = [], 0
        for (tree,) in model._predictors:  # private but stable since 0.21: one TreePredictor per iteration
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                raise ValueError(f"{head}: categorical splits are not supported")
            roots.append(offset)
            cols["feature"].append(nodes["feature_idx"].astype(np.int32))
            cols["threshold"].append(nodes["num_threshold"].astype(np.float64))
            cols["left"].append(nodes["left"].astype(np.int32) + offset)
            cols["right"].append(nodes["right"].astype(np.int32) + offset)
            cols["leaf"].append(nodes["is_leaf"].astype(bool))
            cols["value"].append(nodes["value"].astype(np.float64))
            cols["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
            offset += len(nodes)
        for k in NODE_FIELDS:
            out[f"{head}.{k}"] = np.concatenate(cols[k])
        out[f"{head}.roots"] = np.array(roots, np.int32)
        out[f"{head}.baseline"] = np.array(float(np.ravel(model._baseline_prediction)[0]))
    return out


class BoostedTrees:
    """Sigmoid probabilities per head from `export_hgb` arrays; `meta` is the optional JSON the file carries."""

    def __init__(self, arrays):
        self.heads = tuple(str(h) for h in arrays["heads"])
        self.features = tuple(str(f) for f in arrays["features"])
        self.meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
        self.trees = {}
        for head in self.heads:
            t = {k: np.asarray(arrays[f"{head}.{k}"]) for k in (*NODE_FIELDS, "roots", "baseline")}
            self.trees[head] = t
            n = len(t["feature"])
            if not (len(t["roots"]) and all(len(t[k]) == n for k in NODE_FIELDS)):
                raise ValueError(f"boosted trees for {head!r} are malformed (node arrays of unequal length)")

    def raw(self, x: np.ndarray, head: str) -> np.ndarray:
        """Summed leaf values plus baseline, (N,), for features x (N, F)."""
        t = self.trees[head]
        x = np.asarray(x, np.float64)
        idx = np.broadcast_to(t["roots"], (len(x), len(t["roots"]))).copy()  # (N, trees)
        rows = np.arange(len(x))[:, None]
        while True:
            inner = ~t["leaf"][idx]
            if not inner.any():
                break
            v = x[rows, t["feature"][idx]]
            left = np.where(np.isnan(v), t["missing_left"][idx], v <= t["threshold"][idx])
            idx = np.where(inner, np.where(left, t["left"][idx], t["right"][idx]), idx)
        return float(t["baseline"]) + t["value"][idx].sum(axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, heads) probabilities."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} features, got {x.shape[1]}")
        return np.stack([1.0 / (1.0 + np.exp(-self.raw(x, h))) for h in self.heads], axis=1)
