"""Captions in long format: one row per (sample, style, language)."""

import pyarrow as pa

CAPTION_STYLES = ("alt", "short", "long", "text_in_image", "aesthetic", "imagination")
CAPTION_LANGS = ("zh", "en")

CAPTIONS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "sample id"}),
        pa.field("uri", pa.string(), metadata={"doc": "where the sample came from (from the raw table)"}),
        pa.field("style", pa.string(), nullable=False, metadata={"doc": "one of " + ", ".join(CAPTION_STYLES)}),
        pa.field("lang", pa.string(), nullable=False, metadata={"doc": "zh or en; und for an alt text in neither (a drop row)"}),
        pa.field("text", pa.string(), metadata={"doc": "the caption, cleaned; null when it failed"}),
        pa.field("model", pa.string(), metadata={"doc": "captioner model name or path"}),
        pa.field("prompt_version", pa.string(), metadata={"doc": "version of the prompt file used"}),
        pa.field("drop_reason", pa.string(), metadata={"doc": "caption check that failed; null when kept"}),
        pa.field("error", pa.string(), metadata={"doc": "why captioning failed (request error, ...)"}),
    ]
)
