"""The rewriter's training data: (u, r) pairs for SFT and (u, chosen, rejected) pairs for DPO, as JSONL.

    SFT pair         {"user": u, "rewrite": r, "source": ...}
    preference pair  {"user": u, "chosen": r1, "rejected": r2, "source": ...}

Built from: an export's long/short captions (r shortened back to u: `pairs_from_export`); reward-scored
candidates (r improved so that u draws better: training/pe/candidates.py `improve_pairs`); Label Studio's
pairwise template over rendered candidates (`write_pairwise_candidates`, then `pairs_from_pairwise`).
No pair teaches the rewriter to lose quoted text: a pair whose rewrite does not quote exactly u's texts is left
out (and counted).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

SFT_KEYS = ("user", "rewrite")
PREF_KEYS = ("user", "chosen", "rejected")


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def read_pairs(path: str | Path, keys: tuple[str, ...] = SFT_KEYS) -> list[dict]:
    """Rows of a pairs JSONL, each checked to hold non-empty strings under `keys`."""
    from training.data.jsonl import jsonl_lines

    rows = []
    for n, row, error in jsonl_lines(path, f"give a JSONL of pairs with {', '.join(keys)} on each line"):
        if error:
            raise ValueError(f"{path} line {n} is {error}; each line is one object")
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {n} is not an object; each line needs {', '.join(keys)}")
        bad = [k for k in keys if not isinstance(row.get(k), str) or not row[k].strip()]
        if bad:
            raise ValueError(f"{path} line {n} lacks a non-empty string {bad}; each line needs {', '.join(keys)}")
        rows.append(row)
    return rows


def _export_json(export: Path):
    """The json member of every sample of an export (the images are not read)."""
    from schemas.shards import META_MEMBER, split_member
    from training.data.shards import list_shards

    for shard in list_shards(export):
        with tarfile.open(shard, "r") as tar:
            for m in tar:
                if m.isfile() and split_member(m.name.rpartition("/")[2])[1] == META_MEMBER:
                    yield json.loads(tar.extractfile(m).read().decode("utf-8"))


def pairs_from_export(export: str | Path, long_style: str = "long", short_style: str = "short",
                      langs: tuple[str, ...] = ("zh", "en")) -> tuple[list[dict], dict]:
    """(u, r) = (short caption, long caption) of each sample and language: the long caption is what a short
    prompt means in full, so the rewriter learns to expand the way stage 3 describes images. Returns (pairs,
    counts); duplicates, empty or equal captions and pairs that would lose quoted text are counted, not kept."""
    from training.pe.guard import keeps_quotes

    seen, pairs = set(), []
    counts = {"samples": 0, "pairs": 0, "missing": 0, "same": 0, "duplicate": 0, "quotes_differ": 0}
    for meta in _export_json(Path(export)):
        counts["samples"] += 1
        caps = meta.get("captions", {})
        for lang in langs:
            u = (caps.get(short_style) or {}).get(lang, "").strip()
            r = (caps.get(long_style) or {}).get(lang, "").strip()
            if not u or not r:
                counts["missing"] += 1
            elif u == r:
                counts["same"] += 1
            elif (u, r) in seen:
                counts["duplicate"] += 1
            elif not keeps_quotes(u, r):
                counts["quotes_differ"] += 1
            else:
                seen.add((u, r))
                pairs.append({"user": u, "rewrite": r, "source": "export", "lang": lang, "id": meta.get("id")})
    counts["pairs"] = len(pairs)
    return pairs, counts


def write_pairwise_candidates(pipe, users: list[str], candidates: list[list[str]], folder: str | Path,
                              width: int = 512, height: int = 512, seed: int = 0, model: str = "pe-candidates"
                              ) -> dict:
    """Render each user prompt's candidate rewrites into a generated folder for Label Studio's pairwise template:
    images + generated.jsonl (prompt = the rewrite), rewrites.jsonl (the user's prompt of each record) and
    pairwise.jsonl (every two candidates of one user prompt). Returns counts."""
    from itertools import combinations

    from training.data.preference import write_generated, write_pairwise
    from training.pe.guard import Guarded
    from training.pe.rewrite import write_rewrites

    folder = Path(folder)
    start, tasks = 0, []
    for u, cands in zip(users, candidates, strict=True):
        cands = list(dict.fromkeys(c for c in cands if c))
        if len(cands) < 2:
            continue
        images = pipe(cands, width, height, seed=seed)
        recs = write_generated(folder, images, cands, [""] * len(cands), seed, model, start)
        write_rewrites(folder, recs, [Guarded(c, "ok", c) for c in cands], [u] * len(cands), model)
        start += len(recs)
        tasks += [(a["id"], b["id"]) for a, b in combinations(recs, 2)]
    write_pairwise(folder, tasks)
    return {"records": start, "tasks": len(tasks)}


def pairs_from_pairwise(folder: str | Path, labels: str | Path, task: str = "preference") -> tuple[list[dict], dict]:
    """(u, chosen, rejected) from a pairwise-labelled candidates folder: pairwise.jsonl names the two records of
    each task, the labels table (Label Studio's answers, read with plumbing/tables.py) says left or right, and
    rewrites.jsonl gives the user prompt both rewrites answer. Returns (pairs, counts)."""
    from plumbing.tables import read_majority_labels
    from training.data.preference import PAIRWISE, read_generated
    from training.pe.guard import keeps_quotes
    from training.pe.rewrite import read_rewrites

    folder = Path(folder)
    path = folder / PAIRWISE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write the candidates with training/pe/data.py "
                                "write_pairwise_candidates before they go to Label Studio")
    records = {r["id"]: r for r in read_generated(folder)[0]}
    users = read_rewrites(folder)
    answers = read_majority_labels(labels, task)
    counts = {"tasks": 0, "pairs": 0, "unanswered": 0, "unknown_record": 0, "different_users": 0, "same_text": 0,
              "quotes_differ": 0}
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        t = json.loads(line)
        counts["tasks"] += 1
        side = answers.get(t["id"])
        if side not in ("left", "right"):
            counts["unanswered"] += 1
            continue
        win, lose = (t["left"], t["right"]) if side == "left" else (t["right"], t["left"])
        if not all(k in records and k in users for k in (win, lose)):
            counts["unknown_record"] += 1
            continue
        u = users[win]["user_prompt"]
        if users[lose]["user_prompt"] != u:
            counts["different_users"] += 1
            continue
        chosen, rejected = records[win]["prompt"], records[lose]["prompt"]
        if chosen == rejected:
            counts["same_text"] += 1
        elif not keeps_quotes(u, chosen):  # a human may prefer an image whose text is wrong: never teach that
            counts["quotes_differ"] += 1
        else:
            pairs.append({"user": u, "chosen": chosen, "rejected": rejected, "source": "pairwise", "task": t["id"]})
    counts["pairs"] = len(pairs)
    return pairs, counts
