"""`sluice train` and `sluice generate`: thin commands over training.engine and training.pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tools.cli_options import ConfigOpt, SetOpt, VerboseOpt

app = typer.Typer(help="Train the bilingual DiT on exported shards, and sample from it.", no_args_is_help=True)


def _fail(e: Exception):
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


@app.command()
def train(config: ConfigOpt = None, overrides: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Train from a YAML config (one process on CPU; launch with torchrun for many GPUs)."""
    from tools import log as logsetup
    from tools.config import ConfigError
    from tools.deps import require

    logsetup.setup(verbose)
    for module in ("torch", "diffusers", "transformers"):
        require(module, "train")
    from training.config import load_train_config
    from training.engine.loop import train as run_training

    try:
        cfg = load_train_config(config, overrides or [])
        typer.echo(f"pipeline: {run_training(cfg)}")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        _fail(e)


@app.command()
def generate(model: Annotated[Path, typer.Option("--model", "-m", help="a pipeline folder written by `sluice train`")],
             prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="a prompt in zh or en; repeatable")],
             out: Annotated[Path, typer.Option("--out", "-o", help="folder for the PNGs")] = Path("samples"),
             width: Annotated[int, typer.Option(help="pixels")] = 256,
             height: Annotated[int, typer.Option(help="pixels")] = 256,
             steps: Annotated[int, typer.Option(help="Euler steps")] = 30,
             cfg_scale: Annotated[float, typer.Option("--cfg", help="classifier-free guidance scale")] = 3.0,
             seed: Annotated[int, typer.Option(help="noise seed")] = 0,
             device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default cuda if present")] = None) -> None:
    """Prompt -> image with the flow-matching Euler sampler, CFG and the training shift."""
    from tools.deps import require

    torch = require("torch", "train")
    from training.pipeline import Pipeline

    try:
        pipe = Pipeline.load(model, device or ("cuda" if torch.cuda.is_available() else "cpu"))
        images = pipe(list(prompt), width, height, steps, cfg_scale, seed)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        im.save(out / f"{i:03d}.png")
    typer.echo(f"{len(images)} images in {out}")
