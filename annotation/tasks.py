"""Pool rows -> Label Studio tasks, keyed by sample id, with the current probe's pre-annotations.

Images reach Label Studio one of three ways: `local` (written under the server's local-files document root
and served through a Local Files storage; the default for `sluice annotate server start`), `inline` (a small
JPEG data: URI inside the task, for a remote server that cannot see our disk), or `uri` (the row's own
http(s) URI, for a server that can fetch it).
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

IMAGE_MODES = ("local", "inline", "uri")


def file_name(sample_id: str, blob: bytes) -> str:
    """A safe file name for a sample: ids may hold any character, so it is a hash of the id."""
    ext = ".png" if blob[:8] == b"\x89PNG\r\n\x1a\n" else ".webp" if blob[8:12] == b"WEBP" else ".jpg"
    return hashlib.sha1(sample_id.encode()).hexdigest()[:20] + ext


def write_local(images: dict[str, bytes], files_root: Path, subdir: str) -> dict[str, str]:
    """Write images under files_root/subdir; the local-files URL of each sample id."""
    folder = Path(files_root) / subdir
    folder.mkdir(parents=True, exist_ok=True)
    refs = {}
    for sid, blob in images.items():
        name = file_name(sid, blob)
        target = folder / name
        if not target.exists():
            target.write_bytes(blob)
        refs[sid] = f"/data/local-files/?d={subdir}/{name}"
    return refs


def inline_refs(images: dict[str, bytes], side: int = 384) -> dict[str, str]:
    from PIL import Image

    refs = {}
    for sid, blob in images.items():
        try:
            im = Image.open(io.BytesIO(blob))
            im.draft("RGB", (side, side))
            im = im.convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            refs[sid] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        except Exception:  # an undecodable image still becomes a task; the annotator can skip it
            continue
    return refs


def choice(question: str, value: str, score: float | None = None, to_name: str = "image") -> dict:
    item = {"from_name": question, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}
    if score is not None:
        item["score"] = float(score)
    return item


def prediction(question: str, positive: str, negative: str, p: float, version: str) -> dict:
    """A pre-annotation from the probe: its answer, and the task score = confidence in it."""
    label, conf = (positive, p) if p >= 0.5 else (negative, 1.0 - p)
    return {"model_version": version, "score": float(conf), "result": [choice(question, label, conf)]}


def build_tasks(rows: list[dict], refs: dict[str, str], round_: int, pred: dict[str, dict] | None = None) -> list[dict]:
    """One task per row (id, uri, caption); a row without an image reference still gets a task (no image)."""
    tasks = []
    for row in rows:
        sid = row["id"]
        data = {"sample_id": sid, "image": refs.get(sid, ""), "caption": row.get("caption") or "",
                "uri": row.get("uri") or "", "round": int(round_)}
        task = {"data": data}
        if pred and sid in pred:
            task["predictions"] = [pred[sid]]
        tasks.append(task)
    return tasks


def existing_ids(tasks: list[dict]) -> dict[str, int]:
    """sample id -> Label Studio task id of tasks already in the project (what makes a push idempotent)."""
    out = {}
    for t in tasks:
        sid = (t.get("data") or {}).get("sample_id")
        if sid is not None:
            out.setdefault(str(sid), t["id"])
    return out
