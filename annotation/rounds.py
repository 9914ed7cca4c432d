"""The loop: a round = select -> push -> (annotators label) -> pull -> train -> evaluate.

Each round lives in `<loop>/round_NNN/` with `state.json` recording the steps done. Every step is
idempotent and state is written only after a step succeeds, so a loop interrupted anywhere (a killed
process, a server that went away) resumes at the step that did not finish, and nothing in Label Studio is
duplicated or lost: tasks are keyed by sample id and labels are always pulled whole from the server.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotation import loop_config
from annotation.features import Pool, image_bytes, load_pool
from annotation.labels import labels_frame, training_labels, write_labels
from annotation.probe import evaluate, export, train
from annotation.selection import hash_order, select
from annotation.tasks import build_tasks, existing_ids, inline_refs, prediction, write_local
from annotation.templates import render
from plumbing.probe_format import CARD_FILE, load_probe
from plumbing.tables import open_table

log = logging.getLogger(__name__)

STEPS = ("select", "push", "pull", "train", "evaluate")


class NotLabelledYet(RuntimeError):
    """The round's tasks are not labelled yet; label them in Label Studio and rerun."""


@dataclass
class Round:
    loop_dir: Path
    number: int

    @property
    def dir(self) -> Path:
        return self.loop_dir / f"round_{self.number:03d}"

    def state(self) -> dict:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"round": self.number, "done": []}

    def mark(self, step: str, **info) -> None:
        state = self.state()
        state["done"] = [s for s in state["done"] if s != step] + [step]
        state.update(info)
        _write_json(self.dir / "state.json", state)

    def selected(self) -> dict[str, list[str]]:
        path = self.dir / "selected.json"
        return json.loads(path.read_text()) if path.exists() else {"train": [], "eval": []}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def rounds(loop_dir: Path) -> list[Round]:
    nums = sorted(int(p.name.split("_")[1]) for p in Path(loop_dir).glob("round_[0-9][0-9][0-9]"))
    return [Round(Path(loop_dir), n) for n in nums]


def current_round(loop_dir: Path) -> Round:
    """The unfinished round, or a new one after the last finished."""
    done = rounds(loop_dir)
    if done and set(STEPS) - set(done[-1].state()["done"]):
        return done[-1]
    return Round(Path(loop_dir), done[-1].number + 1 if done else 1)


def _taken(loop_dir: Path, before: int) -> tuple[set[str], list[str]]:
    """Ids pushed in rounds before `before`, and the held-out evaluation ids (chosen in round 1)."""
    taken, eval_ids = set(), []
    for r in rounds(loop_dir):
        if r.number < before:
            sel = r.selected()
            taken.update(sel["train"]), taken.update(sel["eval"])
            eval_ids += sel["eval"]
    return taken, eval_ids


def latest_probe(loop_dir: Path, before: int):
    """(model, card) of the newest round before `before` that trained one, or (None, None)."""
    for r in reversed(rounds(loop_dir)):
        if r.number < before and (r.dir / "probe" / CARD_FILE).exists():
            return load_probe(r.dir / "probe")
    return None, None


def step_select(rnd: Round, cfg, pool: Pool) -> None:
    taken, _ = _taken(rnd.loop_dir, rnd.number)
    idx = np.array([i for i, sid in enumerate(pool.ids) if sid not in taken], dtype=np.int64)
    if len(idx) == 0:
        raise RuntimeError("every sample of the pool has been labelled; the loop is finished")
    ids = [pool.ids[i] for i in idx]
    eval_ids: list[str] = []
    if rnd.number == 1 and cfg.eval_size:
        order = hash_order(ids, cfg.seed + 7919)[: cfg.eval_size]
        eval_ids = [ids[i] for i in order]
        keep = np.setdiff1d(np.arange(len(ids)), order)
        idx, ids = idx[keep], [ids[i] for i in keep]
    model, card = latest_probe(rnd.loop_dir, rnd.number)
    proba = model.predict_proba(pool.X[idx]) if model is not None and card["input"] == pool.spec else None
    Z = pool.standardized()
    labelled = np.array([i for i, sid in enumerate(pool.ids) if sid in taken], dtype=np.int64)
    picked = select(cfg.strategy, cfg.batch, ids, cfg.seed + rnd.number, proba=proba, X=Z[idx],
                    labelled_X=Z[labelled] if len(labelled) else None)
    chosen = {"train": [ids[i] for i in picked], "eval": eval_ids,
              "strategy": cfg.strategy if proba is not None or cfg.strategy in ("random", "kcenter", "kmeans")
              else "random (no model yet)"}
    _write_json(rnd.dir / "selected.json", chosen)
    rnd.mark("select", n_selected=len(chosen["train"]) + len(eval_ids))


def step_push(rnd: Round, cfg, pool: Pool, client) -> None:
    label_config = render(cfg.template, cfg.lang, cfg.labels)
    project = client.project(cfg.project, label_config.xml, description="Sluice active-learning loop")
    sel = rnd.selected()
    ids = sel["eval"] + sel["train"]
    present = existing_ids(client.tasks(project))
    new = [sid for sid in ids if sid not in present]
    images = image_bytes(new, Path(cfg.pool), Path(cfg.raw) if cfg.raw else None) if new else {}
    if cfg.image_mode == "local" and new:
        subdir = f"sluice/{project}"
        refs = write_local(images, Path(cfg.files_root), subdir)  # the storage needs the folder to exist
        client.local_storage(project, str(Path(cfg.files_root) / subdir))
    elif cfg.image_mode == "inline":
        refs = inline_refs(images)
    else:
        refs = {r["id"]: r["uri"] for r in pool.meta.to_dict("records") if r["id"] in set(new) and r["uri"]}
    rows = pool.meta.set_index("id").loc[new].reset_index().to_dict("records") if new else []
    created = client.import_tasks(project, build_tasks(rows, refs, rnd.number, _predictions(rnd, cfg, pool, new)))
    rnd.mark("push", project=project, n_tasks=len(ids), n_created=len(created), n_existing=len(ids) - len(new))


def _predictions(rnd: Round, cfg, pool: Pool, ids: list[str]) -> dict[str, dict]:
    """Pre-annotations of the newest probe, when the question has two answers to show.

    A probe of several positive answers (showcase: art, photography, design) cannot say which one, so it
    pre-annotates nothing rather than always the first.
    """
    model, card = latest_probe(rnd.loop_dir, rnd.number)
    negative = None if len(cfg.positive_labels()) != 1 else cfg.negative_label()
    if model is None or negative is None or not ids or card["input"] != pool.spec:
        return {}
    pos = {sid: i for i, sid in enumerate(pool.ids)}
    p = model.predict_proba(pool.X[[pos[s] for s in ids]])[:, 1]
    version = f"{card['name']}-round{card['round']}"
    return {sid: prediction(cfg.primary_question(), cfg.positive_labels()[0], negative, float(pi), version)
            for sid, pi in zip(ids, p)}


def step_pull(rnd: Round, cfg, client) -> None:
    project = rnd.state()["project"]
    tasks = client.tasks(project)
    questions = render(cfg.template, cfg.lang, cfg.labels).questions
    df = labels_frame(tasks, questions, cfg.primary_question(), client.users())
    sel = rnd.selected()
    mine = set(sel["train"]) | set(sel["eval"])
    handled = {str((t.get("data") or {}).get("sample_id")) for t in tasks if t.get("annotations")}
    share = len(mine & handled) / max(1, len(mine))
    write_labels(df, rnd.loop_dir / "labels")  # everything pulled so far, even before the round is complete
    if share < cfg.min_labelled:
        raise NotLabelledYet(f"round {rnd.number}: {len(mine & handled)} of {len(mine)} tasks are labelled or "
                             f"skipped (need {cfg.min_labelled:.0%}); label them in Label Studio "
                             f"(project {cfg.project!r}, {client.url}) and rerun `sluice annotate round`.")
    write_labels(df, rnd.dir / "labels")
    counts = df["flag"].fillna("clean").value_counts().to_dict()
    rnd.mark("pull", n_label_rows=len(df), flags=counts)


def _xy(pool: Pool, labels: dict[str, str], ids, positive: list[str]):
    pos = {sid: i for i, sid in enumerate(pool.ids)}
    keep = [sid for sid in ids if sid in labels and sid in pos]
    X = pool.X[[pos[s] for s in keep]] if keep else pool.X[:0]
    # a multi-choice answer is stored joined ("cat,dog"): positive when any of its choices is
    y = np.array([any(v in positive for v in labels[s].split(",")) for s in keep], dtype=np.int64)
    return X, y


def _round_labels(rnd: Round, cfg) -> tuple[dict[str, str], set[str]]:
    df = open_table(rnd.dir / "labels").to_table().to_pandas()
    _, eval_ids = _taken(rnd.loop_dir, rnd.number + 1)
    return training_labels(df, cfg.primary_question()), set(eval_ids)


def step_train(rnd: Round, cfg, pool: Pool) -> None:
    labels, eval_ids = _round_labels(rnd, cfg)
    X, y = _xy(pool, labels, [s for s in labels if s not in eval_ids], cfg.positive_labels())
    model, note = train(X, y, cfg.model, cfg.seed)
    export(model, rnd.dir / "probe", task=cfg.primary_question(), positive="|".join(cfg.positive_labels()),
           spec=pool.spec, kind=cfg.model, metrics={}, calibration=note, n_train=len(y), round_=rnd.number)
    rnd.mark("train", n_train=len(y))


def step_evaluate(rnd: Round, cfg, pool: Pool) -> None:
    labels, eval_ids = _round_labels(rnd, cfg)
    model, card = load_probe(rnd.dir / "probe")
    X, y = _xy(pool, labels, sorted(eval_ids), cfg.positive_labels())
    metrics = {"round": rnd.number, "n_train": card["n_train"], **evaluate(model, X, y)}
    _write_json(rnd.dir / "metrics.json", metrics)
    card_path = rnd.dir / "probe" / CARD_FILE
    card = json.loads(card_path.read_text())
    card["metrics"] = metrics
    _write_json(card_path, card)
    latest = rnd.loop_dir / "probe"  # the loop's current scorer: what stage rules load by path
    tmp = rnd.loop_dir / "probe.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(rnd.dir / "probe", tmp)
    shutil.rmtree(latest, ignore_errors=True)
    tmp.rename(latest)
    rnd.mark("evaluate", **{k: metrics.get(k) for k in ("accuracy", "roc_auc", "n")})


def run_round(loop_dir: Path, client, redo: int | None = None, stop_after: str | None = None) -> Round:
    """Run (or resume) the current round; `redo` reruns round `redo` from its push step."""
    loop_dir = Path(loop_dir)
    cfg = loop_config.load(loop_dir)
    rnd = Round(loop_dir, redo) if redo else current_round(loop_dir)
    if redo:
        if not (rnd.dir / "selected.json").exists():
            raise FileNotFoundError(f"round {redo} has no selection in {rnd.dir}; there is nothing to redo")
        state = rnd.state()
        state["done"] = ["select"]  # keep its selection; the rest runs again and must add nothing to Label Studio
        _write_json(rnd.dir / "state.json", state)
    pool = load_pool(Path(cfg.pool), cfg.features)
    steps = {"select": lambda: step_select(rnd, cfg, pool), "push": lambda: step_push(rnd, cfg, pool, client),
             "pull": lambda: step_pull(rnd, cfg, client), "train": lambda: step_train(rnd, cfg, pool),
             "evaluate": lambda: step_evaluate(rnd, cfg, pool)}
    for step in STEPS:
        if step not in rnd.state()["done"]:
            log.info("round %d: %s", rnd.number, step)
            steps[step]()
        if step == stop_after:
            break
    return rnd


def history(loop_dir: Path) -> list[dict]:
    """Per round: its state and metrics, for `sluice annotate status` and benchmarks."""
    out = []
    for r in rounds(loop_dir):
        m = r.dir / "metrics.json"
        out.append({**r.state(), "metrics": json.loads(m.read_text()) if m.exists() else None})
    return out
