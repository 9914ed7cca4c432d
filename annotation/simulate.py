"""A simulated annotator for tests and benchmarks: answers from ground truth through the real API.

It labels the current round's tasks the way a person would, by creating annotations with the SDK (as
users `sim-<k>@sluice.local`, created on first use). With `overlap` a share of tasks gets a second
annotator; `noise`, `skip` and `unknown` make some answers wrong, skipped, or outside the template's
choices, so the labels table's flags and agreement are exercised against a real server. Every random
choice is a hash of (sample id, annotator, seed), so a rerun makes the same answers and adds nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from annotation import loop_config
from annotation.rounds import current_round, rounds
from annotation.tasks import choice


def _u(*parts) -> float:
    h = hashlib.sha1(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


@dataclass(frozen=True)
class Behaviour:
    annotators: int = 1
    overlap: float = 0.0  # share of tasks that also get annotators 2..k
    noise: float = 0.0  # share of answers replaced by another valid answer
    skip: float = 0.0  # share of tasks skipped (cancelled annotation)
    unknown: float = 0.0  # share of answers outside the template's choices
    seed: int = 0


def _user_ids(client, k: int) -> list[int]:
    users = {email: uid for uid, email in client.users().items()}
    ids = []
    for i in range(k):
        email = f"sim-{i + 1}@sluice.local"
        if email not in users:
            u = client.call("creating a simulated annotator", client.sdk.users.create,
                            username=f"sim-{i + 1}", email=email, password=hashlib.sha1(email.encode()).hexdigest())
            users[email] = u.id
        ids.append(users[email])
    return ids


def _result(template: str, question: str, said: str) -> dict:
    if template == "aesthetic" and said.isdigit():
        return {"from_name": question, "to_name": "image", "type": "rating", "value": {"rating": int(said)}}
    return choice(question, said)


def answer(sid: str, k: int, truth: str, allowed: tuple[str, ...], b: Behaviour) -> str | None:
    """What annotator k says for sample `sid`; None = skip."""
    if _u(sid, k, b.seed, "skip") < b.skip:
        return None
    if _u(sid, k, b.seed, "unknown") < b.unknown:
        return "not-a-choice"
    if _u(sid, k, b.seed, "noise") < b.noise:
        others = [a for a in allowed if a != truth]
        return others[int(_u(sid, k, b.seed, "pick") * len(others))] if others else truth
    return truth


def label_round(loop_dir: Path, client, truth: dict[str, str], behaviour: Behaviour = Behaviour(),
                round_number: int | None = None) -> dict[str, int]:
    """Annotate the tasks of a round (default: the current one) that the simulated users have not yet done."""
    cfg = loop_config.load(loop_dir)
    rnd = next(r for r in rounds(loop_dir) if r.number == round_number) if round_number else current_round(loop_dir)
    state = rnd.state()
    if "project" not in state:
        raise RuntimeError(f"round {rnd.number} has not pushed its tasks yet; run `sluice annotate round` first")
    sel = rnd.selected()
    mine = set(sel["train"]) | set(sel["eval"])
    question, allowed = cfg.primary_question(), cfg.allowed(cfg.primary_question())
    users = _user_ids(client, behaviour.annotators)
    counts = {"annotated": 0, "skipped": 0, "already": 0, "no_truth": 0}
    for task in client.tasks(state["project"]):
        sid = str((task.get("data") or {}).get("sample_id"))
        if sid not in mine:
            continue
        done_by = {a.get("completed_by") for a in task.get("annotations") or []}
        for k, uid in enumerate(users):
            if k > 0 and _u(sid, k, behaviour.seed, "overlap") >= behaviour.overlap:
                continue
            if uid in done_by:
                counts["already"] += 1
                continue
            if sid not in truth:
                counts["no_truth"] += 1
            said = answer(sid, k, truth[sid], allowed, behaviour) if sid in truth else None
            result = [] if said is None else [_result(cfg.template, question, said)]
            client.call("creating an annotation", client.sdk.annotations.create, id=task["id"], result=result,
                        was_cancelled=said is None, completed_by=uid, lead_time=1.0)
            counts["skipped" if said is None else "annotated"] += 1
    return counts
