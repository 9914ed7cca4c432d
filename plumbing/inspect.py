"""`sluice inspect <table>`: what a table holds, read with pyarrow (no Spark start-up)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from plumbing.counts import table_counts
from plumbing.tables import open_table, sample_rows, table_tag


def _cell(v) -> str:
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    s = str(v)
    return s if len(s) <= 48 else s[:45] + "..."


def inspect_table(path: Path, rows: int = 5) -> None:
    console = Console()
    dataset = open_table(path)
    tag = table_tag(dataset) or {}
    console.print(f"[bold]{path}[/bold]  table={tag.get('table', '?')}  schema_version={tag.get('schema_version', '?')}"
                  f"  files={len(dataset.files)}")
    schema = Table("column", "type", title="schema")
    for f in dataset.schema:
        schema.add_row(f.name, str(f.type))
    console.print(schema)
    counts = table_counts(path)
    summary = Table("count", "value", title="counts")
    for k, v in counts.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                summary.add_row(f"{k}: {kk}", str(vv))
        else:
            summary.add_row(k, str(v))
    console.print(summary)
    shown = [c for c in dataset.schema.names if not pa.types.is_binary(dataset.schema.field(c).type)]
    head = sample_rows(dataset, rows, columns=shown).to_pylist()
    for i, r in enumerate(head):  # one small table per row: stage tables are too wide to read across
        t = Table("column", "value", title=f"row {i + 1} of the first {len(head)}")
        for c in shown:
            t.add_row(c, _cell(r[c]))
        console.print(t)
