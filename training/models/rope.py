"""Resolution-aware scaling RoPE: 2D axial rotary embedding for image tokens, 1D for text tokens.

Image positions are centred and scaled by resolution, p(i) = (i + 0.5 - n/2) * lam + c, where
lam = (ref / sqrt(H*W)) ** interp and c = ref/2 - 0.5. So:
  * at the reference grid (H = W = ref) with any interp, p(i) = i: plain axial RoPE;
  * interp = 1 gives pure interpolation: the same image at twice the size spans the same positions;
  * interp = 0 gives pure extrapolation (integer steps, still centred on c);
  * the grid centre is at c for every size, so the centre patch keeps its position.
NTK base scaling raises theta by scale ** (ntk * d / (d - 2)) for grids larger than the reference.
Tables are computed in fp32 and cached per (shape, settings, device).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def axis_freqs(dim: int, theta: float) -> torch.Tensor:
    """Inverse frequencies of one rotary axis of `dim` channels (dim/2 pairs), fp32."""
    if dim % 2:
        raise ValueError(f"a rotary axis needs an even number of channels, got {dim}")
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)).float()


def grid_positions(n: int, ref: int, lam: float) -> torch.Tensor:
    """Centred, scaled positions of n patches along one axis (fp32)."""
    i = torch.arange(n, dtype=torch.float64)
    return ((i + 0.5 - n / 2) * lam + (ref / 2 - 0.5)).float()


def image_scale(h: int, w: int, ref: int, interp: float) -> float:
    """lam for an h x w patch grid; one factor for both axes so the aspect ratio is kept."""
    return (ref / math.sqrt(h * w)) ** interp


def ntk_theta(theta: float, h: int, w: int, ref: int, ntk: float, dim: int) -> float:
    """Theta raised for grids larger than the reference (NTK-aware); unchanged at or below it."""
    s = max(1.0, math.sqrt(h * w) / ref)
    return theta * s ** (ntk * dim / max(dim - 2, 1))


def image_angles(h: int, w: int, head_dim: int, ref: int, theta: float = 10000.0, interp: float = 1.0,
                 ntk: float = 0.0) -> torch.Tensor:
    """Rotation angles of an h x w grid, row-major tokens: (h*w, head_dim/2); first half rows, second half cols."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
    axis = head_dim // 2
    th = ntk_theta(theta, h, w, ref, ntk, axis)
    freqs = axis_freqs(axis, th)  # (axis/2,)
    lam = image_scale(h, w, ref, interp)
    ph, pw = grid_positions(h, ref, lam), grid_positions(w, ref, lam)
    ah = (ph[:, None] * freqs[None]).repeat_interleave(w, dim=0)  # (h*w, axis/2)
    aw = (pw[:, None] * freqs[None]).repeat(h, 1)  # (h*w, axis/2)
    return torch.cat([ah, aw], dim=-1)


def text_angles(length: int, head_dim: int, theta: float = 10000.0, offset: float = 0.0) -> torch.Tensor:
    """1D rotation angles for text tokens at positions offset .. offset+length-1: (length, head_dim/2)."""
    pos = torch.arange(length, dtype=torch.float32) + offset
    return pos[:, None] * axis_freqs(head_dim, theta)[None]


@lru_cache(maxsize=64)
def _cached(h: int, w: int, length: int, head_dim: int, ref: int, theta: float, interp: float, ntk: float,
            text_offset: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    ang = torch.cat([image_angles(h, w, head_dim, ref, theta, interp, ntk),
                     text_angles(length, head_dim, theta, text_offset)], dim=0)
    return torch.cos(ang).to(device), torch.sin(ang).to(device)


def joint_tables(h: int, w: int, length: int, head_dim: int, ref: int, theta: float = 10000.0,
                 interp: float = 1.0, ntk: float = 0.0, text_offset: float = 0.0,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (fp32) for the token order [image (h*w), text (length)]: each (h*w+length, head_dim/2)."""
    return _cached(h, w, length, head_dim, ref, float(theta), float(interp), float(ntk), float(text_offset),
                   str(device))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2k, 2k+1) of x (B, heads, N, D) by the tables (N, D/2); math in fp32."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, H, N, D/2, 2)
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)
