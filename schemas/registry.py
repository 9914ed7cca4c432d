"""Every table by name, the schema version, and the Parquet-metadata tag that carries both."""

import pyarrow as pa

from schemas.captions import CAPTIONS
from schemas.labels import LABELS
from schemas.pool import MIX, MIX_AUDIT, POOL
from schemas.raw import RAW
from schemas.shards import SHARD_INDEX
from schemas.stage1 import STAGE1
from schemas.stage2 import STAGE2
from schemas.stages import STAGE_BASE

# Bump when a column changes meaning or type; readers refuse tables of another version.
SCHEMA_VERSION = 1

TABLES: dict[str, pa.Schema] = {
    "raw": RAW,
    "stage": STAGE_BASE,
    "stage1": STAGE1,
    "stage2": STAGE2,
    "captions": CAPTIONS,
    "labels": LABELS,
    "shard_index": SHARD_INDEX,
    "pool": POOL,
    "mix": MIX,
    "mix_audit": MIX_AUDIT,
}

# The tag rides in the metadata of the `id` column: Spark stores column metadata in the Parquet footer
# (key `org.apache.spark.sql.parquet.row.metadata`) and restores it on read, and pyarrow writers keep
# it in the Arrow schema, so the same tag works whichever engine wrote the file.
TAG_KEY = "sluice"


class SchemaMismatch(ValueError):
    """A table was written with another schema name or version than the reader expects."""


def get_schema(name: str) -> pa.Schema:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table schema {name!r}; known: {', '.join(sorted(TABLES))}") from None


def tag(name: str) -> dict[str, str]:
    """The metadata that marks a table as `name` at the current schema version."""
    return {"table": name, "schema_version": str(SCHEMA_VERSION)}


def check_tag(found: dict | None, expected_name: str | tuple[str, ...], where: str) -> None:
    """Raise SchemaMismatch, saying what to do, unless `found` marks `expected_name` (or one of several) at
    SCHEMA_VERSION."""
    if not found:
        raise SchemaMismatch(
            f"{where} has no Sluice schema tag; it was not written by Sluice (or by a version before tags). "
            f"Re-run the job that writes it with --force."
        )
    name, version = found.get("table"), found.get("schema_version")
    names = (expected_name,) if isinstance(expected_name, str) else tuple(expected_name)
    if name not in names:
        want = " or ".join(repr(n) for n in names)
        raise SchemaMismatch(f"{where} holds a {name!r} table, expected {want}; check the path.")
    if str(version) != str(SCHEMA_VERSION):
        raise SchemaMismatch(
            f"{where} was written with schema version {version}, this Sluice reads version {SCHEMA_VERSION}; "
            f"re-run the job that wrote it with --force (or use the Sluice version that wrote it)."
        )


_SPARK_ROW_METADATA = b"org.apache.spark.sql.parquet.row.metadata"


def read_tag(schema: pa.Schema) -> dict | None:
    """The Sluice tag of an Arrow schema read from Parquet, whether Spark or pyarrow wrote the file."""
    import json

    if "id" in schema.names:
        meta = schema.field("id").metadata or {}
        if TAG_KEY.encode() in meta:
            return json.loads(meta[TAG_KEY.encode()])
    spark_meta = (schema.metadata or {}).get(_SPARK_ROW_METADATA)
    if spark_meta:
        for f in json.loads(spark_meta).get("fields", []):
            if f.get("name") == "id" and TAG_KEY in (f.get("metadata") or {}):
                return json.loads(f["metadata"][TAG_KEY])
    return None
