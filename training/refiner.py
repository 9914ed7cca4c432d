"""A refiner at inference: an image (a base model's output, or any picture) upsampled by the refiner's scale and
refined, optionally guided by a texture model.

A refiner is a pipeline folder whose DiT has the condition path (training/configs/refiner.yaml; training/models/
dit.py `as_refiner`); pipeline.json's `objective.refiner` records its scale, its t window and sampler steps. The
input is upsampled by `training.data.degrade.upsample`, the interpolation its training conditions were made
with, encoded by the refiner's VAE and refined by `refine_sample`. The refiner runs without CFG: the condition
image, not the prompt, decides the content; a prompt (default empty) only conditions it as in training.

Texture guidance. A texture model is a LoRA adapter trained over the refiner on texture-rich data (stage 2,
training/configs/refiner_texture.yaml). It guides the refiner the way CFG's conditional branch guides the
unconditional one: at every step v = v_refiner + w (v_texture - v_refiner), where v_refiner is the same DiT
with its LoRA switched off and w = texture_scale. w = 0 is the stage-1 refiner, w = 1 the texture model,
w > 1 pushes further in the direction texture training moved the velocity (two evaluations per step).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from training.pipeline import Pipeline, from_images, to_images


class Refiner:
    def __init__(self, pipe: Pipeline, texture_scale: float = 1.0):
        if not pipe.dit.config.refine_source:
            raise ValueError("this pipeline is not a refiner (its DiT has no condition path); train one with "
                             "training/configs/refiner.yaml and give its pipeline folder")
        self.pipe = pipe
        self.textured = any("lora_" in n for n, _ in pipe.dit.named_parameters())
        if texture_scale != 1.0 and not self.textured:
            raise ValueError(f"texture scale {texture_scale} needs a texture model: give its adapter folder "
                             "(--texture DIR, trained with training/configs/refiner_texture.yaml)")
        self.texture_scale = float(texture_scale)

    @classmethod
    def load(cls, folder: Path, device: str = "cpu", texture: Path | None = None,
             texture_scale: float = 1.0) -> "Refiner":
        """The refiner pipeline in `folder`, with the texture model (a LoRA adapter folder) over it when given."""
        if texture is not None:
            from training.models.adapters import read_adapter_meta

            meta = read_adapter_meta(texture)
            if not meta.get("lora") or meta.get("vmix") or (Path(texture) / "conditioner.safetensors").is_file():
                raise ValueError(f"{texture} is not a texture model (a LoRA alone, over the refiner, conditioner "
                                 "frozen); train one with training/configs/refiner_texture.yaml")
        return cls(Pipeline.load(folder, device, adapter=texture), texture_scale)

    @property
    def settings(self):
        """The refiner's RefinerConfig (scale, t window, steps), as pipeline.json records it."""
        return self.pipe.objective.refiner

    @property
    def scale(self) -> int:
        return self.settings.degrade.scale

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) the refiner makes from a width x height input; ValueError saying how to fix an unusable size."""
        m = self.pipe.vae.factor * self.pipe.dit.config.patch_size
        w, h = width * self.scale, height * self.scale
        if w % m or h % m:
            need = m // math.gcd(m, self.scale)
            raise ValueError(f"a {width}x{height} image refines to {w}x{h}, which is not a multiple of {m} (the "
                             f"refiner's VAE factor x patch size); crop or pad the input to a multiple of {need}")
        return w, h

    def velocity(self, cond: tuple, source: torch.Tensor):
        """(x, t) -> the refiner's velocity under the condition, texture-guided when a texture model is loaded."""
        from training.objectives.refine import as_velocity

        dit, w, predict = self.pipe.dit, self.texture_scale, self.settings.predict

        def plain(x, t):
            from training.models.adapters import lora_disabled

            with lora_disabled(dit):
                return dit(x, t, *cond, None, source)

        def guided(x, t):  # the mix is linear in the output, so it holds for velocity and residual alike
            if self.textured and w == 0.0:
                out = plain(x, t)
            else:
                out = dit(x, t, *cond, None, source)
                if self.textured and w != 1.0:
                    out0 = plain(x, t)
                    out = out0 + w * (out - out0)
            return as_velocity(out, x, t, source, predict)

        return guided

    @torch.no_grad()
    def refine(self, images: list, prompts: list[str] | None = None, steps: int | None = None,
               strength: float | None = None, seed: int = 0) -> list:
        """PIL images -> refined PIL images `scale` times their size, in their order. prompts: one per image
        (default: the empty prompt); steps and strength (the start t): the refiner's own by default. Image i's
        noise comes from (seed, i), so a result does not depend on which other images share the call."""
        from training.data.degrade import upsample
        from training.objectives.refine import refine_sample

        prompts = [""] * len(images) if prompts is None else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images; give one per image, or none")
        sizes = [self.output_size(*im.size) for im in images]  # every size is checked before any work
        steps, strength = steps or self.settings.steps, strength or self.settings.t_max
        if self.settings.path == "bridge" and strength > self.settings.t_max:
            # the bridge runs from the clean image to the start at t_max and has no point beyond it; below t_max
            # the start (1 - s) cond + s eps is the bridge's point with the condition standing in for the answer
            raise ValueError(f"strength {strength} is above this refiner's t_max {self.settings.t_max}: it was "
                             f"trained on the bridge path, which ends there; give a strength <= {self.settings.t_max}")
        vae, device, out = self.pipe.vae, self.pipe.device, [None] * len(images)
        for size in dict.fromkeys(sizes):  # one batch per output size
            idx = [i for i, s in enumerate(sizes) if s == size]
            pixels = from_images([upsample(images[i], size) for i in idx]).to(device)  # (B, 3, H, W)
            source = vae.encode(pixels)  # (B, C, H/f, W/f)
            noise = torch.cat([torch.randn((1, *source.shape[1:]), generator=torch.Generator().manual_seed(
                seed * 1_000_003 + i)) for i in idx]).to(device)
            cond = self.pipe.cond([prompts[i] for i in idx])
            x = refine_sample(self.velocity(cond, source), source, noise, strength, steps)
            for i, im in zip(idx, to_images(vae.decode(x))):
                out[i] = im
        return out
