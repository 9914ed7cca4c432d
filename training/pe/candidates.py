"""Which rewrite of u makes the DiT draw what u asks for: render candidates, score them with reward models.

The reward of a candidate r for a user prompt u (Promptist, microsoft/LMOps):

    R(r; u) = [Q(img(r)) - Q(img(u))] + min(scale * (A(img(r), u) - hinge), 0)

Q is the quality the reward models see (a weighted sum; Promptist used the LAION aesthetic head), A an
image-text alignment (CLIP). Every reward reads u, never r: a rewrite is judged by how well its image serves
what the user asked for, so a rewrite cannot win by asking for something easier to draw. The hinge only bites
when the image of r stops matching u (Promptist: CLIP 0.28, scale 20). Images are averaged over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def candidate_reward(quality_r: float, quality_u: float, relevance: float | None = None, hinge: float = 0.28,
                     scale: float = 20.0) -> float:
    """R(r; u) from its parts; a pure function. `relevance` None: no alignment term."""
    r = quality_r - quality_u
    if relevance is not None:
        r += min(scale * (relevance - hinge), 0.0)
    return r


def weighted(scores: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted sum of the rewards that apply (NaN: the reward does not apply to this prompt); NaN if none does."""
    vals = [(weights[k], v) for k, v in scores.items() if not math.isnan(v)]
    return sum(w * v for w, v in vals) if vals else float("nan")


class CandidateScorer:
    """score(u, candidates) -> R per candidate: renders u and every candidate with the frozen pipeline.

    quality: {name: (reward, weight)}; relevance: (reward, hinge, scale) or None. Rewards are training/rewards
    objects (`reward(pixels, prompts) -> (B,)`)."""

    def __init__(self, pipe, quality: dict[str, tuple], relevance: tuple | None = None, seeds: tuple[int, ...] = (0,),
                 width: int = 512, height: int = 512, steps: int | None = None, cfg_scale: float | None = None):
        if not quality and relevance is None:
            raise ValueError("a candidate scorer needs at least one reward (quality or relevance)")
        self.pipe, self.quality, self.relevance, self.seeds = pipe, quality, relevance, tuple(seeds)
        self.size, self.steps, self.cfg_scale = (width, height), steps, cfg_scale

    def render(self, prompts: list[str], seed: int):
        """(B, 3, H, W) pixels in [-1, 1], as the pipeline decodes them."""
        import torch

        with torch.no_grad():
            lat = self.pipe.latents(prompts, *self.size, self.steps, self.cfg_scale, seed)
            return self.pipe.vae.decode(lat).clamp(-1, 1)

    def parts(self, user: str, prompts: list[str]) -> list[tuple[float, float | None]]:
        """(Q, A) of each prompt's images against the user's prompt, averaged over the seeds."""
        import torch

        weights = {k: w for k, (_, w) in self.quality.items()}
        q = torch.zeros(len(prompts))
        a = torch.zeros(len(prompts))
        for seed in self.seeds:
            pixels = self.render(prompts, seed)
            with torch.no_grad():
                per = {k: r(pixels, [user] * len(prompts)).float().cpu() for k, (r, _) in self.quality.items()}
                q += torch.tensor([weighted({k: float(v[i]) for k, v in per.items()}, weights)
                                   for i in range(len(prompts))]) if per else 0.0
                if self.relevance is not None:
                    a += self.relevance[0](pixels, [user] * len(prompts)).float().cpu()
        n = len(self.seeds)
        return [(float(q[i]) / n, float(a[i]) / n if self.relevance is not None else None) for i in range(len(prompts))]

    def __call__(self, user: str, candidates: list[str]) -> list[float]:
        if not candidates:
            return []
        parts = self.parts(user, [user, *candidates])
        q_u = parts[0][0]
        hinge, scale = (self.relevance[1], self.relevance[2]) if self.relevance is not None else (0.0, 0.0)
        # a reward that applies to no prompt (NaN) contributes nothing rather than poisoning the comparison
        base = 0.0 if math.isnan(q_u) else q_u
        return [candidate_reward(0.0 if math.isnan(q) else q, base, a, hinge, scale) for q, a in parts[1:]]


def improve_pairs(users: list[str], propose: Callable[[str], list[str]],
                  score: Callable[[str, list[str]], list[float]], min_gain: float = 0.0,
                  min_margin: float = 0.05) -> tuple[list[dict], list[dict], list[dict]]:
    """(SFT pairs, preference pairs, one outcome per user prompt).

    For each u: its candidates (from `propose`: the rewriter's samples, a larger LLM, templates) that keep u's
    quoted text exactly are scored; the best becomes the SFT target when its reward beats u itself by more than
    `min_gain`, and best vs worst becomes a preference pair when they differ by at least `min_margin`."""
    from training.pe.guard import keeps_quotes

    sft, pref, outcomes = [], [], []
    for u in users:
        raw = [c.strip() for c in propose(u)]
        cands = list(dict.fromkeys(c for c in raw if c and c != u and keeps_quotes(u, c)))
        dropped = len(set(c for c in raw if c and c != u)) - len(cands)
        if not cands:
            outcomes.append({"user": u, "outcome": "no_candidate", "candidates": len(raw), "lost_quotes": dropped})
            continue
        rewards = score(u, cands)
        order = sorted(range(len(cands)), key=lambda i: (-rewards[i], i))
        best, worst = order[0], order[-1]
        row = {"user": u, "candidates": len(cands), "lost_quotes": dropped, "best": cands[best],
               "best_reward": rewards[best], "worst": cands[worst], "worst_reward": rewards[worst]}
        if rewards[best] > min_gain:
            sft.append({"user": u, "rewrite": cands[best], "source": "reward", "reward": rewards[best]})
            row["outcome"] = "improved"
        else:
            row["outcome"] = "no_gain"  # no candidate beats u itself: nothing to teach
        if len(cands) > 1 and rewards[best] - rewards[worst] >= min_margin:
            pref.append({"user": u, "chosen": cands[best], "rejected": cands[worst], "source": "reward",
                         "margin": rewards[best] - rewards[worst]})
        outcomes.append(row)
    return sft, pref, outcomes
