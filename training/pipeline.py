"""Prompt (zh or en) -> image: the text and glyph encoders, the flow-matching Euler sampler with CFG and shift,
the VAE decode. A pipeline folder holds `transformer/` (the DiT, diffusers format), `conditioner.safetensors`
(the trained refiner, glyph mapper and type embeddings) and `pipeline.json` (text, VAE and objective config).
An adapter folder (LoRA, VMix; training/models/adapters.py) loads over a pipeline; with VMix, each prompt may
have an aesthetic part (e.g. "soft light"), and CFG's unconditional branch has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training.config import ObjectiveConfig, TextConfig, VAEConfig


def build_conditioner(text: TextConfig, out_dim: int):
    from training.models.text_encoder import Conditioner, GlyphEncoder, LLMTextEncoder

    llm = LLMTextEncoder(text.llm, out_dim, text.hidden_layer, text.max_length, text.refiner_layers,
                         text.refiner_heads, text.freeze_llm, text.prefix)
    glyph = None
    if text.glyph.enabled:
        glyph = GlyphEncoder(out_dim, text.glyph.path, dict(text.glyph.t5), text.glyph.max_bytes, text.glyph.freeze)
    return Conditioner(llm, glyph, out_dim, text.drop_text, text.drop_glyph)


def load_trained(folder: Path, text: TextConfig | None = None):
    """(DiT, conditioner) of a pipeline folder, with the conditioner's trained weights."""
    from safetensors.torch import load_file

    from training.models.dit import DiT

    folder = Path(folder)
    if text is None:
        text = TextConfig(**json.loads((folder / "pipeline.json").read_text())["text"])
    dit = DiT.from_pretrained(folder / "transformer")
    cond = build_conditioner(text, dit.config.text_dim)
    cond.load_state_dict(load_file(folder / "conditioner.safetensors"), strict=False)
    return dit, cond


class Pipeline:
    def __init__(self, dit, conditioner, vae, objective: ObjectiveConfig, text: TextConfig, vae_cfg: VAEConfig,
                 vmix=None):
        self.dit, self.cond, self.vae = dit.eval(), conditioner.eval(), vae
        self.objective, self.text, self.vae_cfg = objective, text, vae_cfg
        self.vmix = vmix.eval() if vmix is not None else None

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    def adapter_output(self, aesthetics: list[str] | None, n: int):
        """What the VMix adapter adds for these aesthetic parts (None: no adapter, or no aesthetic given)."""
        if aesthetics is None or not any(aesthetics):
            return None
        if self.vmix is None:
            raise ValueError("an aesthetic part needs a VMix adapter: load one with --adapter DIR")
        if len(aesthetics) != n:
            raise ValueError(f"{len(aesthetics)} aesthetic parts for {n} prompts; give one per prompt")
        choice = self.vmix.choose(aesthetics)
        unknown = [a for a, c in zip(aesthetics, choice) if a and bool((c < 0).all())]
        if unknown:
            names = [n for p in self.vmix.cfg.pairs for n in (*p.positive, *p.negative)]
            raise ValueError(f"aesthetic {unknown[0]!r} names none of the adapter's labels; use one of {names}")
        return self.vmix(choice)

    @torch.no_grad()
    def latents(self, prompts: list[str], width: int, height: int, steps: int = 30, cfg_scale: float = 3.0,
                seed: int = 0, aesthetics: list[str] | None = None) -> torch.Tensor:
        from training.objectives.flow_matching import euler_sample

        f = self.vae.factor
        if width % (f * self.dit.config.patch_size) or height % (f * self.dit.config.patch_size):
            raise ValueError(f"width and height must be multiples of {f * self.dit.config.patch_size}")
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(len(prompts), self.vae.channels, height // f, width // f, generator=g).to(self.device)
        cond, uncond = self.cond(prompts), self.cond.null(len(prompts))
        adapter = self.adapter_output(aesthetics, len(prompts))
        obj = self.objective
        return euler_sample(lambda x, t: self.dit(x, t, *cond, adapter), noise, steps, obj.base_shift,
                            obj.ref_tokens, self.dit.config.patch_size, cfg_scale, lambda x, t: self.dit(x, t, *uncond))

    def __call__(self, prompts: list[str], width: int, height: int, steps: int = 30, cfg_scale: float = 3.0,
                 seed: int = 0, aesthetics: list[str] | None = None) -> list:
        """PIL images, one per prompt; `aesthetics`: one aesthetic part per prompt ("" for none), VMix only."""
        from PIL import Image

        pix = self.vae.decode(self.latents(prompts, width, height, steps, cfg_scale, seed, aesthetics))
        arr = ((pix.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    def save(self, folder: Path) -> Path:
        from safetensors.torch import save_file

        if any("lora_" in n for n, _ in self.dit.named_parameters()):
            raise ValueError("this DiT carries LoRA layers: save them as an adapter (training/models/adapters.py "
                             "save_adapter), over the base pipeline they were trained on")
        folder = Path(folder)
        self.dit.save_pretrained(folder / "transformer")
        save_file({k: v.contiguous() for k, v in self.cond.saved_state().items()}, folder / "conditioner.safetensors")
        meta = {"text": self.text.model_dump(mode="json"), "vae": self.vae_cfg.model_dump(mode="json"),
                "objective": self.objective.model_dump(mode="json"), "vae_kind": self.vae.kind}
        (folder / "pipeline.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: Path, device: str = "cpu", adapter: Path | None = None) -> "Pipeline":
        """A saved pipeline, with a saved adapter (LoRA and/or VMix) applied over it when given."""
        from training.models.vae import load_vae

        folder = Path(folder)
        if not (folder / "pipeline.json").is_file():
            raise FileNotFoundError(f"{folder} is not a pipeline folder (no pipeline.json); give the `pipeline` "
                                    "folder that `sluice train` writes into its out_dir")
        meta = json.loads((folder / "pipeline.json").read_text())
        text, vae_cfg = TextConfig(**meta["text"]), VAEConfig(**meta["vae"])
        dit, cond = load_trained(folder, text)
        vmix = None
        if adapter is not None:
            from training.models.adapters import load_adapter

            vmix = load_adapter(adapter, dit, cond)
        vae = load_vae(vae_cfg.path)
        return cls(dit.to(device), cond.to(device), vae.to(device), ObjectiveConfig(**meta["objective"]), text, vae_cfg,
                   None if vmix is None else vmix.to(device))
