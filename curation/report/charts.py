"""Charts as inline SVG: no JavaScript and no plotting library, so the report opens anywhere, offline."""

from __future__ import annotations

import html

import numpy as np


def bar_chart(items: dict[str, int], css_class: str = "bar", width: int = 640, row: int = 22) -> str:
    """Horizontal bars, one per item, labelled with its count."""
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


def histogram(values: np.ndarray, title: str, threshold: float | None = None, keep_side: str | None = None,
              bins: int = 40, width: int = 360, height: int = 150) -> str:
    """A histogram with the rule's threshold drawn as a line and the dropped side shaded.

    `keep_side` is ">" when values above the threshold are kept (e.g. sharpness >= 40), "<" otherwise.
    """
    v = values[~np.isnan(values)]
    # Heavy-tailed positive signals (sharpness spans 0.01..1000) read better on a log axis.
    log_axis = len(v) > 0 and v.min() > 0 and (threshold is None or threshold > 0) and \
        v.max() / v.min() > 1000
    if log_axis:
        v = np.log10(v)
        threshold = None if threshold is None else float(np.log10(threshold))
    scale = " (log10)" if log_axis else ""
    head = (f'<figure class="hist"><figcaption>{html.escape(title)}{scale} '
            f'<span class="n">n={len(v):,}</span></figcaption>')
    if len(v) == 0:
        return head + "<p>no values</p></figure>"
    lo, hi = float(v.min()), float(v.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    top = counts.max() or 1
    pad, plot_h = 4, height - 28

    def x(val: float) -> float:
        return pad + (width - 2 * pad) * (val - lo) / (hi - lo)

    parts = [head, f'<svg width="{width}" height="{height}" role="img">']
    if threshold is not None and keep_side in (">", "<"):
        x0, x1 = (x(lo), x(threshold)) if keep_side == ">" else (x(threshold), x(hi))
        parts.append(f'<rect class="dropzone" x="{x0:.1f}" y="0" width="{max(0.0, x1 - x0):.1f}" height="{plot_h}"/>')
    bw = (width - 2 * pad) / bins
    for i, c in enumerate(counts):
        h = plot_h * c / top
        parts.append(f'<rect class="bar" x="{pad + i * bw:.1f}" y="{plot_h - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                     f'height="{h:.1f}"/>')
    if threshold is not None:
        parts.append(f'<line class="threshold" x1="{x(threshold):.1f}" x2="{x(threshold):.1f}" y1="0" y2="{plot_h}"/>'
                     f'<text x="{min(x(threshold) + 3, width - 60):.1f}" y="12">'
                     f'{10 ** threshold if log_axis else threshold:.3g}</text>')
    shown_lo, shown_hi = (10 ** lo, 10 ** hi) if log_axis else (lo, hi)
    parts.append(f'<text x="{pad}" y="{height - 4}">{shown_lo:.3g}</text>'
                 f'<text x="{width - pad}" y="{height - 4}" text-anchor="end">{shown_hi:.3g}</text></svg></figure>')
    return "".join(parts)
