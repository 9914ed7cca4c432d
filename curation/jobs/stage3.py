"""Stage 3: captions for every kept row of the latest funnel table, in each style and language.

Reads the kept rows (no drop_reason, no error) of mix, pool, stage2 or stage1 (the mix: each sample once,
however many copies the mix holds), joins raw for pixels and stage1 for alt text and OCR, runs the
configured captioner and the caption checks, and writes the `captions` table: one row per (sample, style,
lang), with the text, or the check that dropped it, or the error. Every input sample has at least one row
out. With no captioner configured only the cleaned alt text is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from curation.config import CurateConfig, Stage3Config
from curation.steps.caption_checks import Bounds, DEFAULT_BOUNDS, apply_checks
from schemas.registry import get_schema
from plumbing import runs

log = logging.getLogger(__name__)

TABLE = "stage3"  # the folder; the table inside is a `captions` table
FUNNEL = ("mix", "pool", "stage2", "stage1")  # latest first
NO_CAPTIONER = ("no captioner configured (stage3.captioner.backend=none): only the cleaned alt text is kept, "
                "as style alt; configure a transformers or served captioner for the other styles")


def input_table(run_dir: Path, choice: str) -> str:
    """The funnel table to caption: the one named, or the latest finished one; never a stale one."""
    from curation.pipeline import check_current

    names = FUNNEL if choice == "auto" else (choice,)
    for name in names:
        if runs.is_done(runs.stage_dir(run_dir, name)):
            check_current(run_dir, name)  # a stale latest table is an error, not a reason to fall back
            return name
    raise FileNotFoundError(f"no finished {' or '.join(names)} table in {run_dir}; run `sluice curate stage1` "
                            f"(or the later stages) first")


def build_captioner(cfg: Stage3Config):
    c = cfg.captioner
    common = dict(styles=c.styles, langs=c.langs, image_max_side=c.image_max_side,
                  prompt_versions=c.prompt_versions)
    if c.backend == "served":
        from curation.captioners.served_openai import ServedCaptioner

        return ServedCaptioner(c.url, c.model, concurrency=c.concurrency, timeout_s=c.timeout_s,
                               retries=c.retries, backoff_s=c.backoff_s, max_tokens=c.max_tokens,
                               temperature=c.temperature, api_key_env=c.api_key_env, **common)
    if c.backend == "transformers":
        from curation.captioners.transformers_vlm import TransformersCaptioner

        return TransformersCaptioner(c.model, batch_size=c.batch_size, max_new_tokens=c.max_tokens,
                                     device=c.device, dtype=c.dtype, **common)
    return None


def bounds(cfg: Stage3Config) -> dict[str, dict[str, Bounds]]:
    out = {s: dict(v) for s, v in DEFAULT_BOUNDS.items()}
    for style, langs in cfg.length_bounds.items():
        if style not in out:
            raise ValueError(f"stage3.length_bounds: unknown style {style!r}; styles are {sorted(out)}")
        for lang, (lo, hi) in langs.items():
            out[style][lang] = Bounds(lo, hi)
    return out


def caption_embedding(run_dir: Path) -> str:
    """Stage 2's embedding model (from its manifest), so caption vectors live where the stored img_emb do."""
    from curation.signals.embed import require_text_tower

    s2 = runs.stage_dir(run_dir, "stage2")
    if not runs.is_done(s2):
        raise FileNotFoundError(f"stage3.embed_captions needs stage 2's image embeddings and model, and {run_dir} "
                                f"has no finished stage2 table; run `sluice curate stage2` first or set "
                                f"stage3.embed_captions=false")
    spec = (runs.read_manifest(s2).get("embedding") or {}).get("model")
    if not spec:
        raise ValueError(f"{s2}/_manifest.json names no embedding model (embedding.model); rerun stage 2 with --force")
    require_text_tower(spec, "stage3.embed_captions")
    return spec


def alt_rows(batch: pd.DataFrame) -> list[dict]:
    """Style alt: the record's own caption (cleaned at ingest), under the language it was detected in."""
    from curation.captioners.base import caption_row

    rows = []
    for rec in batch.to_dict("records"):
        text, lang = rec.get("alt_text"), rec.get("alt_lang")
        ok = isinstance(text, str) and text.strip()
        reason = None if ok and lang in ("zh", "en") else ("no_alt_text" if not ok else "unsupported_language")
        rows.append(caption_row(rec["id"], rec.get("uri"), "alt", lang if lang in ("zh", "en") else "und",
                                text=text if reason is None else None, model="alt_text", drop_reason=reason))
    return rows


class CaptionStep:
    """One Python step: alt rows, the captioner's rows, then the checks; loaded once per worker."""

    name = "stage3_captions"

    def __init__(self, captioner, keep_alt: bool, bounds: dict, embed: tuple[str, str, int] | None = None):
        self.captioner, self.keep_alt, self.bounds = captioner, keep_alt, bounds
        self.embed = embed  # (model spec, device, batch size): kept captions get txt_emb and clip_score

    def __repr__(self) -> str:
        return (f"CaptionStep({self.captioner!r}, keep_alt={self.keep_alt}, bounds={self.bounds!r}, "
                f"embed={self.embed!r})")

    def load(self) -> None:
        if self.captioner is not None:
            self.captioner.load()
        if self.embed is not None:
            from curation.signals.embed import get_embedder

            self.embedder = get_embedder(self.embed[0], self.embed[1])

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from curation.captioners.base import rows_frame

        rows = alt_rows(batch) if self.keep_alt else []
        frames = [rows_frame(rows)]
        if self.captioner is not None:
            frames.append(self.captioner(batch))
        out = pd.concat(frames, ignore_index=True)
        ocr = dict(zip(batch["id"], batch["ocr_text"])) if "ocr_text" in batch.columns else {}
        out = apply_checks(out, ocr, self.bounds)
        if self.embed is None:
            return out
        from curation.signals.embed import embed_captions

        return embed_captions(out, dict(zip(batch["id"], batch["img_emb"])), self.embedder, self.embed[2])


def kept_rows(spark, run_dir: Path, table: str, with_pixels: bool, with_emb: bool = False):
    """Kept rows of `table` with id, uri, alt text, OCR text, the image bytes when a model needs them,
    and stage 2's img_emb when captions are embedded."""
    from pyspark.sql import functions as F

    from curation.spark import read_table

    if table == "mix":
        df = mix_samples(spark, run_dir)
    else:
        df = read_table(spark, str(runs.stage_dir(run_dir, table)), table)
        df = df.where(F.col("drop_reason").isNull() & F.col("error").isNull())
    cols = ["id", "uri", "alt_text", "alt_lang"] + (["ocr_text"] if "ocr_text" in df.columns else [])
    cols += ["img_emb"] if with_emb and "img_emb" in df.columns else []
    df = df.select(*cols)
    if with_emb and "img_emb" not in cols:  # stage 1 as input: the vectors are in stage 2
        s2 = read_table(spark, str(runs.stage_dir(run_dir, "stage2")), "stage2").select("id", "img_emb")
        df = df.join(s2, "id", "left")
    if "ocr_text" not in cols:
        s1 = read_table(spark, str(runs.stage_dir(run_dir, "stage1")), "stage1").select("id", "ocr_text")
        df = df.join(s1, "id", "left")
    if with_pixels:
        raw = read_table(spark, str(runs.stage_dir(run_dir, "raw")), "raw").select("id", "image")
        df = df.join(raw, "id", "inner")
    return df


def mix_samples(spark, run_dir: Path):
    """Each sample of the mix once, with its stage-1 row (alt text, OCR). The mix's rows must all be this run's:
    stage 3 and export take pixels from its raw table."""
    from pyspark.sql import functions as F

    from curation.spark import read_table

    ids = read_table(spark, str(runs.stage_dir(run_dir, "mix")), "mix").select("id").distinct()
    s1 = read_table(spark, str(runs.stage_dir(run_dir, "stage1")), "stage1")
    df = ids.join(s1.withColumn("_in_run", F.lit(True)), "id", "left")
    missing = df.where(F.col("_in_run").isNull()).count()
    if missing:
        raise ValueError(f"{missing} samples of {runs.stage_dir(run_dir, 'mix')} are not in this run's stage1 "
                         f"table: a mix pool reads another run's table. Stage 3 and export take pixels and alt "
                         f"text from this run; run the mix in the run its pools come from")
    return df.drop("_in_run")


def caption_counts(out_dir: Path) -> dict:
    """Rows, samples (usable: those with a caption kept), and per style_lang how many were kept, dropped (by
    reason) and errors."""
    from plumbing.tables import open_table

    t = open_table(out_dir).to_table(columns=["id", "style", "lang", "text", "drop_reason", "error"])
    pdf = t.to_pandas()
    status = pdf["drop_reason"].where(pdf["drop_reason"].notna(), None)
    status = status.where(pdf["error"].isna(), "error").fillna("kept")
    per: dict[str, dict[str, int]] = {}
    for (style, lang, st), n in pdf.assign(status=status).groupby(["style", "lang", "status"]).size().items():
        per.setdefault(f"{style}_{lang}", {})[st] = int(n)
    errors = pdf.loc[pdf["error"].notna(), "error"].str.slice(0, 80).value_counts().head(10)
    n_err = int((status == "error").sum())
    with_caption = int(pdf.loc[status == "kept", "id"].nunique())
    return {"rows": len(pdf), "usable": with_caption, "samples": int(pdf["id"].nunique()),
            "errors": {"caption_error": n_err} if n_err else {}, "samples_with_caption": with_caption,
            "by_style": dict(sorted(per.items())), "top_errors": {k: int(v) for k, v in errors.items()}}


def embedded_counts(out_dir: Path) -> dict:
    """Captions embedded, and how many of them have an alignment score (a stored img_emb to compare with);
    counted batch by batch in the dataset scan, so the vectors never gather in the driver."""
    import pyarrow.dataset as ds

    from plumbing.tables import open_table

    t = open_table(out_dir)
    return {c: t.count_rows(filter=ds.field(f).is_valid())
            for c, f in (("embedded", "txt_emb"), ("with_clip_score", "clip_score"))}


def _spread(df, rows: int, rows_per_task: int):
    return df.repartition(max(1, -(-rows // rows_per_task)))


def run(spark, run_dir: Path, out_dir: Path, cfg: CurateConfig, force: bool = False) -> dict:
    from curation.spark import _loaded, flat_map, write_table

    s3 = cfg.stage3

    def work(job: runs.StageJob) -> dict:
        table = input_table(run_dir, s3.input)
        captioner = build_captioner(s3)
        if captioner is None:
            log.warning(NO_CAPTIONER)
        e2 = cfg.stage2.embed
        embed = (caption_embedding(run_dir), e2.device, e2.batch_size) if s3.embed_captions else None
        step = CaptionStep(captioner, s3.keep_alt, bounds(s3), embed)
        df = kept_rows(spark, run_dir, table, with_pixels=captioner is not None, with_emb=embed is not None)
        with job.phase("count_input"):
            rows_in = df.count()
        df = _spread(df, rows_in, s3.rows_per_task)

        def caption(pdf: pd.DataFrame) -> Iterator[pd.DataFrame]:
            yield _loaded(step)(pdf)  # the worker's loaded copy: weights load once per Python worker

        captions = flat_map(df, caption, get_schema("captions"))
        with job.phase("caption_check_write"):
            write_table(captions, str(job.out_dir), "captions")
        # one sample in, one or more caption rows out (a row per style and language)
        job.count(rows_in, counter=caption_counts, key="samples")
        return {
            "input": {"table": table, "path": str(runs.stage_dir(run_dir, table)), "records": rows_in},
            "captioner": repr(captioner) if captioner is not None else None,
            "note": NO_CAPTIONER if captioner is None else None,
            "caption_embedding": {"model": embed[0], "from": str(runs.stage_dir(run_dir, "stage2")),
                                  **embedded_counts(job.out_dir)} if embed else None,
        }

    return runs.stage_job("stage3", {"captions": out_dir}, work, config=cfg, force=force)
