"""Option aliases and the error exit shared by every command, so flags mean the same thing everywhere and
a failure reads the same whichever command hit it."""

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config; merged over the defaults")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a key: --set ingest.max_pixels=1e8")]
ForceOpt = Annotated[bool, typer.Option("--force", help="redo stages whose output is already complete")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print the resolved config and the plan, run nothing")]
MasterOpt = Annotated[Optional[str], typer.Option("--master", help="Spark master, e.g. spark://host:7077; default local[*]")]
SparkConfOpt = Annotated[Optional[list[str]], typer.Option("--spark-conf", help="a Spark setting, key=value; repeatable")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


def fail(error: BaseException | str, code: int = 2, label: str = "error") -> NoReturn:
    """End a command on a failure the user can fix: `error: <message>` on stderr, one line that is never
    wrapped (whole for grep and copy), no traceback; exit `code` (2: fix something and run again)."""
    typer.echo(f"{typer.style(label + ':', fg='red' if label == 'error' else 'yellow')} {error}", err=True)
    raise typer.Exit(code)


def reproducible_args(argv: list[str], side_options: tuple[str, ...] = ("--cache", "--save-torch")) -> str:
    """The command line minus options that do not change the result (where caches and side outputs go)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in side_options:
            skip = True
            continue
        if a.startswith(tuple(f"{o}=" for o in side_options)):
            continue
        out.append(a)
    return " ".join(out)
