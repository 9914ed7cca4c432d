"""Labels pulled from annotation rounds: one row per (sample, task, annotator)."""

import pyarrow as pa

LABELS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False,
                 metadata={"doc": "sample id (generated images: the id in generated.jsonl)"}),
        pa.field("uri", pa.string(),
                 metadata={"doc": "where the sample came from (from the raw table; generated images: the file)"}),
        pa.field("task", pa.string(), nullable=False,
                 metadata={"doc": "labelling task, e.g. valuable, watermark, showcase, generated"}),
        pa.field("label", pa.string(), metadata={"doc": "the answer; null when skipped or empty"}),
        pa.field("annotator", pa.string(), metadata={"doc": "who labelled (Label Studio user)"}),
        pa.field("round", pa.int32(), metadata={"doc": "active-learning round"}),
        pa.field("source", pa.string(), metadata={"doc": "human or model"}),
        pa.field("agreement", pa.float32(), metadata={"doc": "share of annotators agreeing with the majority"}),
        pa.field("flag", pa.string(), metadata={"doc": "unknown_label, skipped, empty, conflict; "
                                                       "for generated images also bad_record, duplicate_id, "
                                                       "missing_image; null when clean"}),
        pa.field("ls_task_id", pa.int64(), metadata={"doc": "Label Studio task id"}),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
