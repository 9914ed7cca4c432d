"""Reading the export job's webdataset shards (docs/export-format.md): listing, splitting, streaming samples.

A shard is a tar of `<key>.jpg` + `<key>.json` pairs (preference shards add `<key>.lose.jpg`, the rejected
image, training/data/preference.py; edit shards `<key>.src.jpg`, the source image, training/data/edit_pairs.py). Samples are read in tar order so that a position
(shard, sample index) identifies the next sample exactly, which is what makes resume exact. Training never
imports curation: this module knows only the file format.
"""

from __future__ import annotations

import glob
import json
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.shards import IMAGE_MEMBER, LOSE_MEMBER, META_MEMBER, SOURCE_MEMBER, split_member

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    key: str
    jpg: bytes
    meta: dict
    shard: str
    # members beyond jpg and json, by extension: `lose.jpg` (the rejected image of a preference pair),
    # `src.jpg` (the source image of an edit pair)
    extra: dict[str, bytes] = field(default_factory=dict)

    @property
    def lose_jpg(self) -> bytes | None:
        return self.extra.get(LOSE_MEMBER)

    @property
    def src_jpg(self) -> bytes | None:
        return self.extra.get(SOURCE_MEMBER)


def list_shards(spec: str | Path) -> list[str]:
    """Shards of an export folder (which must be finished: `_SUCCESS`), a single tar, or a glob; sorted."""
    p = Path(spec)
    if p.is_dir():
        if not (p / "_SUCCESS").exists():
            raise FileNotFoundError(f"{p} has no _SUCCESS marker: the export is unfinished; rerun `sluice curate export`")
        from plumbing.runs import stale_reason

        why = stale_reason(p)
        if why:  # still a complete export, made before an earlier table changed: train on it, but say so
            log.warning("%s is stale (%s); `sluice curate run --until export` redoes it", p, why)
        found = sorted(str(s) for s in p.glob("shards/**/*.tar"))
    else:
        found = sorted(glob.glob(str(spec), recursive=True))
    if not found:
        raise FileNotFoundError(f"no shards found at {spec}; give an export folder, a .tar or a glob like 'dir/**/*.tar'")
    return found


def split_shards(shards: list[str], rank: int = 0, world: int = 1, worker: int = 0, workers: int = 1) -> list[str]:
    """This rank's and worker's share: disjoint, and as even as the shard count allows."""
    n = world * workers
    if len(shards) < n:
        raise ValueError(f"{len(shards)} shards cannot feed {world} ranks x {workers} workers evenly; "
                         f"export with a smaller export.shard_size (more shards) or use fewer ranks/workers")
    return shards[rank * workers + worker::n]


def iter_shard(path: str, skip: int = 0, keys: set[str] | None = None) -> Iterator[Sample]:
    """Samples of one tar in order, members grouped by key; the first `skip` samples are passed over undecoded.

    With `keys`, only those samples are read out of the tar (the others are passed over unread).
    """
    index, cur_key, parts = 0, None, {}

    def wanted(key) -> bool:
        return index >= skip and (keys is None or key in keys)

    def flush():
        nonlocal index
        item = None
        if cur_key is not None:
            if wanted(cur_key):
                item = _sample(cur_key, parts, path)
            index += 1
        return item

    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member(member.name.rpartition("/")[2])
                if key != cur_key:
                    item = flush()
                    if item:
                        yield item
                    cur_key, parts = key, {}
                if wanted(key):  # skipped samples are never read out of the tar
                    parts[ext] = tar.extractfile(member).read()
            item = flush()
            if item:
                yield item
    except (tarfile.TarError, OSError) as e:
        log.warning("shard %s is unreadable after sample %d (%s); going on with the next shard", path, index, e)


def _sample(key: str, parts: dict, shard: str) -> Sample | None:
    if IMAGE_MEMBER not in parts or META_MEMBER not in parts:
        log.warning("sample %s in %s lacks its jpg or json member; skipped", key, shard)
        return None
    try:
        meta = json.loads(parts[META_MEMBER].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("sample %s in %s has unreadable json (%s); skipped", key, shard, e)
        return None
    extra = {k: v for k, v in parts.items() if k not in (IMAGE_MEMBER, META_MEMBER)}
    return Sample(key, parts[IMAGE_MEMBER], meta, shard, extra)


def read_keys(shard: str, keys: set[str]) -> dict[str, Sample]:
    """Fetch particular samples of a shard by key (used to refill the bucket and shuffle buffers on resume)."""
    return {s.key: s for s in iter_shard(shard, keys=set(keys))}
