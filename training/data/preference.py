"""Model-generated images with good/bad verdicts -> preference shards for SFT's negative-aware term (DPO).

Input: a folder written by `sluice generate` (images + `generated.jsonl`, one record per image:
`{id, file, prompt, aesthetic, seed, model}`) and a verdict per id, "good" or "bad", from Label Studio
(`sluice annotate generated pull`, a `labels` table) or from a reward model. Images of one (prompt,
aesthetic) group are paired: every bad image with a good one of its group, taken in turn. A pair is one
sample of the export format (docs/export-format.md) whose `<key>.jpg` is the preferred image, plus
`<key>.lose.jpg`, the rejected one; its caption is the prompt (short style, in the prompt's language) and its
aesthetic caption the aesthetic part. Nothing is lost: `pairs.jsonl` beside the shards says what became of
every record (winner, loser, or why it was left out), and `_manifest.json` counts it.

Two more sources of pairs (RLHF): a reward model's scores (`build_ranked_pairs`: best against worst of each
group, for rewards no gradient can follow, e.g. OCR), and Label Studio's pairwise template
(`build_pairwise_pairs`: `pairwise.jsonl` lists the tasks, the labels table holds left/right per task).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from collections import defaultdict
from pathlib import Path

from schemas.shards import IMAGE_MEMBER, LOSE_MEMBER, META_MEMBER, PAIR_JSON_KEY, member_name

log = logging.getLogger(__name__)

GENERATED = "generated.jsonl"
FIELDS = ("id", "file", "prompt", "aesthetic", "seed", "model")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def prompt_lang(text: str) -> str:
    """zh when the prompt holds Chinese characters, else en (the caption slot the pair is written under)."""
    return "zh" if CJK.search(text) else "en"


def generated_id(model: str, prompt: str, aesthetic: str, seed: int, index: int) -> str:
    """A record id: 32 hex characters, a function of what made the image."""
    return hashlib.sha1(json.dumps([model, prompt, aesthetic, seed, index], ensure_ascii=False).encode()).hexdigest()[:32]


def write_generated(folder: Path, images: list, prompts: list[str], aesthetics: list[str], seed: int, model: str,
                    start: int = 0) -> list[dict]:
    """Save images as PNGs and append their records to `generated.jsonl`; returns the records."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    with open(folder / GENERATED, "a", encoding="utf-8") as f:
        for i, (im, prompt, aes) in enumerate(zip(images, prompts, aesthetics), start):
            rid = generated_id(model, prompt, aes, seed, i)
            im.save(folder / f"{rid}.png")
            rec = {"id": rid, "file": f"{rid}.png", "prompt": prompt, "aesthetic": aes, "seed": seed, "model": model}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            records.append(rec)
    return records


def read_generated(folder: Path) -> tuple[list[dict], list[dict]]:
    """(records, outcomes of unusable lines): a line that is not a record of the contract is not dropped
    silently, it becomes an outcome row with the reason."""
    from training.data.jsonl import jsonl_lines

    records, bad = [], []
    hint = f"give the folder `sluice generate --out DIR` wrote (images + {GENERATED})"
    for n, rec, error in jsonl_lines(Path(folder) / GENERATED, hint):
        missing = [error] if error else [k for k in FIELDS if k not in rec] if isinstance(rec, dict) else list(FIELDS)
        if missing:
            bad.append({"id": (rec or {}).get("id") if isinstance(rec, dict) else None, "line": n,
                        "outcome": "bad_record", "reason": f"missing or bad fields: {missing}"})
        else:
            records.append(rec)
    return records, bad


def verdicts_from_labels(path: Path, task: str = "generated") -> dict[str, str]:
    """good/bad per record id from a `labels` table (majority of clean answers)."""
    from plumbing.tables import read_majority_labels

    return read_majority_labels(path, task)


def pair_records(records: list[dict], verdicts: dict[str, str]) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """(pairs (winner, loser), one outcome row per record). Every bad record of a group is paired with a good
    one of the same (prompt, aesthetic), goods taken in turn; a good one may serve several pairs."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: {"good": [], "bad": []})
    outcomes: dict[str, dict] = {}
    for rec in records:
        v = verdicts.get(rec["id"])
        if v not in ("good", "bad"):
            outcomes[rec["id"]] = {"id": rec["id"], "outcome": "no_verdict",
                                   "reason": f"no good/bad verdict (got {v!r})"}
            continue
        groups[rec["prompt"], rec["aesthetic"]][v].append(rec)
    pairs = []
    for (prompt, aes), g in sorted(groups.items()):
        good, bad = sorted(g["good"], key=lambda r: r["id"]), sorted(g["bad"], key=lambda r: r["id"])
        if not good or not bad:
            why = "no good image" if not good else "no bad image"
            for rec in good + bad:
                outcomes[rec["id"]] = {"id": rec["id"], "outcome": "unpaired",
                                       "reason": f"its prompt and aesthetic have {why} to pair with"}
            continue
        for i, lose in enumerate(bad):
            win = good[i % len(good)]
            pairs.append((win, lose))
            outcomes[lose["id"]] = {"id": lose["id"], "outcome": "loser", "reason": None}
        for rec in good:
            outcomes.setdefault(rec["id"], {"id": rec["id"], "outcome": "winner", "reason": None})
    return pairs, [outcomes[r["id"]] for r in records]


def _jpeg(path: Path) -> tuple[bytes, tuple[int, int]]:
    """(JPEG bytes, (width, height)) of an image file."""
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=95)
        return buf.getvalue(), im.size


def build_pairs(folder: Path, verdicts: dict[str, str], out: Path, shard_size: int = 1000) -> dict:
    """Write preference shards for the generated `folder` under `out` (an export-format folder); returns counts."""
    return _build(folder, out, shard_size, lambda records: pair_records(records, verdicts))


def rank_pairs(records: list[dict], scores: dict[str, float], margin: float = 0.1
               ) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """Pairs from a reward model's scores instead of good/bad verdicts: in each (prompt, aesthetic) group the
    best image is paired with the worst, the second best with the second worst, and so on, while the two differ
    by at least `margin` (a closer pair is noise for Diffusion-DPO). Every image is in at most one pair."""
    import math

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    outcomes: dict[str, dict] = {}
    for rec in records:
        s = scores.get(rec["id"])
        if s is None or (isinstance(s, float) and math.isnan(s)):
            outcomes[rec["id"]] = {"id": rec["id"], "outcome": "no_score",
                                   "reason": "the reward gave no score (e.g. the prompt quotes no text)"}
        else:
            groups[rec["prompt"], rec["aesthetic"]].append(rec)
    pairs = []
    for _, group in sorted(groups.items()):
        ranked = sorted(group, key=lambda r: (-scores[r["id"]], r["id"]))
        for k in range(len(ranked) // 2):
            win, lose = ranked[k], ranked[-1 - k]
            if scores[win["id"]] - scores[lose["id"]] < margin:
                break
            pairs.append((win, lose))
            outcomes[win["id"]] = {"id": win["id"], "outcome": "winner", "reason": None}
            outcomes[lose["id"]] = {"id": lose["id"], "outcome": "loser", "reason": None}
        for rec in ranked:
            outcomes.setdefault(rec["id"], {"id": rec["id"], "outcome": "unpaired", "reason":
                                            f"no image of its prompt and aesthetic scores {margin} apart from it"})
    return pairs, [outcomes[r["id"]] for r in records]


def build_ranked_pairs(folder: Path, scores: dict[str, float], out: Path, margin: float = 0.1,
                       shard_size: int = 1000) -> dict:
    """Preference shards from reward scores per record id (a reward model ranks instead of annotators)."""
    return _build(folder, out, shard_size, lambda records: rank_pairs(records, scores, margin))


PAIRWISE = "pairwise.jsonl"


def pairwise_id(left: str, right: str) -> str:
    return hashlib.sha1(f"{left}|{right}".encode()).hexdigest()[:32]


def write_pairwise(folder: Path, pairs: list[tuple[str, str]]) -> list[dict]:
    """The pairwise tasks over a generated folder: `pairwise.jsonl`, one {id, left, right} per pair of record
    ids. A Label Studio task of the pairwise template carries `sample_id` = this id, `image_left` and
    `image_right` = the two files, `caption` = their prompt; its answer (`preference`: left or right) comes
    back in the labels table under that id."""
    rows = [{"id": pairwise_id(a, b), "left": a, "right": b} for a, b in pairs]
    with open(Path(folder) / PAIRWISE, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def pairwise_pairs(records: list[dict], tasks: list[dict], answers: dict[str, str]
                   ) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """(pairs (winner, loser), one outcome per record) from pairwise tasks and their answers (left/right)."""
    by_id = {r["id"]: r for r in records}
    pairs, won, lost = [], defaultdict(int), defaultdict(int)
    for task in tasks:
        side = answers.get(task["id"])
        if side not in ("left", "right") or task["left"] not in by_id or task["right"] not in by_id:
            continue
        win, lose = (task["left"], task["right"]) if side == "left" else (task["right"], task["left"])
        pairs.append((by_id[win], by_id[lose]))
        won[win] += 1
        lost[lose] += 1
    outcomes = []
    for rec in records:
        w, l = won[rec["id"]], lost[rec["id"]]
        if not w and not l:
            outcomes.append({"id": rec["id"], "outcome": "unpaired", "reason": "in no answered pairwise task"})
        else:
            outcome = "winner" if not l else "loser" if not w else "mixed"
            outcomes.append({"id": rec["id"], "outcome": outcome, "reason": None if outcome != "mixed" else
                             f"won {w}, lost {l} of its pairs"})
    return pairs, outcomes


def build_pairwise_pairs(folder: Path, labels: Path, out: Path, task: str = "preference",
                         shard_size: int = 1000) -> dict:
    """Preference shards from Label Studio's pairwise template: `pairwise.jsonl` in the generated folder and
    the labels table pulled for it (majority answer per pair)."""
    from plumbing.tables import read_majority_labels

    path = Path(folder) / PAIRWISE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; the pairwise tasks of a generated folder are listed there "
                                "(training/data/preference.py write_pairwise) before they go to Label Studio")
    tasks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = read_majority_labels(labels, task)
    return _build(folder, out, shard_size, lambda records: pairwise_pairs(records, tasks, answers))


def _build(folder: Path, out: Path, shard_size: int, make_pairs) -> dict:
    """Read the generated records and images, pair them with `make_pairs(records) -> (pairs, outcomes)`, write
    the shards, `pairs.jsonl` (every record's outcome) and `_manifest.json`; returns counts."""
    folder, out = Path(folder), Path(out)
    records, bad_lines = read_generated(folder)
    jpgs, sizes, unreadable = {}, {}, []
    for rec in records:
        try:
            jpgs[rec["id"]], sizes[rec["id"]] = _jpeg(folder / rec["file"])
        except (OSError, ValueError) as e:  # missing, truncated or not an image
            unreadable.append({"id": rec["id"], "outcome": "bad_image", "reason": f"{rec['file']}: {e}"})
    pairs, outcomes = make_pairs([r for r in records if r["id"] in jpgs])
    members = []
    for win, lose in pairs:
        key = hashlib.sha1(f"{win['id']}:{lose['id']}".encode()).hexdigest()[:32]
        width, height = sizes[win["id"]]
        lang = prompt_lang(win["prompt"])
        caps = {"short": {"zh": "", "en": ""}, "aesthetic": {"zh": "", "en": ""}}
        caps["short"][lang], caps["aesthetic"][lang] = win["prompt"], win["aesthetic"]
        meta = {"id": key, "key": key, "source": "preference", "uri": str(folder / win["file"]), "width": width,
                "height": height, "aspect_bucket": f"{width}x{height}", "captions": caps,
                "styles": sorted(f"{s}_{lang}" for s in caps if caps[s][lang]), "signals": {}, "tags": [],
                "cluster_path": [], PAIR_JSON_KEY: {"win": win["id"], "lose": lose["id"]}}
        members.append((meta, jpgs[win["id"]], jpgs[lose["id"]]))
    shards = _write_shards(members, out, shard_size)
    rows = bad_lines + unreadable + outcomes
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {"records": len(records) + len(bad_lines), "pairs": len(pairs), "shards": len(shards)}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    (out / "_manifest.json").write_text(json.dumps({"generated": str(folder), "counts": counts}, indent=1))
    (out / "_SUCCESS").write_text("")
    if not pairs:
        log.warning("no preference pair in %s: %s (see %s)", folder, counts, out / "pairs.jsonl")
    return counts


def _write_shards(members: list[tuple[dict, bytes, bytes]], out: Path, shard_size: int) -> list[Path]:
    """One folder per bucket, samples ordered by key, `shard_size` per tar (as the export writes them)."""
    by_bucket: dict[str, list] = defaultdict(list)
    for m in sorted(members, key=lambda m: m[0]["key"]):
        by_bucket[m[0]["aspect_bucket"]].append(m)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shards/**/*.tar"):  # a rebuild replaces the shards, never mixes with them
        old.unlink()
    paths = []
    for bucket, items in sorted(by_bucket.items()):
        (out / "shards" / bucket).mkdir(parents=True, exist_ok=True)
        for s in range(0, len(items), shard_size):
            path = out / "shards" / bucket / f"pairs-{s // shard_size:06d}.tar"
            with tarfile.open(path, "w") as tar:
                for meta, w_jpg, l_jpg in items[s:s + shard_size]:
                    meta_bytes = json.dumps(meta, ensure_ascii=False).encode()
                    for member, data in ((IMAGE_MEMBER, w_jpg), (LOSE_MEMBER, l_jpg), (META_MEMBER, meta_bytes)):
                        info = tarfile.TarInfo(member_name(meta["key"], member))
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
            paths.append(path)
    return paths
