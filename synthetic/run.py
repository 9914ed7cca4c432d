"""A small synthetic run folder (raw + stage1 tables written with pyarrow), for stage-3/export tests and benches.

Rows cover what those stages must handle: alt text in zh, en, another language or none; images with text
and their OCR result; many aspect ratios; a row stage 1 dropped, a row that failed, and a kept row whose
bytes no longer decode.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.registry import _SPARK_ROW_METADATA, TAG_KEY, get_schema, tag
from plumbing import runs

ALTS = ["A red cat sleeping on a blue sofa.", "一只在蓝色沙发上睡觉的红猫", "Un chat rouge sur un canapé bleu.", None,
        "A street at night with neon shop signs.", "夜晚街道上的霓虹灯招牌"]
TEXTS = ["GRAND SALE", "OPEN 24H", "咖啡", None, None]
SIZES = [(640, 480), (480, 640), (800, 400), (300, 900), (512, 512), (1024, 576), (700, 500)]


def _image(rng: random.Random, size: tuple[int, int], text: str | None) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        d.ellipse([x0, y0, x0 + 60, y0 + 40], fill=tuple(rng.randrange(256) for _ in range(3)))
    if text:
        d.text((10, 10), text, fill=(255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_tagged(table_dir: Path, rows: list[dict], table: str, schema: pa.Schema | None = None) -> None:
    """A finished Sluice table folder (tagged `table`, manifest, _SUCCESS) from rows, written by pyarrow."""
    from schemas.spark import to_spark

    schema = schema if schema is not None else get_schema(table)
    fields = [f.with_metadata({**(f.metadata or {}), TAG_KEY.encode(): json.dumps(tag(table)).encode()})
              if f.name == "id" else f for f in schema]
    # Spark reads column metadata (the schema tag) only from its own footer key, so write that too.
    tagged = pa.schema(fields, metadata={_SPARK_ROW_METADATA: to_spark(schema, table=table).json()})
    table_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in tagged.names} for r in rows], tagged),
                   table_dir / "part-00000.parquet")
    runs.write_manifest(table_dir, {"job": table, "table": table, "output": {"path": str(table_dir),
                                                                              "rows": len(rows)}})


def make_run(run_dir: str | Path, n: int = 24, seed: int = 0) -> dict:
    """Write <run>/raw and <run>/stage1; returns what a test needs to know (ids by kind)."""
    rng, run_dir = random.Random(seed), Path(run_dir)
    raw, s1, kinds = [], [], {"kept": [], "dropped": [], "error": [], "broken": []}
    for i in range(n):
        size, text, alt = SIZES[i % len(SIZES)], TEXTS[i % len(TEXTS)], ALTS[i % len(ALTS)]
        kind = "dropped" if i == 1 else "error" if i == 2 else "broken" if i == 3 else "kept"
        data = b"\xff\xd8 not really a jpeg" if kind == "broken" else _image(rng, size, text)
        id_ = f"{rng.getrandbits(128):032x}"
        kinds[kind].append(id_)
        alt_lang = None if alt is None else "zh" if "猫" in alt or "夜" in alt else "en" if alt.startswith("A") else "other"
        base = {"id": id_, "source": "synthetic", "key": f"{i:06d}", "uri": f"synthetic/{i:06d}.jpg",
                "width": size[0], "height": size[1], "format": "JPEG", "alt_text": alt, "alt_lang": alt_lang}
        raw.append({**base, "image": data, "bytes_len": len(data), "mode": "RGB", "n_frames": 1,
                    "error": "truncated file" if kind == "error" else None,
                    "error_kind": "truncated" if kind == "error" else None})
        s1.append({**base, "q_sharpness": rng.uniform(5, 50), "q_aspect": max(size) / min(size),
                   "ocr_text": text, "ocr_lang": None if text is None else "zh" if text == "咖啡" else "en",
                   "ocr_n_chars": len(text or ""), "drop_stage": "stage1" if kind == "dropped" else None,
                   "drop_reason": "blurry" if kind == "dropped" else None,
                   "drop_reasons": ["blurry"] if kind == "dropped" else None,
                   "error": raw[-1]["error"], "error_kind": raw[-1]["error_kind"]})
    write_tagged(run_dir / "raw", raw, "raw")
    write_tagged(run_dir / "stage1", s1, "stage1")
    kinds["stage1_rows"] = s1
    return kinds
