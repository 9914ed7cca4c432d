"""Stage tables: identity, the signals a stage computed, and the decision columns.

Stages do not carry pixels; a job that needs them joins `raw` back by `id`. Each stage's signal columns
are declared here so that rules (`keep_if` expressions) can be checked against the schema before a job runs.
"""

import pyarrow as pa

from schemas.common import DECISION, ERROR, IDENTITY

# Signals of stage 1 that ingest already knows and every later stage keeps for rules and reports.
CARRIED_FROM_RAW = [
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("format", pa.string()),
    pa.field("alt_text", pa.string()),
    pa.field("alt_lang", pa.string()),
]


def stage_schema(signals: list[pa.Field]) -> pa.Schema:
    """The table of a stage that computed `signals`."""
    return pa.schema(IDENTITY + CARRIED_FROM_RAW + signals + DECISION + ERROR)


# What every stage table has whatever it computed: identity, the carried columns, the decision and error.
STAGE_BASE = stage_schema([])
