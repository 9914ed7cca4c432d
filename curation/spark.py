"""The one place Sluice meets Spark: the session, table read/write, and the scorer adapter.

Model code never imports pyspark. `apply_scorer` turns any scorer (`load()`, `__call__(pandas)`) into a
`mapInPandas` step whose model is loaded once per Python worker and reused across tasks.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa

from schemas.registry import TAG_KEY, check_tag, get_schema, tag
from schemas.spark import to_spark, to_spark_type
from plumbing.deps import require

log = logging.getLogger(__name__)

# Settings that make a laptop run quiet and loopback-only; any of them can be overridden by config.
_LOCAL_DEFAULTS = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Image bytes make rows large: bound Arrow batches by bytes, not only by rows.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "512",
    "spark.sql.execution.arrow.maxBytesPerBatch": str(64 * 2**20),
    "spark.sql.parquet.compression.codec": "zstd",
    # Our own _SUCCESS is written after the manifest; Spark's would come before it.
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.sql.sources.partitionOverwriteMode": "static",
}


def _launched_by_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def session(master: str | None = None, driver_memory: str = "2g", conf: dict[str, str] | None = None,
            app_name: str = "sluice"):
    """A SparkSession: embedded `local[*]` by default, any cluster by `master` or spark-submit."""
    require("pyspark", extra="spark")
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter, not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or (None if _launched_by_spark_submit() else "local[*]")
    loopback = master is not None and (master.startswith("local") or "127.0.0.1" in master or "localhost" in master)
    if loopback:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = {**_DEFAULTS, **(_LOCAL_DEFAULTS if loopback else {}), "spark.driver.memory": driver_memory}
    cores = os.cpu_count() or 2
    settings.setdefault("spark.sql.shuffle.partitions", str(max(4, 2 * cores)))
    settings.update(conf or {})
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for k, v in settings.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---------------------------------------------------------------- tables


def read_table(spark, path: str, table: str | tuple[str, ...], where: str | None = None):
    """Read a Sluice table, refusing one of another schema name (`table`: one, or those accepted) or version;
    `where` names the table in that refusal (default: its path)."""
    from pyspark.errors import AnalysisException

    try:
        df = spark.read.parquet(str(path))
    except AnalysisException as e:
        raise FileNotFoundError(f"cannot read table {path}: {str(e).splitlines()[0]}") from None
    meta = df.schema["id"].metadata.get(TAG_KEY) if "id" in df.columns else None
    check_tag(json.loads(meta) if meta else None, table, where=where or str(path))
    return df


def conform(df, table: str, extra_ok: bool = False):
    """Select the table's columns in schema order, cast to their types, and tag `id` with the schema."""
    from pyspark.sql import functions as F

    schema = get_schema(table)
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise ValueError(f"cannot write {table!r}: columns {missing} are missing (a bug in the job that builds it)")
    extra = [c for c in df.columns if c not in schema.names]
    if extra and not extra_ok:
        raise ValueError(f"cannot write {table!r}: columns {extra} are not in schemas/{table}")
    cols = []
    for f in schema:
        col = F.col(f.name).cast(to_spark_type(f.type))
        meta = {TAG_KEY: json.dumps(tag(table))} if f.name == "id" else {}
        cols.append(col.alias(f.name, metadata=meta))
    return df.select(*cols, *[F.col(c) for c in extra])


def write_table(df, path: str, table: str, extra_ok: bool = False, compression: str | None = None,
                options: dict[str, str] | None = None) -> None:
    """Write a tagged table; `compression` overrides the session's codec (zstd) for this table, and
    `options` are Parquet writer settings for this write (e.g. per column: `parquet.enable.dictionary#image`)."""
    writer = conform(df, table, extra_ok).write.mode("overwrite")
    if compression:
        writer = writer.option("compression", compression)
    for key, value in (options or {}).items():
        writer = writer.option(key, value)
    writer.parquet(str(path))


# ---------------------------------------------------------------- the scorer adapter

# One loaded scorer per (class, config) per Python worker process; Spark reuses workers across tasks.
_WORKER_SCORERS: dict[str, object] = {}


def _loaded(scorer):
    key = f"{type(scorer).__module__}.{type(scorer).__qualname__}:{scorer!r}"
    if key not in _WORKER_SCORERS:
        scorer.load()
        _WORKER_SCORERS[key] = scorer
    return _WORKER_SCORERS[key]


def output_schema(df_schema, columns: dict[str, pa.DataType]):
    """`df_schema` with the scorer's columns appended (or replaced, keeping their place)."""
    from pyspark.sql import types as T

    fields = {f.name: f for f in df_schema.fields}
    for name, t in columns.items():
        fields[name] = T.StructField(name, to_spark_type(t), True)
    return T.StructType(list(fields.values()))


def _usable(pdf: pd.DataFrame, scorer) -> pd.Series:
    """Rows a scorer should see: not failed, not dropped. Others pass through with null scores.

    A scorer that does not look at pixels (`needs_image = False`) also sees failed rows: the caption
    of a broken image is still worth reading.
    """
    mask = pd.Series(True, index=pdf.index)
    checked = ("error", "drop_reason") if getattr(scorer, "needs_image", True) else ("drop_reason",)
    for col in checked:
        if col in pdf.columns:
            mask &= pdf[col].isna()
    return mask


def score_batch(scorer, pdf: pd.DataFrame) -> pd.DataFrame:
    """Run `scorer` on the usable rows of `pdf` and merge its columns; a row it cannot score gets an error.

    Rows that are not usable keep what they had (or null for new columns). An error the scorer reports
    never overwrites an earlier one: the first cause is the one worth reading.
    """
    usable = _usable(pdf, scorer)
    out = pdf.copy()
    part = pdf[usable]
    scored = pd.DataFrame(index=part.index)
    if len(part):
        try:
            scored = scorer(part)
        except Exception:  # a batch-level failure: find the rows that cause it, keep the rest
            scored = _score_row_by_row(scorer, part)
    for name in scorer.columns:
        if name in ("error", "error_kind"):
            continue
        old = out[name] if name in out.columns else pd.Series([None] * len(out), index=out.index, dtype=object)
        new = dict(zip(scored.index, scored[name])) if name in scored.columns else {}
        values = [new[i] if i in new else o for i, o in zip(out.index, old)]
        # object dtype: an all-None column must not become float NaN, which Arrow cannot cast to string
        out[name] = pd.Series(values, index=out.index, dtype=object)
    if "error" in scored.columns:
        _merge_errors(out, scored)
    return out


def _merge_errors(out: pd.DataFrame, scored: pd.DataFrame) -> None:
    """Copy the scorer's errors onto rows that had none; the first cause of a failure is the one to read."""
    for col in ("error", "error_kind"):
        if col not in out.columns:
            out[col] = pd.Series([None] * len(out), index=out.index, dtype=object)
    errors, kinds = out["error"].astype(object).tolist(), out["error_kind"].astype(object).tolist()
    pos = {i: n for n, i in enumerate(out.index)}
    new_kinds = scored["error_kind"] if "error_kind" in scored.columns else None
    for i, err in scored["error"].items():
        n = pos[i]
        if not _isnull(err) and _isnull(errors[n]):
            errors[n] = err
            kind = None if new_kinds is None else new_kinds.get(i)
            kinds[n] = "scorer_error" if _isnull(kind) else kind
    out["error"] = pd.Series(errors, index=out.index, dtype=object)
    out["error_kind"] = pd.Series(kinds, index=out.index, dtype=object)


def _isnull(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _score_row_by_row(scorer, part: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for i in range(len(part)):
        row = part.iloc[i : i + 1]
        try:
            rows.append(scorer(row))
        except Exception as e:
            name = getattr(scorer, "name", type(scorer).__name__)
            log.warning("scorer %s failed on %s: %s", name, row["id"].iloc[0] if "id" in row else i, e)
            rows.append(pd.DataFrame(
                {"error": [f"scorer {name} failed: {type(e).__name__}: {e}"], "error_kind": ["scorer_error"]},
                index=row.index,
            ))
            log.debug("%s", traceback.format_exc())
    return pd.concat(rows) if rows else pd.DataFrame(index=part.index)


def _check_requires(columns: list[str], scorers) -> None:
    have = set(columns)
    for scorer in scorers:
        missing = [c for c in scorer.requires if c not in have]
        if missing:
            raise ValueError(
                f"scorer {getattr(scorer, 'name', type(scorer).__name__)} needs columns {missing}, "
                f"which the table does not have (it has {sorted(have)}); run the step that adds them first"
            )
        have.update(scorer.columns)


def _chain(batch: pd.DataFrame, scorers) -> pd.DataFrame:
    for scorer in scorers:
        batch = score_batch(_loaded(scorer), batch)
    return batch


def apply_scorer(df, *scorers):
    """Add the scorers' columns to `df` in one mapInPandas step (each model loads once per worker).

    Several scorers share the step, so the rows cross from the JVM to Python and back once, not once
    per scorer; a later scorer sees the columns (and errors) of the earlier ones.
    """
    _check_requires(df.columns, scorers)
    schema = df.schema
    for scorer in scorers:
        schema = output_schema(schema, scorer.columns)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield _chain(pdf, scorers)

    return df.mapInPandas(run, schema)


def flat_map(df, fn: Callable[[pd.DataFrame], Iterator[pd.DataFrame]], schema: pa.Schema, scorers=(),
             drop: tuple[str, ...] = ()):
    """Turn each batch of `df` into any number of rows (readers: one tar -> many records).

    `scorers` run on those rows in the same step, and `drop` removes columns after them, so a reader
    and the checks of what it read cost one trip through Python.
    """
    _check_requires(schema.names, scorers)
    struct = to_spark(schema)
    for scorer in scorers:
        struct = output_schema(struct, scorer.columns)
    names = [f.name for f in struct.fields if f.name not in drop]
    from pyspark.sql import types as T

    struct = T.StructType([f for f in struct.fields if f.name not in drop])

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            for out in fn(pdf):
                yield _chain(out, scorers)[names]

    return df.mapInPandas(run, struct)
