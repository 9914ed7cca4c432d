"""The structure signal's second opinion: the CNN's probabilities joined with where OCR found text.

Runs after `StructureSignal` and `OcrSignal` on the same decoded image (they leave their raw outputs in
`Decoded.cache`), computes `structure_features.image_features` (the CNN on the whole image and on its
four tiles, OCR geometry, repetition, stroke/background pixel statistics, the watermark map of
`watermark_map.py` over the image and inside OCR's lines, and the line head's best score among OCR's lines:
boosted trees over `structure_features.line_features` that say whether one line lies on a mark) and replaces
the heads the
head file holds (of `s_watermark`, `s_logo`, `s_text_overlay`) with the probabilities of boosted trees
trained on generated data by `detector_factory/train_structure_fusion.py` (weights/STRUCTURE_FUSION_CARD.md);
the shipped file fuses `s_watermark` and `s_text_overlay`, not `s_logo` (why: the card). `s_detector` then names both models. The
head was trained on the shipped CNN's outputs, so it refuses any other detector.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.signals.boosted_trees import BoostedTrees
from curation.signals.structure import COLUMNS, DEFAULT_NAME, HEADS, StructureSignal
from curation.signals.structure_features import IMAGE_FEATURES, LINE_FEATURES, image_features, line_features, tiles
from curation.signals.watermark_map import DEFAULT_NAME as MAP_NAME
from curation.signals.watermark_map import WatermarkMap

FUSION_NAME = "structure_fusion_v7"
RETRAIN = "retrain it with detector_factory/train_structure_fusion.py"


def default_fusion_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / f"{FUSION_NAME}.npz"


def line_head_path(fusion_path: Path) -> Path:
    """`<head>.lines.npz` beside `<head>.npz`: the two are trained together, one is useless without the other."""
    return fusion_path.with_name(fusion_path.stem + ".lines.npz")


def _read_trees(path: Path, what: str) -> BoostedTrees:
    """Boosted trees from an .npz that `boosted_trees.export_hgb` wrote; anything else is refused with what to do
    (numpy's own error on a stray file suggests loading it with pickle, which must not be done)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return BoostedTrees(z)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{what} {path} is not a boosted-trees file that sluice wrote ({type(e).__name__}); "
                         f"{RETRAIN}") from None


def load_line_head(path: Path) -> BoostedTrees:
    if not path.is_file():
        raise FileNotFoundError(f"the structure fusion head's line head is not found: {path} (it ships beside "
                                f"the fusion head); {RETRAIN}, or set stage1.signals.structure.fusion to false")
    head = _read_trees(path, "line head")
    if head.features != LINE_FEATURES or len(head.heads) != 1:
        raise ValueError(f"line head {path} was trained on other features than this version of sluice computes; "
                         f"{RETRAIN}")
    return head


def load_fusion(path: Path) -> BoostedTrees:
    if not path.is_file():
        raise FileNotFoundError(f"structure fusion head not found: {path}; set stage1.signals.structure.fusion "
                                "to false, or retrain it with detector_factory/train_structure_fusion.py")
    head = _read_trees(path, "structure fusion head")
    if head.features != IMAGE_FEATURES or not set(head.heads) <= set(HEADS):
        raise ValueError(f"structure fusion head {path} was trained on other features or heads than this "
                         f"version of sluice computes; {RETRAIN}")
    return head


def fusion_features(structure: StructureSignal, mark_map: WatermarkMap, line_head: BoostedTrees | None, image, cnn,
                    lines) -> tuple[np.ndarray, np.ndarray]:
    """(the fusion head's input, the line head's input) for one analysed image, given the CNN's probabilities
    on it and the OCR engine's raw lines. With `line_head` None the line scores are left at zero: training
    (detector_factory/train_structure_fusion.py) fills them in from out-of-fold predictions."""
    grid = mark_map.probabilities(image)
    rows = line_features(image, cnn, lines, grid)
    scores = line_head.predict(rows)[:, 0] if line_head is not None and len(rows) else np.zeros(len(rows))
    return image_features(image, cnn, structure.probabilities(tiles(image)), lines, grid, rows, scores), rows


@dataclass(frozen=True)
class StructureFusionSignal:
    """Fused s_watermark, s_logo, s_text_overlay; must come after the structure and OCR signals."""

    structure: StructureSignal
    path: str | None = None  # None = the shipped head (FUSION_NAME.npz)

    name: ClassVar[str] = "structure_fusion"
    columns: ClassVar[dict[str, pa.DataType]] = dict(StructureSignal.columns)

    def load(self) -> None:
        if getattr(self, "_head", None) is not None:
            return
        self.structure.load()
        fusion_path = Path(self.path).expanduser() if self.path else default_fusion_path()
        head = load_fusion(fusion_path)
        trained_on = head.meta.get("detector", DEFAULT_NAME)
        if self.structure.detector_name != trained_on:
            raise ValueError(f"the structure fusion head was trained on the outputs of {trained_on}, not "
                             f"{self.structure.detector_name}; set stage1.signals.structure.fusion: false for a "
                             "detector of your own (or retrain the head on it)")
        if head.meta.get("map", MAP_NAME) != MAP_NAME:
            raise ValueError(f"the structure fusion head was trained with the watermark map {head.meta['map']}, "
                             f"this version of sluice ships {MAP_NAME}; {RETRAIN}")
        object.__setattr__(self, "_lines", load_line_head(line_head_path(fusion_path)))
        object.__setattr__(self, "_map", WatermarkMap(threads=self.structure.threads))
        object.__setattr__(self, "_head", head)  # frozen dataclass: the models are not config

    def score_image(self, img) -> dict:
        if "ocr_lines" not in img.cache or "structure_probs" not in img.cache:
            raise RuntimeError("StructureFusionSignal needs the structure and OCR signals to run first on "
                               "the same image (stage1.signals.structure and .ocr enabled)")
        x, _ = fusion_features(self.structure, self._map, self._lines, img.image, img.cache["structure_probs"],
                               img.cache["ocr_lines"])
        fused = dict(zip(self._head.heads, self._head.predict(x[None, :])[0]))
        cnn = dict(zip(HEADS, img.cache["structure_probs"]))
        # a head the file leaves out keeps the CNN's value (the shipped head leaves out logo)
        return ({col: float(fused.get(head, cnn[head])) for col, head in COLUMNS.items()}
                | {"s_detector": f"{self.structure.detector_name}+{FUSION_NAME}"})
