"""Line-by-line reading of the JSONL files users hand the trainer (edit specs, generated records, PE pairs):
every non-blank line comes back with its number, as an object or as the reason it is not JSON, so each
reader decides whether a bad line becomes an outcome row or an error, and can say which line it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


def jsonl_lines(path: Path, missing_hint: str) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value or None, None or 'not JSON (...)') per non-blank line of `path`;
    FileNotFoundError with `missing_hint` (what to give instead) when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {missing_hint}")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line), None
        except json.JSONDecodeError as e:
            yield n, None, f"not JSON ({e.msg})"
