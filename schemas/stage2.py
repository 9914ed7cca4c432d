"""Signals of stage 2 (embeddings, alignment, aesthetics, dedup, concepts, clusters, tiers) and its table.

Stage 2 keeps the stage-1 signals beside its own, so that tier expressions, rules and the downsampler can
use both without a join. Embeddings are stored compactly: L2-normalised float16, little-endian bytes
(`curation/signals/embedding_codec.py`), with the model that made them in `emb_model`.
"""

import pyarrow as pa

from schemas.stage1 import STAGE1_SIGNALS
from schemas.stages import stage_schema

TAG = pa.struct([pa.field("concept", pa.string()), pa.field("score", pa.float32())])

EMBEDDING = [
    pa.field("content_hash", pa.string(), metadata={"doc": "sha256 of the image bytes (from raw), for exact dedup"}),
    pa.field("img_emb", pa.binary(), metadata={"doc": "L2-normalised image embedding, float16 little-endian"}),
    pa.field("txt_emb", pa.binary(), metadata={"doc": "L2-normalised alt-text embedding, float16 LE; null without text or text tower"}),
    pa.field("emb_model", pa.string(), metadata={"doc": "model that made img_emb/txt_emb, e.g. open_clip:ViT-B-32 or descriptor-v1 (weight-free)"}),
    pa.field("clip_score", pa.float32(), metadata={"doc": "cosine of img_emb and txt_emb, -1..1; null without both"}),
]

AESTHETIC = [
    pa.field("aesthetic", pa.float32(), metadata={"doc": "aesthetic score of the MLP head over img_emb, LAION scale 1..10"}),
    pa.field("aesthetic_tier", pa.string(), metadata={"doc": "professional, good, average or poor from aesthetic cut points"}),
]

CONCEPTS = [
    pa.field("tags", pa.list_(TAG), metadata={"doc": "top-k concepts of the vocabulary with their probability, best first"}),
]

# Perceptual hashes (curation/signals/phash.py), stored as signed int64: the bits are what matter.
PHASH = [
    pa.field("phash", pa.int64(), metadata={"doc": "64-bit DCT perceptual hash of the image"}),
    pa.field("phash_flip", pa.int64(), metadata={"doc": "pHash of the horizontally mirrored image"}),
]

DEDUP = [
    pa.field("dup_level", pa.string(), metadata={"doc": "exact, near or semantic: the dedup that grouped the row; null when unique"}),
    pa.field("dup_group", pa.string(), metadata={"doc": "id of the group's kept member; null when unique"}),
    pa.field("dup_of", pa.string(), metadata={"doc": "id of the row this one duplicates; null for the kept member and unique rows"}),
]

CLUSTER = [
    pa.field("cluster_path", pa.list_(pa.int32()), metadata={"doc": "cluster index per level of the hierarchy, coarse to fine"}),
    pa.field("tier", pa.string(), metadata={"doc": "quality tier (A, B, C by default) from the configured expressions"}),
]

STAGE2_SIGNALS = EMBEDDING + AESTHETIC + CONCEPTS + PHASH + DEDUP + CLUSTER
STAGE2 = stage_schema(STAGE1_SIGNALS + STAGE2_SIGNALS)
