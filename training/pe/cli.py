"""`sluice pe ...`: build the rewriter's pairs and train it (thin commands over training/pe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from plumbing.cli_options import ConfigOpt, SetOpt, VerboseOpt

app = typer.Typer(help="The prompt rewriter (PE): pairs from exports and Label Studio, SFT and DPO.",
                  no_args_is_help=True)


def _fail(e: Exception):
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


@app.command("export-pairs")
def export_pairs(export: Annotated[Path, typer.Argument(help="an export folder (shards with long and short captions)")],
                 out: Annotated[Path, typer.Option("--out", "-o", help="the (u, r) pairs JSONL to write")],
                 long_style: Annotated[str, typer.Option(help="the caption style r is taken from")] = "long",
                 short_style: Annotated[str, typer.Option(help="the caption style u is taken from")] = "short") -> None:
    """SFT pairs (u = short caption, r = long caption) in zh and en from an export."""
    from training.pe.data import pairs_from_export, write_jsonl

    try:
        pairs, counts = pairs_from_export(export, long_style, short_style)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    write_jsonl(out, pairs)
    typer.echo(f"{len(pairs)} pairs in {out}: {counts}")


@app.command("pairwise-pairs")
def pairwise_pairs(generated: Annotated[Path, typer.Argument(help="a candidates folder (pairwise.jsonl, rewrites.jsonl)")],
                   labels: Annotated[Path, typer.Option(help="its labels table, from Label Studio's pairwise template")],
                   out: Annotated[Path, typer.Option("--out", "-o", help="the preference pairs JSONL to write")],
                   task: Annotated[str, typer.Option(help="the labels' task (the Pairwise control's name)")] = "preference"
                   ) -> None:
    """DPO pairs (u, chosen, rejected) from annotators' answers over rendered candidate rewrites."""
    from training.pe.data import pairs_from_pairwise, write_jsonl

    try:
        pairs, counts = pairs_from_pairwise(generated, labels, task)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    write_jsonl(out, pairs)
    typer.echo(f"{len(pairs)} pairs in {out}: {counts}")


@app.command()
def train(stage: Annotated[str, typer.Argument(help="sft or dpo")],
          pairs: Annotated[Path, typer.Option(help="JSONL: user + rewrite (sft), user + chosen + rejected (dpo)")],
          out: Annotated[Path, typer.Option("--out", "-o", help="the PE folder to write")],
          config: ConfigOpt = None,
          model: Annotated[Optional[str], typer.Option(help="the causal LM or PE folder to start from")] = None,
          overrides: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Train the rewriter: SFT from a causal LM, or DPO from an SFT PE folder; `sluice generate --pe OUT` uses it."""
    from plumbing import log as logsetup
    from plumbing.config import ConfigError, load
    from plumbing.deps import require

    logsetup.setup(verbose)
    if stage not in ("sft", "dpo"):
        _fail(ValueError(f"stage {stage!r}: choose sft or dpo"))
    for module in ("torch", "transformers", "trl"):
        require(module, "train")
    from training.pe.config import PEConfig
    from training.pe.data import PREF_KEYS, SFT_KEYS, read_pairs

    try:
        cfg = load(PEConfig, path=config, overrides=overrides or [], patch={"model": model} if model else None)
        rows = read_pairs(pairs, SFT_KEYS if stage == "sft" else PREF_KEYS)
        if stage == "sft":
            from training.pe.sft import train_sft as run
        else:
            from training.pe.dpo import train_dpo as run
        folder, losses = run(cfg, rows, out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(f"saved: {folder} (loss {losses[0]:.4f} -> {losses[-1]:.4f})" if losses else f"saved: {folder}")
