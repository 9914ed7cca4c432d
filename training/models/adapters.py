"""Adapters trained on a frozen base DiT: LoRA (peft) and VMix, the aesthetic value-mixing adapter.

VMix (Seedream 2.0 §4.2, arXiv 2412.20800): the prompt is split into a content part (the caption, through the
text encoder as always) and an aesthetic part. The aesthetic part is read as opposing label pairs (e.g. "soft
light" / "flat light"): for each pair it names the positive side, the negative side, or neither. AesEmb is
each label's embedding through the frozen LLM (the mean over its names in every language, so "柔光" and
"soft light" are one label), computed once when the adapter is built and stored with it. The chosen labels'
features are then mixed into the *values* of the text tokens in every dual-stream block's joint attention
(queries and keys untouched, so each block's attention map is the content's own), and into the adaLN vector
by a pooled path. Both paths end in zero-initialised Linears: at init the adapted model equals the base bit
for bit, and with no aesthetic label given (CFG's unconditional branch) the adapter is off exactly.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.config import LoRAConfig, VMixConfig

UNSET, POSITIVE, NEGATIVE = -1, 0, 1


@dataclass
class AdapterOutput:
    """What the DiT adds: `cond` (B, D) to its adaLN vector; `values[i]` (B, H, 1, Dh) in dual block i."""

    cond: torch.Tensor
    values: list[torch.Tensor]


def label_choices(texts: list[str], cfg: VMixConfig) -> torch.Tensor:
    """(B, P) long: per sample and label pair, POSITIVE or NEGATIVE when one side's name occurs in the
    aesthetic text (case-insensitive), UNSET when neither or both do."""
    out = torch.full((len(texts), len(cfg.pairs)), UNSET, dtype=torch.long)
    for i, text in enumerate(texts):
        low = (text or "").lower()
        for p, pair in enumerate(cfg.pairs):
            pos = any(n.lower() in low for n in pair.positive)
            neg = any(n.lower() in low for n in pair.negative)
            if pos != neg:
                out[i, p] = POSITIVE if pos else NEGATIVE
    return out


@torch.no_grad()
def label_embeddings(embed_texts, cfg: VMixConfig) -> torch.Tensor:
    """AesEmb: (P, 2, E), each label the mean embedding of its names; `embed_texts(list[str]) -> (N, E)` is the
    frozen text encoder's pooled output."""
    rows = []
    for pair in cfg.pairs:
        rows.append(torch.stack([embed_texts(list(pair.positive)).float().mean(0),
                                 embed_texts(list(pair.negative)).float().mean(0)]))
    return torch.stack(rows)


class VMix(nn.Module):
    """Aesthetic label choices (B, P) -> AdapterOutput for the DiT; all output paths start at zero."""

    def __init__(self, cfg: VMixConfig, label_emb: torch.Tensor, dim: int, heads: int, double_blocks: int):
        super().__init__()
        pairs, _, emb_dim = label_emb.shape
        if pairs != len(cfg.pairs):
            raise ValueError(f"AesEmb has {pairs} label pairs, the config {len(cfg.pairs)}")
        hidden = cfg.hidden or dim
        self.cfg, self.heads, self.dim = cfg, heads, dim
        self.register_buffer("label_emb", label_emb.float().clone())  # (P, 2, E): frozen AesEmb, saved with it
        self.pair_embed = nn.Parameter(torch.zeros(pairs, emb_dim))  # tells the pairs apart (one MLP for all)
        self.features = nn.Sequential(nn.LayerNorm(emb_dim), nn.Linear(emb_dim, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden))
        self.values = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(double_blocks))
        self.cond = nn.Linear(hidden, dim)
        for lin in (*self.values, self.cond):  # zero-init: the adapter starts as the identity
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def choose(self, texts: list[str]) -> torch.Tensor:
        """(B, P) label choices of aesthetic texts, on this module's device."""
        return label_choices(texts, self.cfg).to(self.label_emb.device)

    def forward(self, choice: torch.Tensor) -> AdapterOutput:
        b, p = choice.shape
        is_set = choice >= 0  # (B, P)
        picked = self.label_emb[torch.arange(p, device=choice.device)[None], choice.clamp(min=0)]  # (B, P, E)
        f = self.features(picked + self.pair_embed)  # (B, P, hidden)
        m = is_set[..., None].to(f.dtype)
        pooled = (f * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, hidden); zeros when nothing is set
        on = is_set.any(1)[:, None].to(f.dtype)  # (B, 1): no label, no change (biases trained away from 0)
        values = [(v(pooled) * on).view(b, self.heads, 1, self.dim // self.heads) for v in self.values]
        return AdapterOutput(self.cond(pooled) * on, values)


def build_vmix(cfg: VMixConfig, dit, llm_encoder) -> VMix:
    """A new VMix for this DiT, its AesEmb computed through the frozen LLM of the conditioner."""
    emb = label_embeddings(llm_encoder.pooled_frozen, cfg)
    c = dit.config
    return VMix(cfg, emb, c.hidden_size, c.num_heads, c.depth_double)


# ---- LoRA (peft) ----------------------------------------------------------------------------------------------

def add_lora(dit: nn.Module, cfg: LoRAConfig) -> None:
    """Inject LoRA into the DiT's target Linears (B starts at zero: the output is unchanged); only LoRA trains."""
    from peft import LoraConfig, inject_adapter_in_model

    names = {n for n, _ in dit.named_modules()}
    missing = [t for t in cfg.targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(f"stage.lora.targets {missing} name no module of this DiT; use names such as qkv, "
                         "proj_img, proj_txt, lin1, lin2")
    dit.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                       target_modules=list(cfg.targets)), dit)
    for n, p in dit.named_parameters():
        p.requires_grad_("lora_" in n)


def lora_state(dit: nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(dit)


def load_lora_state(dit: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(dit, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"the adapter's LoRA weights do not fit this DiT (e.g. {unexpected[:3]}); load it over "
                         "the base pipeline it was trained on")


@contextmanager
def lora_disabled(dit: nn.Module):
    """Run the base without its LoRA inside the block (the frozen reference of DPO costs no copy)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in dit.modules() if isinstance(m, BaseTunerLayer)]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield dit
    finally:
        for m in layers:
            m.enable_adapters(True)


# ---- saved adapters -----------------------------------------------------------------------------------------

ADAPTER_JSON = "adapter.json"


def save_adapter(folder: Path, stage, dit: nn.Module, vmix: VMix | None, conditioner_state: dict | None,
                 base: str | None, sampler: dict | None = None) -> Path:
    """An adapter folder: adapter.json (the stage's LoRA/VMix config, the base it was trained on), the LoRA,
    VMix and (if it trained) conditioner weights as safetensors. Loaded over the base by `load_adapter`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lora = stage.base == "lora"
    if lora:
        save_file({k: v.contiguous() for k, v in lora_state(dit).items()}, folder / "lora.safetensors")
    if vmix is not None:
        save_file({k: v.contiguous() for k, v in vmix.state_dict().items()}, folder / "vmix.safetensors")
    if conditioner_state:
        save_file({k: v.contiguous() for k, v in conditioner_state.items()}, folder / "conditioner.safetensors")
    meta = {"stage": stage.name, "base": base, "lora": stage.lora.model_dump(mode="json") if lora else None,
            "vmix": stage.vmix.model_dump(mode="json") if vmix is not None else None,
            "vmix_shape": list(vmix.label_emb.shape) if vmix is not None else None,
            "sampler": sampler}  # a distilled student's own sampler (training/pipeline.py), None: the base's
    (folder / ADAPTER_JSON).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return folder


def read_adapter_meta(folder: Path) -> dict:
    folder = Path(folder)
    if not (folder / ADAPTER_JSON).is_file():
        raise FileNotFoundError(f"{folder} is not an adapter folder (no {ADAPTER_JSON}); give the `adapter` folder "
                                "that a LoRA or VMix stage of `sluice train` writes into its out_dir")
    return json.loads((folder / ADAPTER_JSON).read_text())


def continue_adapter(folder: Path, stage, dit: nn.Module, vmix: VMix | None, conditioner: nn.Module) -> None:
    """Load a saved adapter's weights into this stage's freshly built LoRA and VMix, which must have its shape."""
    from safetensors.torch import load_file

    folder, meta = Path(folder), read_adapter_meta(folder)
    lora = stage.lora.model_dump(mode="json") if stage.base == "lora" else None
    mine = stage.vmix.model_dump(mode="json") if stage.vmix is not None else None
    theirs = {k: v for k, v in (meta.get("vmix") or {}).items() if k != "drop"} or None
    if meta.get("lora") != lora or theirs != ({k: v for k, v in mine.items() if k != "drop"} if mine else None):
        raise ValueError(f"model.adapter_from={folder} was trained with lora={meta.get('lora')} and vmix="
                         f"{meta.get('vmix')}; make stage.lora and stage.vmix the same to go on training it")
    if lora:
        load_lora_state(dit, load_file(folder / "lora.safetensors"))
    if vmix is not None:
        vmix.load_state_dict(load_file(folder / "vmix.safetensors"))
    if (folder / "conditioner.safetensors").is_file():
        conditioner.load_state_dict(load_file(folder / "conditioner.safetensors"), strict=False)


def load_adapter(folder: Path, dit: nn.Module, conditioner: nn.Module) -> VMix | None:
    """Apply a saved adapter to a base DiT and conditioner in place; returns its VMix (or None)."""
    from safetensors.torch import load_file

    folder, meta = Path(folder), read_adapter_meta(folder)
    if meta.get("lora"):
        add_lora(dit, LoRAConfig(**meta["lora"]))
        load_lora_state(dit, load_file(folder / "lora.safetensors"))
    if (folder / "conditioner.safetensors").is_file():
        conditioner.load_state_dict(load_file(folder / "conditioner.safetensors"), strict=False)
    vmix = None
    if meta.get("vmix"):
        c = dit.config
        vmix = VMix(VMixConfig(**meta["vmix"]), torch.zeros(meta["vmix_shape"]), c.hidden_size, c.num_heads,
                    c.depth_double)
        vmix.load_state_dict(load_file(folder / "vmix.safetensors"))
        vmix.requires_grad_(False)
    dit.requires_grad_(False)
    return vmix
