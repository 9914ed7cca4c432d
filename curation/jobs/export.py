"""Export: the captioned pool as webdataset tar shards per aspect bucket, a Parquet index and a manifest.

The format is described in docs/export-format.md and `curation/io/shard_writer.py`. Shard membership is
decided in Spark before anything is written (bucket by ladder, then position by key inside the bucket),
so shard names and members do not depend on partitioning, and each shard is written by one task.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from curation.config import CurateConfig, ExportConfig
from curation.io.aspect_buckets import Ladders
from curation.io.shard_writer import SHARD_KEY, ShardWriter, jsonable
from schemas.captions import CAPTION_LANGS, CAPTION_STYLES
from plumbing import runs

log = logging.getLogger(__name__)

# Columns of a funnel table that are not signals.
_NOT_SIGNALS = {"id", "source", "key", "uri", "width", "height", "format", "alt_text", "alt_lang", "drop_stage",
                "drop_reason", "drop_reasons", "error", "error_kind", "warnings", "tags", "cluster_path",
                "ocr_boxes", "image", "content_hash", "mix_copy", SHARD_KEY}


def export_dir(run_dir: Path, cfg: ExportConfig) -> Path:
    return runs.local_path(cfg.dir) if cfg.dir else runs.stage_dir(run_dir, "export")


class SampleMeta:
    """Scorer-shaped step: the aspect bucket and the sample JSON (without pixels) of each row."""

    name = "export_meta"
    requires = ("id", SHARD_KEY, "width", "height", "captions")
    needs_image = False
    columns = {"aspect_bucket": pa.string(), "aspect_buckets": pa.string(), "meta": pa.string()}

    def __init__(self, cfg: ExportConfig, signals: tuple[tuple[str, str], ...]):
        self.resolutions, self.ratios, self.divisible = cfg.resolutions, cfg.aspect_ratios, cfg.divisible
        self.signals = signals

    def __repr__(self) -> str:
        return f"SampleMeta({self.resolutions}, {self.ratios}, {self.divisible}, {self.signals})"

    def load(self) -> None:
        self._ladders = Ladders(self.resolutions, self.ratios, self.divisible)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = []
        for rec in batch.to_dict("records"):
            primary, per = self._ladders.assign(int(rec["width"]), int(rec["height"]))
            out.append({"aspect_bucket": primary, "aspect_buckets": json.dumps(per),
                        "meta": json.dumps(sample_json(rec, primary, per, self.signals), ensure_ascii=False)})
        return pd.DataFrame(out, index=batch.index, columns=list(self.columns))


def sample_json(rec: dict, primary: str, per: dict, signals: tuple[tuple[str, str], ...]) -> dict:
    """The sample's JSON. Every sample has the same keys and value types (HF `datasets` fixes one schema
    from the first examples and fails on, or silently drops, anything else): every style and language is
    present ("" when missing), string signals are "" and numeric ones NaN when missing."""
    captions = {s: {lang: "" for lang in CAPTION_LANGS} for s in CAPTION_STYLES}
    clip_scores = {s: {lang: math.nan for lang in CAPTION_LANGS} for s in CAPTION_STYLES}
    for c in rec["captions"] if rec["captions"] is not None else []:
        captions[c["style"]][c["lang"]] = c["text"]
        if c.get("clip_score") is not None:  # stage3.embed_captions
            clip_scores[c["style"]][c["lang"]] = float(c["clip_score"])
    styles = sorted(f"{s}_{lang}" for s, langs in captions.items() for lang, t in langs.items() if t)
    return {
        "id": rec["id"], "key": rec.get(SHARD_KEY) or rec["id"],
        "source": rec.get("source") or "", "uri": rec.get("uri") or "",
        "orig_width": int(rec["width"]), "orig_height": int(rec["height"]),
        "aspect_bucket": primary, "aspect_buckets": per, "captions": captions, "styles": styles,
        "caption_clip_scores": clip_scores,
        "signals": {k: _signal(rec.get(k), kind) for k, kind in signals},
        "tags": jsonable(rec.get("tags")) or [], "cluster_path": jsonable(rec.get("cluster_path")) or [],
    }


def _signal(v, kind: str):
    v = jsonable(v)
    if kind == "str":
        return "" if v is None else str(v)
    return math.nan if v is None else float(v)


def signal_columns(df) -> tuple[tuple[str, str], ...]:
    """(name, num|str) of the scalar columns of a funnel table that are signals (not lists or bytes)."""
    from pyspark.sql import types as T

    out = []
    for f in df.schema.fields:
        if f.name in _NOT_SIGNALS:
            continue
        if isinstance(f.dataType, (T.NumericType, T.BooleanType)):
            out.append((f.name, "num"))
        elif isinstance(f.dataType, T.StringType):
            out.append((f.name, "str"))
    return tuple(out)


def captioned(spark, run_dir: Path, table: str):
    """Kept rows of the funnel table (a mix: one row per copy) with the signals of the earlier tables it
    lacks, a shard key per row, and their passing captions (a list)."""
    from pyspark.sql import functions as F

    from curation.spark import read_table

    caps = read_table(spark, str(runs.stage_dir(run_dir, "stage3")), "captions").where(F.col("text").isNotNull())
    # a captions table of schema version 1 may lack clip_score: its samples export with NaN scores
    score = F.col("clip_score") if "clip_score" in caps.columns else F.lit(None).cast("float")
    caps = caps.groupBy("id").agg(F.collect_list(F.struct("style", "lang", "text", "model", "prompt_version",
                                                          score.alias("clip_score"))).alias("captions"))
    df = read_table(spark, str(runs.stage_dir(run_dir, table)), table)
    if table == "mix":
        df = _copy_keys(df)
        earlier = ("stage2", "stage1")
    else:
        df = df.where(F.col("drop_reason").isNull() & F.col("error").isNull()).withColumn(SHARD_KEY, F.col("id"))
        earlier = ("stage1",) if table != "stage1" else ()
    for name in earlier:  # later tables may not carry every earlier signal: take the missing ones
        if not runs.is_done(runs.stage_dir(run_dir, name)):
            continue
        src = read_table(spark, str(runs.stage_dir(run_dir, name)), name)
        wanted = [c for c, _ in signal_columns(src)] + ["width", "height", "alt_text", "alt_lang"]
        extra = [c for c in wanted if c in src.columns and c not in df.columns]
        if extra:
            df = df.join(src.select("id", *extra), "id", "left")
    return df.join(caps, "id", "left")


def _copy_keys(mix):
    """A key per row of the mix: the id for a sample's first row, `<id>_<n>` for the n-th copy after it
    (copies within a pool and rows of the same sample in other pools), so shard members stay unique."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n = F.row_number().over(Window.partitionBy("id").orderBy("mix_pool", "mix_copy")) - 1
    return mix.withColumn("_n", n).withColumn(
        SHARD_KEY, F.when(F.col("_n") == 0, F.col("id")).otherwise(F.concat_ws("_", "id", F.col("_n").cast("string")))
    ).drop("_n")


def _index_schema():
    from pyspark.sql import types as T

    s = T.StringType()
    return T.StructType([T.StructField(c, s) for c in ("id", "uri", "shard", "key")] + [
        T.StructField("width", T.IntegerType()), T.StructField("height", T.IntegerType()),
        T.StructField("aspect_bucket", s), T.StructField("styles", T.ArrayType(s)),
        T.StructField("source", s), T.StructField("error", s)])


def write_shards(spark, df, out_dir: Path, cfg: ExportConfig):
    """Assign each sample its shard (by bucket, then key), write the tars, return the index rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos = F.row_number().over(Window.partitionBy("aspect_bucket").orderBy(SHARD_KEY)) - 1
    df = df.withColumn("shard_no", F.floor(pos / cfg.shard_size).cast("int"))
    n = max(1, int(df.select("aspect_bucket", "shard_no").distinct().count()))
    df = df.repartition(n, "aspect_bucket", "shard_no").sortWithinPartitions("aspect_bucket", "shard_no", SHARD_KEY)
    root, prefix, side, q = str(out_dir), cfg.shard_prefix, cfg.max_side, cfg.jpeg_quality
    return df.mapInPandas(lambda it: ShardWriter(root, prefix, side, q).write(it), _index_schema())


def finish_index(parts: Path, out_dir: Path) -> dict:
    """index.parquet from the written rows (one file, tagged), and the counts of what was not written."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from schemas.registry import TAG_KEY, get_schema, tag
    from plumbing.tables import open_table

    t = open_table(parts).to_table()
    ok = t.filter(pc.is_null(t["error"]))
    errors = t.filter(pc.is_valid(t["error"]))["error"].to_pylist()
    schema = pa.schema([f.with_metadata({**(f.metadata or {}), TAG_KEY.encode(): json.dumps(tag("shard_index"))})
                        if f.name == "id" else f for f in get_schema("shard_index")])
    ok = ok.select(schema.names).cast(schema).sort_by([("shard", "ascending"), ("key", "ascending")])
    pq.write_table(ok, out_dir / "index.parquet")
    shutil.rmtree(parts)
    return {"written": ok, "errors": errors}


def manifest_counts(index: pa.Table) -> dict:
    pdf = index.select(["shard", "aspect_bucket"]).to_pandas()
    buckets = {b: {"samples": int(len(g)), "shards": int(g["shard"].nunique())}
               for b, g in pdf.groupby("aspect_bucket")}
    shards = [{"path": s, "samples": int(len(g)), "bucket": g["aspect_bucket"].iloc[0]}
              for s, g in pdf.groupby("shard")]
    return {"samples": len(pdf), "buckets": dict(sorted(buckets.items())), "shards": shards}


def run(spark, run_dir: Path, out_dir: Path, cfg: CurateConfig, force: bool = False) -> dict:
    from pyspark.sql import functions as F

    from curation.spark import apply_scorer, read_table

    ex = cfg.export

    def work(job: runs.StageJob) -> dict:
        table = runs.read_manifest(runs.stage_dir(run_dir, "stage3"))["input"]["table"]
        df = captioned(spark, run_dir, table)
        signals = signal_columns(df)
        rows_in, no_caption = df.agg(F.count(F.lit(1)), F.count_if(F.col("captions").isNull())).first()
        if ex.require_caption:
            df = df.where(F.col("captions").isNotNull())
        else:
            no_caption = 0  # written with empty captions
        meta = apply_scorer(df, SampleMeta(ex, signals)).select("id", SHARD_KEY, "uri", "source", "aspect_bucket",
                                                                 "meta")
        raw = read_table(spark, str(runs.stage_dir(run_dir, "raw")), "raw").select("id", "image")
        parts = job.out_dir / "_index_parts"
        with job.phase("write_shards"):
            write_shards(spark, meta.join(raw, "id", "inner"), job.out_dir, ex).write.mode("overwrite").parquet(
                str(parts))
        with job.phase("index"):
            done = finish_index(parts, job.out_dir)
        errors = done["errors"]
        # every kept row is in a shard, or skipped for want of a caption, or failed to re-encode
        job.count(rows_in - no_caption - len(errors), counter=lambda _: index_counts(done["written"], errors))
        return {
            "input": {"table": table, "captions": str(runs.stage_dir(run_dir, "stage3")), "records": rows_in},
            **manifest_counts(done["written"]), "skipped": {"no_caption": no_caption, "error": len(errors)},
            "error_examples": errors[:20],
            "ladder": Ladders(ex.resolutions, ex.aspect_ratios, ex.divisible).describe(),
        }

    return runs.stage_job("export", {"shard_index": out_dir}, work, config=cfg, force=force)


def index_counts(index: pa.Table, errors: list[str]) -> dict:
    """The manifest's `output` counts: a row per sample written, the samples that failed to re-encode."""
    return {"rows": index.num_rows, "usable": index.num_rows,
            "errors": {"reencode_failed": len(errors)} if errors else {}}
