"""The probe: a small scikit-learn classifier on embeddings or signals, with calibrated probabilities.

Missing signals are imputed and inputs standardised inside the pipeline, so the exported file needs
nothing but the card's input columns. Calibration (Platt, cross-validated) needs a few examples of each
class; with fewer the raw probabilities are kept and the card says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from plumbing.probe_format import write_probe

MODELS = ("logreg", "gboost", "mlp")


def _estimator(kind: str, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in MODELS:
        raise ValueError(f"unknown probe model {kind!r}; use one of {', '.join(MODELS)}")
    head = {"logreg": lambda: LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"),
            # Not the Hist variant: its OpenMP threads crawl on a busy shared machine, and probes are small.
            "gboost": lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=seed),
            "mlp": lambda: MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=500, random_state=seed,
                                         early_stopping=False)}[kind]()
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), head)


def train(X: np.ndarray, y: np.ndarray, kind: str = "logreg", seed: int = 0, calibrate: bool = True):
    """A fitted classifier of y (0/1) from X; (model, calibration note)."""
    from sklearn.calibration import CalibratedClassifierCV

    y = np.asarray(y, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"all {len(y)} training labels are {classes.tolist()}; a probe needs both classes. "
                         f"Label more samples (another round) before training.")
    folds = int(min(5, counts.min()))
    if calibrate and folds >= 2:
        model = CalibratedClassifierCV(_estimator(kind, seed), method="sigmoid", cv=folds)
        note = f"sigmoid, {folds}-fold"
    else:
        model = _estimator(kind, seed)
        note = "none (fewer than 2 labels of a class)" if calibrate else "none"
    model.fit(X, y)
    return model, note


def evaluate(model, X: np.ndarray, y: np.ndarray) -> dict:
    """Held-out metrics: accuracy, balanced accuracy, ROC AUC, Brier score, log loss."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return {"n": 0}
    p = model.predict_proba(X)[:, 1]
    pred = (p >= 0.5).astype(np.int64)
    out = {"n": int(len(y)), "positives": int(y.sum()), "accuracy": float(accuracy_score(y, pred)),
           "balanced_accuracy": float(balanced_accuracy_score(y, pred)), "brier": float(brier_score_loss(y, p)),
           "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]))}
    out["roc_auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None
    return out


def export(model, out_dir: Path, *, task: str, positive: str, spec: dict, kind: str, metrics: dict,
           calibration: str, n_train: int, round_: int | None = None, output_column: str | None = None) -> Path:
    """Write the probe folder (joblib + card) that `curation.signals.probe.Probe` loads by path."""
    import sklearn

    card = {"name": f"probe_{task}", "output_column": output_column or f"p_{task}", "task": task,
            "positive_label": positive, "input": spec, "model": kind, "calibration": calibration,
            "metrics": metrics, "n_train": int(n_train), "round": round_, "sklearn_version": sklearn.__version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return write_probe(model, card, Path(out_dir))
