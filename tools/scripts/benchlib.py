"""What the benchmark and training scripts share: describing the machine, logging progress to stderr, and
the command line that reproduces a result."""

from __future__ import annotations

import sys
from pathlib import Path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


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
