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
        # stage3.embed_captions: the kept caption through stage 2's embedding model
        pa.field("txt_emb", pa.binary(), metadata={"doc": "L2-normalised text embedding of the kept caption, float16 little-endian; null unless stage3.embed_captions"}),
        pa.field("emb_model", pa.string(), metadata={"doc": "model that made txt_emb: stage 2's embedding model (its manifest), so it matches the row's img_emb"}),
        pa.field("clip_score", pa.float32(), metadata={"doc": "cosine of txt_emb and the row's stage-2 img_emb, -1..1; null without both"}),
    ]
)
