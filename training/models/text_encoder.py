"""Bilingual text conditioning: a decoder-only LLM (hidden layer + mask + small refiner) and a ByT5 glyph encoder.

The LLM is any transformers causal LM by local path or hub id (e.g. a Qwen-family model), frozen by default.
Causal LLM states of early tokens never see later ones, so a small trainable bidirectional refiner runs on top
(as Lumina2's context refiner). The glyph encoder reads only the text to be rendered (quoted spans of the
prompt, any script) byte by byte with a T5 encoder (ByT5) and maps it into the conditioner width. Its tokens
are appended to the LLM tokens, each kind with a learned type embedding. Classifier-free-guidance dropout is
per encoder: the caption is replaced by the empty prompt (encoded by the same LLM), the glyph text by nothing.
"""

from __future__ import annotations

import re

import torch
from torch import nn

# "..." “...” 「...」 『...』 ‘...’ and the full-width ＂...＂; spans may hold any script.
QUOTES = re.compile(r'"([^"]+)"|“([^”]+)”|「([^」]+)」|『([^』]+)』|‘([^’]+)’|＂([^＂]+)＂')


def quoted_spans(prompt: str) -> list[str]:
    """The text to be rendered: every quoted span of the prompt, in order."""
    return [next(g for g in m.groups() if g) for m in QUOTES.finditer(prompt)]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid tokens: (B, L, D), (B, L) -> (B, D); rows with no valid token give zeros."""
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class Refiner(nn.Module):
    """Norm + projection of LLM states, then a few bidirectional transformer layers that respect the mask."""

    def __init__(self, in_dim: int, out_dim: int, layers: int = 1, heads: int = 4):
        super().__init__()
        self.norm = nn.RMSNorm(in_dim, eps=1e-6)  # LLM states have outlier dims: normalise before projecting
        self.proj = nn.Linear(in_dim, out_dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(out_dim, heads, 4 * out_dim, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(layers))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.norm(h))  # (B, L, out)
        # a row with no valid token (empty prompt) would make softmax NaN: let it see its first slot only
        safe = mask.clone()
        safe[~mask.any(1), 0] = True
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~safe)
        return x * mask[..., None].to(x.dtype)


class LLMTextEncoder(nn.Module):
    """Features of a chosen hidden layer of a causal LM, with its attention mask, refined into `out_dim`."""

    def __init__(self, path: str, out_dim: int, hidden_layer: int = -2, max_length: int = 128,
                 refiner_layers: int = 1, refiner_heads: int = 4, freeze: bool = True, prefix: str = ""):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"  # then "last real token" is mask.sum()-1, and pads never shift ids
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.llm = AutoModel.from_pretrained(path)
        self.hidden_layer, self.max_length, self.freeze, self.prefix = hidden_layer, max_length, freeze, prefix
        if freeze:
            self.llm.requires_grad_(False).eval()
        self.refiner = Refiner(self.llm.config.hidden_size, out_dim, refiner_layers, refiner_heads)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.llm.eval()
        return self

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> tokens (B, L, out_dim), mask (B, L) bool."""
        enc = self.tokenizer([self.prefix + p for p in prompts], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        device = next(self.refiner.parameters()).device
        ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device).bool()
        if ids.shape[1] == 0:  # all prompts empty and no special tokens: keep one masked slot
            ids = torch.full((len(prompts), 1), self.tokenizer.pad_token_id, device=device)
            mask = torch.zeros_like(ids, dtype=torch.bool)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            out = self.llm(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        h = out.hidden_states[self.hidden_layer]
        return self.refiner(h.to(self.refiner.proj.weight.dtype), mask), mask


    @torch.no_grad()
    def pooled_frozen(self, texts: list[str]) -> torch.Tensor:
        """(N, E): the LLM's chosen hidden layer, mean over real tokens, with no refiner: a fixed embedding
        of each text (VMix's AesEmb), whatever later training does to the refiner."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        device = next(self.llm.parameters()).device
        mask = enc.attention_mask.to(device)
        out = self.llm(input_ids=enc.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
        return masked_mean(out.hidden_states[self.hidden_layer].float(), mask.bool())


class GlyphEncoder(nn.Module):
    """ByT5 (a T5 encoder over UTF-8 bytes) over the quoted text, with a mapper into `out_dim`."""

    def __init__(self, out_dim: int, path: str | None = None, t5_config: dict | None = None, max_bytes: int = 64,
                 freeze: bool = True):
        super().__init__()
        from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

        self.tokenizer = ByT5Tokenizer()  # rule-based: needs no files
        if path:
            self.t5 = T5EncoderModel.from_pretrained(path)
        else:  # a random T5 encoder of the given shape (tests, toy run): not a trained glyph model.
            with torch.random.fork_rng():  # fixed seed: frozen weights are not saved, so they must come back equal
                torch.manual_seed(0)
                cfg = T5Config(**{"vocab_size": 384, "is_encoder_decoder": False, **(t5_config or {})})
                self.t5 = T5EncoderModel(cfg)
        self.freeze, self.max_bytes = freeze, max_bytes
        if freeze:
            self.t5.requires_grad_(False).eval()
        d = self.t5.config.d_model
        self.mapper = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.t5.eval()
        return self

    def forward(self, glyph_texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One string per sample (spans joined; "" for none) -> tokens (B, G, out_dim), mask (B, G)."""
        enc = self.tokenizer(glyph_texts, padding=True, truncation=True, max_length=self.max_bytes,
                             return_tensors="pt")
        device = self.mapper[1].weight.device
        ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device).bool()
        empty = torch.tensor([not s for s in glyph_texts], device=device)
        mask = mask & ~empty[:, None]  # an empty string still tokenises to </s>: it is not glyph text
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            h = self.t5(input_ids=ids, attention_mask=enc.attention_mask.to(device)).last_hidden_state
        return self.mapper(h.to(self.mapper[1].weight.dtype)) * mask[..., None], mask


class Conditioner(nn.Module):
    """LLM tokens + glyph tokens (with type embeddings), their mask, and a pooled vector, with CFG dropout."""

    def __init__(self, llm: LLMTextEncoder, glyph: GlyphEncoder | None, out_dim: int, drop_text: float = 0.1,
                 drop_glyph: float = 0.1):
        super().__init__()
        self.llm, self.glyph = llm, glyph
        self.type_embed = nn.Embedding(2, out_dim)
        nn.init.normal_(self.type_embed.weight, std=0.02)
        self.drop_text, self.drop_glyph = drop_text, drop_glyph

    def forward(self, prompts: list[str], generator: torch.Generator | None = None):
        """-> tokens (B, L+G, D), mask (B, L+G), pooled (B, D). Dropout only when a generator is given."""
        texts = list(prompts)
        glyphs = ["\n".join(quoted_spans(p)) for p in prompts]
        if generator is not None:
            u = torch.rand(len(prompts), 2, generator=generator)
            texts = ["" if u[i, 0] < self.drop_text else p for i, p in enumerate(texts)]
            glyphs = ["" if u[i, 1] < self.drop_glyph or not texts[i] else g for i, g in enumerate(glyphs)]
        tok, mask = self.llm(texts)
        tok = tok + self.type_embed.weight[0]
        pooled = masked_mean(tok, mask)
        if self.glyph is not None:
            gt, gm = self.glyph(glyphs)
            tok, mask = torch.cat([tok, gt + self.type_embed.weight[1]], 1), torch.cat([mask, gm], 1)
        return tok * mask[..., None].to(tok.dtype), mask, pooled

    def saved_state(self) -> dict[str, torch.Tensor]:
        """Weights a pipeline stores: all but the encoders frozen by the text config (they load from their path),
        whether or not a stage trained the rest."""
        skip = ["llm.llm."] if self.llm.freeze else []
        if self.glyph is not None and self.glyph.freeze:
            skip.append("glyph.t5.")
        return {k: v for k, v in self.state_dict().items() if not k.startswith(tuple(skip))}

    def null(self, n: int):
        """The unconditional input for CFG: the empty prompt, no glyph text."""
        return self.forward([""] * n)
