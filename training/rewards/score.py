"""Scoring images that are already made (a `sluice generate` folder) with a reward model: verdicts for pairs."""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def score_images(reward, images: list, prompts: list[str], batch: int = 16) -> list[float]:
    """One score per (PIL image, prompt); NaN where the reward does not apply. Images of a batch share a size."""
    from training.rewards.base import to_pixels

    out: list[float] = []
    for i in range(0, len(images), batch):
        out += reward(to_pixels(images[i:i + batch]), list(prompts[i:i + batch])).float().cpu().tolist()
    return out


def score_generated(folder: Path, reward, batch: int = 16) -> dict[str, float]:
    """Scores per record id of a generated folder (images + generated.jsonl); unreadable images are left out
    (the pair builder gives them their own outcome)."""
    from PIL import Image

    from training.data.preference import read_generated

    records, _ = read_generated(folder)
    by_size: dict[tuple[int, int], list[tuple[dict, object]]] = {}
    for rec in records:
        try:
            with Image.open(Path(folder) / rec["file"]) as im:
                im = im.convert("RGB")
        except (OSError, ValueError):
            continue
        by_size.setdefault(im.size, []).append((rec, im))
    scores = {}
    for items in by_size.values():
        vals = score_images(reward, [im for _, im in items], [r["prompt"] for r, _ in items], batch)
        scores.update({r["id"]: v for (r, _), v in zip(items, vals)})
    return scores
