"""Run folders: one folder per stage table, a manifest beside it, and a success marker written last.

A stage folder with `_SUCCESS` is finished and is skipped unless forced. A folder without it is the
leftover of a killed job and is cleared before the job runs again, so a rerun never duplicates rows.
A finished folder that also holds `_STALE` was made from an earlier stage's output that has changed since
(re-decided or redone): it stays readable, but the next run of its job redoes it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
STALE = "_STALE"


def local_path(path: str | Path) -> Path:
    s = str(path)
    if s.startswith("file://"):
        s = s[len("file://"):]
    elif "://" in s:
        raise ValueError(f"{s}: run folders must be local or shared-filesystem paths for now (got a URL)")
    return Path(s).expanduser().absolute()


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    return local_path(run_dir) / stage


def is_done(table_dir: Path) -> bool:
    return (table_dir / SUCCESS).is_file()


def stale_reason(table_dir: Path) -> str | None:
    """Why a finished table is out of date (`_STALE`), or None when it is not."""
    p = Path(table_dir) / STALE
    if not (is_done(Path(table_dir)) and p.is_file()):
        return None
    return p.read_text(encoding="utf-8").strip() or "an earlier stage changed"


def is_current(table_dir: Path) -> bool:
    """Finished and not stale: a job may skip it, a later job may read it."""
    return is_done(table_dir) and stale_reason(table_dir) is None


def mark_stale(table_dir: Path, reason: str) -> bool:
    """Mark a finished table out of date (its data stays readable); False when there is no finished table."""
    if not is_done(Path(table_dir)) or stale_reason(table_dir) is not None:
        return False
    (Path(table_dir) / STALE).write_text(reason + "\n", encoding="utf-8")
    log.info("%s is stale: %s", table_dir, reason)
    return True


def prepare(table_dir: Path, force: bool) -> bool:
    """Make `table_dir` ready to be written; False when it is already done, current and not forced."""
    if is_current(table_dir) and not force:
        return False
    if table_dir.exists():
        why = "forced" if is_current(table_dir) else (f"stale: {stale_reason(table_dir)}" if is_done(table_dir)
                                                      else "left by an unfinished run")
        log.info("clearing %s (%s)", table_dir, why)
        shutil.rmtree(table_dir)
    return True


def code_version() -> str:
    """The git commit of the checkout Sluice runs from, or the package version outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "sluice " + version("sluice")
    except PackageNotFoundError:
        return "unknown"


def write_manifest(table_dir: Path, manifest: dict) -> dict:
    """Write `_manifest.json`, then `_SUCCESS`: the marker means everything before it is complete."""
    table_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        **manifest,
    }
    tmp = table_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, table_dir / MANIFEST)
    (table_dir / SUCCESS).write_text("")
    return body


def read_manifest(table_dir: Path) -> dict:
    p = Path(table_dir) / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(f"{table_dir} has no {MANIFEST}; is it a Sluice table folder from a finished job?")
    return json.loads(p.read_text(encoding="utf-8"))


class Timer:
    """Named wall-clock timings for the manifest."""

    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.timings[name] = round(time.perf_counter() - self.t0, 3)

        return _Span()
