"""The structure signal's second opinion: the CNN's probabilities joined with where OCR found text.

Runs after `StructureSignal` and `OcrSignal` on the same decoded image (they leave their raw outputs in
`Decoded.cache`), computes `structure_features.image_features` (the CNN on the whole image and on its
four tiles, OCR geometry, repetition, stroke/background pixel statistics, and the watermark map of
`watermark_map.py` over the image and inside OCR's lines) and replaces the heads the
head file holds (of `s_watermark`, `s_logo`, `s_text_overlay`) with the probabilities of boosted trees
trained on generated data by `tools/scripts/train_structure_fusion.py` (weights/STRUCTURE_FUSION_CARD.md);
the shipped file fuses `s_watermark` and `s_text_overlay`, not `s_logo` (why: the card). `s_detector` then names both models. The
head was trained on the shipped CNN's outputs, so it refuses any other detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.signals.boosted_trees import BoostedTrees
from curation.signals.structure import COLUMNS, DEFAULT_NAME, HEADS, StructureSignal
from curation.signals.structure_features import IMAGE_FEATURES, image_features, tiles
from curation.signals.watermark_map import DEFAULT_NAME as MAP_NAME
from curation.signals.watermark_map import WatermarkMap

FUSION_NAME = "structure_fusion_v3"


def default_fusion_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / f"{FUSION_NAME}.npz"


def load_fusion(path: Path) -> BoostedTrees:
    if not path.is_file():
        raise FileNotFoundError(f"structure fusion head not found: {path}; set stage1.signals.structure.fusion "
                                "to false, or retrain it with tools/scripts/train_structure_fusion.py")
    with np.load(path, allow_pickle=False) as z:
        head = BoostedTrees(z)
    if head.features != IMAGE_FEATURES or not set(head.heads) <= set(HEADS):
        raise ValueError(f"structure fusion head {path} was trained on other features or heads than this "
                         "version of sluice computes; retrain it with tools/scripts/train_structure_fusion.py")
    return head


def fusion_features(structure: StructureSignal, mark_map: WatermarkMap, image, cnn, lines) -> np.ndarray:
    """The head's input for one analysed image, given the CNN's probabilities on it and the OCR engine's
    raw lines; training (tools/scripts/train_structure_fusion.py) and scoring both call this."""
    return image_features(image, cnn, structure.probabilities(tiles(image)), lines, mark_map.probabilities(image))


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
        head = load_fusion(Path(self.path).expanduser() if self.path else default_fusion_path())
        trained_on = head.meta.get("detector", DEFAULT_NAME)
        if self.structure.detector_name != trained_on:
            raise ValueError(f"the structure fusion head was trained on the outputs of {trained_on}, not "
                             f"{self.structure.detector_name}; set stage1.signals.structure.fusion: false for a "
                             "detector of your own (or retrain the head on it)")
        if head.meta.get("map", MAP_NAME) != MAP_NAME:
            raise ValueError(f"the structure fusion head was trained with the watermark map {head.meta['map']}, "
                             f"this version of sluice ships {MAP_NAME}; retrain the head with "
                             "tools/scripts/train_structure_fusion.py")
        object.__setattr__(self, "_map", WatermarkMap(threads=self.structure.threads))
        object.__setattr__(self, "_head", head)  # frozen dataclass: the models are not config

    def score_image(self, img) -> dict:
        if "ocr_lines" not in img.cache or "structure_probs" not in img.cache:
            raise RuntimeError("StructureFusionSignal needs the structure and OCR signals to run first on "
                               "the same image (stage1.signals.structure and .ocr enabled)")
        x = fusion_features(self.structure, self._map, img.image, img.cache["structure_probs"], img.cache["ocr_lines"])
        fused = dict(zip(self._head.heads, self._head.predict(x[None, :])[0]))
        cnn = dict(zip(HEADS, img.cache["structure_probs"]))
        # a head the file leaves out keeps the CNN's value (the shipped head leaves out logo)
        return ({col: float(fused.get(head, cnn[head])) for col, head in COLUMNS.items()}
                | {"s_detector": f"{self.structure.detector_name}+{FUSION_NAME}"})
