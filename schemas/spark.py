"""Spark struct types generated from the pyarrow schemas. Imports pyspark only when called."""

import json

import pyarrow as pa

from schemas.registry import TAG_KEY, get_schema, tag


def to_spark_type(t: pa.DataType):
    from pyspark.sql import types as T

    simple = {
        pa.string(): T.StringType(), pa.large_string(): T.StringType(),
        pa.binary(): T.BinaryType(), pa.large_binary(): T.BinaryType(),
        pa.bool_(): T.BooleanType(),
        pa.int8(): T.ByteType(), pa.int16(): T.ShortType(), pa.int32(): T.IntegerType(), pa.int64(): T.LongType(),
        pa.float16(): T.FloatType(), pa.float32(): T.FloatType(), pa.float64(): T.DoubleType(),
        pa.date32(): T.DateType(),
    }
    if t in simple:
        return simple[t]
    if pa.types.is_timestamp(t):
        return T.TimestampType() if t.tz else T.TimestampNTZType()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return T.ArrayType(to_spark_type(t.value_type), containsNull=True)
    if pa.types.is_struct(t):
        return T.StructType([to_spark_field(t.field(i)) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return T.MapType(to_spark_type(t.key_type), to_spark_type(t.item_type))
    raise TypeError(f"no Spark type for Arrow type {t}; add it to schemas/spark.py")


def to_spark_field(f: pa.Field, metadata: dict | None = None):
    from pyspark.sql import types as T

    return T.StructField(f.name, to_spark_type(f.type), nullable=f.nullable, metadata=metadata or {})


def to_spark(schema: pa.Schema, table: str | None = None):
    """A StructType for `schema`; with `table`, the `id` column carries the schema tag."""
    from pyspark.sql import types as T

    fields = []
    for f in schema:
        meta = {TAG_KEY: json.dumps(tag(table))} if table and f.name == "id" else None
        fields.append(to_spark_field(f, meta))
    return T.StructType(fields)


def table_struct(name: str):
    """The tagged Spark schema of a named table."""
    return to_spark(get_schema(name), table=name)
