"""Train an aesthetic head (LAION MLP layout) from our own labels and stage-2 embeddings.

Labels come from the annotation loop (`schemas/labels.py` rows):
  ratings:      task `aesthetic`,      label "1".."5"; several annotators per image are averaged.
                Mapped linearly to the LAION scale 1..10 so published and our heads read the same.
  preferences:  task `aesthetic_pair`, the row's id is one image and label is "better_than:<id>" or
                "worse_than:<id>" naming the other; trained with a Bradley-Terry (logistic) loss.
Writes `<out>/aesthetic_head.safetensors`, its card `<out>/aesthetic_head.json` (embedding model, data,
metrics; read by AestheticSignal) and `<out>/MODEL_CARD.md`. Validation rows are a hash split by id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from curation.signals import embedding_codec as codec
from plumbing.tables import open_table

log = logging.getLogger(__name__)

HIDDEN = (1024, 128, 64, 16)  # LAION improved-aesthetic-predictor
DROPOUT = (0.2, 0.2, 0.1, 0.0)


@dataclass
class TrainData:
    x: np.ndarray  # (N, D) embeddings
    ids: list[str]
    ratings: dict[int, float]  # row -> target on the 1..10 scale
    pairs: list[tuple[int, int]]  # (better, worse) rows
    emb_model: str


def _val(id_: str, frac: float, seed: int) -> bool:
    h = hashlib.blake2b(f"{id_}:{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < frac


def load_data(labels: Path, embeddings: Path, task: str, pair_task: str) -> TrainData:
    """Join labels with the embeddings of a stage-2 table (read with pyarrow; no Spark)."""
    lab = open_table(labels).to_table(columns=["id", "task", "label"]).to_pylist()
    emb = open_table(embeddings).to_table(columns=["id", "img_emb", "emb_model"]).to_pylist()
    emb = [r for r in emb if r["img_emb"] is not None]
    models = sorted({r["emb_model"] for r in emb})
    if len(models) != 1:
        raise ValueError(f"{embeddings} holds embeddings of {models or 'no'} models; train on one model's embeddings")
    index = {r["id"]: n for n, r in enumerate(emb)}
    scores: dict[int, list[float]] = {}
    pairs: list[tuple[int, int]] = []
    skipped = 0
    for r in lab:
        if r["label"] is None or r["id"] not in index:
            skipped += r["task"] in (task, pair_task)
            continue
        if r["task"] == task:
            scores.setdefault(index[r["id"]], []).append(_rating(r["label"]))
        elif r["task"] == pair_task:
            pair = _pair(r["id"], r["label"], index)
            if pair is None:
                skipped += 1
            else:
                pairs.append(pair)
    if skipped:
        log.warning("%d labels skipped: no embedding for their image (dropped or errored in stage 2)", skipped)
    ratings = {n: 1.0 + (float(np.mean(v)) - 1.0) * 9.0 / 4.0 for n, v in scores.items()}
    if len(ratings) + len(pairs) < 8:
        raise ValueError(f"only {len(ratings)} rated images and {len(pairs)} pairs have embeddings; "
                         f"label more (tasks {task!r}, {pair_task!r}) before training")
    return TrainData(codec.decode([r["img_emb"] for r in emb]), [r["id"] for r in emb], ratings, pairs, models[0])


def _rating(label: str) -> float:
    try:
        v = float(label)
    except ValueError:
        raise ValueError(f"aesthetic rating {label!r} is not a number 1..5") from None
    if not 1 <= v <= 5:
        raise ValueError(f"aesthetic rating {v} is outside 1..5")
    return v


def _pair(id_: str, label: str, index: dict[str, int]) -> tuple[int, int] | None:
    rel, _, other = label.partition(":")
    if rel not in ("better_than", "worse_than") or not other:
        raise ValueError(f"preference label {label!r} must be better_than:<id> or worse_than:<id>")
    if other not in index:
        return None
    a, b = index[id_], index[other]
    return (a, b) if rel == "better_than" else (b, a)


def build_head(dim: int):
    import torch.nn as nn

    layers, prev = [], dim
    for h, p in zip(HIDDEN, DROPOUT):
        layers += [nn.Linear(prev, h)] + ([nn.Dropout(p)] if p else [])
        prev = h
    layers.append(nn.Linear(prev, 1))

    class Head(nn.Module):  # `layers.N` names, as the LAION checkpoints have them
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(*layers)

        def forward(self, x):
            return self.layers(x).squeeze(-1)

    return Head()


def train(data: TrainData, epochs: int = 200, lr: float = 1e-3, val_frac: float = 0.2, seed: int = 0,
          pair_weight: float = 1.0) -> tuple[object, dict]:
    """Fit the head on the training split; returns it and validation metrics."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(data.x / np.maximum(np.linalg.norm(data.x, axis=1, keepdims=True), 1e-8))
    is_val = np.array([_val(i, val_frac, seed) for i in data.ids])
    r_tr = [(n, t) for n, t in data.ratings.items() if not is_val[n]]
    p_tr = [p for p in data.pairs if not (is_val[p[0]] or is_val[p[1]])]
    head = build_head(x.shape[1])
    with torch.no_grad():  # start at the middle of the scale: fewer epochs to reach the targets
        head.layers[-1].bias.fill_(float(np.mean([t for _, t in r_tr])) if r_tr else 5.0)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    ri = torch.tensor([n for n, _ in r_tr], dtype=torch.long)
    rt = torch.tensor([t for _, t in r_tr], dtype=torch.float32)
    pa_, pb = (torch.tensor([p[i] for p in p_tr], dtype=torch.long) for i in (0, 1))
    head.train()
    for _ in range(epochs):
        opt.zero_grad()
        s = head(x)
        loss = torch.zeros(())
        if len(ri):
            loss = loss + torch.nn.functional.mse_loss(s[ri], rt)
        if len(pa_):
            loss = loss + pair_weight * torch.nn.functional.softplus(-(s[pa_] - s[pb])).mean()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        s = head(x).numpy()
    return head, _metrics(s, data, is_val, len(r_tr), len(p_tr))


def _metrics(s: np.ndarray, data: TrainData, is_val: np.ndarray, n_r: int, n_p: int) -> dict:
    r_val = [(n, t) for n, t in data.ratings.items() if is_val[n]]
    p_val = [p for p in data.pairs if is_val[p[0]] or is_val[p[1]]]  # every pair not trained on
    m: dict = {"train_ratings": n_r, "train_pairs": n_p, "val_ratings": len(r_val), "val_pairs": len(p_val)}
    if r_val:
        pred, true = np.array([s[n] for n, _ in r_val]), np.array([t for _, t in r_val])
        m["val_mae"] = round(float(np.abs(pred - true).mean()), 4)
        m["val_mae_predict_mean"] = round(float(np.abs(true - true.mean()).mean()), 4)  # the baseline to beat
        if len(r_val) > 2 and true.std() > 0 and pred.std() > 0:
            from scipy.stats import spearmanr

            m["val_spearman"] = round(float(spearmanr(pred, true).statistic), 4)
    if p_val:
        m["val_pair_accuracy"] = round(float(np.mean([s[a] > s[b] for a, b in p_val])), 4)
    return m


def write_head(head, out: Path, data: TrainData, metrics: dict, source: dict) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    path = out / "aesthetic_head.safetensors"
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    card = {"kind": "aesthetic_head", "layout": "laion-mlp", "emb_model": data.emb_model, "dim": int(data.x.shape[1]),
            "scale": "1..10 (ratings 1..5 mapped linearly)", "metrics": metrics, "data": source,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(_card_md(card), encoding="utf-8")
    return path


def _card_md(card: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in card["metrics"].items())
    return f"""# Aesthetic head (LAION MLP layout)

- **Input**: L2-normalised image embeddings of `{card['emb_model']}` ({card['dim']}-d). Using it with another
  embedding model gives meaningless scores; AestheticSignal refuses that combination.
- **Output**: a score on the LAION 1..10 scale; our 1..5 ratings are mapped linearly (1 -> 1, 5 -> 10).
- **Training data**: {card['data']}. Ratings are averaged over annotators; pairwise preferences use a
  Bradley-Terry loss. Validation images are a fixed hash split by id (no image is in both splits).
- **Trained**: {card['trained_at']}.

| validation metric | value |
|---|---|
{rows}

`val_mae_predict_mean` is the error of always predicting the mean rating: the head is only useful if
`val_mae` is clearly below it. Limitations: trained on the labels of one project's annotators and
corpus; it inherits their taste and the corpus' domains. Retrain when the embedding model changes.
"""


def run(labels: Path, embeddings: Path, out: Path, task: str = "aesthetic", pair_task: str = "aesthetic_pair",
        epochs: int = 200, seed: int = 0) -> tuple[Path, dict]:
    data = load_data(labels, embeddings, task, pair_task)
    head, metrics = train(data, epochs=epochs, seed=seed)
    source = {"labels": str(labels), "embeddings": str(embeddings), "rated_images": len(data.ratings),
              "pairs": len(data.pairs), "tasks": [task, pair_task]}
    return write_head(head, out, data, metrics, source), metrics
