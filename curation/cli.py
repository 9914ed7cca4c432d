"""`sluice curate ...`: thin commands over curation.pipeline; heavy imports happen inside them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tools.cli_options import ConfigOpt, DryRunOpt, ForceOpt, MasterOpt, SetOpt, SparkConfOpt, VerboseOpt

app = typer.Typer(help="Run the curation funnel, all of it or one stage at a time.", no_args_is_help=True)

InputOpt = Annotated[str, typer.Option("--input", "-i", help="image folder, tar glob/folder, parquet, or saved HF dataset")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="run folder; each stage writes <run>/<table>/")]


def _config(config, overrides, master, spark_conf):
    from curation.config import CurateConfig
    from tools.config import load

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


def _fail(console, e: Exception):
    console.print("[red]error:[/red] ", end="")
    console.print(str(e), markup=False, highlight=False)
    raise typer.Exit(2)


def _run(input_path, output, until, config, overrides, force, dry_run, master, spark_conf, verbose) -> None:
    from rich.console import Console

    from curation import pipeline
    from tools import log as logsetup
    from tools.config import ConfigError, dump

    logsetup.setup(verbose)
    err = Console(stderr=True, soft_wrap=True)  # no hard wraps: messages stay whole for grep and copy
    try:
        cfg = _config(config, overrides, master, spark_conf)
        stages = pipeline.describe(cfg, input_path, output, until, force)
        if dry_run:
            print(dump(cfg))
            print("plan:")
            for p in stages:
                print(f"  {p['stage']}: {p['reads']} -> {p['writes']}  [{p['action']}]")
            return
        pipeline.check_input(input_path)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(err, e)

    from curation.spark import session
    from tools.progress import spark_progress

    spark = session(cfg.spark.master, cfg.spark.driver_memory, cfg.spark.conf)
    try:
        for st in pipeline.stages_until(until):
            with spark_progress(spark, st.name):
                manifest = pipeline.run_stage(spark, st, cfg, input_path, output, force)
            out = manifest["output"]
            err.print(f"{st.name} -> {out['path']}: {out['rows']} rows, {out.get('usable')} usable, "
                      f"errors {out.get('errors') or 'none'}", markup=False, highlight=False)
    except (ValueError, FileNotFoundError) as e:
        _fail(err, e)
    finally:
        spark.stop()


@app.command("run")
def run_cmd(input: InputOpt, output: OutputOpt,
            until: Annotated[Optional[str], typer.Option(help="stop after this stage")] = None,
            config: ConfigOpt = None, set: SetOpt = None, force: ForceOpt = False, dry_run: DryRunOpt = False,
            master: MasterOpt = None, spark_conf: SparkConfOpt = None, verbose: VerboseOpt = False,
            report: Annotated[bool, typer.Option(help="write the HTML report at the end")] = True) -> None:
    """Run every stage of the funnel that exists, in order, then write the report."""
    _run(input, output, until, config, set, force, dry_run, master, spark_conf, verbose)
    if report and not dry_run:
        from curation.report.funnel import write_report

        path = write_report(output)
        print(f"report: {path}", file=sys.stdout)


@app.command("ingest")
def ingest_cmd(input: InputOpt, output: OutputOpt, config: ConfigOpt = None, set: SetOpt = None,
               force: ForceOpt = False, dry_run: DryRunOpt = False, master: MasterOpt = None,
               spark_conf: SparkConfOpt = None, verbose: VerboseOpt = False) -> None:
    """Read any supported input into <run>/raw: one row per record, errors named."""
    _run(input, output, "ingest", config, set, force, dry_run, master, spark_conf, verbose)
