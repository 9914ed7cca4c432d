"""A learned image-text match model: P(the image shows what the text says), trained by the project itself.

Where no published reward model exists (the toy world; a differentiable stand-in for OCR), the project trains
a small one from data it can make: a CNN image tower and a byte-level convolutional text tower (any language,
no tokenizer files), joined by an MLP over [image, text, image * text]. It is differentiable in the pixels, so
feedback learning can use it. `text_input` says what it reads: the whole prompt, or only the prompt's quoted
text (the text-rendering proxy). A model folder holds `model.safetensors`, `config.json` (shape, what it was
trained on, held-out metrics) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.rewards.base import Reward, fit_square

log = logging.getLogger(__name__)

TEXT_INPUTS = ("prompt", "quoted")


def text_of(prompt: str, text_input: str) -> str:
    """What the model reads of a prompt: all of it, or its quoted spans joined ("" when it quotes nothing)."""
    if text_input == "prompt":
        return prompt
    from training.models.text_encoder import quoted_spans

    return "\n".join(quoted_spans(prompt))


def encode_bytes(texts: list[str], max_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UTF-8 bytes + 1 (0 pads), truncated: ids (B, L) long, mask (B, L) bool; L >= 1."""
    rows = [list(t.encode("utf-8"))[:max_bytes] for t in texts]
    n = max(1, max(len(r) for r in rows))
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long) + 1
    return ids, ids > 0


class MatchNet(nn.Module):
    def __init__(self, size: int = 32, width: int = 64, text_layers: int = 2, max_bytes: int = 64,
                 text_input: str = "prompt"):
        super().__init__()
        if text_input not in TEXT_INPUTS:
            raise ValueError(f"text_input {text_input!r}: choose one of {TEXT_INPUTS}")
        self.config = dict(size=size, width=width, text_layers=text_layers, max_bytes=max_bytes,
                           text_input=text_input)
        w = width
        # batch norm: without it, learning to bind colour AND shape to the text sat at chance for epochs
        self.image = nn.Sequential(*[m for cin, cout, stride in ((3, w // 2, 1), (w // 2, w, 2), (w, w, 1), (w, 2 * w, 2))
                                     for m in (nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.GELU())],
                                   nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * w * 16, w))  # (B, w)
        self.byte_embed = nn.Embedding(257, w, padding_idx=0)
        # byte n-grams (a Chinese character is 3 bytes, an English word a few) max-pooled: a word that decides the
        # match (a colour, a character) stands out instead of being averaged away in a long prompt
        self.text = nn.Sequential(*[m for _ in range(text_layers) for m in
                                    (nn.Conv1d(w, w, 3, padding=1), nn.GELU())])
        self.text_out = nn.Linear(w, w)
        self.head = nn.Sequential(nn.Linear(3 * w, w), nn.GELU(), nn.Linear(w, 1))

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L), (B, L) -> (B, w): byte n-gram features, max over the real bytes."""
        h = self.text(self.byte_embed(ids).transpose(1, 2)).transpose(1, 2)  # (B, L, w)
        h = h.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return self.text_out(torch.where(torch.isinf(h), torch.zeros_like(h), h))

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, H, W) in [-1, 1], byte ids and mask (B, L) -> match logits (B,)."""
        img = self.image(fit_square(pixels, self.config["size"]))  # (B, w)
        txt = self.encode_text(ids, mask)  # (B, w)
        return self.head(torch.cat([img, txt, img * txt], -1))[:, 0]

    def score(self, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
        ids, mask = encode_bytes(texts, self.config["max_bytes"])
        dev = next(self.parameters()).device
        return self(pixels, ids.to(dev), mask.to(dev))


def fit_match(net: MatchNet, pixels: torch.Tensor, texts: list[str], targets: torch.Tensor, epochs: int = 4,
              lr: float = 2e-3, batch: int = 64, noise: float = 0.1, seed: int = 0) -> MatchNet:
    """Train on (image, text, target in [0, 1]) with binary cross-entropy (soft targets welcome: e.g. an OCR
    character match). Gaussian pixel noise: what it will score are model samples, not clean renders."""
    g = torch.Generator().manual_seed(seed)
    ids, mask = encode_bytes(texts, net.config["max_bytes"])
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(texts), generator=g).split(batch):
            x = pixels[idx] + noise * torch.randn(pixels[idx].shape, generator=g)
            loss = F.binary_cross_entropy_with_logits(net(x, ids[idx], mask[idx]), targets[idx].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def evaluate(net: MatchNet, pixels: torch.Tensor, texts: list[str], targets: torch.Tensor) -> dict:
    """Accuracy at 0.5 and mean absolute error against the targets (held-out data)."""
    p = torch.sigmoid(net.score(pixels, texts))
    return {"accuracy": float(((p >= 0.5) == (targets >= 0.5)).float().mean()),
            "mae": float((p - targets).abs().mean()), "n": len(texts)}


def save_match(net: MatchNet, folder: Path, card: dict) -> Path:
    """model.safetensors + config.json (shape and `card`) + MODEL_CARD.md, the card in words."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**net.config, "card": card}, indent=1, ensure_ascii=False))
    lines = [f"# {card.get('name', 'match model')}", "", card.get("summary", ""), "",
             f"- Reads: the {'whole prompt' if net.config['text_input'] == 'prompt' else 'quoted text of the prompt'}"
             f" and the image at {net.config['size']}x{net.config['size']} px.",
             f"- Output: P(match) in [0, 1] (`kind: match` reward; sigmoid of the logit).",
             f"- Trained on: {card.get('data', '?')}", f"- Held-out: {card.get('metrics', {})}",
             f"- Limits: {card.get('limits', 'only as good as its training data; never seen real photographs')}",
             f"- Made by: {card.get('made_by', '?')}", ""]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
    return folder


def load_match(folder: Path) -> MatchNet:
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("card", None)
    net = MatchNet(**cfg)
    net.load_state_dict(load_file(folder / "model.safetensors"))
    return net.eval()


OUTPUTS = ("prob", "logprob")


class MatchReward(Reward):
    """P(match) from a MatchNet folder (options.output=logprob: log P, whose gradient does not vanish on the
    images it rejects); NaN for a prompt that gives it nothing to read (no quoted text)."""

    def load(self) -> None:
        from training.rewards import RewardLoadError

        folder = Path(self.spec.path).expanduser()
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise RewardLoadError(
                f"reward {self.name}: {folder} is not a match model folder (config.json + model.safetensors); "
                "train one (benchmarks/train_toy_rlhf.py trains the toy reward, train_toy_text_rlhf.py the "
                "text-rendering proxy; training/rewards/match.py fit_match + save_match in general) and give its "
                f"folder as objective.feedback.rewards.{self.name}.path")
        self.net = self.freeze(load_match(folder))
        unknown = sorted(set(self.spec.options) - {"output"})
        self.output = self.spec.options.get("output", "prob")
        if unknown or self.output not in OUTPUTS:
            raise RewardLoadError(f"reward {self.name}: options {dict(self.spec.options)}: match takes only "
                                  f"output, one of {OUTPUTS}")

    def __call__(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        texts = [text_of(p, self.net.config["text_input"]) for p in prompts]
        logit = self.net.score(pixels, texts).float()
        r = torch.sigmoid(logit) if self.output == "prob" else F.logsigmoid(logit)
        applies = torch.tensor([bool(t) for t in texts], device=r.device)
        return torch.where(applies, r, torch.full_like(r, float("nan")))
