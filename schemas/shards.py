"""The shard index: one row per exported sample, pointing into a webdataset tar."""

import pyarrow as pa

SHARD_INDEX = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "sample id"}),
        pa.field("uri", pa.string(), metadata={"doc": "where the sample came from (from the raw table)"}),
        pa.field("shard", pa.string(), nullable=False, metadata={"doc": "tar file name, relative to the export dir"}),
        pa.field("key", pa.string(), nullable=False, metadata={"doc": "webdataset key inside the shard"}),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("aspect_bucket", pa.string(), metadata={"doc": "bucket of the aspect-ratio ladder, e.g. 1024x768"}),
        pa.field("styles", pa.list_(pa.string()), metadata={"doc": "caption styles present, style_lang"}),
        pa.field("source", pa.string()),
    ]
)
