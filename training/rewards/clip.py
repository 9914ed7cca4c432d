"""CLIP-family rewards: bilingual image-text alignment, and aesthetics from a head over CLIP image features.

A CLIP is named by the spec stage 2 uses (curation/signals/embed.py; training does not import curation, so the
loading is repeated here in its differentiable form):
  hf:PATH_OR_DIR                  transformers CLIPModel, ChineseCLIPModel or AltCLIPModel (bilingual)
  open_clip:NAME[@PRETRAINED]     NAME an open_clip architecture or a model-config .json; PRETRAINED a checkpoint
Images are preprocessed in torch (resize, centre crop, normalise), so gradients reach the generated pixels.
Texts are encoded without gradient and cached: the prompts repeat, and nothing trains through them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.rewards.base import Reward, fit_square, normalise

log = logging.getLogger(__name__)


class ClipTowers(nn.Module):
    """image_features(pixels in [-1, 1]) -> (B, D) and text_features(texts) -> (B, D), both L2-normalised."""

    def __init__(self, spec: str, model: nn.Module, encode_image, encode_text, size: int, mean, std):
        super().__init__()
        self.spec, self.model, self.size = spec, model, size
        self._image, self._text = encode_image, encode_text
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self._cache: dict[str, torch.Tensor] = {}

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = normalise(fit_square(pixels.float(), self.size), self.mean, self.std)  # (B, 3, size, size)
        return F.normalize(_features(self._image(x)).float(), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            for t, e in zip(new, F.normalize(_features(self._text(new)).float(), dim=-1)):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts])


def _features(out):
    # transformers 5 may return a model output whose pooler_output is the projected embedding
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def load_clip(spec: str) -> ClipTowers:
    """The CLIP a spec names (hf:... or open_clip:...), frozen, on the CPU."""
    if spec.startswith("hf:") and len(spec) > 3:
        return _load_hf(spec)
    if spec.startswith("open_clip:") and len(spec) > len("open_clip:"):
        return _load_open_clip(spec)
    raise ValueError(f"CLIP spec {spec!r} is not understood; use hf:PATH (CLIP, Chinese-CLIP, AltCLIP) or "
                     "open_clip:NAME[@CHECKPOINT] (NAME may be a model-config .json)")


def _load_hf(spec: str) -> ClipTowers:
    import transformers

    path = spec.removeprefix("hf:")
    model = transformers.AutoModel.from_pretrained(path).eval()
    if not hasattr(model, "get_image_features"):
        raise ValueError(f"{path} is a {type(model).__name__}, not a CLIP-family model with image and text towers; "
                         "use CLIP, Chinese-CLIP or AltCLIP weights")
    tok = transformers.AutoTokenizer.from_pretrained(path)
    proc = transformers.AutoImageProcessor.from_pretrained(path)
    crop = getattr(proc, "crop_size", None) or {}
    size = crop.get("height") or (getattr(proc, "size", None) or {}).get("shortest_edge") or \
        model.config.vision_config.image_size
    tc = getattr(model.config, "text_config", None)
    positions = getattr(tc, "max_position_embeddings", None)
    limits = [positions and positions - _position_offset(model), getattr(tok, "model_max_length", None)]
    max_len = min([n for n in limits if n and n < 100_000] or [77])
    dev = lambda: next(model.parameters()).device  # noqa: E731

    def encode_text(texts):
        enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        enc = {k: v.to(dev()) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return model.get_text_features(**enc)

    return ClipTowers(spec, model, lambda x: model.get_image_features(pixel_values=x), encode_text, int(size),
                      proc.image_mean, proc.image_std)


def _position_offset(model) -> int:
    """Positions a RoBERTa-style text tower (AltCLIP's XLM-R) cannot use: it numbers tokens from pad_id + 1."""
    text = getattr(model, "text_model", None)
    emb = next((m for m in text.modules() if hasattr(m, "create_position_ids_from_input_ids")), None) if text else None
    pad = getattr(emb, "padding_idx", None)
    return pad + 1 if pad is not None else 0


def _load_open_clip(spec: str) -> ClipTowers:
    import open_clip

    arch, _, pretrained = spec.removeprefix("open_clip:").partition("@")
    if arch.endswith(".json"):  # a user's model config: registered under its file stem
        open_clip.add_model_config(arch)
        arch = Path(arch).stem
    model = open_clip.create_model(arch, pretrained=pretrained or None).eval()
    if not pretrained and not arch.startswith("hf-hub:"):
        log.warning("open_clip model %s has no pretrained weights: its reward is random", arch)
    tokenizer = open_clip.get_tokenizer(arch)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = getattr(model.visual, "image_mean", None) or open_clip.constants.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.constants.OPENAI_DATASET_STD
    return ClipTowers(spec, model, model.encode_image,
                      lambda texts: model.encode_text(tokenizer(texts).to(next(model.parameters()).device)),
                      int(size), mean, std)


def _load_or_fail(name: str, spec: str, what: str) -> ClipTowers:
    from training.rewards import RewardLoadError

    try:
        return load_clip(spec)
    except ImportError as e:
        raise RewardLoadError(f"reward {name}: the CLIP {spec} needs a package that is missing ({e}); install "
                              "pip install 'sluice[embed]'") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise RewardLoadError(f"reward {name}: cannot load the CLIP {spec} ({type(e).__name__}: {e}). Give {what} "
                              "a local folder (hf:DIR of CLIP, Chinese-CLIP or AltCLIP weights) or "
                              "open_clip:CONFIG.json@CHECKPOINT; nothing is downloaded at training time") from None


class ClipAlignment(Reward):
    """cos(image, prompt) of a bilingual CLIP, or a preference head's score over the pair when `head` is set."""

    def load(self) -> None:
        from training.rewards import RewardLoadError

        self.clip = _load_or_fail(self.name, self.spec.path, f"objective.feedback.rewards.{self.name}.path")
        self.head = None
        if self.spec.head:
            from training.rewards.heads import load_preference_head

            path = Path(self.spec.head).expanduser()
            if not path.is_file():
                raise RewardLoadError(f"reward {self.name}: preference head {path} does not exist; fit one with "
                                      "training/rewards/heads.py fit_preference_head, or leave `head` out")
            self.head, card = load_preference_head(path)
            if card.get("emb_model") not in (None, self.spec.path):
                raise RewardLoadError(f"reward {self.name}: head {path} was fitted on {card['emb_model']}, not "
                                      f"{self.spec.path}; use the CLIP it was fitted on or fit it again")
        self.net = self.freeze(nn.ModuleDict({"clip": self.clip, **({"head": self.head} if self.head else {})}))

    def __call__(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        img = self.clip.image_features(pixels)  # (B, D)
        txt = self.clip.text_features(list(prompts)).to(img.device)  # (B, D)
        return self.head(img, txt) if self.head is not None else (img * txt).sum(-1)


class AestheticReward(Reward):
    """An aesthetic head (LAION layout) over the L2-normalised CLIP image embedding; the prompt is not read."""

    def load(self) -> None:
        from training.rewards import RewardLoadError
        from training.rewards.heads import head_card, laion_head

        path = Path(self.spec.path).expanduser()
        if not path.is_file():
            raise RewardLoadError(f"reward {self.name}: aesthetic head {path} does not exist; give a LAION-layout "
                                  "head file (published weights, or `sluice curate train-aesthetic` from Label "
                                  f"Studio ratings) as objective.feedback.rewards.{self.name}.path")
        card = head_card(path) or {}
        clip = self.spec.clip or card.get("emb_model")
        if not clip:
            raise RewardLoadError(f"reward {self.name}: which CLIP does head {path} read? Its card names none; set "
                                  f"objective.feedback.rewards.{self.name}.clip=hf:DIR (or open_clip:...)")
        if self.spec.clip and card.get("emb_model") not in (None, self.spec.clip):
            raise RewardLoadError(f"reward {self.name}: head {path} was trained on {card['emb_model']} embeddings, "
                                  f"not {self.spec.clip}; use the same CLIP or retrain the head")
        self.clip = _load_or_fail(self.name, clip, f"objective.feedback.rewards.{self.name}.clip")
        try:
            self.head = laion_head(path)
        except (ValueError, OSError, RuntimeError) as e:
            raise RewardLoadError(f"reward {self.name}: {e}") from None
        dim = self.clip.text_features(["x"]).shape[-1]
        if self.head[0].in_features != dim:
            raise RewardLoadError(f"reward {self.name}: head {path} takes {self.head[0].in_features}-d embeddings, "
                                  f"{clip} gives {dim}-d; use the head made for this CLIP")
        self.net = self.freeze(nn.ModuleDict({"clip": self.clip, "head": self.head}))

    def __call__(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.head(self.clip.image_features(pixels))[:, 0]
