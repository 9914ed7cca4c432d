"""The root command line, `sluice`. It only assembles the packages' command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotation.cli import app as annotate_app
from curation.cli import app as curate_app
from plumbing.cli_options import fail
from training.cli import app as train_app

app = typer.Typer(name="sluice", help="Curate image-text data at scale, label it, and train on it.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(curate_app, name="curate")
app.add_typer(annotate_app, name="annotate")
app.add_typer(train_app)  # no group name: `sluice train`, `sluice generate`


@app.command()
def inspect(table: Annotated[Path, typer.Argument(help="a table folder, e.g. runs/demo/raw")],
            rows: Annotated[int, typer.Option(help="rows to show")] = 5) -> None:
    """Schema, counts, error kinds and drop reasons, and a few rows of a table."""
    from plumbing.inspect import inspect_table

    try:
        inspect_table(table, rows)
    except (FileNotFoundError, ValueError) as e:
        fail(e)


@app.command()
def report(run: Annotated[Path, typer.Argument(help="a run folder written by `sluice curate run`")]) -> None:
    """Write the HTML funnel report of a run and print its path."""
    from curation.report.funnel import write_report

    try:
        typer.echo(f"report: {write_report(run)}")
    except FileNotFoundError as e:
        fail(e)


if __name__ == "__main__":
    app()
