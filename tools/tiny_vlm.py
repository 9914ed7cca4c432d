"""A tiny random BLIP captioner saved like a real one, for tests and benchmarks (no download, ~1 s).

It writes gibberish: it exercises loading by path, batching, prompts and generation, not caption quality.
"""

from __future__ import annotations

from pathlib import Path

_WORDS = ("a the cat dog sofa red blue sign sale shop street photo of on in with text light warm "
          "colour painting sky tree man woman car city night day is and").split()
_HAN = "一只猫狗在沙发上红色蓝色的照片街道商店招牌文字光线温暖天空树城市夜晚白天"


def write_vocab(path: Path) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(_HAN) + _WORDS
    tokens += [chr(c) for c in range(33, 127)] + [f"##{chr(c)}" for c in range(97, 123)]
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return path


def save_tiny_blip(out: str | Path, image_size: int = 64, seed: int = 0) -> Path:
    """Build and `save_pretrained` a tiny BlipForConditionalGeneration + BlipProcessor into `out`."""
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast(vocab_file=str(write_vocab(out / "vocab.txt")), do_lower_case=True)
    cfg = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=16),
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=512,
                         bos_token_id=tok.cls_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id),
        projection_dim=32)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(cfg).eval()
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
                              tokenizer=tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
