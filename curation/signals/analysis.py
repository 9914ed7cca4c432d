"""One reduced decode per image, shared by every pixel signal of a stage.

Stage 1 runs over everything, so its cost must track the work, not the file size: JPEGs are decoded
with DCT scaling (`draft`) straight to about the analysis size, and each signal (quality, structure,
OCR) works on that one decoded image instead of decoding again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import pandas as pd
import pyarrow as pa

ANALYSIS_LONG_SIDE = 1024  # the largest size any signal needs (OCR detection); others declare less


def needed_long_side(signals) -> int:
    """The decode size a set of signals needs: the largest `decode_long_side` among them.

    A signal that does not declare one gets ANALYSIS_LONG_SIDE. Without OCR every signal works at 512 or
    less, and a 1024x768 JPEG decoded with DCT scaling to 512 costs about a third less than a full decode.
    """
    return max((getattr(s, "decode_long_side", ANALYSIS_LONG_SIDE) for s in signals), default=ANALYSIS_LONG_SIDE)


@dataclass
class Decoded:
    """An image ready for analysis: RGB, long side <= ANALYSIS_LONG_SIDE, EXIF orientation applied."""

    image: object  # PIL.Image.Image, mode RGB
    width: int  # of the original image, as displayed
    height: int
    format: str | None
    jpeg_quant: dict | None = None  # Pillow's quantization tables, JPEG only
    cache: dict = field(default_factory=dict)  # derived arrays signals share (e.g. luma at 512)


class ImageSignal(Protocol):
    name: ClassVar[str]
    columns: ClassVar[dict[str, pa.DataType]]

    def load(self) -> None: ...

    def score_image(self, img: Decoded) -> dict:
        """Signal values for one decoded image (keys: a subset of `columns`)."""


def decode_for_analysis(data: bytes, long_side: int = ANALYSIS_LONG_SIDE) -> Decoded:
    from PIL import ImageOps

    from curation.signals.pillow import open_unlimited

    img = open_unlimited(data)  # ingest already refused bombs with its own limit; rows here passed it
    fmt, quant = img.format, getattr(img, "quantization", None)
    width, height = img.size
    if _orientation(img) in (5, 6, 7, 8):  # rotated by 90 degrees when displayed
        width, height = height, width
    if fmt == "JPEG":
        scale = max(width, height) / long_side
        if scale > 1:
            img.draft("RGB", (int(img.size[0] / scale), int(img.size[1] / scale)))  # DCT scaling, >= asked
    img = _to_rgb(ImageOps.exif_transpose(img))
    img.thumbnail((long_side, long_side))
    return Decoded(img, width, height, fmt, quant if fmt == "JPEG" else None)


def _orientation(img) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None


def _to_rgb(img):
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))  # what a viewer shows behind transparency
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        a = np.asarray(img, dtype=np.float32)
        hi = max(float(a.max()), 1.0)
        return Image.fromarray((a * (255.0 / (65535.0 if hi > 255 else 255.0))).clip(0, 255).astype("uint8")).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True)
class ImageSignals:
    """A scorer that decodes each image once and runs several pixel signals on it."""

    signals: tuple = ()

    name: ClassVar[str] = "image_signals"
    requires: ClassVar[tuple[str, ...]] = ("image",)

    @property
    def columns(self) -> dict[str, pa.DataType]:
        cols: dict[str, pa.DataType] = {}
        for s in self.signals:
            cols.update(s.columns)
        return {**cols, "error": pa.string(), "error_kind": pa.string()}

    def load(self) -> None:
        for s in self.signals:
            s.load()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        long_side = needed_long_side(self.signals)
        for data in batch["image"]:
            try:
                img = decode_for_analysis(data, long_side)
            except Exception as e:  # ingest checked the bytes; a failure here is still one row, not a crash
                rows.append({"error": f"cannot decode for analysis: {type(e).__name__}: {e}",
                             "error_kind": "decode_error"})
                continue
            row: dict = {}
            for s in self.signals:
                row.update(s.score_image(img))
            rows.append(row)
        return pd.DataFrame(rows, index=batch.index, columns=list(self.columns))
