"""Small heads over CLIP features: the LAION-layout aesthetic head, and a preference head for alignment.

* Aesthetic: the file stage 2 reads (`curation/signals/aesthetic.py`; published LAION weights or one that
  `sluice curate train-aesthetic` trains from Label Studio ratings or pairs): linear layers `layers.N.*` (or one
  `weight`/`bias`) over the L2-normalised image embedding, with no activation between them. Loaded here into
  torch so that its gradient reaches the pixels. Training must not import curation, so the few lines that read
  the layout are repeated here.
* Preference: r = cos(img, txt) + MLP([img, img * txt]), its last layer zero-initialised (at init the reward is
  plain CLIP similarity; the image alone carries what people prefer whatever the prompt, the product the match), fitted on preferred/rejected pairs with a Bradley-Terry loss (`fit_preference_head`); the
  pairs come from Label Studio's pairwise template (training/data/preference.py `pairs_from_pairwise`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

_LAYER = re.compile(r"^(?:layers\.)?(\d+)\.(weight|bias)$")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def laion_head(path: Path) -> nn.Sequential:
    """The aesthetic head at `path` as torch Linear layers (embedding (B, D) -> score (B, 1))."""
    state = {k.removeprefix("model."): v.float() for k, v in read_state(Path(path)).items()}
    if set(state) == {"weight", "bias"}:
        pairs = [(state["weight"], state["bias"])]
    else:
        by_index: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in state.items():
            m = _LAYER.match(k)
            if not m:
                raise ValueError(f"aesthetic head {path}: unexpected tensor {k!r}; expected LAION keys "
                                 "layers.N.weight/bias (or weight/bias)")
            by_index.setdefault(int(m.group(1)), {})[m.group(2)] = v
        pairs = [(d["weight"], d["bias"]) for _, d in sorted(by_index.items())]
    layers = []
    for w, b in pairs:
        lin = nn.Linear(w.shape[1], w.shape[0])
        if layers and layers[-1].out_features != w.shape[1]:
            raise ValueError(f"aesthetic head {path}: layers do not chain ({layers[-1].out_features} then {w.shape[1]})")
        lin.weight.data.copy_(w)
        lin.bias.data.copy_(b)
        layers.append(lin)
    if not layers or layers[-1].out_features != 1:
        raise ValueError(f"aesthetic head {path} must end in one output (a score)")
    return nn.Sequential(*layers)


def head_card(path: Path) -> dict | None:
    """The JSON card beside a head (`<head>.json`), e.g. `emb_model`: the CLIP spec it was trained on."""
    card = Path(path).with_suffix(".json")
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None


class PreferenceHead(nn.Module):
    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)  # at init: the reward is CLIP's cosine similarity, nothing more
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (B, D), (B, D) -> reward (B,)."""
        return (img * txt).sum(-1) + self.mlp(torch.cat([img, img * txt], -1))[:, 0]


def fit_preference_head(head: PreferenceHead, img_win: torch.Tensor, img_lose: torch.Tensor, txt: torch.Tensor,
                        epochs: int = 50, lr: float = 1e-3, seed: int = 0) -> dict:
    """Bradley-Terry on pairs: maximise log sigmoid(r(win) - r(lose)); embeddings (N, D). Returns metrics."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr, weight_decay=1e-4)
    head.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(txt), generator=g).split(64):
            loss = -F.logsigmoid(head(img_win[idx], txt[idx]) - head(img_lose[idx], txt[idx])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    with torch.no_grad():
        acc = (head(img_win, txt) > head(img_lose, txt)).float().mean().item()
    return {"pair_accuracy": acc, "pairs": len(txt)}


def save_preference_head(head: PreferenceHead, path: Path, clip: str, card: dict) -> Path:
    """`<path>` (.safetensors) and its card `<path>.json` naming the CLIP it reads."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    meta = {"kind": "preference_head", "emb_model": clip, "dim": head.dim, "hidden": head.hidden, **card}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return path


def load_preference_head(path: Path) -> tuple[PreferenceHead, dict]:
    card = head_card(path)
    if not card or card.get("kind") != "preference_head":
        raise ValueError(f"{path} has no preference-head card ({Path(path).with_suffix('.json')}); write heads "
                         "with training/rewards/heads.py save_preference_head")
    head = PreferenceHead(card["dim"], card["hidden"])
    head.load_state_dict(read_state(Path(path)))
    return head.eval(), card
