"""Dense concepts: zero-shot tags from bilingual concept vocabularies, scored with the text tower.

A vocabulary is a YAML file (`curation/configs/concepts/default.yaml` is the shipped one): categories and
concepts, each concept with an id, English and Chinese names and a parent category. Every concept's text
embedding is the mean of its English and Chinese prompts, so the tag does not depend on the language a
caption happens to use. A row's tags are the top-k concepts by softmax(scale * cosine) over the vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from curation.signals import embedding_codec as codec
from schemas.stage2 import TAG

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "concepts"
EN_PROMPTS = ("a photo of {}.", "{}")
ZH_PROMPTS = ("{}的照片。", "{}")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Concept:
    id: str
    en: str
    zh: str
    parent: str


def vocabulary_path(name: str) -> Path:
    """A shipped vocabulary by name (`default`) or a YAML path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    shipped = SHIPPED / f"{name}.yaml"
    if not shipped.is_file():
        known = ", ".join(sorted(f.stem for f in SHIPPED.glob("*.yaml")))
        raise FileNotFoundError(f"concept vocabulary {name!r} is neither a .yaml path nor shipped ({known})")
    return shipped


def load_vocabulary(names: tuple[str, ...] | list[str]) -> list[Concept]:
    """Concepts of every named vocabulary, in order; ids must be unique across them."""
    import yaml

    out: dict[str, Concept] = {}
    for name in names:
        path = vocabulary_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"concept vocabulary {path} does not exist")
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        cats = doc.get("categories") or {}
        for n, c in enumerate(doc.get("concepts") or []):
            concept = _concept(c, cats, f"{path}: concept #{n + 1}")
            if concept.id in out:
                raise ValueError(f"{path}: concept id {concept.id!r} is defined twice; ids must be unique")
            out[concept.id] = concept
    if not out:
        raise ValueError(f"concept vocabularies {list(names)} hold no concepts")
    return list(out.values())


def _concept(c, cats: dict, where: str) -> Concept:
    if not isinstance(c, dict):
        raise ValueError(f"{where} must be a mapping with id, en, zh, parent; got {c!r}")
    missing = [k for k in ("id", "en", "zh", "parent") if not str(c.get(k) or "").strip()]
    if missing:
        raise ValueError(f"{where} ({c.get('id')!r}) lacks {missing}; each concept needs id, en, zh and parent")
    if not _ID.match(str(c["id"])):
        raise ValueError(f"{where}: id {c['id']!r} must be snake_case ([a-z][a-z0-9_]*)")
    if cats and c["parent"] not in cats:
        raise ValueError(f"{where} ({c['id']}): parent {c['parent']!r} is not a category ({', '.join(cats)})")
    return Concept(str(c["id"]), str(c["en"]), str(c["zh"]), str(c["parent"]))


def concept_matrix(embedder, concepts: list[Concept]) -> np.ndarray:
    """(C, D) L2-normalised text embeddings: mean over the English and Chinese prompts of each concept."""
    prompts = [[p.format(c.en) for p in EN_PROMPTS] + [p.format(c.zh) for p in ZH_PROMPTS] for c in concepts]
    k = len(prompts[0])
    flat = embedder.encode_texts([p for group in prompts for p in group])  # (C*k, D)
    mean = flat.reshape(len(concepts), k, -1).mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-8)


def top_tags(img: np.ndarray, matrix: np.ndarray, ids: list[str], top_k: int, scale: float,
             min_score: float) -> list[list[dict]]:
    """Per image, the best `top_k` concepts by probability, dropping those under `min_score`."""
    logits = scale * (img @ matrix.T)  # (N, C)
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    best = np.argsort(-prob, axis=1)[:, :top_k]
    return [[{"concept": ids[j], "score": float(prob[i, j])} for j in row if prob[i, j] >= min_score]
            for i, row in enumerate(best)]


@dataclass(frozen=True)
class ConceptSignal:
    """`tags` from `img_emb` and the vocabularies; needs a model with a text tower (not descriptor-v1)."""

    model: str
    vocabularies: tuple[str, ...] = ("default",)
    top_k: int = 5
    scale: float = 100.0  # CLIP's logit scale: cosines differ by hundredths between concepts
    min_score: float = 0.0
    device: str = "auto"

    name: ClassVar[str] = "concepts"
    requires: ClassVar[tuple[str, ...]] = ("img_emb", "emb_model")
    columns: ClassVar[dict[str, pa.DataType]] = {"tags": pa.list_(TAG)}

    def load(self) -> None:
        from curation.signals.embed import get_embedder

        embedder = get_embedder(self.model, self.device)
        if not embedder.has_text:
            raise ValueError(f"concept tags need a model with a text tower; {self.model} has none "
                             f"(set stage2.concepts.enabled: false, or give stage2.embed.model a CLIP model)")
        concepts = load_vocabulary(self.vocabularies)
        object.__setattr__(self, "_ids", [c.id for c in concepts])
        object.__setattr__(self, "_matrix", concept_matrix(embedder, concepts))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = pd.Series([None] * len(batch), index=batch.index, dtype=object)
        pos, img = codec.embedded_rows(batch, self.model)
        if pos:
            tags = top_tags(img, self._matrix, self._ids, self.top_k, self.scale, self.min_score)
            for n, t in zip(pos, tags):
                out.iat[n] = t
        return pd.DataFrame({"tags": out})
