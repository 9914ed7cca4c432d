"""Model-generated images -> Label Studio tasks (good or bad for their prompt) -> the `labels` table.

The trainer's generator writes a folder of images and `generated.jsonl`, one JSON object per line:
`{"id": 32 hex chars, "file": the image's name relative to the folder, "prompt": str, "aesthetic": str
("" when none), "seed": int, "model": str}`. Each record becomes one task keyed by its id, so pushing the
folder again adds only what is new. Labels come back as rows with id = the record's id, task "generated",
label "good" or "bad" and uri = the image's path, flagged like every other pull (skipped, empty,
unknown_label, conflict). A record that cannot become a task is not lost either: the pull writes it as a
flagged row, `bad_record` (a line that is not JSON or not the contract), `duplicate_id`, or
`missing_image` (a missing, misplaced or undecodable file); the push prints what to fix for each.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annotation.labels import labels_frame, write_labels
from annotation.tasks import existing_ids, inline_refs, write_local
from annotation.templates import render
from schemas.labels import LABELS

log = logging.getLogger(__name__)

MANIFEST = "generated.jsonl"
TASK = "generated"  # the question's name: the `task` of its rows in the labels table
ANSWERS = ("good", "bad")
DEFAULT_PROJECT = "sluice generated"
IMAGE_MODES = ("local", "inline")  # a generated image has no URI a server could fetch


class GeneratedRecord(BaseModel):
    """One line of generated.jsonl: the contract with the trainer's generator."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(pattern=r"^[0-9a-fA-F]{32}$")
    file: str = Field(min_length=1)
    prompt: str
    aesthetic: str
    seed: int
    model: str


@dataclass(frozen=True)
class Problem:
    """A line of generated.jsonl that gives no task, and why."""

    line: int
    flag: str  # bad_record | duplicate_id | missing_image
    reason: str
    id: str | None = None
    path: str | None = None

    def message(self) -> str:
        who = f" (id {self.id})" if self.id else ""
        return f"{MANIFEST} line {self.line}{who}: {self.reason}"


@dataclass
class Generated:
    """The records of a generator folder that can be labelled, and the lines that cannot."""

    folder: Path
    records: list[GeneratedRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def path(self, record: GeneratedRecord) -> Path:
        return self.folder / record.file


def find_folder(images: Path) -> Path:
    """The generator's folder (given itself, or its generated.jsonl), or an error that says what to pass."""
    images = Path(images)
    if images.is_file() and images.name == MANIFEST:
        images = images.parent
    if not images.is_dir():
        raise FileNotFoundError(f"{images} is not a folder; pass --images the folder the trainer's generator "
                                f"wrote (the images and their {MANIFEST}).")
    if not (images / MANIFEST).is_file():
        raise FileNotFoundError(f"{images} has no {MANIFEST}; the generator writes it next to the images, one JSON "
                                f"object per image: id, file, prompt, aesthetic, seed, model. Pass --images the "
                                f"folder that holds it.")
    return images.absolute()


def _validation_reason(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    return ("; ".join(parts) + f". A record holds exactly {', '.join(GeneratedRecord.model_fields)} "
            f"(id: 32 hex characters, seed: an integer, aesthetic: \"\" when none)")


def _image_problem(path: Path, folder: Path) -> str | None:
    """Why the record's file cannot be shown, or None."""
    from PIL import Image

    if not path.resolve().is_relative_to(folder.resolve()):
        return f"file {path.name!r} lies outside {folder}; name the image relative to the folder"
    if not path.is_file():
        return f"image {path} does not exist; write it or remove the line"
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # any undecodable file: the record is flagged, the push goes on
        return f"image {path} cannot be decoded ({type(e).__name__}); write it again or remove the line"
    return None


def read_generated(images: Path, check_images: bool = True) -> Generated:
    """Parse generated.jsonl; every line is either a record or a Problem (blank lines are ignored)."""
    folder = find_folder(images)
    out = Generated(folder)
    seen: set[str] = set()
    for n, raw in enumerate((folder / MANIFEST).read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            out.problems.append(Problem(n, "bad_record", f"not a JSON object ({e}); fix or remove the line"))
            continue
        sid = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
        try:
            rec = GeneratedRecord.model_validate(obj)
        except ValidationError as e:
            out.problems.append(Problem(n, "bad_record", _validation_reason(e), id=sid))
            continue
        path = folder / rec.file
        if rec.id in seen:
            out.problems.append(Problem(n, "duplicate_id", "the id is already used by an earlier line; give each "
                                        "image its own id", id=rec.id, path=str(path)))
            continue
        seen.add(rec.id)
        reason = _image_problem(path, folder) if check_images else None
        if reason:
            out.problems.append(Problem(n, "missing_image", reason, id=rec.id, path=str(path)))
            continue
        out.records.append(rec)
    if not out.records and not out.problems:
        raise ValueError(f"{folder / MANIFEST} holds no records; generate images first.")
    return out


def build_tasks(gen: Generated, refs: dict[str, str]) -> list[dict]:
    """One task per record, keyed by its id (`sample_id`, as the loop's tasks are)."""
    return [{"data": {"sample_id": r.id, "image": refs.get(r.id, ""), "prompt": r.prompt, "aesthetic": r.aesthetic,
                      "uri": str(gen.path(r)), "seed": r.seed, "model": r.model}} for r in gen.records]


@dataclass(frozen=True)
class PushReport:
    project: int
    n_records: int
    n_created: int
    n_existing: int
    problems: list[Problem]


def _project(client, title: str, lang: str) -> int:
    """The project for generated images, refusing one of the same title made with another template."""
    project = client.project(title, render(TASK, lang).xml, description="Sluice: generated images, good or bad")
    if f'name="{TASK}"' not in client.label_config(project):
        raise ValueError(f"Label Studio project {title!r} exists with another labelling template; pass --project "
                         f"with a new title for generated images.")
    return project


def check_push(images: Path, lang: str, image_mode: str, files_root: Path | None) -> None:
    """Refuse bad settings before anything reaches the server."""
    find_folder(images)
    render(TASK, lang)
    if image_mode not in IMAGE_MODES:
        raise ValueError(f"image mode {image_mode!r} does not work for generated images; use one of "
                         f"{', '.join(IMAGE_MODES)}")
    if image_mode == "local" and not files_root:
        raise ValueError("image mode local needs --files-root: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                         "(`sluice annotate server status` prints it), or use --image-mode inline")


def push_generated(images: Path, client, project: str = DEFAULT_PROJECT, lang: str = "en",
                   image_mode: str = "local", files_root: Path | None = None) -> PushReport:
    """Create or update the Label Studio project: one task per new record of the folder."""
    check_push(images, lang, image_mode, files_root)
    gen = read_generated(images)
    pid = _project(client, project, lang)
    present = existing_ids(client.tasks(pid))
    new = Generated(gen.folder, [r for r in gen.records if r.id not in present])
    images_ = {r.id: new.path(r).read_bytes() for r in new.records}
    if image_mode == "local" and images_:
        subdir = f"sluice/{pid}"
        refs = write_local(images_, Path(files_root), subdir)
        client.local_storage(pid, str(Path(files_root).absolute() / subdir))
    else:
        refs = inline_refs(images_)
    created = client.import_tasks(pid, build_tasks(new, refs))
    for p in gen.problems:
        log.debug("not pushed: %s", p.message())  # the CLI prints each; a library caller reads .problems
    return PushReport(pid, len(gen.records), len(created), len(gen.records) - len(new.records), gen.problems)


def problem_rows(problems: list[Problem], tasked: set[str], manifest: Path) -> pd.DataFrame:
    """Flagged labels rows for the lines that gave no task (a missing image of a pushed record has one)."""
    rows = [{"id": p.id or f"{MANIFEST}:{p.line}", "uri": p.path or f"{manifest}#L{p.line}", "task": TASK,
             "label": None, "annotator": None, "round": None, "source": None, "agreement": None, "flag": p.flag,
             "ls_task_id": None, "created_at": None}
            for p in problems if not (p.flag == "missing_image" and p.id in tasked)]
    return pd.DataFrame(rows, columns=[f.name for f in LABELS])


@dataclass(frozen=True)
class PullReport:
    path: Path
    n_lines: int  # records of generated.jsonl, good or flagged
    n_labelled: int  # records with at least one annotation (skips included)
    n_waiting: int  # pushed, not yet annotated
    n_not_pushed: int
    counts: dict[str, int]  # label rows by label (good, bad) or flag


def pull_generated(images: Path, client, project: str = DEFAULT_PROJECT, out: Path | None = None) -> PullReport:
    """Write the labels table of a generator folder (default `<folder>/labels`), replacing what was there."""
    gen = read_generated(images)
    pid = client.find_project(project)
    if pid is None:
        raise ValueError(f"Label Studio has no project titled {project!r}; push the images first: "
                         f"`sluice annotate generated push --images {gen.folder}`")
    ids = {r.id for r in gen.records}
    # a record pushed before its image went missing keeps its labels
    known = ids | {p.id for p in gen.problems if p.flag == "missing_image"}
    tasks = [t for t in client.tasks(pid) if str((t.get("data") or {}).get("sample_id")) in known]
    tasked = {str(t["data"]["sample_id"]) for t in tasks}
    df = labels_frame(tasks, render(TASK).questions, TASK, client.users())
    flagged = problem_rows(gen.problems, tasked, gen.folder / MANIFEST)
    if len(flagged):
        df = pd.concat([d.astype(object) for d in (df, flagged) if len(d)], ignore_index=True)
    path = write_labels(df, Path(out) if out else gen.folder / "labels")
    labelled = {str(t["data"]["sample_id"]) for t in tasks if t.get("annotations")}
    counts = df["flag"].fillna(df["label"]).fillna("empty").value_counts().to_dict()
    return PullReport(path, len(gen.records) + len(gen.problems), len(labelled), len(tasked - labelled),
                      len(ids - tasked), {str(k): int(v) for k, v in counts.items()})
