"""The stage-3 part of the run report: captions kept per style and language, what the caption checks
dropped and why (with examples), and a few captioned samples as thumbnails. From the manifest and tables."""

from __future__ import annotations

import html
from pathlib import Path

import pyarrow.compute as pc

from curation.report.charts import bar_chart
from curation.report.thumbs import grid, images_by_id
from plumbing import runs
from plumbing.tables import open_table, sample_rows

N_THUMBS = 12
N_FAILED = 12


def section(run_dir: Path, out_dir: Path) -> str:
    table_dir = runs.stage_dir(run_dir, "stage3")
    m = runs.read_manifest(table_dir)
    out, inp = m["output"], m.get("input", {})
    by_style: dict[str, dict[str, int]] = out.get("by_style", {})
    kept = {k: v["kept"] for k, v in by_style.items() if v.get("kept")}
    failures: dict[str, int] = {}
    for counts in by_style.values():
        for status, n in counts.items():
            if status not in ("kept", "error"):
                failures[status] = failures.get(status, 0) + n
    errors = sum(v.get("error", 0) for v in by_style.values())
    parts = [f"<p>Captioned the kept samples of <b>{html.escape(str(inp.get('table')))}</b> "
             f"({inp.get('records', '?')} samples): {out.get('samples_with_caption', 0)} have at least one caption "
             f"that passed the checks. Captioner: <b>{html.escape(str(m.get('captioner') or 'none'))}</b>.</p>"]
    if m.get("note"):
        parts.append(f"<p style='color:#b45309'>{html.escape(m['note'])}</p>")
    parts.append("<h3>Captions kept per style and language</h3>" + bar_chart(kept, "bar ok"))
    parts.append("<h3>Caption-check failures</h3>" + (bar_chart(dict(sorted(failures.items(), key=lambda kv: -kv[1])),
                                                               "bar drop") if failures else "<p>None failed.</p>"))
    if errors:
        top = "".join(f"<li>{html.escape(k)} ({v})</li>" for k, v in out.get("top_errors", {}).items())
        parts.append(f"<p class='err'>{errors} captions failed with an error:</p><ul>{top}</ul>")
    parts.append(_failed_examples(run_dir, table_dir))
    parts.append("<h3>Captioned samples</h3>" + _thumbs(run_dir, table_dir, out_dir))
    return "".join(parts)


def _failed_examples(run_dir: Path, table_dir: Path) -> str:
    """A few failed captions with their reason; for style alt, the alt text the check refused."""
    rows = sample_rows(open_table(table_dir), N_FAILED, ["id", "style", "lang", "drop_reason"],
                       where=pc.field("drop_reason").is_valid()).to_pylist()
    if not rows:
        return ""
    alts = _alt_texts(run_dir, [r["id"] for r in rows if r["style"] == "alt"])
    body = "".join(f"<tr><td>{html.escape(r['style'])}_{html.escape(r['lang'])}</td>"
                   f"<td>{html.escape(r['drop_reason'])}</td>"
                   f"<td>{html.escape(alts.get(r['id']) or '') if r['style'] == 'alt' else ''}</td></tr>"
                   for r in rows)
    return (f"<h3>Failed captions (sample)</h3><table><tr><th>style</th><th>check</th><th>alt text</th></tr>"
            f"{body}</table>")


def _alt_texts(run_dir: Path, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    t = open_table(runs.stage_dir(run_dir, "raw")).to_table(columns=["id", "alt_text"], filter=pc.field("id").isin(ids))
    return dict(zip(t.column("id").to_pylist(), t.column("alt_text").to_pylist()))


def _thumbs(run_dir: Path, table_dir: Path, out_dir: Path) -> str:
    t = open_table(table_dir).to_table(columns=["id", "style", "lang", "text"], filter=pc.field("text").is_valid())
    by_id: dict[str, list[str]] = {}
    for id_, style, lang, text in zip(*(t.column(c).to_pylist() for c in ("id", "style", "lang", "text"))):
        by_id.setdefault(id_, []).append(f"[{style}_{lang}] {text}")
    ids = sorted(by_id)[:N_THUMBS]  # ids are hashes: the first few are an unbiased pick
    rows = [{"id": i, "key": i, "caption": " ".join(sorted(by_id[i]))} for i in ids]
    return '<div class="caps">' + grid(rows, images_by_id(runs.stage_dir(run_dir, "raw"), ids), out_dir, "captioned",
                                       lambda r: r["caption"]) + "</div>"
