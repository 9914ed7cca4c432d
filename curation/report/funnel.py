"""The run report: a self-contained HTML folder a person wants to open after a run.

It shows every finished stage's counts as a funnel, what was dropped per rule and what failed per
error kind, a histogram per signal with its rule's threshold marked, and thumbnails of kept samples and
of dropped samples per reason; then stage 3's captions and checks, the export's shards per aspect bucket,
and the toy model `make demo` trains on them. Read with pyarrow from the tables and manifests; Spark is
not needed.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from curation.report.charts import bar_chart, histogram
from curation.report.thumbs import grid, images_by_id
from plumbing import runs
from plumbing.tables import open_table, sample_rows

log = logging.getLogger(__name__)

N_KEPT = 24
N_PER_REASON = 8
N_ERRORS = 50

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2rem}h3{margin:.8rem 0 .3rem}
section{margin:2rem 0}table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
.bar{fill:#3b82f6}.bar.err{fill:#ef4444}.bar.ok{fill:#10b981}.bar.drop{fill:#f59e0b}text{font-size:12px}
.dropzone{fill:#fee2e2}.threshold{stroke:#dc2626;stroke-width:2}
.hists{display:flex;flex-wrap:wrap;gap:16px}.hist{margin:0}.hist figcaption{font-size:13px}.n{color:#888}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;width:160px;font-size:11px;color:#444}
.grid img{max-width:160px;max-height:160px;display:block;background:#f4f4f4}
.grid figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.caps .grid figure{width:240px}.caps .grid figcaption{white-space:normal;max-height:9em;overflow:auto}
.stale{color:#b45309}.err{color:#b91c1c}
"""


def _finished(run_dir: Path):
    from curation.pipeline import STAGES

    return [(st, runs.read_manifest(runs.stage_dir(run_dir, st.table))) for st in STAGES
            if runs.is_done(runs.stage_dir(run_dir, st.table))]


def _funnel(done, run_dir: Path, export_dir: Path | None) -> dict[str, int]:
    first = done[0][1]
    funnel = {f"input ({first['input']['format']})": first["input"]["records"]}
    for st, m in done:
        out = m["output"]
        funnel[f"{st.name}: {'kept' if 'kept' in out else 'usable'}"] = out.get("kept", out.get("usable", out["rows"]))
    s3 = runs.stage_dir(run_dir, "stage3")
    if runs.is_done(s3):
        funnel["stage3: captioned"] = runs.read_manifest(s3)["output"].get("samples_with_caption", 0)
    if export_dir is not None:
        funnel["export: in shards"] = runs.read_manifest(export_dir).get("samples", 0)
    return funnel


def _export_dir(run_dir: Path) -> Path | None:
    """The run's export folder: where stage 3's run config put it, else <run>/export; None when unfinished."""
    path = runs.stage_dir(run_dir, "export")
    s3 = runs.stage_dir(run_dir, "stage3")
    if not runs.is_done(path) and runs.is_done(s3):
        configured = (runs.read_manifest(s3).get("config", {}).get("export") or {}).get("dir")
        path = runs.local_path(configured) if configured else path
    return path if runs.is_done(path) else None


def _stale_note(run_dir: Path, export_dir: Path | None) -> str:
    from curation.pipeline import TABLE_ORDER

    dirs = [runs.stage_dir(run_dir, t) for t in TABLE_ORDER if t != "export"] + ([export_dir] if export_dir else [])
    stale = [(p.name, runs.stale_reason(p)) for p in dirs if runs.stale_reason(p)]
    if not stale:
        return ""
    items = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(why)}</li>" for n, why in stale)
    return (f"<div class='stale'><p><b>Stale tables</b> (built from an earlier table that has changed since; "
            f"`sluice curate run` redoes them):</p><ul>{items}</ul></div>")


def _histograms(table_dir: Path, rules: list[dict]) -> str:
    from curation.calibrate import terms

    dataset = open_table(table_dir)
    names = dataset.schema.names
    wanted = [(r["name"], t) for r in rules for t in terms(r["keep_if"]) if t[0] in names]
    if not wanted:
        return "<p>No rule compares a signal with a threshold.</p>"
    cols = sorted({t[0] for _, t in wanted})
    table = dataset.to_table(columns=cols, filter=pc.field("error").is_null())
    figs = []
    for rule, (signal, op, thr) in wanted:
        values = np.array([np.nan if v is None else float(v) for v in table.column(signal).to_pylist()])
        figs.append(histogram(values, f"{rule}: {signal} {op} {thr:g}", thr, ">" if op in (">", ">=") else "<"))
    return '<div class="hists">' + "".join(figs) + "</div>"


def _samples(run_dir: Path, table_dir: Path, out_dir: Path, reasons: list[str]) -> str:
    dataset = open_table(table_dir)
    cols = ["id", "key", "width", "height", "alt_text"]
    kept_filter = pc.field("error").is_null()
    if "drop_reason" in dataset.schema.names:
        kept_filter = kept_filter & pc.field("drop_reason").is_null()
    kept = sample_rows(dataset, N_KEPT, cols, where=kept_filter)
    picked = {"kept": kept.to_pylist()}
    for reason in reasons:
        picked[reason] = sample_rows(dataset, N_PER_REASON, cols, where=pc.field("drop_reason") == reason).to_pylist()
    ids = [r["id"] for rows in picked.values() for r in rows]
    images = images_by_id(runs.stage_dir(run_dir, "raw"), ids)
    parts = []
    for name, rows in picked.items():
        title = "Kept (sample)" if name == "kept" else f"Dropped as {name} (sample)"
        parts.append(f"<h3>{html.escape(title)}</h3>" + grid(
            rows, images, out_dir, name, lambda r: f"{r['width']}x{r['height']} {r['alt_text'] or ''}"))
    return "".join(parts)


def _errors(raw_dir: Path) -> str:
    rows = sample_rows(open_table(raw_dir), N_ERRORS, ["key", "error_kind", "error"],
                       where=pc.field("error").is_valid()).to_pylist()
    if not rows:
        return "<p>No record failed.</p>"
    body = "".join(f"<tr><td>{html.escape(r['key'])}</td><td>{html.escape(r['error_kind'] or '')}</td>"
                   f"<td>{html.escape(r['error'] or '')}</td></tr>" for r in rows)
    return f"<table><tr><th>key</th><th>kind</th><th>error</th></tr>{body}</table>"


def _later_sections(run_dir: Path, export_dir: Path | None, out_dir: Path) -> list[tuple[str, str]]:
    """Stage 3, the export and the demo's toy model, each when the run has it."""
    from curation.report import captions, shards

    out = []
    if runs.is_done(runs.stage_dir(run_dir, "stage3")):
        out.append(("Stage 3: captions and caption checks", captions.section(run_dir, out_dir)))
    if export_dir is not None:
        out.append(("Export: training shards", shards.section(export_dir, out_dir)))
    toy = shards.demo_model_section(run_dir, out_dir)
    if toy is not None:
        out.append(("Demo: a toy model trained a few steps on these shards", toy))
    return out


def write_report(run_dir: str | Path) -> Path:
    """Write `<run>/report/index.html` (and its thumbnails); return its path."""
    run_dir = runs.local_path(run_dir)
    done = _finished(run_dir)
    if not done:
        raise FileNotFoundError(f"{run_dir} has no finished stage; run `sluice curate run` first")
    out_dir = run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = done[0][1]
    last_st, last = done[-1]
    last_dir = runs.stage_dir(run_dir, last_st.table)
    dropped = last["output"].get("dropped", {})
    errors = last["output"].get("errors", {})
    # Every stage's thresholds, in funnel order: later tables carry the earlier signals (stage 2 keeps
    # stage 1's) and downsampling has no rules of its own; signals the last table lacks are skipped.
    rules = [r for st, m in done if st.name != "ingest" for r in m.get("config", {}).get(st.name, {}).get("rules", [])]
    export_dir = _export_dir(run_dir)
    sections = [
        ("Funnel", _stale_note(run_dir, export_dir) + bar_chart(_funnel(done, run_dir, export_dir), "bar ok")),
        ("Dropped by rule", bar_chart(dict(sorted(dropped.items(), key=lambda kv: -kv[1])), "bar drop")
         if dropped else "<p>Nothing dropped.</p>"),
        ("Failed records by kind", bar_chart(errors, "bar err") if errors else "<p>No record failed.</p>"),
        ("Signals and thresholds", _histograms(last_dir, rules) if rules else "<p>No rules in this run yet.</p>"),
        ("Image formats", bar_chart(raw["output"].get("formats", {}))),
        ("Caption languages", bar_chart(raw["output"].get("alt_lang", {}))),
        ("Warnings", bar_chart(raw["output"].get("warnings", {}))),
        ("Samples", _samples(run_dir, last_dir, out_dir, list(dropped))),
        ("Failed records (first 50)", _errors(runs.stage_dir(run_dir, "raw"))),
    ]
    if runs.is_done(run_dir / "pool") or runs.is_done(run_dir / "mix_audit"):
        from curation.report.distribution import section

        sections.insert(-2, ("Distribution: downsampling and mixing", section(run_dir)))
    if runs.is_done(run_dir / "stage2"):
        from curation.report.stage2 import section as stage2_section

        sections.insert(2, ("Stage 2: embeddings, duplicates, tiers and tags", stage2_section(run_dir / "stage2")))
    sections[-2:-2] = _later_sections(run_dir, export_dir, out_dir)
    body = "".join(f"<section><h2>{title}</h2>{content}</section>" for title, content in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Sluice run {html.escape(run_dir.name)}"
            f"</title><style>{_CSS}</style></head><body><h1>Sluice run: {html.escape(run_dir.name)}</h1>"
            f"<p class='sub'>{html.escape(str(run_dir))} · code {html.escape(raw.get('code_version', '?'))}"
            f" · input {html.escape(str(raw['input']['path']))}</p>{body}</body></html>")
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
