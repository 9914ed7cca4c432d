"""Label Studio annotations -> the `labels` table: one row per (sample, question, annotator), nothing dropped.

A skipped annotation, an empty one, an answer outside the template's choices, and disagreeing annotators
all stay in the table with a `flag`; only clean rows (and the majority of a conflict) train the probe.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.labels import LABELS
from schemas.registry import TAG_KEY, tag


def _answer(item: dict) -> str | None:
    """The stored value of one result item (choices, rating, pairwise, text), as a string."""
    value = item.get("value") or {}
    if "choices" in value:
        return ",".join(sorted(str(c) for c in value["choices"])) or None
    if "rating" in value:
        return str(value["rating"])
    if "selected" in value:
        return str(value["selected"])
    if "text" in value:
        text = value["text"]
        return " ".join(text) if isinstance(text, list) else str(text)
    return None


def _flag_for(question: str, label: str | None, allowed: tuple[str, ...] | None) -> str | None:
    if label is None:
        return "empty"
    if allowed is None:  # free text
        return None
    unknown = [v for v in label.split(",") if v not in allowed]
    return "unknown_label" if unknown else None


def annotation_rows(task: dict, questions: dict, primary: str, users: dict[int, str]) -> list[dict]:
    """Rows of one Label Studio task: per annotation, one row per answered question (or one flagged row)."""
    data = task.get("data") or {}
    base = {"id": str(data.get("sample_id")), "uri": data.get("uri"), "round": data.get("round"),
            "source": "human", "ls_task_id": task.get("id")}
    rows = []
    for ann in task.get("annotations") or []:
        who = users.get(ann.get("completed_by"), str(ann.get("completed_by")))
        when = _timestamp(ann.get("created_at"))
        common = {**base, "annotator": who, "created_at": when}
        if ann.get("was_cancelled"):
            rows.append({**common, "task": primary, "label": None, "flag": "skipped"})
            continue
        answers = {}
        for item in ann.get("result") or []:
            name = item.get("from_name")
            answers[name] = _answer(item)
        if primary not in answers:
            rows.append({**common, "task": primary, "label": None, "flag": "empty"})
        for name, label in answers.items():
            allowed = questions.get(name, ())
            rows.append({**common, "task": name, "label": label, "flag": _flag_for(name, label, allowed)})
    return rows


def _timestamp(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def with_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Agreement = share of a sample's annotators giving the majority answer; disagreement flags `conflict`."""
    df = df.copy()
    df["agreement"] = None
    usable = df["flag"].isna() | (df["flag"] == "conflict")
    for _, idx in df[usable].groupby(["id", "task"]).groups.items():
        labels = df.loc[idx, "label"]
        counts = Counter(labels)
        share = counts.most_common(1)[0][1] / len(labels)
        df.loc[idx, "agreement"] = share
        if len(counts) > 1:
            df.loc[idx, "flag"] = "conflict"
    return df


def labels_frame(tasks: list[dict], questions: dict, primary: str, users: dict[int, str]) -> pd.DataFrame:
    rows = [r for t in tasks if (t.get("data") or {}).get("sample_id") is not None
            for r in annotation_rows(t, questions, primary, users)]
    df = pd.DataFrame(rows, columns=[f.name for f in LABELS if f.name != "agreement"])
    return with_agreement(df)[[f.name for f in LABELS]]


def training_labels(df: pd.DataFrame, question: str) -> dict[str, str]:
    """One answer per sample for `question`: clean answers, or a strict majority of conflicting ones."""
    from plumbing.tables import majority_labels

    return majority_labels(df, question)


def write_labels(df: pd.DataFrame, path: Path) -> Path:
    """Write the tagged labels table (pyarrow) at folder `path`, replacing what was there."""
    fields = [f.with_metadata({**(f.metadata or {}), TAG_KEY.encode(): json.dumps(tag("labels")).encode()})
              if f.name == "id" else f for f in LABELS]
    schema = pa.schema(fields)
    df = df.copy()
    df["round"] = pd.to_numeric(df["round"], errors="coerce").astype("Int32")
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    df["agreement"] = pd.to_numeric(df["agreement"], errors="coerce").astype("float32")
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "part-00000.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(path / "part-00000.parquet")  # atomic: a killed pull never leaves half a table
    return path


def now() -> datetime:
    return datetime.now(timezone.utc)
