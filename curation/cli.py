"""`sluice curate ...`: thin commands over curation.pipeline; heavy imports happen inside them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from plumbing.cli_options import ConfigOpt, DryRunOpt, ForceOpt, MasterOpt, SetOpt, SparkConfOpt, VerboseOpt, fail

app = typer.Typer(help="Run the curation funnel, all of it or one stage at a time.", no_args_is_help=True)

InputOpt = Annotated[str, typer.Option("--input", "-i", help="image folder, tar glob/folder, parquet, or saved HF dataset")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="run folder; each stage writes <run>/<table>/")]


def _config(config, overrides, master, spark_conf):
    from curation.config import CurateConfig
    from plumbing.config import load

    patch: dict = {}
    if master:
        patch.setdefault("spark", {})["master"] = master
    for kv in spark_conf or ():
        k, sep, v = kv.partition("=")
        if not sep:
            raise typer.BadParameter(f"--spark-conf {kv!r} must be key=value")
        patch.setdefault("spark", {}).setdefault("conf", {})[k.strip()] = v.strip()
    default = Path(__file__).parent / "configs" / "default.yaml"
    return load(CurateConfig, default=default, path=config, overrides=overrides or [], patch=patch)


def _run(input_path, output, stages, config, overrides, force, dry_run, master, spark_conf, verbose) -> None:
    from rich.console import Console

    from curation import pipeline
    from plumbing import log as logsetup
    from plumbing.config import ConfigError, dump

    logsetup.setup(verbose)
    err = Console(stderr=True, soft_wrap=True)  # no hard wraps: messages stay whole for grep and copy
    try:
        cfg = _config(config, overrides, master, spark_conf)
        stages = stages(cfg) if callable(stages) else stages
        plan = pipeline.describe(input_path, output, stages, force, cfg)
        if dry_run:
            _print_plan(dump(cfg), plan)
            return
        pipeline.check_inputs(input_path, output, stages, cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        fail(e)

    from curation.spark import session
    from plumbing.progress import spark_progress

    spark = session(cfg.spark.master, cfg.spark.driver_memory, _spark_conf(cfg, stages))
    try:
        for st in stages:
            with spark_progress(spark, st.name):
                manifest = pipeline.run_stage(spark, st, cfg, input_path, output, force)
            out = manifest["output"]
            err.print(f"{st.name} -> {out['path']}: {out['rows']} rows, {out.get('usable')} usable, "
                      f"errors {out.get('errors') or 'none'}", markup=False, highlight=False)
            if st.name == "mix":
                err.print(_mix_audit(manifest), markup=False, highlight=False)
    except (ValueError, FileNotFoundError) as e:
        fail(e)
    finally:
        spark.stop()


def _print_plan(config_yaml: str, plan: list[dict]) -> None:
    print(config_yaml)
    print("plan:")
    for p in plan:
        print(f"  {p['stage']}: {p['reads']} -> {p['writes']}  [{p['action']}]")


@app.command("run")
def run_cmd(input: InputOpt, output: OutputOpt,
            until: Annotated[Optional[str], typer.Option(help="stop after this stage")] = None,
            config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False, dry_run: DryRunOpt = False,
            master: MasterOpt = None, spark_conf: SparkConfOpt = None, verbose: VerboseOpt = False,
            report: Annotated[bool, typer.Option(help="write the HTML report at the end")] = True) -> None:
    """Run the funnel in order, skipping finished stages and redoing stale ones, then write the report.

    Chains ingest, stage1, stage2 and downsample; then mix when the run has one (or --until mix); then
    stage3 and export when a captioner is configured or --until names them (alt text only without one)."""
    from curation import pipeline

    _run(input, output, lambda cfg: pipeline.stages_until(until, cfg, output), config, set, force, dry_run, master,
         spark_conf, verbose)
    if report and not dry_run:
        from curation.report.funnel import write_report

        path = write_report(output)
        print(f"report: {path}", file=sys.stdout)


@app.command("ingest")
def ingest_cmd(input: InputOpt, output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None,
               force: ForceOpt = False, dry_run: DryRunOpt = False, master: MasterOpt = None,
               spark_conf: SparkConfOpt = None, verbose: VerboseOpt = False) -> None:
    """Read any supported input into <run>/raw: one row per record, errors named."""
    from curation import pipeline

    _run(input, output, [pipeline.stage("ingest")], config, set, force, dry_run, master, spark_conf, verbose)


@app.command("stage1")
def stage1_cmd(output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False,
               dry_run: DryRunOpt = False, master: MasterOpt = None, spark_conf: SparkConfOpt = None,
               verbose: VerboseOpt = False) -> None:
    """Score <run>/raw for quality, layout, structure and OCR, apply the rules, write <run>/stage1."""
    from curation import pipeline

    _run(None, output, [pipeline.stage("stage1")], config, set, force, dry_run, master, spark_conf, verbose)


@app.command("stage3")
def stage3_cmd(output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False,
               dry_run: DryRunOpt = False, master: MasterOpt = None, spark_conf: SparkConfOpt = None,
               verbose: VerboseOpt = False) -> None:
    """Caption the kept rows of the latest funnel table (styles x zh/en), check them, write <run>/stage3."""
    from curation import pipeline

    _run(None, output, [pipeline.stage("stage3")], config, set, force, dry_run, master, spark_conf, verbose)


@app.command("export")
def export_cmd(output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False,
               dry_run: DryRunOpt = False, master: MasterOpt = None, spark_conf: SparkConfOpt = None,
               verbose: VerboseOpt = False) -> None:
    """Write the captioned pool as webdataset shards per aspect bucket + index.parquet (<run>/export)."""
    from curation import pipeline

    _run(None, output, [pipeline.stage("export")], config, set, force, dry_run, master, spark_conf, verbose)


@app.command("decide")
def decide_cmd(output: OutputOpt, stage: Annotated[str, typer.Option(help="the stage whose rules to re-apply")] = "stage1",
               config: ConfigOpt = None, set: SetOpt = None, dry_run: DryRunOpt = False, master: MasterOpt = None,
               spark_conf: SparkConfOpt = None, verbose: VerboseOpt = False) -> None:
    """Re-apply a stage's rules from the (new) config to its stored table. Nothing is scored again; the
    later tables become stale, and the next `sluice curate run` redoes them."""
    from rich.console import Console

    from curation import pipeline
    from plumbing import log as logsetup
    from plumbing import runs
    from plumbing.config import ConfigError, dump

    logsetup.setup(verbose)
    err = Console(stderr=True, soft_wrap=True)
    try:
        cfg = _config(config, set, master, spark_conf)
        cfg.rules(stage)
        if dry_run:
            table = runs.stage_dir(output, stage)
            later = [str(p) for p in pipeline.later_tables(output, stage, cfg) if runs.is_done(p)]
            _print_plan(dump(cfg), [{"stage": f"decide {stage}", "reads": str(table), "writes": str(table),
                                     "action": f"re-apply {len(cfg.rules(stage))} rules; then stale: "
                                               f"{', '.join(later) or 'nothing'}"}])
            return
        table = pipeline.check_current(output, stage)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        fail(e)
    from curation.jobs import redecide
    from curation.spark import session

    spark = session(cfg.spark.master, cfg.spark.driver_memory, cfg.spark.conf)
    try:
        manifest = redecide.run(spark, table, stage, cfg)  # a bad rule fails here, before the table changes
        out = manifest["output"]
        err.print(f"{stage} re-decided: {out['rows']} rows, kept {out.get('kept')}, dropped {out.get('dropped')}",
                  markup=False, highlight=False)
    except ValueError as e:
        fail(e)
    finally:
        spark.stop()
    # The new table is written (with its _SUCCESS) before this: a decide killed earlier leaves the stage
    # unfinished, which no later job reads either.
    stale = pipeline.mark_later_stale(output, stage, f"{stage} was re-decided at {manifest['written_at']}", cfg)
    if stale:
        until = " --until export" if {"stage3", "export"} & {p.name for p in stale} else ""
        err.print(f"now stale: {', '.join(p.name for p in stale)}; `sluice curate run --input ... -o {output}{until}` "
                  f"redoes them", markup=False, highlight=False)


@app.command("calibrate")
def calibrate_cmd(output: OutputOpt,
                  labels: Annotated[Path, typer.Option(help="JSONL: {\"key\": ..., \"defects\": [rule names]}")],
                  stage: Annotated[str, typer.Option(help="the stage table to calibrate")] = "stage1",
                  target_precision: Annotated[float, typer.Option(help="precision the suggestions must reach")] = 0.9,
                  config: ConfigOpt = None, set: SetOpt = None) -> None:
    """Precision and recall of each rule on a labelled set, and thresholds suggested for a target precision."""
    from rich.console import Console
    from rich.table import Table

    from curation.calibrate import calibrate
    from plumbing import runs
    from plumbing.config import ConfigError

    err = Console(stderr=True, soft_wrap=True)
    try:
        cfg = _config(config, set, None, None)
        scores, suggestions = calibrate(runs.stage_dir(output, stage), labels, cfg.rules(stage), target_precision,
                                        stage=stage)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        fail(e)

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    console = Console()
    t = Table("rule", "labelled", "flagged", "precision", "recall", title=f"rules on {stage} (current thresholds)")
    for s in scores:
        t.add_row(s.rule, str(s.labelled), str(s.flagged), f(s.precision), f(s.recall))
    console.print(t)
    t = Table("rule", "term", "suggested", "precision", "recall", title=f"suggestions at precision >= {target_precision}")
    for s in suggestions:
        t.add_row(s.rule, s.term, "-" if s.suggested is None else f"{s.signal} {s.op} {s.suggested:.4g}",
                  f(s.precision), f(s.recall))
    console.print(t)


def _spark_conf(cfg, stages) -> dict[str, str]:
    """The config's Spark settings, plus GPU scheduling when stage 2's embedder or stage 3's in-process
    captioner runs on a GPU cluster (config wins)."""
    from curation.signals.gpu import spark_gpu_conf

    names = {st.name for st in stages}
    gpu: dict[str, str] = {}
    if "stage2" in names:
        e = cfg.stage2.embed
        gpu = spark_gpu_conf(e.device, cfg.spark.master, e.gpus_per_task, e.gpus_per_executor)
    c = cfg.stage3.captioner
    if not gpu and "stage3" in names and c.backend == "transformers":
        gpu = spark_gpu_conf(c.device, cfg.spark.master, c.gpus_per_task, c.gpus_per_executor)
    return {**gpu, **cfg.spark.conf}


@app.command("stage2")
def stage2_cmd(output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False,
               dry_run: DryRunOpt = False, master: MasterOpt = None, spark_conf: SparkConfOpt = None,
               verbose: VerboseOpt = False) -> None:
    """Embed, score aesthetics and concepts, dedup, cluster and tier <run>/stage1's kept rows; write <run>/stage2."""
    from curation import pipeline

    _run(None, output, [pipeline.stage("stage2")], config, set, force, dry_run, master, spark_conf, verbose)


@app.command("train-aesthetic")
def train_aesthetic_cmd(
        labels: Annotated[Path, typer.Option(help="labels table (folder or .parquet): tasks aesthetic / aesthetic_pair")],
        embeddings: Annotated[Path, typer.Option(help="a stage-2 table with img_emb, e.g. runs/demo/stage2")],
        out: Annotated[Path, typer.Option(help="folder for aesthetic_head.safetensors, its .json card, MODEL_CARD.md")],
        task: Annotated[str, typer.Option(help="labels task holding 1..5 ratings")] = "aesthetic",
        pair_task: Annotated[str, typer.Option(help="labels task holding better_than:/worse_than:<id>")] = "aesthetic_pair",
        epochs: Annotated[int, typer.Option(min=1)] = 200, seed: int = 0) -> None:
    """Train a LAION-style aesthetic head on our own ratings or preferences; use it as stage2.aesthetic.head."""
    from rich.console import Console

    from curation.aesthetic_train import run

    err = Console(stderr=True, soft_wrap=True)
    try:
        path, metrics = run(labels, embeddings, out, task=task, pair_task=pair_task, epochs=epochs, seed=seed)
    except (ValueError, FileNotFoundError) as e:
        fail(e)
    err.print(f"aesthetic head -> {path}; validation {metrics}", markup=False, highlight=False)
    print(f"--set stage2.aesthetic.head={path}")


def _spark_job(config, overrides, master, spark_conf, verbose, work, dry_run: bool = False, plan=None) -> None:
    """Load the config, start Spark, run `work(spark, cfg)` and print the line it returns; errors exit 2.
    With `dry_run`, print the config and `plan(cfg)` instead."""
    from rich.console import Console

    from plumbing import log as logsetup
    from plumbing.config import ConfigError, dump

    logsetup.setup(verbose)
    err = Console(stderr=True, soft_wrap=True)
    try:
        cfg = _config(config, overrides, master, spark_conf)
        if dry_run:
            _print_plan(dump(cfg), plan(cfg))
            return
    except (ConfigError, ValueError, FileNotFoundError) as e:
        fail(e)
    from curation.spark import session

    spark = session(cfg.spark.master, cfg.spark.driver_memory, cfg.spark.conf)
    try:
        err.print(work(spark, cfg), markup=False, highlight=False)
    except (ValueError, FileNotFoundError) as e:
        fail(e)
    finally:
        spark.stop()


@app.command("downsample")
def downsample_cmd(output: OutputOpt,
                   input_table: Annotated[Optional[Path], typer.Option(
                       "--input-table", help="stage-2 table or a pool to downsample; default <run>/stage2")] = None,
                   size: Annotated[Optional[int], typer.Option(help="rows to keep (= --set downsample.size=N)")] = None,
                   config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False, dry_run: DryRunOpt = False,
                   master: MasterOpt = None, spark_conf: SparkConfOpt = None, verbose: VerboseOpt = False) -> None:
    """Balanced downsampling over sources and the cluster tree into <run>/pool; statistics in pool/_distribution.json."""
    from curation import pipeline

    overrides = [*(set or []), *([f"downsample.size={size}"] if size is not None else [])]
    if input_table is None:
        _run(None, output, [pipeline.stage("downsample")], config, overrides, force, dry_run, master, spark_conf,
             verbose)
        return

    def work(spark, cfg):
        from curation.jobs import downsample
        from plumbing import runs

        pool = runs.stage_dir(output, "pool")
        redo = force or not runs.is_current(pool)
        m = downsample.run(spark, input_table, pool, cfg, force=force)
        if redo:
            pipeline.mark_later_stale(output, "pool", f"downsample was redone at {m['written_at']}", cfg)
        out = m["output"]
        return (f"downsample -> {out['path']}: {out['rows']} rows, kept {out.get('kept')}, "
                f"dropped {out.get('dropped')}, errors {out.get('errors') or 'none'}")

    def plan(cfg):
        from plumbing import runs

        pool = runs.stage_dir(output, "pool")
        action = "skip (done; --force to redo)" if runs.is_current(pool) and not force else "run"
        return [{"stage": "downsample", "reads": str(input_table), "writes": str(pool), "action": action}]

    _spark_job(config, overrides, master, spark_conf, verbose, work, dry_run, plan)


@app.command("mix")
def mix_cmd(output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False,
            dry_run: DryRunOpt = False, master: MasterOpt = None, spark_conf: SparkConfOpt = None,
            verbose: VerboseOpt = False) -> None:
    """Mix curated pools by quota (mix.pools) into <run>/mix, with the audit in <run>/mix_audit."""
    from curation import pipeline

    _run(None, output, [pipeline.stage("mix")], config, set, force, dry_run, master, spark_conf, verbose)


def _mix_audit(manifest: dict) -> str:
    lines = []
    for a in manifest["mix"]["audit"]:
        why = "pool is empty" if a["available_rows"] == 0 else "repeat cap reached"
        lines.append(f"  {a['id']}: quota {a['quota']:.1%} achieved {a['achieved_share']:.1%} "
                     f"({a['achieved_rows']} of {a['target_rows']}, {a['repeated_rows']} repeats"
                     f"{', SHORT: ' + why if a['short'] else ''})")
    return "\n".join(lines)
