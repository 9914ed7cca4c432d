"""Run folders: one folder per stage table, a manifest beside it, and a success marker written last.

A stage folder with `_SUCCESS` is finished and is skipped unless forced. A folder without it is the
leftover of a killed job and is cleared before the job runs again, so a rerun never duplicates rows.
A finished folder that also holds `_STALE` was made from an earlier stage's output that has changed since
(re-decided or redone): it stays readable, but the next run of its job redoes it.
Every curation job writes its tables through `stage_job`, which keeps these rules in one place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
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


def clear(table_dir: Path) -> None:
    """Remove a table folder before it is written again (forced, stale, or left by an unfinished run)."""
    if not table_dir.exists():
        return
    why = ("forced" if is_current(table_dir) else f"stale: {stale_reason(table_dir)}" if is_done(table_dir)
           else "left by an unfinished run")
    log.info("clearing %s (%s)", table_dir, why)
    shutil.rmtree(table_dir)


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


class StageJob:
    """What a job's work is given: the folder of each table it writes, phase timings, the row-count check."""

    def __init__(self, name: str, dirs: dict[str, Path]):
        self.name = name
        self.dirs = dirs  # table -> the folder the work writes it to (beside the final one when in place)
        self.timings: dict[str, float] = {}
        self.counts: dict[str, dict] = {}

    @property
    def out_dir(self) -> Path:
        """The folder of the job's own (first) table."""
        return next(iter(self.dirs.values()))

    @contextmanager
    def phase(self, name: str):
        """Time a phase of the job, for the manifest's `timings_s`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 3)

    def count(self, expected: int | None, table: str | None = None, counter=None, key: str = "rows") -> dict:
        """The counts of a table the work wrote (`plumbing.counts.table_counts` unless `counter` is given),
        checked: `counts[key]` must be `expected`, one row out per input (None: nothing to compare with)."""
        table = table or next(iter(self.dirs))
        if counter is None:
            from plumbing.counts import table_counts as counter
        with self.phase("count" if table == next(iter(self.dirs)) else f"count_{table}"):
            counts = counter(self.dirs[table])
        if expected is not None and counts[key] != expected:
            raise RuntimeError(f"{self.name} wrote {counts[key]} {key} to {self.dirs[table]}, {expected} expected: "
                               f"nothing may be lost (an input is kept, dropped with a reason, or an error row). "
                               f"This is a bug; the table is left unfinished, so no later job reads it")
        self.counts[table] = counts
        return counts


def stage_job(name: str, tables: dict[str, Path], work, *, config=None, force: bool = False,
              in_place: bool = False) -> dict:
    """Write a job's tables the one way every job does; returns the manifest of the first (the job's own).

    `tables` maps each table the job writes to its folder. When all are current and not `force`, nothing
    runs and the manifest on disk is returned. Otherwise each folder is cleared (forced, stale, or left by a
    killed run) and `work(job)` writes them, calls `job.count` on each, and returns the manifest's own
    entries (`input` and the rest; entries it gives for `job` or `table` win). Each table then gets
    `_manifest.json` (job, table, `output` with the counts, those entries, `config`, `code_version`,
    `timings_s`) and `_SUCCESS`; the first table's last, so its marker means every table is complete.

    `in_place`: the job rewrites a finished table from that table's own rows (decide again). Spark reads
    lazily, so the work writes beside it, and the new table replaces the old one once it is complete.
    """
    finals = {t: Path(p) for t, p in tables.items()}
    if in_place:
        for p in finals.values():
            if not is_done(p):
                raise FileNotFoundError(f"{p} is not a finished table; run the job that writes it first")
        dirs = {t: p.with_name(f"{p.name}.{name}") for t, p in finals.items()}
    elif not force and all(is_current(p) for p in finals.values()):
        log.info("%s: %s is done; skipping (use --force to redo it)", name, ", ".join(map(str, finals.values())))
        return read_manifest(next(iter(finals.values())))
    else:
        dirs = dict(finals)
    for p in dirs.values():
        clear(p)
    job = StageJob(name, dirs)
    entries = work(job)
    uncounted = [t for t in finals if t not in job.counts]
    if uncounted:
        raise RuntimeError(f"{name} never counted {uncounted} (a bug in the job: call job.count on every table)")
    if in_place:
        for t, p in finals.items():
            _replace(p, dirs[t])
    config = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    manifest = {}
    for t in reversed(list(finals)):  # the job's own table last: its _SUCCESS means all are complete
        manifest = write_manifest(finals[t], _manifest(name, t, finals[t], entries, job, config))
    return manifest


def _manifest(name: str, table: str, final: Path, entries: dict, job: StageJob, config) -> dict:
    """Keys in reading order: what ran, from what, to what; then the job's own entries; config and timings."""
    own = {k: v for k, v in entries.items()
           if k not in ("job", "table", "input", "output", "config", "timings_s", "written_at", "code_version")}
    out = {"job": entries.get("job", name), "table": entries.get("table", table)}
    if "input" in entries:
        out["input"] = entries["input"]
    out["output"] = {"path": str(final), **job.counts[table]}
    return {**out, **own, "config": config if config is not None else entries.get("config"),
            "timings_s": {**(entries.get("timings_s") or {}), **job.timings}}


def _replace(final: Path, new: Path) -> None:
    """Put the complete table `new` in place of `final`. A kill before the manifest is written leaves `final`
    missing or without its `_SUCCESS`: no job reads it, and the next run of its job redoes it."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    final.rename(old)
    new.rename(final)
    shutil.rmtree(old)
