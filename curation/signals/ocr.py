"""OCR: text boxes, text, language and text area of an image, from a local OCR engine.

The default engine is rapidocr 3 on onnxruntime, whose PP-OCRv6 detection and recognition models ship
inside its wheel, so it runs offline. Detection runs on the image scaled to at most `det_max_side`;
recognition runs only on the detected boxes. paddleocr is an optional backend that needs model
directories from the user (it cannot fetch models offline).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from schemas.stage1 import OCR

log = logging.getLogger(__name__)

BACKENDS = ("rapidocr", "paddleocr")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u1100-\u11ff\uac00-\ud7af]")
MIXED_MIN_FRAC = 0.25  # each of Han and Latin must be at least this share of the letters for "mixed"
HAN_WEIGHT = 2
SHORT_LINE_CHARS = 2  # lines this short must pass `short_min_conf` as well

# (quad (4, 2) in pixels of the analysed image, text, confidence)
Line = tuple[np.ndarray, str, float]


def text_language(text: str | None) -> str | None:
    """zh, en, mixed or other, from the shares of Han and Latin letters; None for no text.

    A Han character counts as HAN_WEIGHT letters: it carries about as much text as two or three Latin
    letters, so "书店 Bookstore" is mixed rather than English with noise.
    """
    if not text or not text.strip():
        return None
    letters = sum(1 for c in text if c.isalpha())
    if not letters:
        return "other"  # digits and symbols only
    if len(_KANA_HANGUL.findall(text)) / letters >= 0.1:
        return "other"  # Japanese or Korean (which may use Han characters too)
    han = len(_HAN.findall(text))
    latin = len(_LATIN.findall(text))
    total = letters + (HAN_WEIGHT - 1) * han
    han_share, latin_share = HAN_WEIGHT * han / total, latin / total
    if han_share + latin_share < 0.5:
        return "other"
    if han_share >= MIXED_MIN_FRAC and latin_share >= MIXED_MIN_FRAC:
        return "mixed"
    return "zh" if han_share > latin_share else "en"


def reading_order(boxes: np.ndarray) -> list[int]:
    """Indices of axis-aligned boxes (N, 4: x0 y0 x1 y1) top-to-bottom, then left-to-right within a row.

    A box belongs to the current row when its vertical centre lies inside the row's first box.
    """
    if len(boxes) == 0:
        return []
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    rows: list[list[int]] = []
    row_y0 = row_y1 = 0.0
    for i in np.argsort(cy, kind="stable"):
        if rows and row_y0 <= cy[i] <= row_y1:
            rows[-1].append(int(i))
        else:
            rows.append([int(i)])
            row_y0, row_y1 = boxes[i, 1], boxes[i, 3]
    return [i for row in rows for i in sorted(row, key=lambda j: (boxes[j, 0], boxes[j, 1]))]


def union_area(boxes: np.ndarray) -> float:
    """Exact area of the union of axis-aligned boxes (N, 4: x0 y0 x1 y1), by coordinate compression."""
    if len(boxes) == 0:
        return 0.0
    xs, ys = np.unique(boxes[:, [0, 2]]), np.unique(boxes[:, [1, 3]])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)  # (cells in y, cells in x)
    for x0, y0, x1, y1 in boxes:
        i0, i1 = np.searchsorted(ys, [y0, y1])
        j0, j1 = np.searchsorted(xs, [x0, x1])
        covered[i0:i1, j0:j1] = True
    return float((np.diff(ys)[:, None] * np.diff(xs)[None, :])[covered].sum())


def _model_path(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"OCR {what} not found at {p}; give an existing local path "
                                f"(nothing is downloaded at run time) or leave it unset for the shipped model")
    return str(p)


@dataclass(frozen=True)
class RapidOcrBackend:
    """rapidocr 3 with its shipped PP-OCRv6 models, or local ONNX files given by path."""

    det_max_side: int = 960
    min_conf: float = 0.5
    det_model: str | None = None
    rec_model: str | None = None
    cls_model: str | None = None
    use_cls: bool = False
    threads: int = 1

    def load(self) -> None:
        from plumbing.deps import require

        rapidocr = require("rapidocr", "ocr")
        require("onnxruntime", "ocr")
        params = {
            "Global.log_level": "error",  # "no text found" is a warning there, and it is our common case
            "Global.use_cls": self.use_cls,
            "Global.text_score": self.min_conf,
            # Images reach us already at <= 1024 px; rapidocr's own pre-resize must not touch them.
            "Global.max_side_len": 4096,
            # "max" caps the long side; rapidocr's default ("min", 736) *upscales* the short side, which
            # makes a 1024x200 banner a 3768x736 detection input.
            "Det.limit_type": "max",
            "Det.limit_side_len": self.det_max_side,
            # rapidocr ignores a count above the CPU count and then uses every core; clamp instead.
            "EngineConfig.onnxruntime.intra_op_num_threads": min(self.threads, os.cpu_count() or 1),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        for key, path, what in (("Det", self.det_model, "detection model"),
                                ("Rec", self.rec_model, "recognition model"),
                                ("Cls", self.cls_model, "orientation classifier model")):
            if (p := _model_path(path, what)) is not None:
                params[f"{key}.model_path"] = p
        engine = rapidocr.RapidOCR(params=params)
        log.debug("rapidocr %s loaded: %s", getattr(rapidocr, "__version__", "?"), params)
        object.__setattr__(self, "_engine", engine)  # frozen dataclass: the engine is not config

    def __call__(self, rgb: np.ndarray) -> list[Line]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # rapidocr takes arrays as BGR (OpenCV order)
        out = self._engine(bgr)
        if out.boxes is None or out.txts is None or len(out.boxes) == 0:
            return []
        return [(np.asarray(b, dtype=np.float32), t, float(s)) for b, t, s in zip(out.boxes, out.txts, out.scores)]


PADDLE_HINT = (
    "The paddleocr OCR backend needs paddleocr and paddlepaddle, which are not part of any sluice extra "
    "(they are large and pin numpy): pip install paddleocr paddlepaddle. It also needs model directories, "
    "since it cannot download offline: each a Paddle inference export (inference.yml, inference.json, "
    "inference.pdiparams), e.g. PP-OCRv5_mobile_det and PP-OCRv5_mobile_rec from "
    "https://www.paddleocr.ai (model list) or huggingface.co/PaddlePaddle; pass them as "
    "det_model/rec_model. Or use backend='rapidocr', whose models ship with pip install 'sluice[ocr]'."
)


@dataclass(frozen=True)
class PaddleOcrBackend:
    """paddleocr 3.x on user-given model directories (Paddle inference exports)."""

    det_model_dir: str | None = None
    rec_model_dir: str | None = None
    det_max_side: int = 960
    min_conf: float = 0.5
    use_cls: bool = False
    threads: int = 1

    def load(self) -> None:
        try:
            import paddleocr
        except ImportError as e:
            raise ImportError(f"paddleocr is not installed ({e}). {PADDLE_HINT}") from None
        if not self.det_model_dir or not self.rec_model_dir:
            raise ValueError(f"backend='paddleocr' needs det_model and rec_model directories. {PADDLE_HINT}")
        det = Path(_model_path(self.det_model_dir, "detection model directory"))
        rec = Path(_model_path(self.rec_model_dir, "recognition model directory"))
        for d in (det, rec):
            if not (d / "inference.yml").is_file():
                raise FileNotFoundError(f"{d} holds no inference.yml, so it is not a Paddle inference export. "
                                        f"{PADDLE_HINT}")
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")  # no network probes
        engine = paddleocr.PaddleOCR(
            text_detection_model_name=_paddle_model_name(det), text_detection_model_dir=str(det),
            text_recognition_model_name=_paddle_model_name(rec), text_recognition_model_dir=str(rec),
            use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=self.use_cls,
            text_det_limit_side_len=self.det_max_side, text_det_limit_type="max",
            text_rec_score_thresh=self.min_conf, cpu_threads=self.threads,
        )
        object.__setattr__(self, "_engine", engine)

    def __call__(self, rgb: np.ndarray) -> list[Line]:
        lines: list[Line] = []
        for res in self._engine.predict(np.ascontiguousarray(rgb[:, :, ::-1])):
            for poly, text, score in zip(res["rec_polys"], res["rec_texts"], res["rec_scores"]):
                if text and text.strip():
                    lines.append((np.asarray(poly, dtype=np.float32).reshape(-1, 2), text, float(score)))
        return lines


def _paddle_model_name(model_dir: Path) -> str | None:
    """The model name an inference export records (`Global.model_name` in inference.yml), if any."""
    m = re.search(r"^\s*model_name:\s*(\S+)", (model_dir / "inference.yml").read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else None


@dataclass(frozen=True)
class OcrSignal:
    """OCR columns (`schemas.stage1.OCR`) for one decoded image; lines below `min_conf` are dropped.

    `det_model`/`rec_model`/`cls_model` are local ONNX files for rapidocr, or model directories for
    paddleocr (`cls_model` is not used there). Nothing is downloaded.

    `short_min_conf`: the recogniser reads round shapes in photos (a cup, an eye, coins, the moon) as a
    lone "0", "O" or "8" with confidence 0.5-0.8, so lines of one or two characters must reach this
    higher bar; real short signs ("出口", "OPEN") read at >= 0.95.
    """

    backend: str = "rapidocr"
    det_max_side: int = 960
    min_conf: float = 0.5
    short_min_conf: float = 0.85
    det_model: str | None = None
    rec_model: str | None = None
    cls_model: str | None = None
    use_cls: bool = False
    threads: int = 1

    name: ClassVar[str] = "ocr"
    columns: ClassVar[dict[str, pa.DataType]] = {f.name: f.type for f in OCR}

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown OCR backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not 32 <= self.det_max_side <= 4096:
            raise ValueError(f"det_max_side={self.det_max_side} is out of range; use 32..4096 (e.g. 960)")
        for key in ("min_conf", "short_min_conf"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key}={getattr(self, key)} must lie in 0..1")
        if self.threads < 1:
            raise ValueError(f"threads={self.threads} must be >= 1")

    def engine(self) -> RapidOcrBackend | PaddleOcrBackend:
        if self.backend == "paddleocr":
            return PaddleOcrBackend(det_model_dir=self.det_model, rec_model_dir=self.rec_model,
                                    det_max_side=self.det_max_side, min_conf=self.min_conf,
                                    use_cls=self.use_cls, threads=self.threads)
        return RapidOcrBackend(det_max_side=self.det_max_side, min_conf=self.min_conf, det_model=self.det_model,
                               rec_model=self.rec_model, cls_model=self.cls_model, use_cls=self.use_cls,
                               threads=self.threads)

    def load(self) -> None:
        engine = self.engine()
        engine.load()
        object.__setattr__(self, "_engine", engine)  # frozen dataclass: the engine is not config

    def score_image(self, img) -> dict:
        engine = getattr(self, "_engine", None)
        if engine is None:
            raise RuntimeError("OcrSignal.load() must run before score_image() (once per worker)")
        image = img.image if img.image.mode == "RGB" else img.image.convert("RGB")
        rgb = np.asarray(image)  # (H, W, 3) uint8
        lines = engine(rgb)
        img.cache["ocr_lines"] = lines  # unfiltered, for the structure fusion head (structure_fusion.py)
        return self.columns_for(lines, width=rgb.shape[1], height=rgb.shape[0])

    def _keep(self, text: str, conf: float) -> bool:
        n = len("".join(text.split()))
        return n > 0 and conf >= self.min_conf and (n > SHORT_LINE_CHARS or conf >= self.short_min_conf)

    def columns_for(self, lines: list[Line], width: int, height: int) -> dict:
        """The OCR columns for recognised lines (pixel quads on a width x height image)."""
        lines = [(q, t.strip(), c) for q, t, c in lines if self._keep(t, c)]
        if not lines:
            return {"ocr_boxes": [], "ocr_text": None, "ocr_conf": None, "ocr_lang": None,
                    "ocr_area_frac": 0.0, "ocr_n_chars": 0, "ocr_n_lines": 0}
        quads = np.stack([q for q, _, _ in lines])  # (N, 4, 2) x, y in pixels
        size = np.array([width, height], dtype=np.float64)
        lo = np.clip(quads.min(axis=1) / size, 0.0, 1.0)  # (N, 2)
        hi = np.clip(quads.max(axis=1) / size, 0.0, 1.0)
        boxes = np.concatenate([lo, hi], axis=1)  # (N, 4) x0 y0 x1 y1 as fractions
        order = reading_order(boxes)
        texts = [lines[i][1] for i in order]
        text = "\n".join(texts)
        return {
            "ocr_boxes": [{"x0": float(boxes[i, 0]), "y0": float(boxes[i, 1]), "x1": float(boxes[i, 2]),
                           "y1": float(boxes[i, 3]), "text": lines[i][1], "conf": float(lines[i][2])}
                          for i in order],
            "ocr_text": text,
            "ocr_conf": float(np.mean([c for _, _, c in lines])),
            "ocr_lang": text_language(text),
            "ocr_area_frac": min(union_area(boxes), 1.0),
            "ocr_n_chars": sum(len("".join(t.split())) for t in texts),
            "ocr_n_lines": len(texts),
        }
