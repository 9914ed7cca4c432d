"""JSON Schema files generated from the pyarrow schemas, for readers outside Python.

`python -m schemas.jsonschema` rewrites `schemas/json/`; a test fails when the checked-in files are stale.
"""

import json
import sys
from pathlib import Path

import pyarrow as pa

from schemas.registry import SCHEMA_VERSION, TABLES

JSON_DIR = Path(__file__).parent / "json"


def _type(t: pa.DataType) -> dict:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return {"type": "string"}
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return {"type": "string", "contentEncoding": "base64"}
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_floating(t):
        return {"type": "number"}
    if pa.types.is_timestamp(t):
        return {"type": "string", "format": "date-time"}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return {"type": "array", "items": _type(t.value_type)}
    if pa.types.is_struct(t):
        return _object([t.field(i) for i in range(t.num_fields)])
    raise TypeError(f"no JSON Schema type for Arrow type {t}")


def _object(fields) -> dict:
    props, required = {}, []
    for f in fields:
        prop = _type(f.type)
        if f.nullable:
            prop = {"anyOf": [prop, {"type": "null"}]}
        doc = (f.metadata or {}).get(b"doc")
        if doc:
            prop["description"] = doc.decode()
        props[f.name] = prop
        if not f.nullable:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def json_schema(name: str) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"sluice {name} row",
        "x-sluice-schema-version": SCHEMA_VERSION,
        **_object(list(TABLES[name])),
    }


def render_all() -> dict[str, str]:
    """File name -> content of every JSON Schema file."""
    return {f"{name}.schema.json": json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n" for name in TABLES}


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for fname, text in render_all().items():
        (JSON_DIR / fname).write_text(text, encoding="utf-8")
    print(f"wrote {len(TABLES)} JSON Schema files to {JSON_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
