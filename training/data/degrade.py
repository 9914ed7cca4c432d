"""Synthetic degradations that make a refiner's condition from a clean image (Real-ESRGAN's second-order model,
arXiv 2107.10833), deterministic per (sample id, seed).

A clean crop at the training size (HR, uint8 (H, W, 3)) becomes the low-resolution image the refiner learns to
undo: round 1 [blur, resize, noise, JPEG]; with probability `second_prob` round 2 [blur, resize, noise]; then
the final step, back to LR = HR / scale (with a sinc low-pass, ringing, with probability `sinc_prob`) and, after
a second round, a JPEG, in an order drawn per sample. The condition is LR upsampled back to HR size by `upsample`,
the same function the refiner applies to a base model's output at inference, so training and use see one
interpolation. Every random choice is a hash of (sample id, seed, what it picks) and every noise field comes from
a generator seeded by such a hash: an image degrades the same way on every rank, worker, resume and rerun
(DESIGN rule 7). Left out from Real-ESRGAN: generalised-Gaussian and plateau blur kernels (Gaussian only).

numpy and Pillow only (core dependencies): the data loader workers need no OpenCV or SciPy.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from pydantic import Field, model_validator

from plumbing.config import Frozen

Range = tuple[float, float]


class DegradeRound(Frozen):
    """One round of Real-ESRGAN's model. Sigmas and resize factors are in pixels of the image entering the round."""

    blur_prob: float = Field(1.0, ge=0, le=1)
    blur_sigma: Range = (0.2, 1.5)
    aniso_prob: float = Field(0.5, ge=0, le=1)  # a rotated kernel with two sigmas, else isotropic
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: Range = (0.5, 1.5)  # up draws from (1, high], down from [low, 1)
    gaussian_noise_prob: float = Field(0.5, ge=0, le=1)  # Gaussian, else Poisson (shot) noise
    noise_sigma: Range = (1.0, 12.0)  # Gaussian, in levels of 0..255
    poisson_scale: Range = (0.05, 1.5)
    gray_noise_prob: float = Field(0.4, ge=0, le=1)  # the same noise in every channel (luma noise)
    jpeg_quality: tuple[int, int] = (50, 95)

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("blur_sigma", "resize_range", "noise_sigma", "poisson_scale", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"{name}=({lo}, {hi}) must be a range low <= high, both >= 0")
        if not 0 < self.resize_range[0] <= 1 <= self.resize_range[1]:
            raise ValueError(f"resize_range={self.resize_range} must hold 1 (down below it, up above), e.g. (0.5, 1.5)")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality} must lie in 1..100")
        if any(p < 0 for p in self.resize_probs) or sum(self.resize_probs) <= 0:
            raise ValueError(f"resize_probs={self.resize_probs} are weights of up, down, keep: >= 0, not all 0")
        return self


class DegradeConfig(Frozen):
    """How a refiner stage degrades its clean images into conditions (the defaults: milder than Real-ESRGAN's x4)."""

    scale: int = Field(2, ge=2, le=8)  # HR / LR: the refiner upsamples by this
    # share of images only resized down (bicubic), none of the rest: clean inputs such as a base model's output
    clean_prob: float = Field(0.0, ge=0, le=1)
    first: DegradeRound = DegradeRound()
    second_prob: float = Field(0.5, ge=0, le=1)  # Real-ESRGAN: 1 (always two rounds)
    second: DegradeRound = DegradeRound(blur_prob=0.8, blur_sigma=(0.2, 1.0), resize_range=(0.7, 1.2),
                                        noise_sigma=(1.0, 8.0), poisson_scale=(0.05, 1.0), jpeg_quality=(60, 95))
    sinc_prob: float = Field(0.3, ge=0, le=1)  # Real-ESRGAN: 0.8
    sinc_cutoff: Range = (0.5, 1.0)  # the low-pass cutoff as a share of the LR image's Nyquist frequency


# ---- deterministic draws --------------------------------------------------------------------------------------

class Draws:
    """Every random choice for one sample, each a hash of (key, seed, name): no RNG state is carried along."""

    def __init__(self, key: str, seed: int):
        self.key, self.seed = str(key), int(seed)

    def u(self, name: str) -> float:
        """A number in [0, 1) for `name`."""
        h = hashlib.blake2b(repr(("degrade", self.key, self.seed, name)).encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2 ** 64

    def uniform(self, name: str, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.u(name)

    def chance(self, name: str, p: float) -> bool:
        return self.u(name) < p

    def pick(self, name: str, options: list, weights=None):
        w = np.asarray(weights if weights is not None else [1.0] * len(options), dtype=np.float64)
        return options[int(np.searchsorted(np.cumsum(w / w.sum()), self.u(name), side="right").clip(0, len(w) - 1))]

    def rng(self, name: str) -> np.random.Generator:
        """A generator for a noise field, seeded by the hash of `name`."""
        h = hashlib.blake2b(repr(("degrade-rng", self.key, self.seed, name)).encode(), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(h, "big"))


# ---- operations on float images (H, W, 3) in levels 0..255 ----------------------------------------------------

def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int) -> np.ndarray:
    """A normalised (size, size) Gaussian with principal sigmas sigma_x, sigma_y rotated by theta (radians)."""
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return k / k.sum()


def fast_len(n: int) -> int:
    """The smallest m >= n with no prime factor above 5 (FFTs of such lengths are several times faster)."""
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """img (H, W, C) * kernel (k, k), reflect-padded, by FFT: exact 'same' convolution at any kernel size."""
    h, w, _ = img.shape
    k = kernel.shape[0]
    pad = k // 2
    if pad >= min(h, w):  # reflect padding needs the image to be wider than the kernel's radius
        pad = min(h, w) - 1
        kernel = kernel[k // 2 - pad:k // 2 + pad + 1, k // 2 - pad:k // 2 + pad + 1]
        kernel = kernel / kernel.sum()
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")  # (H+2p, W+2p, C)
    # zeros beyond the reflect padding only wrap into the padding, which is cropped away
    fh, fw = fast_len(padded.shape[0]), fast_len(padded.shape[1])
    kfull = np.zeros((fh, fw))
    kfull[:kernel.shape[0], :kernel.shape[1]] = kernel
    kfull = np.roll(kfull, (-pad, -pad), axis=(0, 1))  # centre the kernel at the origin
    spec = np.fft.rfft2(padded, s=(fh, fw), axes=(0, 1)) * np.fft.rfft2(kfull)[..., None]
    return np.fft.irfft2(spec, s=(fh, fw), axes=(0, 1))[pad:pad + h, pad:pad + w]


def lowpass(img: np.ndarray, cutoff: float) -> np.ndarray:
    """An ideal circular low-pass at `cutoff` x Nyquist (the limit of Real-ESRGAN's sinc kernel): ringing."""
    h, w, _ = img.shape
    pad = max(1, min(h, w) // 4)
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    fy = np.fft.fftfreq(padded.shape[0])[:, None] * 2  # in units of Nyquist
    fx = np.fft.rfftfreq(padded.shape[1])[None, :] * 2
    mask = (np.sqrt(fx ** 2 + fy ** 2) <= cutoff).astype(np.float64)
    out = np.fft.irfft2(np.fft.rfft2(padded, axes=(0, 1)) * mask[..., None], s=padded.shape[:2], axes=(0, 1))
    return out[pad:pad + h, pad:pad + w]


RESAMPLE = {"area": 4, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling BOX, BILINEAR, BICUBIC


def resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Float image (H, W, C) -> (size[1], size[0], C), channel by channel in Pillow's float mode (no clipping)."""
    from PIL import Image

    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32), mode="F")
                        .resize(size, RESAMPLE[mode])) for c in range(img.shape[2])]
    return np.stack(chans, axis=-1).astype(np.float64)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def upsample(image, size: tuple[int, int]):
    """A PIL image -> `size` (W, H), bicubic: how a refiner's condition is made, in training and at inference."""
    from PIL import Image

    return image.convert("RGB").resize(tuple(size), Image.Resampling.BICUBIC)


# ---- the model --------------------------------------------------------------------------------------------------

def _blur(img, d: Draws, r: DegradeRound, tag: str, log: list):
    if not d.chance(f"{tag}.blur", r.blur_prob):
        return img
    sx = d.uniform(f"{tag}.sigma_x", *r.blur_sigma)
    if d.chance(f"{tag}.aniso", r.aniso_prob):
        sy, theta = d.uniform(f"{tag}.sigma_y", *r.blur_sigma), d.uniform(f"{tag}.theta", 0, math.pi)
    else:
        sy, theta = sx, 0.0
    size = 2 * min(10, math.ceil(3 * max(sx, sy))) + 1  # 3 sigma, at most 21 taps as Real-ESRGAN
    log.append(f"{tag}.blur({sx:.2f},{sy:.2f},{theta:.2f})")
    return convolve(img, gaussian_kernel(sx, sy, theta, size))


def _resize(img, d: Draws, r: DegradeRound, tag: str, log: list):
    way = d.pick(f"{tag}.resize", ["up", "down", "keep"], r.resize_probs)
    lo, hi = {"up": (1.0, r.resize_range[1]), "down": (r.resize_range[0], 1.0), "keep": (1.0, 1.0)}[way]
    f = d.uniform(f"{tag}.factor", lo, hi)
    if f == 1.0:
        return img
    mode = d.pick(f"{tag}.mode", sorted(RESAMPLE))
    h, w = img.shape[:2]
    log.append(f"{tag}.resize({f:.2f},{mode})")
    return resize(img, (max(1, round(w * f)), max(1, round(h * f))), mode)


def _noise(img, d: Draws, r: DegradeRound, tag: str, log: list):
    rng, gray = d.rng(f"{tag}.noise"), d.chance(f"{tag}.gray", r.gray_noise_prob)
    shape = img.shape[:2] + ((1,) if gray else (img.shape[2],))
    if d.chance(f"{tag}.gaussian", r.gaussian_noise_prob):
        sigma = d.uniform(f"{tag}.sigma", *r.noise_sigma)
        log.append(f"{tag}.gaussian({sigma:.1f},{'gray' if gray else 'colour'})")
        return img + rng.normal(0.0, sigma, shape)
    scale = d.uniform(f"{tag}.poisson", *r.poisson_scale)
    x = np.clip(img, 0, 255)
    base = x.mean(-1, keepdims=True) if gray else x
    shot = rng.poisson(base) - base  # shot noise: variance equal to the level
    log.append(f"{tag}.poisson({scale:.2f},{'gray' if gray else 'colour'})")
    return img + scale * shot


def _final_resize(img, d: Draws, cfg: DegradeConfig, lr_size: tuple[int, int], log: list):
    img = resize(img, lr_size, d.pick("final.mode", sorted(RESAMPLE)))
    if d.chance("final.sinc", cfg.sinc_prob):
        cutoff = d.uniform("final.cutoff", *cfg.sinc_cutoff)
        log.append(f"sinc({cutoff:.2f})")
        img = lowpass(img, cutoff)
    return img


def degrade(hr: np.ndarray, key: str, seed: int, cfg: DegradeConfig, log: list | None = None) -> np.ndarray:
    """A clean image uint8 (H, W, 3) -> its degraded low-resolution version uint8 (~H/scale, ~W/scale, 3).

    `log`, when given, receives a line per operation applied (what was drawn, for tests and debugging)."""
    if hr.ndim != 3 or hr.shape[2] != 3 or hr.dtype != np.uint8:
        raise ValueError(f"degrade takes an RGB uint8 image (H, W, 3), got {hr.dtype} {hr.shape}")
    h, w = hr.shape[:2]
    log = [] if log is None else log
    d, img = Draws(key, seed), hr.astype(np.float64)
    lr_size = (max(1, round(w / cfg.scale)), max(1, round(h / cfg.scale)))
    if d.chance("clean", cfg.clean_prob):
        log.append("clean")
        return to_uint8(resize(img, lr_size, "bicubic"))
    r = cfg.first
    img = _noise(_resize(_blur(img, d, r, "first", log), d, r, "first", log), d, r, "first", log)
    quality = round(d.uniform("first.jpeg", *r.jpeg_quality))
    log.append(f"first.jpeg({quality})")
    img = jpeg(img, quality)
    if not d.chance("second", cfg.second_prob):
        return to_uint8(_final_resize(img, d, cfg, lr_size, log))
    r = cfg.second
    img = _noise(_resize(_blur(img, d, r, "second", log), d, r, "second", log), d, r, "second", log)
    quality = round(d.uniform("second.jpeg", *r.jpeg_quality))
    if d.chance("final.jpeg_first", 0.5):  # Real-ESRGAN draws the order of the last two steps
        log.append(f"second.jpeg({quality})")
        return to_uint8(_final_resize(jpeg(img, quality), d, cfg, lr_size, log))
    img = _final_resize(img, d, cfg, lr_size, log)
    log.append(f"second.jpeg({quality})")
    return to_uint8(jpeg(img, quality))


def condition(hr: np.ndarray, key: str, seed: int, cfg: DegradeConfig) -> np.ndarray:
    """The refiner's condition for a clean image: degraded to LR, then `upsample`d back to its size (uint8)."""
    from PIL import Image

    lr = degrade(hr, key, seed, cfg)
    return np.asarray(upsample(Image.fromarray(lr), (hr.shape[1], hr.shape[0])))


def degrade_batch(pixels, keys: list[str], seed: int, cfg: DegradeConfig):
    """A batch of clean images (B, 3, H, W) in [-1, 1] -> (conditions (B, 3, H, W) in [-1, 1], has (B,) all True)."""
    import torch

    hr = ((pixels.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    cond = np.stack([condition(im, k, seed, cfg) for im, k in zip(hr, keys)]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(cond).permute(0, 3, 1, 2).contiguous(), torch.ones(len(keys), dtype=torch.bool)
