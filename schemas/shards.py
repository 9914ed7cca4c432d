"""The export's shards (docs/export-format.md): the members and json keys of a sample, and the shard index,
one row per exported sample pointing into a webdataset tar. Writers and readers of shards take them from here.
"""

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

# A sample is the tar members `<key>.<member>` sharing one key (no dots in a key: the member is what follows
# the first dot, which is how webdataset names a sample's fields).
IMAGE_MEMBER = "jpg"  # the image, RGB JPEG; of a pair, the preferred (preference) or the edited (edit) image
META_MEMBER = "json"  # the sample's json, with SAMPLE_JSON_KEYS
LOSE_MEMBER = "lose.jpg"  # preference pairs: the rejected image
SOURCE_MEMBER = "src.jpg"  # edit pairs: the source image the edit starts from
PAIR_MEMBERS = (LOSE_MEMBER, SOURCE_MEMBER)  # second images a pair shard adds beside IMAGE_MEMBER

# Keys of every sample's json, with the same value types in every sample (HF `datasets` fixes one schema
# from the first samples): captions {style: {lang: text}} with "" for a missing one, signals with "" or NaN.
SAMPLE_JSON_KEYS = ("id", "key", "source", "uri", "width", "height", "orig_width", "orig_height",
                    "aspect_bucket", "aspect_buckets", "captions", "styles", "caption_clip_scores", "signals",
                    "tags", "cluster_path")
PAIR_JSON_KEY = "pair"  # preference pairs: {win, lose}, the ids of the two generated records
EDIT_JSON_KEY = "edit"  # edit pairs: how the pair was made


def member_name(key: str, member: str) -> str:
    """The tar member of a sample's `member` (`<key>.<member>`)."""
    return f"{key}.{member}"


def split_member(name: str) -> tuple[str, str]:
    """(key, member) of a tar member name."""
    key, _, member = name.partition(".")
    return key, member
