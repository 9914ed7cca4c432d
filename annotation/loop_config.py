"""The validated settings of one active-learning loop, stored as `loop.json` in its folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from annotation.selection import STRATEGIES
from annotation.tasks import IMAGE_MODES
from annotation.templates import DEFAULT_POSITIVE, QUESTIONS

LOOP_FILE = "loop.json"


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str  # a stage-1/stage-2/pool table folder: ids, features (img_emb or q_/s_/ocr_ signals)
    raw: str | None = None  # where the image bytes are when the pool has no `image` column
    template: Literal["valuable", "structure", "aesthetic", "free_labels", "showcase"] = "valuable"
    lang: Literal["en", "zh"] = "en"
    labels: list[str] | None = None  # the choices of the free_labels template
    question: str | None = None  # the control the probe learns; default: the template's first
    positive: list[str] | None = None  # answers counted as the positive class; default: the first choice
    # (showcase: art, photography and design, against none)
    strategy: str = "hybrid"
    batch: int = 50
    eval_size: int = 50  # a random held-out set labelled in round 1, never trained on
    model: Literal["logreg", "gboost", "mlp"] = "logreg"
    features: Literal["auto", "embedding", "signals"] = "auto"
    seed: int = 0
    project: str = "sluice active learning"
    image_mode: str = "local"
    files_root: str | None = None  # the server's local-files document root (image_mode local)
    min_labelled: float = 1.0  # share of a round's tasks that must be labelled (or skipped) before training

    @model_validator(mode="after")
    def _check(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.image_mode not in IMAGE_MODES:
            raise ValueError(f"image_mode {self.image_mode!r} is not one of {', '.join(IMAGE_MODES)}")
        if self.image_mode == "local" and not self.files_root:
            raise ValueError("image_mode local needs files_root: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                             "(`sluice annotate server status` prints it), or use --image-mode inline")
        if self.batch < 1 or self.eval_size < 0 or not 0 < self.min_labelled <= 1:
            raise ValueError("batch must be >= 1, eval_size >= 0 and min_labelled in (0, 1]")
        if self.template == "free_labels" and not self.labels:
            raise ValueError("the free_labels template needs labels (--labels a,b,c)")
        q = self.primary_question()
        allowed = self.allowed(q)
        if not allowed:
            raise ValueError(f"question {q!r} of template {self.template} has no fixed choices to learn")
        bad = [p for p in self.positive_labels() if p not in allowed]
        if bad:
            raise ValueError(f"positive labels {bad} are not answers of {q!r}: {', '.join(allowed)}")
        return self

    def primary_question(self) -> str:
        questions = QUESTIONS[self.template]
        q = self.question or next(iter(questions))
        if q not in questions:
            raise ValueError(f"question {q!r} is not in template {self.template}: {', '.join(questions)}")
        return q

    def allowed(self, question: str) -> tuple[str, ...]:
        if self.template == "free_labels":
            return tuple(self.labels or ())
        return QUESTIONS[self.template][question] or ()

    def positive_labels(self) -> list[str]:
        if self.positive:
            return self.positive
        default = DEFAULT_POSITIVE.get(self.template)
        if default and self.question in (None, self.primary_question()):
            return list(default)
        return [self.allowed(self.primary_question())[0]]

    def negative_label(self) -> str | None:
        """The other answer of a two-choice question (what a negative pre-annotation says); else None."""
        rest = [a for a in self.allowed(self.primary_question()) if a not in self.positive_labels()]
        return rest[0] if len(rest) == 1 else None


def save(cfg: LoopConfig, loop_dir: Path) -> None:
    loop_dir.mkdir(parents=True, exist_ok=True)
    (loop_dir / LOOP_FILE).write_text(cfg.model_dump_json(indent=2))


def load(loop_dir: Path) -> LoopConfig:
    path = Path(loop_dir) / LOOP_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; create the loop with `sluice annotate init {loop_dir} "
                                f"--pool <table>`")
    return LoopConfig(**json.loads(path.read_text()))
