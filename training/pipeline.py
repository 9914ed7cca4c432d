"""Prompt (zh or en) -> image: the text and glyph encoders, the flow-matching Euler sampler with CFG and shift,
the VAE decode. A pipeline folder holds `transformer/` (the DiT, diffusers format), `conditioner.safetensors`
(the trained refiner, glyph mapper and type embeddings) and `pipeline.json` (text, VAE and objective config).
An adapter folder (LoRA, VMix; training/models/adapters.py) loads over a pipeline; with VMix, each prompt may
have an aesthetic part (e.g. "soft light"), and CFG's unconditional branch has none.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from training.config import ObjectiveConfig, QuantConfig, TextConfig, VAEConfig

log = logging.getLogger(__name__)

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


def to_images(pixels: torch.Tensor) -> list:
    """(B, 3, H, W) in [-1, 1] -> PIL images."""
    from PIL import Image

    arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def from_images(images: list) -> torch.Tensor:
    """PIL images of one size -> (B, 3, H, W) in [-1, 1]."""
    import numpy as np

    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


class Pipeline:
    def __init__(self, dit, conditioner, vae, objective: ObjectiveConfig, text: TextConfig, vae_cfg: VAEConfig,
                 vmix=None, sampler: dict | None = None, quant: QuantConfig | None = None):
        """sampler: None for the Euler sampler with CFG, or a distilled student's (training/objectives/
        consistency.py `student_sampler`); quant: how loading quantizes this pipeline (training/quantize.py)."""
        self.dit, self.cond, self.vae = dit.eval(), conditioner.eval(), vae
        self.objective, self.text, self.vae_cfg = objective, text, vae_cfg
        self.vmix = vmix.eval() if vmix is not None else None
        self.sampler, self.quant, self.quantized = sampler, quant, False
        self.pe = None  # a prompt rewriter (training/pe), set by load(pe=DIR)

    def rewrite(self, prompts: list[str]) -> list:
        """What the DiT should be given for each user prompt: the PE rewriter's guarded rewrite (training/pe/guard.py
        Guarded: text, status, raw rewrite), or the prompt itself without a rewriter. __call__ never rewrites."""
        from training.pe.guard import Guarded

        return self.pe.rewrite(prompts) if self.pe is not None else [Guarded(p, "ok", p) for p in prompts]

    def default_steps(self) -> int:
        return 30 if self.sampler is None else self.sampler["segments"]

    def quantize(self, cfg: QuantConfig) -> dict[str, int]:
        """Quantize the parts in place as `cfg` says (training/quantize.py); returns the Linears per part."""
        from training.quantize import quantize_pipeline

        counts = quantize_pipeline(self, cfg)
        self.quant, self.quantized = cfg, True
        return counts

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
    def latents(self, prompts: list[str], width: int, height: int, steps: int | None = None,
                cfg_scale: float | None = None, seed: int = 0, aesthetics: list[str] | None = None,
                source: torch.Tensor | None = None) -> torch.Tensor:
        """steps None: 30 Euler steps, or a student's segments; cfg_scale None: 3, or 1 for a student.
        source: an edit model's source latents (B, C, H, W); both CFG branches see it, so guidance is by text."""
        from training.objectives.flow_matching import euler_sample

        f = self.vae.factor
        if width % (f * self.dit.config.patch_size) or height % (f * self.dit.config.patch_size):
            raise ValueError(f"width and height must be multiples of {f * self.dit.config.patch_size}")
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(len(prompts), self.vae.channels, height // f, width // f, generator=g).to(self.device)
        cond, uncond = self.cond(prompts), self.cond.null(len(prompts))
        adapter = self.adapter_output(aesthetics, len(prompts))
        obj, steps = self.objective, steps or self.default_steps()
        model = lambda x, t: self.dit(x, t, *cond, adapter, source)  # noqa: E731
        null = lambda x, t: self.dit(x, t, *uncond, None, source)  # noqa: E731
        if self.sampler is not None:  # a TSCD student: jumps between its segment boundaries, guidance distilled in
            from training.objectives.consistency import segment_sample

            if steps != self.sampler["segments"]:
                log.warning("this student was distilled for %d steps; sampling in %d", self.sampler["segments"],
                            steps)
            return segment_sample(model, noise, steps, self.sampler["solver_steps"], obj.base_shift, obj.ref_tokens,
                                  self.dit.config.patch_size, 1.0 if cfg_scale is None else cfg_scale, null)
        cfg_scale = 3.0 if cfg_scale is None else cfg_scale
        return euler_sample(model, noise, steps, obj.base_shift, obj.ref_tokens, self.dit.config.patch_size, cfg_scale,
                            null)

    def __call__(self, prompts: list[str], width: int, height: int, steps: int | None = None,
                 cfg_scale: float | None = None, seed: int = 0, aesthetics: list[str] | None = None) -> list:
        """PIL images, one per prompt; `aesthetics`: one aesthetic part per prompt ("" for none), VMix only."""
        return to_images(self.vae.decode(self.latents(prompts, width, height, steps, cfg_scale, seed, aesthetics)))

    @torch.no_grad()
    def edit(self, images: list, instructions: list[str], steps: int | None = None, cfg_scale: float | None = None,
             seed: int = 0) -> list:
        """Edit each PIL image as its instruction (zh or en) says; the images are resized to one size that the
        VAE and patch size divide (the first image's, rounded), and the edits come back at that size."""
        if not self.dit.config.edit_source:
            raise ValueError("this pipeline is not an edit model; train one with training/configs/edit.yaml "
                             "(model.edit=true) and give its pipeline folder")
        if len(images) != len(instructions) or not images:
            raise ValueError(f"{len(images)} images for {len(instructions)} instructions; give one instruction each")
        m = self.vae.factor * self.dit.config.patch_size
        w, h = (max(m, round(v / m) * m) for v in images[0].size)
        pixels = from_images([im.convert("RGB").resize((w, h)) for im in images]).to(self.device)
        source = self.vae.encode(pixels)
        return to_images(self.vae.decode(self.latents(list(instructions), w, h, steps, cfg_scale, seed, None, source)))

    def save(self, folder: Path) -> Path:
        from safetensors.torch import save_file

        if any("lora_" in n for n, _ in self.dit.named_parameters()):
            raise ValueError("this DiT carries LoRA layers: save them as an adapter (training/models/adapters.py "
                             "save_adapter), over the base pipeline they were trained on")
        if self.quantized:
            raise ValueError("this pipeline was quantized in memory: save the full-precision one; pipeline.json "
                             "records `quant` and loading quantizes (training/quantize.py)")
        folder, dit = Path(folder), self.dit
        from training.quantize import has_fake_quant

        if has_fake_quant(dit):  # after QAT: plain Linears with the trained weights; `quant` says how to load
            import copy

            from training.quantize import strip_fake_quant

            dit = strip_fake_quant(copy.deepcopy(dit))
        dit.save_pretrained(folder / "transformer")
        save_file({k: v.contiguous() for k, v in self.cond.saved_state().items()}, folder / "conditioner.safetensors")
        meta = {"text": self.text.model_dump(mode="json"), "vae": self.vae_cfg.model_dump(mode="json"),
                "objective": self.objective.model_dump(mode="json"), "vae_kind": self.vae.kind,
                "sampler": self.sampler, "quant": None if self.quant is None else self.quant.model_dump(mode="json")}
        (folder / "pipeline.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: Path, device: str = "cpu", adapter: Path | None = None,
             quant: QuantConfig | None = None, pe: Path | None = None) -> "Pipeline":
        """A saved pipeline, with a saved adapter (LoRA and/or VMix) applied over it when given, quantized as
        `quant` says (None: as pipeline.json records, e.g. after QAT; not at all when it records nothing), with
        the prompt rewriter of the PE folder `pe` (training/pe) for `rewrite`."""
        from training.models.vae import load_vae

        folder = Path(folder)
        if not (folder / "pipeline.json").is_file():
            raise FileNotFoundError(f"{folder} is not a pipeline folder (no pipeline.json); give the `pipeline` "
                                    "folder that `sluice train` writes into its out_dir")
        meta = json.loads((folder / "pipeline.json").read_text())
        text, vae_cfg = TextConfig(**meta["text"]), VAEConfig(**meta["vae"])
        dit, cond = load_trained(folder, text)
        vmix, sampler = None, meta.get("sampler")
        if adapter is not None:
            from training.models.adapters import load_adapter, read_adapter_meta

            vmix = load_adapter(adapter, dit, cond)
            sampler = read_adapter_meta(adapter).get("sampler") or sampler  # a LoRA student samples as one
        vae = load_vae(vae_cfg.path)
        pipe = cls(dit.to(device), cond.to(device), vae.to(device), ObjectiveConfig(**meta["objective"]), text,
                   vae_cfg, None if vmix is None else vmix.to(device), sampler)
        quant = quant or (QuantConfig(**meta["quant"]) if meta.get("quant") else None)
        if quant is not None:
            pipe.quantize(quant)
        if pe is not None:
            from training.pe.rewrite import Rewriter

            pipe.pe = Rewriter.load(pe, device)
        return pipe
