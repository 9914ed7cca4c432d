"""A bilingual diffusion transformer in one file: dual-stream blocks, then single-stream blocks.

Token order is [image, text] everywhere. Text padding is a key mask in every attention, so a padded
prompt gives exactly the image output of the unpadded one. adaLN-Zero: every modulation Linear, the
final modulation and the output projection start at zero, so at init the model outputs exactly zero.
Saved and loaded as a diffusers model (`save_pretrained` / `from_pretrained`: config.json + safetensors).
Parallelism (FSDP2, activation checkpointing, compile) is applied from outside: see training/engine/parallel.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from training.models.rope import apply_rope, joint_tables

# name -> DiT args; text_dim is the conditioner width; rope_ref is the patch grid side where RoPE is plain
# axial (32 = 512 px with an 8x VAE and patch 2; 8 = the 32-px toy with patch 4).
PRESETS: dict[str, dict] = {
    "debug": dict(hidden_size=64, num_heads=4, depth_double=1, depth_single=1, text_dim=32, in_channels=4),
    "toy": dict(hidden_size=128, num_heads=4, depth_double=2, depth_single=2, text_dim=64, in_channels=3,
                patch_size=4, rope_ref=8),
    # SD3-medium's width and parameter count (2.04B vs 2.03B) with 128-wide heads (fast attention kernels) and
    # mostly dual-stream blocks: a dual-stream block's text weights and modulation cost no image-token FLOPs, so
    # at equal parameters it is cheaper per sample than a single-stream one (12 dual + 24 single did 1.5x SD3's FLOPs)
    "2b": dict(hidden_size=1536, num_heads=12, depth_double=23, depth_single=2, text_dim=2048, in_channels=16,
               rope_ref=32),
    "8b": dict(hidden_size=3072, num_heads=24, depth_double=12, depth_single=28, text_dim=4096, in_channels=16,
               rope_ref=32),
}


def as_edit_model(dit: "DiT") -> "DiT":
    """The same DiT with a source-image path added (zero-gated: it computes exactly what `dit` computes)."""
    if dit.config.edit_source:
        return dit
    edit = DiT.from_config(dit.config, edit_source=True)
    missing, unexpected = edit.load_state_dict(dit.state_dict(), strict=False)
    assert set(missing) == {"source_type", "source_gates"} and not unexpected, (missing, unexpected)
    return edit


def as_refiner(dit: "DiT") -> "DiT":
    """The same DiT with a condition-image path added (zero-initialised: it computes exactly what `dit` computes)."""
    if dit.config.refine_source:
        return dit
    if dit.config.edit_source:
        raise ValueError("this DiT is an edit model (model.edit=true); a refiner starts from a text-to-image base")
    refiner = DiT.from_config(dit.config, refine_source=True)
    missing, unexpected = refiner.load_state_dict(dit.state_dict(), strict=False)
    assert set(missing) == {"source_embed.weight", "source_embed.bias"} and not unexpected, (missing, unexpected)
    return refiner


def preset(name: str, **overrides) -> "DiT":
    """Build a randomly initialised DiT by preset name (debug, toy, 2b, 8b), with keyword overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; choose one of {sorted(PRESETS)}")
    return DiT(**{**PRESETS[name], **overrides})


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 as in DiT/SD3): (B,) -> (B, dim), fp32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class QKV(nn.Module):
    """Q/K/V projection of one stream with per-head RMSNorm on q and k (QK-norm)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # each (B, H, N, Dh)
        return self.q_norm(q), self.k_norm(k), v


def attention(q, k, v, cos, sin, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Joint attention with RoPE; key_mask (B, N) is True where a key may be attended, None: all. -> (B, N, D)."""
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


class DoubleBlock(nn.Module):
    """Separate weights for image and text tokens, one joint attention over both."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.mod_img, self.mod_txt = nn.Linear(dim, 6 * dim), nn.Linear(dim, 6 * dim)
        self.qkv_img, self.qkv_txt = QKV(dim, heads), QKV(dim, heads)
        self.proj_img, self.proj_txt = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.mlp_img, self.mlp_txt = mlp(dim, int(dim * mlp_ratio)), mlp(dim, int(dim * mlp_ratio))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, img, txt, c, cos, sin, key_mask, value_delta: torch.Tensor | None = None, source=None):
        """value_delta (B, H, 1, Dh): added to every text token's value (an adapter's value mixing), so the
        attention map, made of queries and keys only, stays the content's own.

        source: None, or (tokens (B, N, D), gate (D,), rows (B, 1, 1)) of an edit model's source image: the image
        queries also attend to the source tokens, read by this block's own image projections at the same
        positions, in a second attention added through the gate (zero at init: then the block is the base's)."""
        mi = self.mod_img(F.silu(c)).chunk(6, dim=-1)  # shift, scale, gate for attn, then mlp
        mt = self.mod_txt(F.silu(c)).chunk(6, dim=-1)
        qi, ki, vi = self.qkv_img(modulate(self.norm(img), mi[0], mi[1]))
        qt, kt, vt = self.qkv_txt(modulate(self.norm(txt), mt[0], mt[1]))
        if value_delta is not None:
            vt = vt + value_delta.to(vt.dtype)
        a = attention(torch.cat([qi, qt], 2), torch.cat([ki, kt], 2), torch.cat([vi, vt], 2), cos, sin, key_mask)
        n = img.shape[1]
        img = img + mi[2][:, None] * self.proj_img(a[:, :n])
        txt = txt + mt[2][:, None] * self.proj_txt(a[:, n:])
        if source is not None:
            tokens, gate, rows = source
            _, ks, vs = self.qkv_img(modulate(self.norm(tokens), mi[0], mi[1]))  # (B, H, N, Dh)
            a_src = attention(qi, ks, vs, cos[:n], sin[:n], None)  # (B, N, D): source token i sits at image token i
            img = img + (gate * rows) * mi[2][:, None] * self.proj_img(a_src)
        img = img + mi[5][:, None] * self.mlp_img(modulate(self.norm(img), mi[3], mi[4]))
        txt = txt + mt[5][:, None] * self.mlp_txt(modulate(self.norm(txt), mt[3], mt[4]))
        return img, txt


class SingleBlock(nn.Module):
    """One weight set over the joined sequence; attention and MLP in parallel (Flux single-stream style)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads, self.hidden = heads, int(dim * mlp_ratio)
        self.mod = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.lin1 = nn.Linear(dim, 3 * dim + self.hidden)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.lin2 = nn.Linear(dim + self.hidden, dim)

    def forward(self, x, c, cos, sin, key_mask):
        shift, scale, gate = self.mod(F.silu(c)).chunk(3, dim=-1)
        h = self.lin1(modulate(self.norm(x), shift, scale))
        qkv, m = h.split([h.shape[-1] - self.hidden, self.hidden], dim=-1)
        q, k, v = qkv.unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # (B, H, N, Dh)
        a = attention(self.q_norm(q), self.k_norm(k), v, cos, sin, key_mask)
        return x + gate[:, None] * self.lin2(torch.cat([a, F.gelu(m, approximate="tanh")], dim=-1))


class DiT(ModelMixin, ConfigMixin):
    """Velocity model v(x_t, t, text) for rectified flow on latents (B, C, H, W)."""

    _supports_gradient_checkpointing = False  # checkpointing is applied from outside (engine/parallel.py)
    _no_split_modules = ["DoubleBlock", "SingleBlock"]

    @register_to_config
    def __init__(self, in_channels: int = 4, patch_size: int = 2, hidden_size: int = 64, num_heads: int = 4,
                 depth_double: int = 1, depth_single: int = 1, mlp_ratio: float = 4.0, text_dim: int = 32,
                 pooled_dim: int | None = None, rope_theta: float = 10000.0, rope_ref: int = 16,
                 rope_interp: float = 1.0, rope_ntk: float = 0.0, edit_source: bool = False,
                 refine_source: bool = False):
        super().__init__()
        if hidden_size % num_heads or (hidden_size // num_heads) % 4:
            raise ValueError(f"hidden_size {hidden_size} / num_heads {num_heads} must give a head dim divisible by 4")
        d, p = hidden_size, patch_size
        self.x_embed = nn.Linear(in_channels * p * p, d)
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.pooled_embed = nn.Sequential(nn.Linear(pooled_dim or text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.context_embed = nn.Sequential(nn.RMSNorm(text_dim, eps=1e-6), nn.Linear(text_dim, d))
        self.double_blocks = nn.ModuleList(DoubleBlock(d, num_heads, mlp_ratio) for _ in range(depth_double))
        self.single_blocks = nn.ModuleList(SingleBlock(d, num_heads, mlp_ratio) for _ in range(depth_single))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_mod = nn.Linear(d, 2 * d)
        self.proj_out = nn.Linear(d, p * p * in_channels)
        self.init_weights()
        if edit_source:  # instruction editing (SeedEdit): a source image read through a zero-gated path
            self.source_type = nn.Parameter(torch.randn(d) * 0.02)  # tells source tokens from the noisy image's
            self.source_gates = nn.Parameter(torch.zeros(depth_double, d))
        if refine_source:  # a refiner: the upsampled image joins each token's own embedding (channel concat)
            self.source_embed = nn.Linear(in_channels * p * p, d)
            nn.init.zeros_(self.source_embed.weight)  # zero, not gated: its weight gradient is not zero at init
            nn.init.zeros_(self.source_embed.bias)

    def init_weights(self) -> None:
        """Xavier on Linears, then zero every output path (adaLN-Zero): the model starts at exactly 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        zero = [self.final_mod, self.proj_out]
        zero += [b.mod_img for b in self.double_blocks] + [b.mod_txt for b in self.double_blocks]
        zero += [b.mod for b in self.single_blocks]
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def head_dim(self) -> int:
        return self.config.hidden_size // self.config.num_heads

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        b, c, h, w = x.shape
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by patch_size {p}; use bucket sizes that are")
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C*p*p)

    def unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        p, c = self.config.patch_size, self.config.in_channels
        b = x.shape[0]
        x = x.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, c, h, w)

    def source_tokens(self, source: torch.Tensor) -> torch.Tensor:
        """Source latents (B, C, H, W) -> tokens (B, N, D): this model's own patch embedding + the source type."""
        if not self.config.edit_source:
            raise ValueError("this DiT has no source-image path; start an edit stage with model.edit=true "
                             "(training/configs/edit.yaml), or generate without a source image")
        return self.x_embed(self.patchify(source)) + self.source_type

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                pooled: torch.Tensor, adapter=None, source: torch.Tensor | None = None,
                source_rows: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) in [0, 1], text (B, L, text_dim), text_mask (B, L) bool, pooled (B, Dp).

        adapter: None, or what an adapter (training/models/adapters.py) adds: `.cond` (B, D) to the adaLN
        vector and `.values`, one (B, H, 1, Dh) text-value delta per dual-stream block.
        source: an edit model's source image latents (B, C, H, W), the size of x, or a refiner's upsampled
        condition image; source_rows (B,) bool says which rows have one (None: all)."""
        cfg = self.config
        _, _, H, W = x.shape
        gh, gw = H // cfg.patch_size, W // cfg.patch_size
        img = self.x_embed(self.patchify(x))  # (B, N, D)
        txt = self.context_embed(text)  # (B, L, D)
        c = self.t_embed(timestep_embedding(t, 256).to(img.dtype)) + self.pooled_embed(pooled)  # (B, D)
        if adapter is not None:
            c = c + adapter.cond.to(c.dtype)
        cos, sin = joint_tables(gh, gw, txt.shape[1], self.head_dim, cfg.rope_ref, cfg.rope_theta,
                                cfg.rope_interp, cfg.rope_ntk, device=x.device)
        key_mask = None  # flash and cuDNN kernels take no mask: give one only when some text token is padding
        if not bool(text_mask.all()):  # one host sync per forward, outside the compiled blocks
            key_mask = torch.cat([torch.ones(img.shape[:2], dtype=torch.bool, device=x.device),
                                  text_mask.to(torch.bool)], dim=1)  # (B, N + L)
        src = None
        if source is not None:
            if source.shape != x.shape:
                raise ValueError(f"source latents {tuple(source.shape)} must have the noisy latents' shape "
                                 f"{tuple(x.shape)}: resize the source image to the output size")
            rows = torch.ones(x.shape[0], device=x.device) if source_rows is None else source_rows.to(img.dtype)
            if cfg.refine_source:  # pixel-aligned: token i's own patch of the condition, added to its embedding
                img = img + rows[:, None, None] * self.source_embed(self.patchify(source)).to(img.dtype)  # (B, N, D)
            else:
                src = (self.source_tokens(source).to(img.dtype), rows[:, None, None])  # (B, N, D), (B, 1, 1)
        for i, blk in enumerate(self.double_blocks):
            s = None if src is None else (src[0], self.source_gates[i].to(img.dtype), src[1])
            img, txt = blk(img, txt, c, cos, sin, key_mask, None if adapter is None else adapter.values[i], s)
        n = img.shape[1]
        h = torch.cat([img, txt], dim=1)
        for blk in self.single_blocks:
            h = blk(h, c, cos, sin, key_mask)
        shift, scale = self.final_mod(F.silu(c)).chunk(2, dim=-1)
        out = self.proj_out(modulate(self.final_norm(h[:, :n]), shift, scale))
        return self.unpatchify(out, H, W)
