"""What downsampling and mixing did to the distribution: numbers computed by the jobs, and their charts.

`summarize` turns the downsampler's plan (rows per leaf before, quota per leaf after) into per-level
statistics: node-size histograms on a log scale, entropy before/after and under the target law, KL
divergence of the result to the target law and to the input, and how many (tail) clusters survive. The
job writes them to `<pool>/_distribution.json`; `section` renders them (and the mix audit) as HTML.
Only counts are used: O(leaves), never O(rows).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from curation.report.charts import bar_chart

FILE = "_distribution.json"
BINS_PER_DECADE = 4


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0 if len(p) else 0.0  # + 0.0: no "-0" in the table


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in bits; q > 0 wherever p > 0 by construction (a node with rows has a target share)."""
    m = p > 0
    return float((p[m] * np.log2(p[m] / q[m])).sum()) if m.any() else 0.0


def _log_hist(before: np.ndarray, after: np.ndarray) -> dict:
    """Counts of node sizes per quarter decade; nodes left empty are counted apart (log 0 has no bin)."""
    top = max(1.0, float(before.max()) if len(before) else 1.0)
    n_bins = max(1, math.ceil(math.log10(top) * BINS_PER_DECADE + 1e-9) + 1)
    edges = [10 ** (i / BINS_PER_DECADE) for i in range(n_bins + 1)]
    hb, _ = np.histogram(before[before > 0], bins=edges)
    ha, _ = np.histogram(after[after > 0], bins=edges)
    return {"edges": edges, "before": hb.tolist(), "after": ha.tolist(), "after_empty": int((after == 0).sum())}


def _target_shares(nodes: list[tuple], sizes: dict, temps: list[float]) -> dict[tuple, float]:
    """Share of every node under the law alone (size**T among siblings, no caps), top-down."""
    by_parent: dict[tuple, list[tuple]] = defaultdict(list)
    for n in nodes:
        by_parent[n[:-1]].append(n)
    share = {(): 1.0}
    for depth in range(1, max((len(n) for n in nodes), default=0) + 1):
        for parent, kids in by_parent.items():
            if len(parent) != depth - 1:
                continue
            w = np.array([sizes[k] ** temps[depth - 1] if sizes[k] > 0 else 0.0 for k in kids])
            w = w / w.sum() if w.sum() > 0 else w
            for k, x in zip(kids, w):
                share[k] = share[parent] * float(x)
    return share


def level_stats(leaf_before: dict[tuple, int], leaf_after: dict[tuple, int], temps: list[float],
                names: list[str]) -> list[dict]:
    """Per level of the tree: sizes, entropy, KL, survival and histograms before and after."""
    before: dict[tuple, int] = defaultdict(int)
    after: dict[tuple, int] = defaultdict(int)
    for path, n in leaf_before.items():
        for d in range(1, len(path) + 1):
            before[path[:d]] += n
            after[path[:d]] += leaf_after.get(path, 0)
    target = _target_shares(list(before), before, temps)
    out = []
    for d in range(1, len(temps) + 1):
        nodes = sorted((n for n in before if len(n) == d), key=lambda n: json.dumps(n, default=str))
        b = np.array([before[n] for n in nodes], dtype=np.float64)
        a = np.array([after[n] for n in nodes], dtype=np.float64)
        t = np.array([target[n] for n in nodes])
        pb, pa = b / max(b.sum(), 1), a / max(a.sum(), 1)
        tail = b < np.median(b) if len(b) else b.astype(bool)
        out.append({
            "level": names[d - 1], "temperature": temps[d - 1], "nodes": len(nodes),
            "rows_before": int(b.sum()), "rows_after": int(a.sum()),
            "entropy_before": _entropy(pb), "entropy_after": _entropy(pa), "entropy_target": _entropy(t),
            "kl_to_target": _kl(pa, t), "kl_to_input": _kl(pa, pb),
            "survive_frac": float((a > 0).mean()) if len(a) else 1.0,
            "tail_nodes": int(tail.sum()),
            "tail_survive_frac": float((a[tail] > 0).mean()) if tail.any() else 1.0,
            "kept_whole": int(((a == b) & (b > 0)).sum()),
            "max_share_error": float(np.abs(pa - t).max()) if len(t) else 0.0,
            "hist": _log_hist(b, a),
        })
    return out


def summarize(plan: dict, group_by: list[str], shares: dict) -> dict:
    """The `_distribution.json` body from a downsample plan and per-source/per-tag counts."""
    paths = plan["paths"]
    leaf_before = {paths[k]: n for k, n in plan["sizes"].items()}
    leaf_after = {paths[k]: plan["quotas"][k] for k in plan["sizes"]}
    depth = len(plan["temperatures"])
    names = list(group_by) + [f"cluster level {i + 1}" for i in range(depth - len(group_by))]
    return {
        "budget": plan["budget"], "rows_in_play": sum(plan["sizes"].values()), "leaves": len(plan["sizes"]),
        "levels": level_stats(leaf_before, leaf_after, plan["temperatures"], names),
        "shares": shares,
    }


def write(out_dir: Path, body: dict) -> Path:
    path = Path(out_dir) / FILE
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- HTML


def paired_log_histogram(hist: dict, title: str, width: int = 420, height: int = 170) -> str:
    """Before (grey) and after (blue) bars per quarter decade of node size; x is log10(size)."""
    hb, ha, edges = hist["before"], hist["after"], hist["edges"]
    top, n = max(hb + ha + [1]), len(hb)
    pad, plot_h, bw = 4, height - 30, (width - 8) / max(n, 1)
    parts = [f'<figure class="hist"><figcaption>{html.escape(title)} <span class="n">'
             f'(x: cluster size, log scale; y: clusters; grey before, blue after; {hist["after_empty"]} emptied)</span>'
             f'</figcaption><svg width="{width}" height="{height}" role="img">']
    for i in range(n):
        for j, (c, fill) in enumerate(((hb[i], "#9ca3af"), (ha[i], "#3b82f6"))):
            h = plot_h * c / top
            parts.append(f'<rect x="{pad + i * bw + j * bw / 2:.1f}" y="{plot_h - h:.1f}" '
                         f'width="{max(bw / 2 - 1, 1):.1f}" height="{h:.1f}" fill="{fill}"/>')
    for decade in range(0, n // BINS_PER_DECADE + 1):  # a tick label per power of ten
        x = pad + decade * BINS_PER_DECADE * bw
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot_h}" y2="{plot_h + 4}" stroke="#666"/>'
                     f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{10 ** decade:g}</text>')
    parts.append("</svg></figure>")
    return "".join(parts)


def _level_table(levels: list[dict]) -> str:
    cols = [("level", "level"), ("T", "temperature"), ("nodes", "nodes"), ("rows before", "rows_before"),
            ("rows after", "rows_after"), ("H before (bits)", "entropy_before"), ("H after", "entropy_after"),
            ("H target", "entropy_target"), ("KL to target", "kl_to_target"), ("KL to input", "kl_to_input"),
            ("nodes surviving", "survive_frac"), ("tail surviving", "tail_survive_frac"), ("kept whole", "kept_whole")]

    def fmt(v):
        return f"{v:,.4g}" if isinstance(v, float) else html.escape(f"{v:,}" if isinstance(v, int) else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(lv[k])}</td>" for _, k in cols) + "</tr>" for lv in levels)
    return f"<table><tr>{head}</tr>{body}</table>"


def _shares_chart(counts: dict, title: str) -> str:
    before, after = counts.get("before", {}), counts.get("after", {})
    tb, ta = max(sum(before.values()), 1), max(sum(after.values()), 1)
    keys = sorted(before, key=lambda k: -before[k])[:20]
    rows = {}
    for k in keys:
        rows[f"{k} before {100 * before[k] / tb:.1f}%"] = before[k]
        rows[f"{k} after {100 * after.get(k, 0) / ta:.1f}%"] = after.get(k, 0)
    return f"<h3>{html.escape(title)}</h3>" + bar_chart(rows, "bar ok")


def _mix_section(run_dir: Path) -> str:
    from plumbing import runs
    from plumbing.tables import open_table

    audit_dir = runs.stage_dir(run_dir, "mix_audit")
    if not runs.is_done(audit_dir):
        return "<p>No mix in this run (`sluice curate mix`).</p>"
    rows = open_table(audit_dir).to_table().to_pylist()
    chart = bar_chart({f"{r['id']}: target {r['quota']:.1%}, got {r['achieved_share']:.1%}"
                       f"{' (short)' if r['short'] else ''}": r["achieved_rows"] for r in rows}, "bar ok")
    cols = ["id", "quota", "target_rows", "available_rows", "achieved_rows", "achieved_share", "repeated_rows",
            "max_copies", "short"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
    return (f"<h3>Mixing quotas</h3>{chart}<table><tr>"
            + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{body}</table>")


def section(run_dir: str | Path) -> str:
    """The distribution section of the run report: per-level charts and table, shares, mixing quotas."""
    run_dir = Path(run_dir)
    path = run_dir / "pool" / FILE
    if not path.is_file():
        return "<p>No downsampled pool in this run.</p>" + _mix_section(run_dir)
    d = json.loads(path.read_text(encoding="utf-8"))
    figs = "".join(paired_log_histogram(lv["hist"], f"{lv['level']} (T={lv['temperature']:g})") for lv in d["levels"])
    shares = "".join(_shares_chart(d["shares"][k], f"Share per {k}, before and after") for k in sorted(d["shares"]))
    return (f"<p>{d['rows_in_play']:,} rows in play over {d['leaves']:,} leaves, {d['budget']:,} kept.</p>"
            f'<div class="hists">{figs}</div>{_level_table(d["levels"])}{shares}{_mix_section(run_dir)}')
