import json

import pyarrow as pa
import pytest

from schemas import TABLES
from schemas.jsonschema import JSON_DIR, render_all
from schemas.registry import SCHEMA_VERSION, SchemaMismatch, check_tag, read_tag, tag


def test_checked_in_json_schema_is_current():
    for fname, text in render_all().items():
        path = JSON_DIR / fname
        assert path.is_file(), f"{path} missing: run `make schemas`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make schemas` and commit it"


def test_every_table_has_identity_and_json_schema_validates_a_row():
    import jsonschema

    raw = json.loads((JSON_DIR / "raw.schema.json").read_text())
    row = {f.name: None for f in TABLES["raw"] if f.nullable}
    row.update(id="abc", source="s", key="k", uri="/x.jpg")
    jsonschema.validate(row, raw)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**row, "width": "wide"}, raw)
    for name, schema in TABLES.items():
        assert "id" in schema.names, name


def test_every_table_converts_to_a_spark_struct():
    pytest.importorskip("pyspark")
    from schemas.spark import table_struct

    for name, schema in TABLES.items():
        struct = table_struct(name)
        assert [f.name for f in struct.fields] == schema.names
        assert json.loads(struct["id"].metadata["sluice"]) == tag(name)


def test_tag_check_names_the_fix():
    check_tag(tag("raw"), "raw", "t")
    with pytest.raises(SchemaMismatch, match="--force"):
        check_tag({"table": "raw", "schema_version": str(SCHEMA_VERSION + 1)}, "raw", "t")
    with pytest.raises(SchemaMismatch, match="expected 'raw'"):
        check_tag(tag("labels"), "raw", "t")
    with pytest.raises(SchemaMismatch, match="not written by Sluice"):
        check_tag(None, "raw", "t")


def test_tag_is_read_from_pyarrow_field_metadata():
    schema = pa.schema([pa.field("id", pa.string(), metadata={"sluice": json.dumps(tag("raw"))})])
    assert read_tag(schema) == tag("raw")


def test_shard_members_split_at_the_first_dot():
    from schemas.shards import IMAGE_MEMBER, LOSE_MEMBER, META_MEMBER, SOURCE_MEMBER, member_name, split_member

    for member in (IMAGE_MEMBER, META_MEMBER, LOSE_MEMBER, SOURCE_MEMBER):
        assert split_member(member_name("0f3a_2", member)) == ("0f3a_2", member)
