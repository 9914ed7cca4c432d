"""`sluice train` and `sluice generate`: thin commands over training.engine and training.pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from plumbing.cli_options import ConfigOpt, SetOpt, VerboseOpt
from training.cli_images import read_images, save_images
from training.refiner_cli import RefinerOpt, TextureOpt, TextureScaleOpt, load_refiner
from training.refiner_cli import refine as refine_command  # typer only, like this module
from training.pe.cli import app as pe_app  # typer only, like this module

app = typer.Typer(help="Train the bilingual DiT on exported shards, and sample from it.", no_args_is_help=True)
app.add_typer(pe_app, name="pe")  # `sluice pe ...`: the prompt rewriter
app.command("refine")(refine_command)  # `sluice refine`: existing images -> 2x


def _fail(e: Exception):
    from plumbing.cli_options import fail

    fail(e)


@app.command()
def train(config: ConfigOpt = None, overrides: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Train from a YAML config (one process on CPU; launch with torchrun for many GPUs)."""
    from plumbing import log as logsetup
    from plumbing.config import ConfigError
    from plumbing.deps import require

    logsetup.setup(verbose)
    for module in ("torch", "diffusers", "transformers"):
        require(module, "train")
    from training.config import load_train_config
    from training.engine.loop import train as run_training

    try:
        cfg = load_train_config(config, overrides or [])
        typer.echo(f"saved: {run_training(cfg)}")  # a pipeline folder, or an adapter folder over the base
    except (ConfigError, FileNotFoundError, ValueError) as e:
        _fail(e)


def quant_config(items: list[str]):
    """QuantConfig from `part=mode` items (ConfigError naming the key and the fix when wrong)."""
    from plumbing.config import ConfigError, validate
    from training.config import QuantConfig

    data = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--quant {item!r} is not of the form part=mode, e.g. --quant dit=int8_dynamic")
        data[key.strip()] = value.strip()
    return validate(QuantConfig, data, where="--quant")


@app.command()
def generate(model: Annotated[Path, typer.Option("--model", "-m", help="a pipeline folder written by `sluice train`")],
             prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="a prompt in zh or en; repeatable")],
             out: Annotated[Path, typer.Option("--out", "-o", help="folder for the PNGs and generated.jsonl")] = Path("samples"),
             adapter: Annotated[Optional[Path], typer.Option(help="an adapter folder (LoRA/VMix) trained over --model")] = None,
             aesthetic: Annotated[Optional[str], typer.Option(
                 help="the aesthetic part of every prompt, e.g. 'soft light' (needs a VMix --adapter)")] = None,
             width: Annotated[int, typer.Option(help="pixels")] = 256,
             height: Annotated[int, typer.Option(help="pixels")] = 256,
             steps: Annotated[Optional[int], typer.Option(
                 help="sampling steps; default 30 Euler steps, or a TSCD student's own count (1, 2, 4...)")] = None,
             cfg_scale: Annotated[Optional[float], typer.Option(
                 "--cfg", help="classifier-free guidance scale; default 3, or 1 for a student (guidance distilled in)")] = None,
             quant: Annotated[Optional[list[str]], typer.Option(
                 help="quantize a part, e.g. dit=int8_dynamic, text=int8_weight, vae=none, backend=torch "
                      "(repeatable; the rest as QuantConfig's defaults); default: as pipeline.json records")] = None,
             pe: Annotated[Optional[Path], typer.Option(
                 help="a prompt rewriter (PE folder, training/pe): each prompt is rewritten before drawing")] = None,
             refiner: RefinerOpt = None, texture: TextureOpt = None, texture_scale: TextureScaleOpt = 1.0,
             seed: Annotated[int, typer.Option(help="noise seed")] = 0,
             device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default cuda if present")] = None) -> None:
    """Prompt -> image: the Euler sampler with CFG, or a TSCD student's few-step sampler; optionally quantized.

    The Euler sampler uses the training shift; a TSCD student jumps its segment boundaries in 1, 2 or 4 steps
    without CFG. Quantization as --quant says, else as pipeline.json records. With --refiner, the images go on
    through the refiner (same prompts and seed) to its scale: --width/--height are the base's size.

    Writes <out>/<id>.png and a line per image in <out>/generated.jsonl (id, file, prompt, aesthetic, seed,
    model): the folder `sluice annotate generated push` labels and `sluice pairs` pairs. With --pe, `prompt` is
    the rewrite the DiT saw, and <out>/rewrites.jsonl holds each record's user prompt and what the guard did."""
    from plumbing.deps import require

    torch = require("torch", "train")
    from training.data.preference import write_generated
    from training.pipeline import Pipeline

    prompts = list(prompt)
    aesthetics = [aesthetic or ""] * len(prompts)
    try:
        qcfg = quant_config(quant) if quant else None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        refine = None
        if refiner is not None:  # loaded and its output size checked before the base draws anything
            refine = load_refiner(refiner, device, texture, texture_scale)
            refine.output_size(width, height)
        elif texture is not None:
            raise ValueError("--texture guides a refiner: give the refiner too (--refiner DIR)")
        pipe = Pipeline.load(model, device, adapter, qcfg, pe=pe)
        rewrites = pipe.rewrite(prompts)
        drawn = [g.text for g in rewrites]
        images = pipe(drawn, width, height, steps, cfg_scale, seed, aesthetics if aesthetic else None)
        if refine is not None:  # base resolution -> the refiner's scale, conditioned on the same prompts
            images = refine.refine(images, drawn, seed=seed)
    except (FileNotFoundError, ValueError, ImportError) as e:
        _fail(e)
    name = f"{model}" + (f"+{adapter}" if adapter else "") + (f"+pe:{pe}" if pe else "")
    name += (f"+refiner:{refiner}" if refiner else "") + (f"+texture:{texture}@{texture_scale:g}" if texture else "")
    start = sum(1 for _ in open(out / "generated.jsonl")) if (out / "generated.jsonl").is_file() else 0
    records = write_generated(out, images, drawn, aesthetics, seed, name, start)
    if pe:
        from training.pe.rewrite import write_rewrites

        write_rewrites(out, records, rewrites, prompts, str(pe))
        for u, g in zip(prompts, rewrites):
            typer.echo(f"{u!r} -> {g.text!r}" + ("" if g.status == "ok" else f" ({g.status}: the rewrite was "
                                                                                f"{g.rewrite!r})"))
    typer.echo(f"{len(images)} images in {out} (listed in {out / 'generated.jsonl'})")


@app.command()
def pairs(generated: Annotated[Path, typer.Option(help="a folder written by `sluice generate`")],
          labels: Annotated[Path, typer.Option(help="its labels table (`sluice annotate generated pull`)")],
          out: Annotated[Path, typer.Option("--out", "-o", help="folder for the preference shards")],
          task: Annotated[str, typer.Option(help="the labels' task")] = "generated") -> None:
    """Pair bad generated images with good ones of the same prompt, as preference shards for SFT's DPO term
    (a data source like any export: data.sources.<name>.path=OUT)."""
    from training.data.preference import build_pairs, verdicts_from_labels

    try:
        counts = build_pairs(generated, verdicts_from_labels(labels, task), out)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(f"{counts['pairs']} pairs in {out}: {counts} (each record's outcome in {out / 'pairs.jsonl'})")


@app.command()
def edit(image: Annotated[list[Path], typer.Option("--image", "-i", help="an image to edit; repeatable")],
         instruction: Annotated[list[str], typer.Option(
             "--instruction", "-t", help="what to change, zh or en; one for all images or one per image")],
         out: Annotated[Path, typer.Option("--out", "-o", help="an output file (one image) or folder")],
         model: Annotated[Path, typer.Option("--model", "-m", help="an edit pipeline folder (training/configs/edit.yaml)")],
         steps: Annotated[Optional[int], typer.Option(help="Euler steps (default 30)")] = None,
         cfg_scale: Annotated[Optional[float], typer.Option("--cfg", help="text guidance scale (default 3)")] = None,
         seed: Annotated[int, typer.Option(help="noise seed")] = 0,
         device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default cuda if present")] = None) -> None:
    """Edit images as an instruction says ("把红色的圆变成蓝色" / "make the red circle blue")."""
    from plumbing.deps import require

    torch = require("torch", "train")
    from training.pipeline import Pipeline

    if len(instruction) not in (1, len(image)):
        _fail(ValueError(f"{len(instruction)} instructions for {len(image)} images; give one, or one per image"))
    try:
        sources = read_images(image)
    except ValueError as e:
        _fail(e)
    texts = list(instruction) * len(image) if len(instruction) == 1 else list(instruction)
    try:
        pipe = Pipeline.load(model, device or ("cuda" if torch.cuda.is_available() else "cpu"))
        edited = [pipe.edit([src], [text], steps, cfg_scale, seed)[0] for src, text in zip(sources, texts)]
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(save_images(edited, image, out, "edited"))


@app.command("edit-pairs")
def edit_pairs(model: Annotated[Path, typer.Option("--model", "-m", help="the base pipeline folder that draws the pairs")],
               specs: Annotated[Path, typer.Option(help="JSONL: prompt, edit_prompt, instruction {en, zh} per line")],
               out: Annotated[Path, typer.Option("--out", "-o", help="folder for the edit shards")],
               clip: Annotated[Optional[str], typer.Option(
                   help="a CLIP for the filters: hf:PATH or open_clip:NAME[@CKPT] (none: unfiltered)")] = None,
               size: Annotated[int, typer.Option(help="pixels (square)")] = 512,
               t_share: Annotated[float, typer.Option(help="the shared trajectory ends at this t (0..1)")] = 0.7,
               min_direction: Annotated[float, typer.Option(help="CLIP directional similarity to keep a pair")] = 0.1,
               min_similarity: Annotated[float, typer.Option(help="CLIP source-target similarity to keep")] = 0.7,
               seed: Annotated[int, typer.Option(help="noise seed of the first spec")] = 0) -> None:
    """Edit pairs for instruction editing, drawn by the base model along a shared trajectory and filtered by
    CLIP (docs/export-format.md, edit shards): a data source for training/configs/edit.yaml."""
    from plumbing.deps import require

    require("torch", "train")
    from training.data.edit_pairs import make_edit_pairs
    from training.pipeline import Pipeline

    try:
        towers = None
        if clip:
            from training.rewards.clip import load_clip

            towers = load_clip(clip)
        counts = make_edit_pairs(Pipeline.load(model), specs, out, towers, size, size, t_share=t_share,
                                 min_direction=min_direction, min_similarity=min_similarity, seed=seed)
    except (OSError, ValueError, RuntimeError) as e:  # a CLIP that cannot load says so too
        _fail(e)
    typer.echo(f"{counts.get('kept', 0)} edit pairs in {out}: {counts} (each spec's outcome in {out / 'pairs.jsonl'})")
