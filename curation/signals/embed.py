"""Image and text embeddings (open_clip, CLIP-family models of transformers, or weight-free descriptors).

A model is named by a spec:
  descriptor-v1                       weight-free colour/texture/layout descriptor, no text tower
  open_clip:NAME[@PRETRAINED]         NAME: an open_clip model (ViT-B-32), a model-config .json path, or
                                      hf-hub:org/repo; PRETRAINED: a checkpoint path or open_clip tag
  hf:PATH_OR_HUB_ID                   transformers CLIPModel, ChineseCLIPModel or AltCLIPModel (bilingual)
Vectors are L2-normalised; the table stores them as float16 (`embedding_codec`) with `emb_model`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from curation.signals import embedding_codec as codec
from plumbing.deps import require

log = logging.getLogger(__name__)

# One model per (spec, device) per process: the embedding, aesthetic and concept scorers share it.
_MODELS: dict[tuple[str, str], object] = {}


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


class _TorchEmbedder:
    """Shared batching, device and precision for the torch backends."""

    has_text = True
    weight_free = False
    decode_side = 448  # >= 2x the usual 224 input: DCT-scaled decode, then the model's own resize/crop

    def __init__(self, name: str, device: str):
        self.name, self.wanted = name, device

    def _run(self, fn, *args):
        import torch

        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], enabled=self.device != "cpu"):
            return _normalise(fn(*args).float().cpu().numpy())


class OpenClipEmbedder(_TorchEmbedder):
    def __init__(self, name: str, device: str):
        super().__init__(name, device)
        arch = name.removeprefix("open_clip:")
        self.arch, _, self.pretrained = arch.partition("@")

    def load(self) -> None:
        require("torch", extra="embed")
        open_clip = require("open_clip", extra="embed")
        from pathlib import Path

        from curation.signals.gpu import pick_device

        arch = self.arch
        if arch.endswith(".json"):  # a user's model config: register it under its file stem
            open_clip.add_model_config(arch)
            arch = Path(arch).stem
        self.device = pick_device(self.wanted)
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=self.pretrained or None, device=self.device)
        if not self.pretrained and not arch.startswith("hf-hub:"):
            log.warning("open_clip model %s has no pretrained weights: its embeddings are random", arch)
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)

    def encode_images(self, images: list) -> np.ndarray:
        import torch

        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        return self._run(self.model.encode_image, x)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._run(self.model.encode_text, self.tokenizer(texts).to(self.device))


class HFClipEmbedder(_TorchEmbedder):
    """CLIPModel, ChineseCLIPModel, AltCLIPModel: any transformers model with get_{image,text}_features."""

    def load(self) -> None:
        require("torch", extra="embed")
        transformers = require("transformers", extra="embed")
        from curation.signals.gpu import pick_device

        path = self.name.removeprefix("hf:")
        self.device = pick_device(self.wanted)
        self.model = transformers.AutoModel.from_pretrained(path).eval().to(self.device)
        if not hasattr(self.model, "get_image_features"):
            raise ValueError(f"{path} is a {type(self.model).__name__}, not a CLIP-family model with image and text "
                             f"towers; use CLIP, Chinese-CLIP or AltCLIP weights")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.processor = transformers.AutoImageProcessor.from_pretrained(path)
        tc = getattr(self.model.config, "text_config", None)
        positions = getattr(tc, "max_position_embeddings", None)
        limits = [positions and positions - _position_offset(self.model),
                  getattr(self.tokenizer, "model_max_length", None)]
        self.max_len = min([n for n in limits if n and n < 100_000] or [77])

    @staticmethod
    def _features(out):
        # transformers 5 returns a model output whose pooler_output is the projected embedding
        return out if hasattr(out, "float") else out.pooler_output

    def encode_images(self, images: list) -> np.ndarray:
        px = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        return self._run(lambda p: self._features(self.model.get_image_features(pixel_values=p)), px)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return self._run(lambda e: self._features(self.model.get_text_features(**e)), enc)


def _position_offset(model) -> int:
    """Positions a RoBERTa-style text tower (AltCLIP's XLM-R) cannot use: it numbers tokens from
    pad_token_id + 1, so a text as long as max_position_embeddings would index past the table."""
    text = getattr(model, "text_model", None)
    emb = next((m for m in text.modules() if hasattr(m, "create_position_ids_from_input_ids")), None) if text else None
    pad = getattr(emb, "padding_idx", None)
    return pad + 1 if pad is not None else 0


def make_embedder(spec: str, device: str = "auto"):
    """The backend a spec names (not loaded)."""
    from curation.signals.descriptor import NAME, DescriptorEmbedder

    if spec == NAME:
        return DescriptorEmbedder()
    if spec.startswith("open_clip:") and len(spec) > len("open_clip:"):
        return OpenClipEmbedder(spec, device)
    if spec.startswith("hf:") and len(spec) > len("hf:"):
        return HFClipEmbedder(spec, device)
    raise ValueError(f"embedding model {spec!r} is not understood; use {NAME} (weight-free), "
                     f"open_clip:NAME[@CHECKPOINT] or hf:PATH_OR_HUB_ID")


def get_embedder(spec: str, device: str = "auto"):
    """The loaded backend for `spec`, shared by every scorer of this process."""
    key = (spec, device)
    if key not in _MODELS:
        emb = make_embedder(spec, device)
        emb.load()
        _MODELS[key] = emb
    return _MODELS[key]


def decode_images(batch: pd.DataFrame, side: int) -> tuple[list, list[int], dict[int, str]]:
    """Decode `batch.image` at about `side`; returns images, their positions, and errors by position."""
    from curation.signals.analysis import decode_for_analysis

    images, ok, errors = [], [], {}
    for n, data in enumerate(batch["image"]):
        try:
            images.append(decode_for_analysis(data, long_side=side).image)
            ok.append(n)
        except Exception as e:  # one bad image is one error row, not a failed batch
            errors[n] = f"cannot decode for embedding: {type(e).__name__}: {e}"
    return images, ok, errors


@dataclass(frozen=True)
class EmbedSignal:
    """img_emb, txt_emb (alt text), emb_model and clip_score (cosine) for each row, in batches."""

    model: str = "descriptor-v1"
    device: str = "auto"
    batch_size: int = 32

    name: ClassVar[str] = "embed"
    requires: ClassVar[tuple[str, ...]] = ("image", "alt_text")
    columns: ClassVar[dict[str, pa.DataType]] = {
        "img_emb": pa.binary(), "txt_emb": pa.binary(), "emb_model": pa.string(), "clip_score": pa.float32(),
        "error": pa.string(), "error_kind": pa.string(),
    }

    def load(self) -> None:
        object.__setattr__(self, "embedder", get_embedder(self.model, self.device))  # frozen: config only

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=batch.index, columns=list(self.columns), dtype=object)
        emb = self.embedder
        images, ok, errors = decode_images(batch, emb.decode_side)
        img = _batched(emb.encode_images, images, self.batch_size)
        for n, msg in errors.items():
            out.iat[n, out.columns.get_loc("error")] = msg
            out.iat[n, out.columns.get_loc("error_kind")] = "decode_error"
        cells = codec.encode(img) if len(img) else []
        for n, cell in zip(ok, cells):
            out.iat[n, 0], out.iat[n, 2] = cell, emb.name
        if emb.has_text:
            self._texts(batch, out, dict(zip(ok, img)))
        return out

    def _texts(self, batch: pd.DataFrame, out: pd.DataFrame, img_by_pos: dict[int, np.ndarray]) -> None:
        pos = [n for n, t in enumerate(batch["alt_text"]) if isinstance(t, str) and t.strip()]
        txt = _batched(self.embedder.encode_texts, [batch["alt_text"].iat[n] for n in pos], self.batch_size)
        for n, vec, cell in zip(pos, txt, codec.encode(txt) if len(txt) else []):
            out.iat[n, 1] = cell
            if n in img_by_pos:
                out.iat[n, 3] = float(np.dot(vec, img_by_pos[n]))


def _batched(fn, items: list, size: int) -> np.ndarray:
    if not items:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([fn(items[i : i + size]) for i in range(0, len(items), size)])


def require_text_tower(spec: str, where: str) -> None:
    """Fail when `spec` cannot embed text (the weight-free descriptor): caption alignment needs a text tower."""
    if not make_embedder(spec).has_text:
        raise ValueError(f"{where}: the embedding model {spec!r} has no text tower (weight-free descriptor), so "
                         f"captions cannot be embedded or scored; set stage2.embed.model to a CLIP model "
                         f"(open_clip:... or hf:...) and rerun stage 2, or turn {where} off")


def embed_captions(rows: pd.DataFrame, img_by_id: dict, embedder, batch_size: int = 32) -> pd.DataFrame:
    """txt_emb, emb_model and clip_score for each caption row with text and no drop or error.

    `img_by_id`: sample id -> its stored img_emb cell (float16 bytes) or None; clip_score is the cosine
    with it, null when the sample has none. Rows without a kept caption get nulls.
    """
    out = rows.copy()
    for c in ("txt_emb", "emb_model", "clip_score"):
        out[c] = pd.Series([None] * len(out), index=out.index, dtype=object)
    kept = [n for n, (t, d, e) in enumerate(zip(out["text"], out["drop_reason"], out["error"]))
            if isinstance(t, str) and t.strip() and not isinstance(d, str) and not isinstance(e, str)]
    if not kept:
        return out
    txt = _batched(embedder.encode_texts, [out["text"].iat[n] for n in kept], batch_size)
    cols = {c: out.columns.get_loc(c) for c in ("txt_emb", "emb_model", "clip_score")}
    for n, vec, cell in zip(kept, txt, codec.encode(txt)):
        out.iat[n, cols["txt_emb"]], out.iat[n, cols["emb_model"]] = cell, embedder.name
        img = img_by_id.get(out["id"].iat[n])
        if isinstance(img, (bytes, bytearray)):
            img = codec.decode([img])[0]
            if img.shape != vec.shape:
                raise ValueError(f"caption embedding has {vec.shape[0]} dims but the stored img_emb of "
                                 f"{out['id'].iat[n]!r} has {img.shape[0]}: the stage-2 table was not made by "
                                 f"{embedder.name}; rerun stage 2 or stage 3 against the same run")
            out.iat[n, cols["clip_score"]] = float(np.dot(vec, img) / max(np.linalg.norm(img), 1e-8))
    return out
