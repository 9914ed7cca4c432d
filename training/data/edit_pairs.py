"""Edit pairs made by the base model, for instruction editing on real data (SeedEdit's data recipe, simplified).

Input: a JSONL of edit specs, one per line: `{"prompt": "a red car on a street", "edit_prompt": "a blue car on
a street", "instruction": {"en": "make the car blue", "zh": "把车变成蓝色"}}` (one language is enough). For each,
the base model draws the source and the target from the same noise along one shared trajectory: both follow
`prompt` from pure noise down to t = `t_share`, then the source goes on under `prompt` and the target under
`edit_prompt`. What the early, shared steps fixed (layout, pose, background) stays; what the prompts differ in
changes. A CLIP (given by spec, as the reward models load it) then keeps a pair only when
- the edit went the way the text asked: CLIP directional similarity, cos(E(target) - E(source), E(edit_prompt)
  - E(prompt)) >= `min_direction`, and
- the target is still the source's picture: cos(E(target), E(source)) >= `min_similarity`.
Kept pairs are written as edit shards (docs/export-format.md: `<key>.jpg` the target, `<key>.src.jpg` the
source, the instruction as the short caption); `pairs.jsonl` says what became of every spec line.
The rule-made toy pairs (synthetic/toy_shapes.py `make_edit_pairs`) are written in the same format.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from pathlib import Path

import torch

from schemas.shards import EDIT_JSON_KEY, IMAGE_MEMBER, META_MEMBER, SOURCE_MEMBER, member_name

log = logging.getLogger(__name__)


def read_edit_specs(path: Path) -> tuple[list[dict], list[dict]]:
    """(specs with their line number, outcome rows of unusable lines)."""
    from training.data.jsonl import jsonl_lines

    specs, bad = [], []
    hint = ('give a JSONL of edit specs, one per line: '
            '{"prompt": ..., "edit_prompt": ..., "instruction": {"en": ..., "zh": ...}}')
    for n, spec, error in jsonl_lines(path, hint):
        if error:
            bad.append({"line": n, "outcome": "bad_spec", "reason": error})
            continue
        ok = isinstance(spec, dict) and all(isinstance(spec.get(k), str) and spec[k] for k in ("prompt", "edit_prompt"))
        ins = spec.get("instruction") if isinstance(spec, dict) else None
        if not ok or not isinstance(ins, dict) or not any(isinstance(ins.get(l), str) and ins[l] for l in ("zh", "en")):
            bad.append({"line": n, "outcome": "bad_spec",
                        "reason": "needs prompt, edit_prompt and instruction.en or instruction.zh (non-empty strings)"})
            continue
        specs.append({**spec, "line": n})
    return specs, bad


@torch.no_grad()
def shared_trajectory(pipe, prompt: str, edit_prompt: str, width: int, height: int, steps: int = 30,
                      cfg_scale: float = 3.0, seed: int = 0, t_share: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """(source latents, target latents) (1, C, h, w): one Euler trajectory under `prompt` down to t_share, then
    one branch per prompt, with CFG and the training shift as the pipeline samples."""
    from training.objectives.flow_matching import shift_for, sigmas

    f, patch = pipe.vae.factor, pipe.dit.config.patch_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, pipe.vae.channels, height // f, width // f, generator=g).to(pipe.device)
    conds = {p: pipe.cond([p]) for p in (prompt, edit_prompt)}
    null = pipe.cond.null(1)
    grid = sigmas(steps, shift_for((x.shape[2] // patch) * (x.shape[3] // patch), pipe.objective.base_shift,
                                   pipe.objective.ref_tokens))

    def step(x, p, t0, t1):
        tt = torch.full((1,), float(t0), device=x.device)
        v, vu = pipe.dit(x, tt, *conds[p]), pipe.dit(x, tt, *null)
        return x + (float(t1) - float(t0)) * (vu + cfg_scale * (v - vu))

    pairs = list(zip(grid[:-1], grid[1:]))
    branch = next((i for i, (t0, _) in enumerate(pairs) if t0 <= t_share), len(pairs))
    for t0, t1 in pairs[:branch]:
        x = step(x, prompt, t0, t1)
    src, tgt = x, x.clone()
    for t0, t1 in pairs[branch:]:
        src, tgt = step(src, prompt, t0, t1), step(tgt, edit_prompt, t0, t1)
    return src, tgt


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_edit_pairs(pipe, specs_path: Path, out: Path, clip=None, width: int = 512, height: int = 512,
                    steps: int = 30, cfg_scale: float = 3.0, seed: int = 0, t_share: float = 0.7,
                    min_direction: float = 0.1, min_similarity: float = 0.7, shard_size: int = 1000) -> dict:
    """Draw, filter and write edit pairs for every spec line; returns the counts (also in _manifest.json).

    clip: a ClipTowers (training/rewards/clip.py `load_clip`) for the filters; None keeps every pair (say so)."""
    from training.pipeline import to_images

    specs, rows = read_edit_specs(specs_path)
    if clip is None:
        log.warning("no CLIP given: edit pairs are kept unfiltered (directional and source similarity unchecked)")
    kept = []
    for i, spec in enumerate(specs):
        s, t = shared_trajectory(pipe, spec["prompt"], spec["edit_prompt"], width, height, steps, cfg_scale,
                                 seed + i, t_share)
        src, tgt = to_images(pipe.vae.decode(torch.cat([s, t])))
        row = {"line": spec["line"], "outcome": "kept", "reason": None}
        if clip is not None:
            e_img = clip.image_features(pipe.vae.decode(torch.cat([s, t])).cpu())  # (2, D)
            e_txt = clip.text_features([spec["prompt"], spec["edit_prompt"]])
            direction = float(torch.nn.functional.cosine_similarity(e_img[1] - e_img[0], e_txt[1] - e_txt[0], dim=0))
            similarity = float(e_img[0] @ e_img[1])
            row.update(direction=round(direction, 4), similarity=round(similarity, 4))
            if direction < min_direction:
                row.update(outcome="dropped", reason=f"directional similarity {direction:.3f} < {min_direction}")
            elif similarity < min_similarity:
                row.update(outcome="dropped", reason=f"source similarity {similarity:.3f} < {min_similarity}")
        rows.append(row)
        if row["outcome"] == "kept":
            kept.append((spec, src, tgt, row))
    return _write(kept, rows, Path(out), width, height, shard_size)


def _write(kept: list, rows: list[dict], out: Path, width: int, height: int, shard_size: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shards/**/*.tar"):  # a rebuild replaces the shards, never mixes with them
        old.unlink()
    bucket = f"{width}x{height}"
    (out / "shards" / bucket).mkdir(parents=True, exist_ok=True)
    items = []
    for spec, src, tgt, row in kept:
        key = hashlib.sha1(json.dumps([spec["prompt"], spec["edit_prompt"], spec["line"]]).encode()).hexdigest()[:32]
        caps = {"short": {l: (spec["instruction"].get(l) or "") for l in ("zh", "en")}}
        meta = {"id": key, "key": key, "source": "edit_pairs", "uri": f"edit-spec:{spec['line']}", "width": width,
                "height": height, "aspect_bucket": bucket, "captions": caps,
                "styles": sorted(f"short_{l}" for l in ("zh", "en") if caps["short"][l]), "signals": {}, "tags": [],
                "cluster_path": [], EDIT_JSON_KEY: {"prompt": spec["prompt"], "edit_prompt": spec["edit_prompt"],
                                             **{k: row[k] for k in ("direction", "similarity") if k in row}}}
        items.append((key, meta, _jpeg(tgt), _jpeg(src)))
    items.sort(key=lambda it: it[0])
    for n in range(0, len(items), shard_size):
        with tarfile.open(out / "shards" / bucket / f"edits-{n // shard_size:06d}.tar", "w") as tar:
            for key, meta, tgt, src in items[n:n + shard_size]:
                meta_bytes = json.dumps(meta, ensure_ascii=False).encode()
                for member, data in ((IMAGE_MEMBER, tgt), (SOURCE_MEMBER, src), (META_MEMBER, meta_bytes)):
                    info = tarfile.TarInfo(member_name(key, member))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {"specs": len(rows)}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    (out / "_manifest.json").write_text(json.dumps({"counts": counts}, indent=1))
    (out / "_SUCCESS").write_text("")
    return counts
