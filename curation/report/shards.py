"""The export part of the run report: samples and shards per aspect bucket, what was skipped, a few exported
samples with their captions as the trainer will read them; and the demo's toy model with its sample image.
From the export manifest and the shards themselves."""

from __future__ import annotations

import html
import json
import shutil
import tarfile
from pathlib import Path

from curation.report.charts import bar_chart
from curation.report.thumbs import grid
from schemas.shards import IMAGE_MEMBER, META_MEMBER, split_member
from plumbing import runs

N_PER_BUCKET = 2
N_THUMBS = 12
# The folder the demo's toy training writes under the run (sluice/demo.py), read here when present.
DEMO_MODEL = "demo_model"


def section(export_dir: Path, out_dir: Path) -> str:
    m = runs.read_manifest(export_dir)
    buckets = m.get("buckets", {})
    skipped = {k: v for k, v in (m.get("skipped") or {}).items() if v}
    inp = m.get("input", {})
    mix = " (the mix: a sample its quota repeats is written once per copy)" if inp.get("table") == "mix" else ""
    parts = [f"<p>{m.get('samples', 0)} samples in {len(m.get('shards', []))} shards under "
             f"<code>{html.escape(str(export_dir))}</code>, from <b>{html.escape(str(inp.get('table')))}</b>{mix}. "
             f"Skipped: {', '.join(f'{k} {v}' for k, v in skipped.items()) or 'none'}.</p>"]
    per_bucket = {b: v["samples"] for b, v in buckets.items()}
    parts.append("<h3>Samples per aspect bucket</h3>" + bar_chart(per_bucket, "bar ok"))
    rows = "".join(f"<tr><td>{html.escape(b)}</td><td>{v['samples']}</td><td>{v['shards']}</td></tr>"
                   for b, v in buckets.items())
    parts.append(f"<h3>Shards per aspect bucket</h3><table><tr><th>bucket</th><th>samples</th><th>shards</th></tr>"
                 f"{rows}</table>")
    parts.append("<h3>Exported samples (as the trainer reads them)</h3>" + _thumbs(export_dir, m, out_dir))
    return "".join(parts)


def _thumbs(export_dir: Path, manifest: dict, out_dir: Path) -> str:
    """The first samples of each bucket's first shard, with the captions of their json."""
    first = {}
    for s in manifest.get("shards", []):
        first.setdefault(s["bucket"], s["path"])
    rows, images = [], {}
    for bucket, path in sorted(first.items()):
        for key, jpg, meta in _read_samples(export_dir / path, N_PER_BUCKET):
            caps = [f"[{s}] {meta['captions'][style][lang]}" for s in meta.get("styles", [])
                    for style, lang in [s.rsplit("_", 1)]]
            rows.append({"id": key, "key": key, "caption": f"{bucket}: {' '.join(caps) or '(no caption)'}"})
            images[key] = jpg
        if len(rows) >= N_THUMBS:
            break
    return '<div class="caps">' + grid(rows[:N_THUMBS], images, out_dir, "exported", lambda r: r["caption"]) + "</div>"


def _read_samples(tar_path: Path, n: int) -> list[tuple[str, bytes, dict]]:
    found: dict[str, dict] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key, ext = split_member(member.name)
            found.setdefault(key, {})[ext] = tar.extractfile(member).read()
            if len(found) > n:
                break
    return [(k, v[IMAGE_MEMBER], json.loads(v[META_MEMBER])) for k, v in found.items()
            if {IMAGE_MEMBER, META_MEMBER} <= set(v)][:n]


def demo_model_section(run_dir: Path, out_dir: Path) -> str | None:
    """The toy model `make demo` trained on the shards, and its sample; None when the run has none."""
    folder = run_dir / DEMO_MODEL
    if not runs.is_done(folder):
        return None
    m = runs.read_manifest(folder)
    parts = [f"<p style='color:#b45309'><b>{html.escape(m.get('label', 'A toy model.'))}</b></p>"]
    export = Path(m.get("export", ""))
    if runs.is_done(export) and runs.read_manifest(export).get("written_at") != m.get("export_written_at"):
        parts.append("<p class='stale'>Trained on an earlier export of this run; `python -m sluice.demo --run ...` "
                     "trains it again.</p>")
    sample = folder / m.get("sample", "sample.png")
    if sample.is_file():
        shutil.copyfile(sample, out_dir / "demo_sample.png")
        parts.append(f"<figure><img src='demo_sample.png' alt='demo sample' "
                     f"style='width:256px;image-rendering:pixelated'><figcaption>prompt: {html.escape(m.get('prompt', ''))}</figcaption></figure>")
    facts = {k: m[k] for k in ("steps", "batch_size", "train_seconds", "dit_preset", "vae", "text_encoder",
                               "sample_size", "first_loss", "last_loss", "pipeline") if k in m}
    parts.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                                     for k, v in facts.items()) + "</table>")
    return "".join(parts)

