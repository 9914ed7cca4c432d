"""Identity preservation for instruction editing: a perceptual term and an identity (e.g. face/ID) term.

Both read the model's estimate of the clean image, x0_hat = x_t - t * v (rectified flow), at a timestep below
`t_max` (a noisier estimate is a blur that any feature network scores badly), decoded to pixels:
- `perceptual`: mean squared distance of a frozen feature network's features of x0_hat and of the target image,
  averaged over the network's outputs (LPIPS-like, unweighted);
- `identity`: 1 - cosine between a frozen embedding model's vectors of x0_hat and of the SOURCE image: what an
  edit must keep (a face, a product) is the source's identity, whatever the instruction changes.
The networks come from files the user gives (objective.perceptual.model, objective.identity.model); nothing is
downloaded. They stay frozen and outside the trained modules: no gradient reaches them, and they are not saved.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from training.objectives.flow_matching import interpolate, shifted_t


def load_frozen_net(path: str, what: str):
    """A TorchScript archive or an exported program (.pt2) as a frozen module; errors say what to give."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist; give a TorchScript file (torch.jit.save) or an "
                                "exported program (torch.export.save, .pt2) that maps pixels in [-1, 1] to features")
    try:
        net = torch.export.load(str(p)).module() if p.suffix == ".pt2" else torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"{what}: {path} is neither a TorchScript archive nor an exported program ({e})") from None
    for prm in net.parameters():
        prm.requires_grad_(False)
    if p.suffix != ".pt2":  # an exported program is traced in eval mode already and refuses .eval()
        net.eval()
    return net


def _outputs(x) -> list[torch.Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def predicted_x0(inp, t_max: float) -> torch.Tensor:
    """x0_hat (B, C, H, W) of the batch's targets at timesteps drawn below t_max; gradients flow to the model."""
    noise = torch.randn(inp.x0.shape, generator=inp.generator).to(inp.x0.device, inp.x0.dtype)
    t = shifted_t(len(inp.x0), inp.x0, inp.generator, inp.objective, inp.patch) * t_max
    x_t = interpolate(inp.x0, noise, t)
    v = inp.velocity(x_t, t)
    return x_t - t.view(-1, 1, 1, 1).to(x_t.dtype) * v


class _FeatureTerm:
    key = ""  # objective.<key>

    def __init__(self, cfg):
        spec = getattr(cfg.objective, self.key)
        if spec is None:
            raise ValueError(f"objective.terms.{self.key} needs objective.{self.key}.model=<a TorchScript or .pt2 "
                             "network file>")
        self.spec = spec
        self.net = load_frozen_net(spec.model, f"objective.{self.key}.model")
        self.device = None

    def features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        if self.device != pixels.device:  # the frozen network follows the model to its device, once
            self.net, self.device = self.net.to(pixels.device), pixels.device
        return [o.float() for o in _outputs(self.net(pixels))]


class Perceptual(_FeatureTerm):
    """Feature-space distance between the model's x0 estimate and the target image."""

    key = "perceptual"

    def __call__(self, inp):
        from training.objectives.base import TermOut

        pred = self.features(inp.decode(predicted_x0(inp, self.spec.t_max)))
        with torch.no_grad():
            target = self.features(inp.decode(inp.x0))
        loss = torch.stack([F.mse_loss(p, q) for p, q in zip(pred, target)]).mean()
        return TermOut(loss, {"perceptual_loss": loss.item()})


class Identity(_FeatureTerm):
    """1 - cosine of the embedding model's vectors of the model's x0 estimate and of the edit's source image."""

    key = "identity"

    def __call__(self, inp):
        from training.objectives.base import TermOut

        if inp.x0_src is None or inp.has_src is None or not bool(inp.has_src.any()):
            return TermOut(inp.x0.sum() * 0.0, {})  # no edit pair in this batch: nothing to keep
        rows = inp.has_src.nonzero().flatten()
        pred = self.features(inp.decode(predicted_x0(inp, self.spec.t_max)[rows]))[0].flatten(1)
        with torch.no_grad():
            src = self.features(inp.decode(inp.x0_src[rows]))[0].flatten(1)
        cos = F.cosine_similarity(pred, src, dim=1)  # (n,)
        loss = (1 - cos).mean()
        return TermOut(loss, {"identity_loss": loss.item(), "identity_cos": cos.mean().item()})
