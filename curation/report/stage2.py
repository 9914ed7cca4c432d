"""The stage-2 part of the run report: embedding model (and a warning when weight-free), duplicates per
level, tier shares, aesthetic tiers, the most frequent tags and the cluster levels used. From the manifest."""

from __future__ import annotations

import html
from pathlib import Path

from curation.report.charts import bar_chart
from plumbing import runs


def section(table_dir: Path) -> str:
    m = runs.read_manifest(table_dir)
    s, emb, notes = m.get("summary", {}), m.get("embedding", {}), m.get("notes", {})
    parts = [f"<p>Embedding model: <b>{html.escape(str(emb.get('model')))}</b></p>"]
    if emb.get("weight_free"):
        parts.append(f"<p style='color:#b45309'><b>Weight-free embeddings.</b> {html.escape(notes.get('embedding', ''))}</p>")
    for k, v in notes.items():
        if k != "embedding":
            parts.append(f"<p class='n'>{html.escape(k)}: {html.escape(v)}</p>")
    cl = m.get("clusters", {})
    if cl:
        parts.append(f"<p class='n'>Cluster levels (fine to coarse): {cl.get('levels_used')}"
                     f"{' — ' + html.escape(cl['note']) if cl.get('note') else ''}</p>")
    charts = [("Duplicates dropped per level", s.get("duplicates"), "bar drop"),
              ("Quality tiers (rows in play)", {k: v["rows"] for k, v in (s.get("tiers") or {}).items()}, "bar ok"),
              ("Aesthetic tiers", s.get("aesthetic_tiers"), "bar"),
              ("Top tags (best tag per image)", s.get("top_tags"), "bar")]
    for title, data, cls in charts:
        parts.append(f"<h3>{title}</h3>" + (bar_chart(data, cls) if data else "<p class='n'>none</p>"))
    return "".join(parts)
