"""`sluice annotate`: the Label Studio server, and the active-learning loop over a pool. Thin over the library."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from plumbing.cli_options import fail

app = typer.Typer(help="Active learning with Label Studio: select, label, pull, train a probe.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
server_app = typer.Typer(help="A local Label Studio (its own venv, loopback, data folder).", no_args_is_help=True)
app.add_typer(server_app, name="server")
generated_app = typer.Typer(help="Model-generated images labelled good or bad for their prompt (SFT negatives).",
                            no_args_is_help=True)
app.add_typer(generated_app, name="generated")

DATA_DIR = Path("build/label-studio-data")
UrlOpt = Annotated[Optional[str], typer.Option(help="Label Studio URL (default $LABEL_STUDIO_URL)")]
LoopArg = Annotated[Path, typer.Argument(help="the loop folder, e.g. runs/demo/annotate")]
ImagesOpt = Annotated[Path, typer.Option("--images", help="the generator's folder: the images and generated.jsonl")]
ProjectOpt = Annotated[str, typer.Option(help="Label Studio project title")]


@contextlib.contextmanager
def _errors():
    """Known failures become one line on stderr and exit code 2 (3: waiting for annotators)."""
    from annotation.client import LabelStudioError, LabelStudioUnavailable, redact
    from annotation.rounds import NotLabelledYet
    from annotation.server import ServerError

    try:
        yield
    except NotLabelledYet as e:
        fail(e, code=3, label="waiting")
    except (ServerError, LabelStudioError, LabelStudioUnavailable, FileNotFoundError, ValueError,
            RuntimeError) as e:
        fail(redact(str(e)))  # a server's message may quote the token


@server_app.command("install")
def server_install() -> None:
    """Create the server venv ($SLUICE_LS_VENV or build/label-studio-venv) and pip install label-studio."""
    from annotation.server import install

    with _errors():
        typer.echo(f"label-studio: {install()}")


@server_app.command("start")
def server_start(data_dir: Annotated[Path, typer.Option(help="server data folder (sqlite, media)")] = DATA_DIR,
                 port: int = 8080,
                 host: Annotated[str, typer.Option(help="bind address; loopback unless told otherwise")] = "127.0.0.1",
                 files_root: Annotated[Optional[Path], typer.Option(help="local-files document root")] = None) -> None:
    """Start Label Studio in the background; admin user and token from LABEL_STUDIO_USERNAME/_PASSWORD/_API_KEY."""
    from annotation.server import start

    with _errors():
        info = start(data_dir, port=port, host=host, files_root=files_root)
        typer.echo(f"Label Studio {info.url} (pid {info.pid}); local files root {info.files_root}")


@server_app.command("stop")
def server_stop(data_dir: Path = DATA_DIR) -> None:
    """Stop the server of a data folder (by its pid)."""
    from annotation.server import stop

    typer.echo("stopped" if stop(data_dir) else f"no server running for {data_dir}")


@server_app.command("status")
def server_status(data_dir: Path = DATA_DIR) -> None:
    """Whether the server of a data folder runs and answers /health."""
    from annotation.server import healthy, status

    info = status(data_dir)
    if info is None:
        typer.echo(f"not running ({data_dir})")
        raise typer.Exit(1)
    typer.echo(f"{info.url} pid {info.pid} healthy={healthy(info.url)} files_root={info.files_root}")


@app.command()
def template(name: str, lang: str = "en", labels: Optional[str] = None) -> None:
    """Print a labelling config (valuable, structure, aesthetic, pairwise, free_labels, showcase, generated)."""
    from annotation.templates import render

    with _errors():
        typer.echo(render(name, lang, labels.split(",") if labels else None).xml)


@app.command()
def init(loop: LoopArg,
         pool: Annotated[Path, typer.Option(help="stage-1/stage-2/pool table to select from")],
         raw: Annotated[Optional[Path], typer.Option(help="raw table with the image bytes")] = None,
         template_name: Annotated[str, typer.Option("--template")] = "valuable",
         lang: str = "en", labels: Optional[str] = None, question: Optional[str] = None,
         positive: Annotated[Optional[str], typer.Option(help="answers of the positive class, comma-separated")] = None,
         strategy: str = "hybrid", batch: int = 50, eval_size: int = 50, model: str = "logreg",
         features: str = "auto", seed: int = 0, project: str = "sluice active learning",
         image_mode: str = "local", files_root: Optional[Path] = None, min_labelled: float = 1.0,
         force: bool = False) -> None:
    """Create a loop folder with its validated settings (loop.json)."""
    from annotation.loop_config import LOOP_FILE, LoopConfig, save

    with _errors():
        if (loop / LOOP_FILE).exists() and not force:
            raise ValueError(f"{loop / LOOP_FILE} exists; pass --force to replace its settings")
        cfg = LoopConfig(pool=str(pool.absolute()), raw=str(raw.absolute()) if raw else None, template=template_name,
                         lang=lang, labels=labels.split(",") if labels else None, question=question,
                         positive=positive.split(",") if positive else None, strategy=strategy, batch=batch,
                         eval_size=eval_size, model=model, features=features, seed=seed, project=project,
                         image_mode=image_mode, files_root=str(files_root.absolute()) if files_root else None,
                         min_labelled=min_labelled)
        save(cfg, loop)
        typer.echo(f"loop {loop}: {cfg.template}/{cfg.primary_question()} positive={cfg.positive_labels()}")


@app.command("round")
def round_(loop: LoopArg, url: UrlOpt = None,
           redo: Annotated[Optional[int], typer.Option(help="rerun this round from its push step")] = None) -> None:
    """Run or resume the current round: select, push, pull, train, evaluate (exit 3 while labels are missing)."""
    from annotation.client import connect
    from annotation.rounds import run_round

    with _errors():
        rnd = run_round(loop, connect(url), redo=redo)
        _print_round(rnd.state(), rnd.dir)


def _print_round(state: dict, folder: Path) -> None:
    metrics = folder / "metrics.json"
    m = json.loads(metrics.read_text()) if metrics.exists() else {}
    typer.echo(f"round {state['round']}: done {','.join(state['done'])}; train {state.get('n_train')} labels; "
               f"held-out accuracy {m.get('accuracy')} auc {m.get('roc_auc')} (n={m.get('n')})")


def _truth(path: Path, column: str) -> dict[str, str]:
    from plumbing.tables import open_table

    t = open_table(path).to_table(columns=["id", column])
    return {str(i): str(v) for i, v in zip(t.column("id").to_pylist(), t.column(column).to_pylist()) if v is not None}


@app.command()
def simulate(loop: LoopArg, truth: Annotated[Path, typer.Option(help="parquet with id and the true answer")],
             column: Annotated[str, typer.Option(help="the answer column in --truth")], url: UrlOpt = None,
             annotators: int = 1, overlap: float = 0.0, noise: float = 0.0, skip: float = 0.0,
             unknown: float = 0.0, seed: int = 0) -> None:
    """Label the current round's tasks from ground truth through the API, as simulated users (tests, benchmarks)."""
    from annotation.client import connect
    from annotation.simulate import Behaviour, label_round

    with _errors():
        counts = label_round(loop, connect(url), _truth(truth, column),
                             Behaviour(annotators, overlap, noise, skip, unknown, seed))
        typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


@app.command()
def status(loop: LoopArg) -> None:
    """Rounds of a loop: steps done and held-out metrics."""
    from annotation.rounds import history

    with _errors():
        for h in history(loop):
            m = h.get("metrics") or {}
            typer.echo(f"round {h['round']}: {','.join(h['done'])} | n_train={h.get('n_train')} "
                       f"accuracy={m.get('accuracy')} auc={m.get('roc_auc')} flags={h.get('flags')}")


@generated_app.command("push")
def generated_push(images: ImagesOpt, url: UrlOpt = None, project: ProjectOpt = "sluice generated",
                   lang: str = "en",
                   image_mode: Annotated[str, typer.Option(help="local (copied under --files-root) or inline")] = "local",
                   files_root: Annotated[Optional[Path], typer.Option(help="the server's local-files root")] = None
                   ) -> None:
    """Create or update the project: one task per image of generated.jsonl (rerunning adds only new ones)."""
    from annotation.client import connect
    from annotation.generated import check_push, push_generated

    with _errors():
        check_push(images, lang, image_mode, files_root)
        r = push_generated(images, connect(url), project, lang, image_mode, files_root)
        typer.echo(f"project {r.project}: {r.n_records} images, {r.n_created} new tasks, {r.n_existing} already "
                   f"there, {len(r.problems)} lines not pushed")
        for p in r.problems:
            typer.echo(f"not pushed: {p.message()}", err=True)


@generated_app.command("pull")
def generated_pull(images: ImagesOpt, url: UrlOpt = None, project: ProjectOpt = "sluice generated",
                   out: Annotated[Optional[Path], typer.Option(help="labels table folder (default <images>/labels)")]
                   = None) -> None:
    """Write the labels table: good/bad per annotation (task "generated"), flagged rows for what was not pushed."""
    from annotation.client import connect
    from annotation.generated import find_folder, pull_generated

    with _errors():
        find_folder(images)
        r = pull_generated(images, connect(url), project, out)
        counts = " ".join(f"{k}={v}" for k, v in sorted(r.counts.items()))
        typer.echo(f"{r.path}: {r.n_lines} lines, {r.n_labelled} labelled, {r.n_waiting} waiting for "
                   f"annotators, {r.n_not_pushed} not pushed; rows: {counts or 'none'}")
