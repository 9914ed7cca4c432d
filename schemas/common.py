"""Columns every table shares: identity, provenance, and the decision columns of a stage."""

import pyarrow as pa

# `id` is stable across runs: a hash of (source, key), so rerunning ingest on the same input gives the
# same ids whatever the partitioning. `uri` says where the record came from (file, tar member, row).
IDENTITY = [
    pa.field("id", pa.string(), nullable=False, metadata={"doc": "stable id: xxh3-128 of (source, key), hex"}),
    pa.field("source", pa.string(), nullable=False, metadata={"doc": "name of the input source"}),
    pa.field("key", pa.string(), nullable=False, metadata={"doc": "record key inside its source"}),
    pa.field("uri", pa.string(), nullable=False, metadata={"doc": "where the record came from: path, tar::member, parquet#row"}),
]

# A record that cannot be used carries `error` (what was wrong) and `error_kind` (a short token used for
# counts). Usable records may carry `warnings` (e.g. a caption that was not UTF-8 and was re-decoded).
ERROR = [
    pa.field("error", pa.string(), metadata={"doc": "why the record cannot be used; null when usable"}),
    pa.field("error_kind", pa.string(), metadata={"doc": "short token for `error`, e.g. truncated, not_an_image"}),
]

WARNINGS = pa.field("warnings", pa.list_(pa.string()), metadata={"doc": "non-fatal problems, e.g. caption_not_utf8"})

# A stage keeps every input row. Kept rows have null drop columns; dropped rows name the first rule that
# failed (`drop_reason`) and all that failed (`drop_reasons`).
DECISION = [
    pa.field("drop_stage", pa.string(), metadata={"doc": "stage that dropped the row; null when kept"}),
    pa.field("drop_reason", pa.string(), metadata={"doc": "first failed rule (its name); null when kept"}),
    pa.field("drop_reasons", pa.list_(pa.string()), metadata={"doc": "every failed rule, in config order"}),
]


def fields_by_name(fields: list[pa.Field]) -> dict[str, pa.Field]:
    return {f.name: f for f in fields}
