"""Watermark, logo and text-overlay probabilities from a small detector Sluice trains itself.

No published model for these works offline or reads Chinese, so the default is `structure_v1.onnx`,
shipped beside this module and trained by `detector_factory/train_structure_detector.py` on images made by
`detector_factory/structure_data.py` (see weights/STRUCTURE_MODEL_CARD.md). A user may bring their own:

* `model="path/to/detector.onnx"`: same contract as the shipped one (input "image", N x 3 x S x S float32
  RGB in [0, 1], squashed to S x S with area averaging; output "probs", N x 3 sigmoid probabilities in the
  order of `HEADS`);
* `model="timm:<arch>@<checkpoint>"` or `model="timm:hf-hub:<org>/<name>"`: a timm classifier with three
  outputs in the order of `HEADS` (sigmoid is applied here); needs the `train` extra (torch, timm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.signals.analysis import Decoded

log = logging.getLogger(__name__)

HEADS = ("watermark", "logo", "text_overlay")
COLUMNS = {"s_watermark": "watermark", "s_logo": "logo", "s_text_overlay": "text_overlay"}
DEFAULT_NAME = "structure_v1"
INPUT_SIZE = 256


def default_model_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / f"{DEFAULT_NAME}.onnx"


def to_input(image, size: int = INPUT_SIZE) -> np.ndarray:
    """(3, size, size) float32 RGB in [0, 1]: the whole image squashed with area averaging.

    Squashing, not letterboxing, keeps every pixel (small corner marks are what matter); the detector
    was trained on exactly this, so training and scoring both call this function.
    """
    from PIL import Image

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = rgb.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).transpose(2, 0, 1) * (1.0 / 255.0)


class _OnnxDetector:
    def __init__(self, path: Path, threads: int, input_size: int | None):
        from plumbing.deps import require

        ort = require("onnxruntime", extra="ocr")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape
        if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3 or len(outputs) != 1:
            raise ValueError(f"structure model {path}: expected one input (N, 3, S, S) and one output (N, 3); "
                             f"got inputs {[(i.name, i.shape) for i in inputs]}, "
                             f"outputs {[(o.name, o.shape) for o in outputs]}")
        fixed = shape[2] if isinstance(shape[2], int) else None
        self.size = input_size or fixed or INPUT_SIZE
        self.input_name = inputs[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        heads = tuple(meta.get("heads", ",".join(HEADS)).split(","))
        if sorted(heads) != sorted(HEADS):
            raise ValueError(f"structure model {path} has heads {heads}; expected {HEADS}")
        self.order = [heads.index(h) for h in HEADS]
        self.name = meta.get("detector") or f"onnx:{path.stem}"

    def preprocess(self, image) -> np.ndarray:
        return to_input(image, self.size)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        probs = self.session.run(None, {self.input_name: batch})[0]
        return np.asarray(probs, dtype=np.float32)[:, self.order]


class _TimmDetector:
    """A user's timm classifier with three sigmoid outputs; loaded lazily, never downloaded in tests."""

    def __init__(self, spec: str, threads: int, input_size: int | None):
        from plumbing.deps import require

        torch = require("torch", extra="train")
        timm = require("timm", extra="train")
        torch.set_num_threads(threads)
        if spec.startswith("hf-hub:"):
            model = timm.create_model(spec, pretrained=True, num_classes=len(HEADS))
        else:
            arch, sep, ckpt = spec.partition("@")
            if not sep or not arch:
                raise ValueError(f"timm structure model {spec!r}: write timm:<arch>@<checkpoint path> "
                                 "(e.g. timm:mobilenetv3_small_100@/models/structure.pth) or timm:hf-hub:<org/name>")
            if not Path(ckpt).is_file():
                raise FileNotFoundError(f"timm checkpoint not found: {ckpt}")
            model = timm.create_model(arch, pretrained=False, num_classes=len(HEADS), checkpoint_path=ckpt)
        self.model = model.eval()
        cfg = timm.data.resolve_data_config({}, model=model)
        self.size = input_size or int(cfg["input_size"][-1])
        self.mean = np.asarray(cfg["mean"], np.float32)[:, None, None]
        self.std = np.asarray(cfg["std"], np.float32)[:, None, None]
        self.torch = torch
        self.name = f"timm:{spec}"

    def preprocess(self, image) -> np.ndarray:
        return (to_input(image, self.size) - self.mean) / self.std

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.torch.sigmoid(self.model(self.torch.from_numpy(batch))).numpy().astype(np.float32)


def load_detector(model: str | None = None, threads: int = 1, input_size: int | None = None):
    """The shipped detector (model None), a user ONNX file, or `timm:<arch>@<ckpt>` / `timm:hf-hub:<id>`."""
    if model and model.startswith("timm:"):
        return _TimmDetector(model.removeprefix("timm:"), threads, input_size)
    path = Path(model).expanduser() if model else default_model_path()
    if not path.is_file():
        hint = ("the shipped weights are missing from the install; reinstall sluice or retrain with "
                "detector_factory/train_structure_detector.py") if not model else (
                "set stage1.signals.structure.model to an existing .onnx file, timm:<arch>@<checkpoint>, "
                "or null for the shipped structure_v1")
        raise FileNotFoundError(f"structure detector not found: {path}; {hint}")
    detector = _OnnxDetector(path, threads, input_size)
    if not model:
        detector.name = DEFAULT_NAME
    return detector


@dataclass(frozen=True)
class StructureSignal:
    """s_watermark, s_logo, s_text_overlay (probabilities) and s_detector (which model gave them)."""

    model: str | None = None  # None = shipped structure_v1.onnx; a .onnx path; timm:<arch>@<ckpt>
    input_size: int | None = None  # None = the model's own (256 for structure_v1)
    threads: int = 1

    name: ClassVar[str] = "structure"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "s_watermark": pa.float32(), "s_logo": pa.float32(), "s_text_overlay": pa.float32(),
        "s_detector": pa.string(),
    }

    @property
    def decode_long_side(self) -> int:
        """Twice the detector input (256 -> 512): the squash to the input then averages 2x2 pixels or more."""
        return 2 * (self.input_size or 256)

    def load(self) -> None:
        if getattr(self, "_detector", None) is None:
            detector = load_detector(self.model, self.threads, self.input_size)
            object.__setattr__(self, "_detector", detector)  # frozen dataclass: the model is not config

    @property
    def detector_name(self) -> str:
        self.load()
        return self._detector.name

    def probabilities(self, images) -> np.ndarray:
        """(N, 3) probabilities in the order of HEADS for PIL images."""
        self.load()
        if not images:
            return np.zeros((0, len(HEADS)), np.float32)
        batch = np.stack([self._detector.preprocess(im) for im in images]).astype(np.float32, copy=False)
        return np.clip(self._detector(batch), 0.0, 1.0)

    def score_images(self, imgs: list[Decoded]) -> list[dict]:
        """Signal values for several decoded images in one model call (faster than one by one)."""
        probs = self.probabilities([img.image for img in imgs])
        for img, p in zip(imgs, probs):
            img.cache["structure_probs"] = p  # for the fusion head, which runs after OCR
        name = self._detector.name if imgs else None
        return [{col: float(p[HEADS.index(head)]) for col, head in COLUMNS.items()} | {"s_detector": name}
                for p in probs]

    def score_image(self, img: Decoded) -> dict:
        return self.score_images([img])[0]
