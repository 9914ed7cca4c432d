"""The curated pool (downsampling's output), the training mix, and the mix audit.

`pool` keeps every row of its input (DESIGN rule 2): rows the downsampler leaves out are dropped with
`drop_stage = "downsample"` and `drop_reason = "downsampled"`. `mix` holds the rows of the training pool,
one row per copy (a row repeated to fill a short pool's quota appears once per copy). `mix_audit` says,
per pool of the mix, the quota, the target, what was available and what was achieved.
"""

import pyarrow as pa

from schemas.stage1 import STAGE1_SIGNALS
from schemas.stage2 import STAGE2_SIGNALS, TAG
from schemas.stages import stage_schema

DOWNSAMPLE = [
    pa.field("ds_leaf", pa.string(), metadata={"doc": "the balanced leaf: JSON array of the level values (groups, then clusters)"}),
    pa.field("ds_rank", pa.int64(), metadata={"doc": "rank inside the leaf (1 = first kept); null for rows not in play"}),
]

# The pool is stage 2 plus where each row stood in the downsampler.
POOL = stage_schema(STAGE1_SIGNALS + STAGE2_SIGNALS + DOWNSAMPLE)

MIX = pa.schema([
    pa.field("id", pa.string(), nullable=False, metadata={"doc": "sample id"}),
    pa.field("source", pa.string(), metadata={"doc": "name of the input source"}),
    pa.field("uri", pa.string(), metadata={"doc": "where the sample came from"}),
    pa.field("mix_pool", pa.string(), nullable=False, metadata={"doc": "the mix pool (quota) this copy fills"}),
    pa.field("mix_copy", pa.int32(), nullable=False, metadata={"doc": "0 for the first copy of a row in its pool, 1.. for repeats"}),
    pa.field("cluster_path", pa.list_(pa.int32()), metadata={"doc": "cluster id per level, coarse to fine"}),
    pa.field("tier", pa.string(), metadata={"doc": "quality tier"}),
    pa.field("tags", pa.list_(TAG), metadata={"doc": "top-k concepts with their probability (from stage 2)"}),
])

MIX_AUDIT = pa.schema([
    pa.field("id", pa.string(), nullable=False, metadata={"doc": "the pool's name (one audit row per pool)"}),
    pa.field("table", pa.string(), metadata={"doc": "the table the pool draws from"}),
    pa.field("where", pa.string(), metadata={"doc": "the pool's filter (Spark SQL); null = every kept row"}),
    pa.field("quota", pa.float64(), nullable=False, metadata={"doc": "the share of the mix asked for"}),
    pa.field("target_rows", pa.int64(), nullable=False, metadata={"doc": "quota x mix size, rounded (largest remainder)"}),
    pa.field("available_rows", pa.int64(), nullable=False, metadata={"doc": "distinct rows the pool holds"}),
    pa.field("achieved_rows", pa.int64(), nullable=False, metadata={"doc": "rows written, copies included"}),
    pa.field("achieved_share", pa.float64(), nullable=False, metadata={"doc": "achieved_rows / all rows of the mix"}),
    pa.field("distinct_rows", pa.int64(), nullable=False, metadata={"doc": "distinct rows written"}),
    pa.field("repeated_rows", pa.int64(), nullable=False, metadata={"doc": "copies beyond the first"}),
    pa.field("max_copies", pa.int32(), nullable=False, metadata={"doc": "most copies of one row"}),
    pa.field("short", pa.bool_(), nullable=False, metadata={"doc": "true when the repeat cap kept the pool below its target"}),
])
