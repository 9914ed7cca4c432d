"""Decode checks and header facts of every image: size, format, mode, EXIF orientation, frames, hash.

This is where hostile bytes become error rows: empty files, non-images, truncated data and
decompression bombs are recognised here and named, so no later stage ever sees them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pyarrow as pa

from curation.config import DEFAULT_MAX_PIXELS

# EXIF orientations 5-8 rotate by 90 degrees: the displayed width is the stored height.
_TRANSPOSED = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    max_pixels: int = DEFAULT_MAX_PIXELS
    verify: str = "decode"  # "decode": a reduced decode catches truncated data; "header": headers only

    name: ClassVar[str] = "image_header"
    requires: ClassVar[tuple[str, ...]] = ("image",)
    columns: ClassVar[dict[str, pa.DataType]] = {
        "content_hash": pa.string(), "bytes_len": pa.int64(), "width": pa.int32(), "height": pa.int32(),
        "format": pa.string(), "mode": pa.string(), "exif_orientation": pa.int16(), "n_frames": pa.int32(),
        "error": pa.string(), "error_kind": pa.string(),
    }

    def load(self) -> None:
        import PIL.Image  # noqa: F401  (the import is the only heavy part)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([self.probe(b) for b in batch["image"]], index=batch.index,
                            columns=list(self.columns))

    def probe(self, data: bytes) -> dict:
        from PIL import UnidentifiedImageError

        from curation.signals.pillow import open_unlimited

        out = {"bytes_len": len(data), "content_hash": hashlib.sha256(data).hexdigest()}
        if not data:
            return {**out, "error": "file is empty (0 bytes)", "error_kind": "empty_file"}
        try:
            img = open_unlimited(data)  # the pixel limit checked below is ours (ingest.max_pixels)
        except UnidentifiedImageError:
            return {**out, "error": f"not an image Pillow can read (starts with {data[:8].hex()})",
                    "error_kind": "not_an_image"}
        except Exception as e:  # broken headers raise anything from SyntaxError to struct.error
            return {**out, "error": f"broken image header: {type(e).__name__}: {e}", "error_kind": "decode_error"}
        w, h = img.size
        out.update(format=img.format, mode=img.mode, n_frames=int(getattr(img, "n_frames", 1) or 1))
        if w * h > self.max_pixels:
            return {**out, "width": w, "height": h, "error_kind": "decompression_bomb",
                    "error": f"image is {w}x{h} = {w * h / 1e6:.0f}M pixels, above the limit of "
                             f"{self.max_pixels / 1e6:.0f}M (ingest.max_pixels)"}
        orientation = self._orientation(img)
        if self.verify == "decode":
            problem = self._decode(img)
            if problem:
                return {**out, "width": w, "height": h, **problem}
        if orientation in _TRANSPOSED:
            w, h = h, w
        return {**out, "width": w, "height": h, "exif_orientation": orientation}

    @staticmethod
    def _orientation(img) -> int | None:
        try:
            value = img.getexif().get(_EXIF_ORIENTATION)
        except Exception:  # a broken EXIF block is not worth losing the image for
            return None
        return int(value) if isinstance(value, int) and 1 <= value <= 8 else None

    @staticmethod
    def _decode(img) -> dict | None:
        """Decode the first frame, at 1/8 scale where the format allows it (JPEG), to find broken data."""
        try:
            if img.format == "JPEG":
                img.draft(img.mode, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
            img.load()
        except OSError as e:
            kind = "truncated" if "truncated" in str(e) or "broken data stream" in str(e) else "decode_error"
            return {"error": f"image data is broken: {e}", "error_kind": kind}
        except Exception as e:
            return {"error": f"image data is broken: {type(e).__name__}: {e}", "error_kind": "decode_error"}
        return None
