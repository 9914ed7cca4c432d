"""The run report: a self-contained HTML folder a person wants to open after a run.

It shows every finished stage's counts as a funnel, what went wrong per error kind, the mix of formats
and caption languages, and thumbnails of usable records beside the list of failed ones. Read with
pyarrow from the tables and manifests; Spark is not needed.
"""

from __future__ import annotations

import html
import io
import logging
from pathlib import Path

import pyarrow.compute as pc

from tools import runs
from tools.tables import open_table, sample_rows

log = logging.getLogger(__name__)

THUMB_SIDE = 160
N_THUMBS = 24
N_ERRORS = 50

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2rem}
section{margin:2rem 0}table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
.bar{fill:#3b82f6}.bar.err{fill:#ef4444}.bar.ok{fill:#10b981}text{font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;width:160px;font-size:11px;color:#444}
.grid img{max-width:160px;max-height:160px;display:block;background:#f4f4f4}
.grid figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
"""


def bar_chart(items: dict[str, int], css_class: str = "bar", width: int = 640, row: int = 22) -> str:
    """A horizontal bar chart as inline SVG (no JavaScript, renders anywhere)."""
    if not items:
        return "<p>none</p>"
    top = max(items.values()) or 1
    label_w, h = 200, row * len(items) + 4
    parts = [f'<svg class="chart" width="{width}" height="{h}" role="img">']
    for i, (name, n) in enumerate(items.items()):
        y = i * row + 2
        w = max(1, int((width - label_w - 60) * n / top))
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(str(name))}</text>'
                     f'<rect class="{css_class}" x="{label_w}" y="{y}" width="{w}" height="{row - 6}"/>'
                     f'<text x="{label_w + w + 6}" y="{y + 14}">{n:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _thumbs(raw_dir: Path, out_dir: Path) -> str:
    from PIL import Image

    dataset = open_table(raw_dir)
    usable = sample_rows(dataset, N_THUMBS, ["key", "image", "alt_text", "width", "height"],
                         where=pc.field("error").is_null()).to_pylist()
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    figures = []
    for i, r in enumerate(usable):
        try:
            img = Image.open(io.BytesIO(r["image"]))
            img.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
            img = img.convert("RGB")
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            name = f"kept_{i:03d}.jpg"
            img.save(thumbs / name, quality=85)
        except Exception as e:  # a thumbnail is not worth failing the report for
            log.warning("no thumbnail for %s: %s", r["key"], e)
            continue
        cap = html.escape(f"{r['width']}x{r['height']} {r['alt_text'] or ''}")
        figures.append(f'<figure><img src="thumbs/{name}" alt="{html.escape(r["key"])}">'
                       f'<figcaption title="{cap}">{cap}</figcaption></figure>')
    return '<div class="grid">' + "".join(figures) + "</div>"


def _errors(raw_dir: Path) -> str:
    dataset = open_table(raw_dir)
    rows = sample_rows(dataset, N_ERRORS, ["key", "error_kind", "error"],
                       where=pc.field("error").is_valid()).to_pylist()
    if not rows:
        return "<p>No record failed.</p>"
    body = "".join(f"<tr><td>{html.escape(r['key'])}</td><td>{html.escape(r['error_kind'] or '')}</td>"
                   f"<td>{html.escape(r['error'] or '')}</td></tr>" for r in rows)
    return f"<table><tr><th>key</th><th>kind</th><th>error</th></tr>{body}</table>"


def write_report(run_dir: str | Path) -> Path:
    """Write `<run>/report/index.html` (and its thumbnails); return its path."""
    from curation.pipeline import STAGES

    run_dir = runs.local_path(run_dir)
    done = [(st, runs.read_manifest(runs.stage_dir(run_dir, st.table))) for st in STAGES
            if runs.is_done(runs.stage_dir(run_dir, st.table))]
    if not done:
        raise FileNotFoundError(f"{run_dir} has no finished stage; run `sluice curate run` first")
    out_dir = run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    funnel = {f"input ({done[0][1]['input']['format']})": done[0][1]["input"]["records"]}
    for st, m in done:
        funnel[f"{st.name}: usable"] = m["output"].get("kept", m["output"].get("usable", m["output"]["rows"]))
    first = done[0][1]
    errors = {k: v for st, m in done for k, v in m["output"].get("errors", {}).items()}
    sections = [
        ("Funnel", bar_chart(funnel, "bar ok")),
        ("Errors by kind", bar_chart(errors, "bar err") if errors else "<p>No record failed.</p>"),
        ("Image formats", bar_chart(first["output"].get("formats", {}))),
        ("Caption languages", bar_chart(first["output"].get("alt_lang", {}))),
        ("Warnings", bar_chart(first["output"].get("warnings", {}))),
        ("Usable records (sample)", _thumbs(runs.stage_dir(run_dir, "raw"), out_dir)),
        ("Failed records (first 50)", _errors(runs.stage_dir(run_dir, "raw"))),
    ]
    body = "".join(f"<section><h2>{title}</h2>{content}</section>" for title, content in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Sluice run {html.escape(run_dir.name)}"
            f"</title><style>{_CSS}</style></head><body><h1>Sluice run: {html.escape(run_dir.name)}</h1>"
            f"<p class='sub'>{html.escape(str(run_dir))} · code {html.escape(first.get('code_version', '?'))}"
            f" · input {html.escape(str(first['input']['path']))}</p>{body}</body></html>")
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
