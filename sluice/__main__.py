"""`python -m sluice ...` is the `sluice` command."""

from sluice.cli import app

app(prog_name="sluice")
