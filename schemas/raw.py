"""The raw table: one row per input record. Pixels live here and nowhere else."""

import pyarrow as pa

from schemas.common import ERROR, IDENTITY, WARNINGS

RAW = pa.schema(
    IDENTITY
    + [
        pa.field("content_hash", pa.string(), metadata={"doc": "sha256 of the image bytes, hex"}),
        pa.field("bytes_len", pa.int64(), metadata={"doc": "size of the image bytes"}),
        pa.field("width", pa.int32(), metadata={"doc": "displayed width (after EXIF orientation)"}),
        pa.field("height", pa.int32(), metadata={"doc": "displayed height (after EXIF orientation)"}),
        pa.field("format", pa.string(), metadata={"doc": "decoder's format name: JPEG, PNG, WEBP, GIF, ..."}),
        pa.field("mode", pa.string(), metadata={"doc": "Pillow mode as stored: RGB, CMYK, P, I;16, ..."}),
        pa.field("exif_orientation", pa.int16(), metadata={"doc": "EXIF orientation tag 1-8; null when absent"}),
        pa.field("n_frames", pa.int32(), metadata={"doc": "frames in the file; > 1 for animations"}),
        pa.field("alt_text", pa.string(), metadata={"doc": "caption that came with the record"}),
        pa.field("alt_lang", pa.string(), metadata={"doc": "language of alt_text: zh, en or other; null when empty"}),
        pa.field("image", pa.binary(), metadata={"doc": "the image bytes as read"}),
        WARNINGS,
    ]
    + ERROR
)
