"""The autoencoder between pixels and the DiT's latents: a diffusers AutoencoderKL by path, or pixel space.

`PixelSpace` is an identity "VAE" (factor 1, 3 channels). It exists for the CPU toy run and tests, where no
trained VAE can be downloaded; anything trained with it is a pixel-space model, and results must say so.
Latent caching stores encoded latents per (sample id, size) on disk, valid because crops are deterministic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn


class PixelSpace(nn.Module):
    """Identity autoencoder: latents are the pixels in [-1, 1]. Not a VAE; labelled wherever it is used."""

    factor, channels, kind = 1, 3, "pixel-space identity (no VAE)"

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.clamp(-1, 1)


class KLVAE(nn.Module):
    """diffusers AutoencoderKL with its scaling and shift factors applied (latent = (mean - shift) * scale)."""

    kind = "AutoencoderKL"

    def __init__(self, vae):
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        cfg = vae.config
        self.scale, self.shift = float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.channels = cfg.latent_channels

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        # the posterior mean, not a sample: deterministic latents are what makes caching and exact resume valid
        mean = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.mean
        return ((mean - self.shift) * self.scale).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> pixels; differentiable (reward feedback backpropagates through it; the VAE stays frozen)."""
        return self.vae.decode((latents / self.scale + self.shift).to(self.vae.dtype)).sample.float().clamp(-1, 1)


def load_vae(spec: str) -> nn.Module:
    """'pixel' for PixelSpace, else a local path or hub id of a diffusers AutoencoderKL."""
    if spec == "pixel":
        return PixelSpace()
    from diffusers import AutoencoderKL

    sub = "vae" if (Path(spec) / "vae" / "config.json").exists() else None
    return KLVAE(AutoencoderKL.from_pretrained(spec, subfolder=sub))


class LatentCache:
    """Latents on disk, one file per (sample id, size); a miss encodes and stores."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, sid: str, size) -> Path:
        return self.folder / f"{hashlib.sha1(f'{sid}:{size}'.encode()).hexdigest()}.pt"

    def encode(self, vae: nn.Module, pixels: torch.Tensor, ids: list[str], size) -> torch.Tensor:
        if self.folder is None:
            return vae.encode(pixels)
        paths = [self._path(i, size) for i in ids]
        if all(p.exists() for p in paths):
            return torch.stack([torch.load(p, weights_only=True) for p in paths]).to(pixels.device)
        lat = vae.encode(pixels)
        for p, x in zip(paths, lat):
            torch.save(x.detach().cpu().clone(), p)
        return lat
