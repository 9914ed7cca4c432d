"""`sluice refine`: existing images -> refined images at the refiner's scale (typer only at import, like cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from training.cli_images import read_images, save_images

RefinerOpt = Annotated[Optional[Path], typer.Option(
    "--refiner", help="a refiner pipeline folder (training/configs/refiner.yaml): the images go on to its scale (2x)")]
TextureOpt = Annotated[Optional[Path], typer.Option(
    "--texture", help="a texture model (LoRA adapter folder, training/configs/refiner_texture.yaml) guiding the refiner")]
TextureScaleOpt = Annotated[float, typer.Option(
    "--texture-scale", help="texture guidance w: v = v_refiner + w (v_texture - v_refiner); 0 = the refiner alone")]


def _fail(e: Exception):
    from plumbing.cli_options import fail

    fail(e)


def load_refiner(folder: Path, device: str, texture: Path | None, texture_scale: float):
    from training.refiner import Refiner

    return Refiner.load(folder, device, texture, texture_scale)


def refine(image: Annotated[list[Path], typer.Option("--image", "-i", help="an image to refine; repeatable")],
           model: Annotated[Path, typer.Option("--model", "-m", help="a refiner pipeline folder")],
           out: Annotated[Path, typer.Option("--out", "-o", help="an output file (one image) or folder")],
           prompt: Annotated[Optional[list[str]], typer.Option(
               "--prompt", "-p", help="what the image shows, zh or en: one for all or one per image (default: none)")] = None,
           texture: TextureOpt = None, texture_scale: TextureScaleOpt = 1.0,
           steps: Annotated[Optional[int], typer.Option(help="Euler steps (default: the refiner's own)")] = None,
           strength: Annotated[Optional[float], typer.Option(
               help="the t the refiner starts from, in (0, 1] (default: its training window's top, t_max)")] = None,
           seed: Annotated[int, typer.Option(help="noise seed")] = 0,
           device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default cuda if present")] = None) -> None:
    """Refine images at the refiner's scale (2x): upsampled, then redrawn from its low-noise window."""
    from plumbing.deps import require

    torch = require("torch", "train")
    prompts = list(prompt or [])
    if len(prompts) not in (0, 1, len(image)):
        _fail(ValueError(f"{len(prompts)} prompts for {len(image)} images; give none, one, or one per image"))
    try:
        images = read_images(image)
        refiner = load_refiner(model, device or ("cuda" if torch.cuda.is_available() else "cpu"), texture,
                               texture_scale)
        texts = None if not prompts else prompts * len(images) if len(prompts) == 1 else prompts
        refined = refiner.refine(images, texts, steps, strength, seed)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(save_images(refined, image, out, "refined"))
