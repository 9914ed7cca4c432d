"""What every reward model shares: the call contract, freezing, and image preprocessing in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Reward:
    """`__call__(pixels (B, 3, H, W) in [-1, 1], prompts) -> (B,)`; NaN where the reward does not apply."""

    differentiable: bool = True

    def __init__(self, name: str, spec):
        self.name, self.spec = name, spec
        self.net: nn.Module | None = None

    def load(self) -> None:
        raise NotImplementedError

    def to(self, device) -> "Reward":
        if self.net is not None:
            self.net.to(device)
        return self

    def freeze(self, net: nn.Module) -> nn.Module:
        """A reward is never trained by the stage that uses it: no gradient reaches its weights."""
        return net.requires_grad_(False).eval()

    def __call__(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError


def fit_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size): resize the short side to `size`, centre crop (a CLIP processor's
    steps, differentiable). Antialiased when shrinking, so a big render's detail is not aliased away."""
    _, _, h, w = pixels.shape
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        pixels = F.interpolate(pixels, size=(nh, nw), mode="bicubic", align_corners=False, antialias=s < 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    return pixels[:, :, top:top + size, left:left + size]


def normalise(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """[-1, 1] pixels -> the model's input: to [0, 1], then (x - mean) / std per channel."""
    m = torch.as_tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    return ((pixels + 1) / 2 - m) / s


def to_pixels(images: list) -> torch.Tensor:
    """PIL images (one size) -> (B, 3, H, W) in [-1, 1]: what the pipeline's decode gives."""
    import numpy as np

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1
