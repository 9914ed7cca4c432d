"""Calibrate rule thresholds on a labelled set: precision and recall per rule, and suggested thresholds.

Labels are a JSONL file of `{"key": ..., "defects": [rule names]}` (or `"id"` instead of `"key"`); a
record with no defects is clean. A rule's current precision and recall come from the stage table's
`drop_reasons`; for each simple comparison in a rule (`signal >= 40`, `s_watermark < 0.5`) the
threshold is swept over the observed values, and the one with the best recall at the target
precision is suggested. Reads the table with pyarrow; no Spark, no scoring.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plumbing.tables import open_table

_TERM = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$", re.I)


@dataclass
class RuleScore:
    rule: str
    labelled: int
    flagged: int
    precision: float | None
    recall: float | None


@dataclass
class Suggestion:
    rule: str
    term: str
    signal: str
    op: str
    current: float
    suggested: float | None
    precision: float | None
    recall: float | None


def read_labels(path: Path) -> dict[str, set[str]]:
    labels = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            k = rec.get("key", rec.get("id"))
            labels[str(k)] = set(rec.get("defects") or [])
        except (ValueError, AttributeError) as e:
            raise ValueError(f"{path}:{n}: not a label record ({e}); expected {{\"key\": ..., \"defects\": [...]}}")
    return labels


def _pr(flagged: np.ndarray, positive: np.ndarray) -> tuple[float | None, float | None]:
    tp = int((flagged & positive).sum())
    p = tp / flagged.sum() if flagged.sum() else None
    r = tp / positive.sum() if positive.sum() else None
    return p, r


def terms(keep_if: str) -> list[tuple[str, str, float]]:
    """The simple comparisons of an AND-ed keep_if, e.g. [("q_sharpness", ">=", 40.0)]."""
    out = []
    for part in re.split(r"\s+AND\s+", keep_if, flags=re.I):
        m = _TERM.match(part)
        if m:
            out.append((m.group(1), m.group(2), float(m.group(3))))
    return out


def _keeps(values: np.ndarray, op: str, t: float) -> np.ndarray:
    return {">=": values >= t, ">": values > t, "<=": values <= t, "<": values < t}[op]


def best_threshold(values: np.ndarray, positive: np.ndarray, op: str, target: float):
    """The threshold with the highest recall among those whose precision >= target."""
    ok = ~np.isnan(values)
    v, y = values[ok], positive[ok]
    best = (None, None, None)
    for t in np.unique(np.concatenate([v, v + 1e-6, v - 1e-6])):
        flagged = ~_keeps(v, op, t)
        p, r = _pr(flagged, y)
        if p is not None and r is not None and p >= target and (best[2] is None or r > best[2]):
            best = (float(t), p, r)
    return best


def calibrate(table_dir: Path, labels_path: Path, rules, target_precision: float = 0.9, stage: str | None = None):
    """(scores per rule, threshold suggestions) for the labelled rows of a stage table.

    With `stage`, rows an earlier stage dropped are left out: that stage's rules never saw them."""
    labels = read_labels(labels_path)
    dataset = open_table(table_dir)
    t = dataset.to_table().to_pylist()
    rows = [r for r in t if r["key"] in labels or r["id"] in labels]
    if not rows:
        raise ValueError(f"no row of {table_dir} has a key or id in {labels_path}")
    usable = [r for r in rows if r["error"] is None and (stage is None or r.get("drop_stage") in (None, stage))]
    if not usable:
        raise ValueError(f"every labelled row of {table_dir} failed or was dropped before {stage or 'this stage'}; "
                         f"label rows that reach it")
    defects = [labels.get(r["key"], labels.get(r["id"], set())) for r in usable]
    reasons = [set(r["drop_reasons"] or []) for r in usable]
    scores, suggestions = [], []
    for rule in rules:
        positive = np.array([rule.name in d for d in defects])
        flagged = np.array([rule.name in rs for rs in reasons])
        p, r = _pr(flagged, positive)
        scores.append(RuleScore(rule.name, int(positive.sum()), int(flagged.sum()), p, r))
        for signal, op, current in terms(rule.keep_if):
            if signal not in usable[0]:
                continue
            values = np.array([np.nan if u[signal] is None else float(u[signal]) for u in usable])
            s, sp, sr = best_threshold(values, positive, op, target_precision)
            suggestions.append(Suggestion(rule.name, f"{signal} {op} {current:g}", signal, op, current, s, sp, sr))
    return scores, suggestions
