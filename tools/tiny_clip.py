"""Tiny random CLIP-family models written to disk as a user's weights would be: for tests and demos only.

Each writer returns the model spec stage 2 takes (`stage2.embed.model`), so a test loads the model by
path exactly as a user loads real weights. The weights are random: embeddings mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_open_clip(d: Path, seed: int = 0) -> str:
    """A 2-layer open_clip model: config JSON + checkpoint; spec `open_clip:<cfg.json>@<ckpt>`."""
    import open_clip
    import torch

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "tiny-clip.json"
    cfg.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(str(cfg))
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), d / "tiny-clip.pt")
    return f"open_clip:{cfg}@{d / 'tiny-clip.pt'}"


def write_vocab(path: Path) -> int:
    """A WordPiece vocab: specials, ASCII letters and digits (and ## pieces), common words, 3000 CJK chars."""
    words = "a photo of the and with in on an image picture painting cat dog city night food".split()
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(i) for i in range(10)]
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)] + list("书法画汉服节日建筑美食茶龙灯笼饺子")
    vocab = list(dict.fromkeys(_SPECIAL + chars + ["##" + c for c in chars] + words + cjk + list(".,!?-'")))
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return len(vocab)


def xlmr_vocab() -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocab (XLM-R order: <s> <pad> </s> <unk> <mask>): the same words and
    CJK characters as `write_vocab`, so Chinese reaches the model as characters, not <unk>."""
    words = "a photo of the and with in on an image picture painting cat dog city night food".split()
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    chars += [str(i) for i in range(10)] + list(".,!?-'")
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)] + list("书法画汉服节日建筑美食茶龙灯笼饺子")
    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("<mask>", 0.0)]
    # Unigram picks the segmentation of highest summed score: whole words beat spelling them out
    pieces = [("\u2581", -8.0)] + [("\u2581" + w, -6.0) for w in words] + [(c, -10.0) for c in chars + cjk]
    return specials + list(dict(pieces).items())


def write_tiny_hf_clip(d: Path, kind: str = "clip", seed: int = 0) -> str:
    """A tiny CLIPModel, ChineseCLIPModel (WordPiece tokenizer) or AltCLIPModel (XLM-R Unigram tokenizer)
    with its image processor; spec `hf:<dir>`."""
    import torch
    import transformers as tf

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    if kind == "altclip":
        return _write_tiny_altclip(d, seed)
    n = write_vocab(d / "vocab.txt")
    tok = tf.BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True)  # transformers 5: vocab=, not vocab_file=
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    text = dict(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, **ids)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=16)
    torch.manual_seed(seed)
    size = {"shortest_edge": 32}
    if kind == "clip":
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        proc = tf.CLIPImageProcessor(size=size, crop_size={"height": 32, "width": 32})
    elif kind == "chinese_clip":
        model = tf.ChineseCLIPModel(tf.ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        proc = tf.ChineseCLIPImageProcessor(size=size, crop_size={"height": 32, "width": 32})
    else:
        raise ValueError(f"kind {kind!r}: clip, chinese_clip or altclip")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    proc.save_pretrained(d)
    return f"hf:{d}"


def _write_tiny_altclip(d: Path, seed: int) -> str:
    """AltCLIP: an XLM-R text tower (positions start after the pad id) and a CLIP vision tower."""
    import torch
    import transformers as tf

    tok = tf.XLMRobertaTokenizer(vocab=xlmr_vocab())
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=66, type_vocab_size=1, project_dim=16, **ids)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=16)
    torch.manual_seed(seed)
    model = tf.AltCLIPModel(tf.AltCLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(d)
    tok.save_pretrained(d)
    proc.save_pretrained(d)
    return f"hf:{d}"
