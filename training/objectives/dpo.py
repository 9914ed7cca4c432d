"""Diffusion-DPO (Wallace et al. 2023) in the rectified-flow form, for preference pairs (preferred, rejected).

Both images of a pair share one t and one noise. With e(m, x0) the per-sample mean squared velocity error of
model m on x0 (target noise - x0),
    inside = -beta/2 * ((e(θ, x_w) - e(θ, x_l)) - (e(ref, x_w) - e(ref, x_l))),   loss = -log σ(inside).
So the trained model gains on the preferred image relative to the reference and loses on the rejected one.
At θ = ref the loss is exactly log 2; a pair of two identical images gives no gradient. Why DPO for SFT's
model-generated negatives: the flow loss can only pull towards images; DPO pushes away from a rejected
image only as far as it also stays close to the reference on the preferred one, which keeps an SFT on a
small set from unlearning the base (the frozen reference is the anchor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.objectives.flow_matching import interpolate, per_sample_loss, shifted_t


def dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, beta: float):
    """(mean loss, inside (B,)): the DPO loss from per-sample errors of the model and the reference."""
    inside = -0.5 * beta * ((err_w - err_l) - (ref_w - ref_l))
    return -F.logsigmoid(inside).mean(), inside


def diffusion_dpo_term(inp):
    """Diffusion-DPO over the batch's preference pairs (rows with has_lose); zero when the batch has none."""
    from training.objectives.base import TermOut

    if inp.has_lose is None or not bool(inp.has_lose.any()):
        return TermOut(inp.x0.sum() * 0.0, {})
    if inp.reference is None:
        raise ValueError("diffusion_dpo needs the frozen reference model; the trainer keeps one when the term "
                         "is in objective.terms")
    rows = inp.has_lose.nonzero().flatten()
    xw, xl = inp.x0[rows], inp.x0_lose[rows]
    n = len(rows)
    t = shifted_t(n, xw, inp.generator, inp.objective, inp.patch)
    noise = torch.randn(xw.shape, generator=inp.generator).to(xw.device, xw.dtype)
    x_t = torch.cat([interpolate(xw, noise, t), interpolate(xl, noise, t)])  # (2n, C, H, W)
    tt, both = torch.cat([t, t]), torch.cat([rows, rows])
    x0s, noises = torch.cat([xw, xl]), torch.cat([noise, noise])
    err = per_sample_loss(inp.velocity(x_t, tt, both), x0s, noises)  # (2n,)
    with torch.no_grad():
        ref = per_sample_loss(inp.reference(x_t, tt, both), x0s, noises)
    loss, inside = dpo_loss(err[:n], err[n:], ref[:n], ref[n:], inp.objective.dpo.beta)
    metrics = {"dpo_loss": loss.item(), "dpo_implicit_acc": (inside > 0).float().mean().item(),
               "dpo_pairs": float(n), "dpo_err_win": err[:n].mean().item(), "dpo_err_lose": err[n:].mean().item()}
    return TermOut(loss, metrics)
