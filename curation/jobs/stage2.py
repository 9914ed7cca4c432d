"""Stage 2: embeddings, alignment, aesthetics, concepts and pHash on what stage 1 kept; then dedup,
clusters, tiers and rules. Rows stage 1 dropped or failed pass through with their decision unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from curation.config import CurateConfig, Stage2Config
from curation.signals import Builder, resolve
from curation.signals.descriptor import NAME as DESCRIPTOR
from curation.spark import apply_scorer, read_table, write_table
from curation.steps.decide import check_rules, decide
from curation.steps.tiers import assign_aesthetic_tier, assign_tiers, check_tiers
from schemas.registry import get_schema
from schemas.spark import to_spark
from plumbing import runs

log = logging.getLogger(__name__)

TABLE = "stage2"
WEIGHT_FREE_WARNING = ("embeddings are descriptor-v1, a weight-free colour/texture/layout descriptor, not CLIP: "
                       "dedup and clusters group images that look alike, there is no alignment score and no "
                       "concept tags. Set stage2.embed.model to a CLIP model for semantic embeddings.")


def _aesthetic(c: Stage2Config, built: dict) -> dict | str:
    if not c.aesthetic.head:
        return "no stage2.aesthetic.head given: aesthetic and aesthetic_tier are null"
    return dict(head=c.aesthetic.head, model=c.embed.model)


def _concepts(c: Stage2Config, built: dict) -> dict | str:
    if not c.concepts.enabled:
        return "off (stage2.concepts.enabled: false)"
    if c.embed.model == DESCRIPTOR:
        return "skipped: descriptor-v1 has no text tower to score the vocabulary with"
    k = c.concepts
    return dict(model=c.embed.model, vocabularies=k.vocabularies, top_k=k.top_k, scale=k.scale,
                min_score=k.min_score, device=c.embed.device)


# Stage 2's scorers (curation.signals.SIGNALS) in one chain: the pHash of the decoded pixels, the embedding,
# then what reads the embedding.
SIGNAL_BUILDERS: list[Builder] = [
    ("phash", lambda c, built: {}),
    ("embed", lambda c, built: dict(model=c.embed.model, device=c.embed.device, batch_size=c.embed.batch_size)),
    ("aesthetic", _aesthetic),
    ("concepts", _concepts),
]


def build_scorers(cfg: Stage2Config) -> tuple[tuple, dict[str, str]]:
    """The scorers of the config, in one chain, and notes on what is off and why (for the manifest)."""
    from curation.signals.analysis import ImageSignals

    built, notes = resolve(SIGNAL_BUILDERS, cfg)
    # pHash works on the shared reduced decode, which ImageSignals makes once per image
    scorers = (ImageSignals((built.pop("phash"),)), *built.values())
    if cfg.embed.model == DESCRIPTOR:
        notes["embedding"] = WEIGHT_FREE_WARNING
    return scorers, notes


def check(spark, cfg: CurateConfig) -> tuple:
    """Fail before any work when a probe, rule, tier or the keep order does not fit the stage-2 schema;
    the probes."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    from curation.signals.probe import stage_probes, with_probe_columns

    probes = stage_probes(cfg.stage2.probes, get_schema(TABLE).names, where="stage2.probes")
    schema = with_probe_columns(to_spark(get_schema(TABLE)), probes)  # tiers and rules may name p_<probe>
    check_rules(spark, schema, cfg.stage2.rules, where="stage2.rules")
    check_tiers(spark, schema, cfg.stage2.tiers, where="stage2.tiers")
    order = cfg.stage2.dedup.keep_order
    try:
        spark.createDataFrame([], schema).select(F.expr(f"row_number() OVER (ORDER BY {order})")).schema
    except (AnalysisException, ParseException) as e:
        raise ValueError(f"stage2.dedup.keep_order {order!r} is not a valid ORDER BY: "
                         f"{str(e).strip().splitlines()[0]}") from None
    from curation.signals.embed import make_embedder

    c2 = cfg.stage2
    make_embedder(c2.embed.model)  # a bad spec, head or vocabulary fails here, not in a worker
    for scorer in build_scorers(c2)[0]:
        if scorer.name == "aesthetic":  # a head that does not fit the model fails here (numpy or torch: cheap)
            scorer.load()
    if c2.concepts.enabled:
        from curation.signals.concepts import load_vocabulary

        load_vocabulary(c2.concepts.vocabularies)
    return probes


def scale_levels(levels: tuple[int, ...], rows: int, per_cluster: int) -> list[int]:
    """Each level's count capped at rows / per_cluster (at least 1), still fine to coarse; as many levels."""
    cap = max(1, rows // per_cluster)
    out: list[int] = []
    for k in levels:
        out.append(min(k, cap, out[-1] if out else cap))
    return out


def _score(spark, s1, raw, cfg: Stage2Config, live_rows: int):
    """Signals for the rows in play (pixels joined from raw), unioned with the rest; checkpointed once."""
    from pyspark.sql import functions as F

    in_play = F.col("error").isNull() & F.col("drop_reason").isNull()
    live = s1.filter(in_play).join(raw.select("id", "image", "content_hash"), "id", "left")
    tasks = max(2 * spark.sparkContext.defaultParallelism, -(-live_rows // cfg.embed.rows_per_task))
    scorers, notes = build_scorers(cfg)
    scored = live.repartition(tasks).transform(apply_scorer, *scorers).drop("image")
    # The scorers are the expensive part: run them once, whatever dedup and clustering do next.
    scored = scored.localCheckpoint()
    df = scored.unionByName(s1.filter(~in_play), allowMissingColumns=True)
    return _with_all_columns(df), scorers, notes


def _with_all_columns(df):
    """Typed null columns for every stage-2 column no scorer wrote (no head: no aesthetic), so rules,
    tiers and the keep order can name them whatever the config turned off."""
    from pyspark.sql import functions as F

    from schemas.spark import to_spark_type

    for f in get_schema(TABLE):
        if f.name not in df.columns:
            df = df.withColumn(f.name, F.lit(None).cast(to_spark_type(f.type)))
    return df


def _dedup_and_cluster(df, cfg: Stage2Config, live_rows: int) -> tuple[object, dict]:
    from curation.steps import cluster, dedup

    d, order = cfg.dedup, cfg.dedup.keep_order
    df = dedup.with_dup_columns(df)
    if d.exact:
        df = dedup.exact_dedup(df, hash_col="content_hash", order=order)
    if d.near:
        df = dedup.near_dedup(df, hash_cols=("phash", "phash_flip"), max_hamming=d.max_hamming, order=order,
                              candidates=d.candidates, lsh_bits=d.lsh_bits, lsh_tables=d.lsh_tables)
    df = df.localCheckpoint()
    c = cfg.cluster
    sample = cluster.sample_embeddings(df.filter("dup_of IS NULL"), c.sample_size, c.seed)
    levels = scale_levels(c.levels, min(len(sample), live_rows), c.min_rows_per_cluster)
    info = {"levels_configured": list(c.levels), "levels_used": levels, "fit_rows": int(len(sample))}
    if levels != list(c.levels):
        info["note"] = (f"cluster levels scaled down from {list(c.levels)} to {levels}: only {len(sample)} rows "
                        f"to fit, about {c.min_rows_per_cluster} per cluster wanted")
    if len(sample) == 0:
        from pyspark.sql import functions as F

        info["note"] = "no embeddings (no rows in play): no clusters"
        return df.withColumn("cluster_path", F.lit(None).cast("array<int>")), info
    centroids = cluster.fit_hierarchical_kmeans(sample, levels, c.seed)
    df = cluster.assign_cluster_path(df, centroids, emb_col="img_emb")
    if d.semantic:
        df = dedup.semantic_dedup(df, emb_col="img_emb", threshold=d.semantic_threshold, order=order)
    return df, info


def run(spark, stage1_dir: Path, raw_dir: Path, out_dir: Path, cfg: CurateConfig, force: bool = False) -> dict:
    def work(job: runs.StageJob) -> dict:
        from curation.signals.probe import probe_manifest
        from curation.stage2_summary import summarize

        probes = check(spark, cfg)
        c2 = cfg.stage2
        s1_out = runs.read_manifest(stage1_dir)["output"]
        rows_in, live_rows = s1_out["rows"], s1_out.get("kept", s1_out["rows"])
        s1 = read_table(spark, str(stage1_dir), "stage1")
        raw = read_table(spark, str(raw_dir), "raw")
        with job.phase("score"):
            df, scorers, notes = _score(spark, s1, raw, c2, live_rows)
        with job.phase("dedup_cluster"):
            df, clusters = _dedup_and_cluster(df, c2, live_rows)
        if probes:  # after the signals they read, before the tiers and rules that name them; a same-named
            # column stage 1 wrote is dropped first, so rows out of play get null, not another probe's value
            df = df.drop(*[p.output for p in probes]).transform(apply_scorer, *probes)
        df = assign_aesthetic_tier(df, c2.aesthetic.tiers, c2.aesthetic.below)
        df = assign_tiers(df, c2.tiers, c2.default_tier)
        decided = decide(df, c2.rules, stage=TABLE)
        with job.phase("decide_write"):
            # p_<probe> columns are not in the schema: written after it, as extra columns
            write_table(decided.select(*get_schema(TABLE).names, *[p.output for p in probes]), str(job.out_dir),
                        TABLE, extra_ok=bool(probes))
        job.count(rows_in)
        for k, v in notes.items():
            log.warning("stage 2 %s: %s", k, v)
        return {"input": {"path": str(stage1_dir), "records": rows_in, "in_play": live_rows,
                          "pixels_from": str(raw_dir)},
                "embedding": {"model": c2.embed.model, "weight_free": c2.embed.model == DESCRIPTOR},
                "notes": notes, "clusters": clusters, "summary": summarize(job.out_dir),
                "signals": [repr(s) for s in scorers], "probes": probe_manifest(probes)}

    return runs.stage_job("stage2", {TABLE: out_dir}, work, config=cfg, force=force)
