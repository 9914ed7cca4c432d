"""Raw stage-1 outputs on generated structure samples: what the fusion head of the structure signal learns from.

For each sample of `detector_factory.structure_data` (a split's photos, a seed): the JPEG bytes, the shipped CNN
detector's three probabilities and the OCR engine's raw lines (quads, text, confidence), both computed on
`decode_for_analysis` of those bytes at the OCR analysis size, exactly as stage 1 computes them. Saved as
one pickle per chunk so that the features (`curation.signals.structure_fusion`) can be redesigned and the
head retrained without running OCR again (OCR is ~0.3-1 s per image on one core).

    python -m detector_factory.structure_fusion_data --out /tmp/fusion --split train --n 2400 --seed 20000 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from detector_factory import drawing, phrases, scene_text
from detector_factory import structure_data as sd

log = logging.getLogger(__name__)
CHUNK = 200
_STATE: dict = {}


def _init(split: str, extra_photos: Path | None = None) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    from curation.signals.ocr import OcrSignal
    from curation.signals.structure import StructureSignal

    _STATE["photos"], _STATE["pages"] = sd.split_photos(split, extra_photos)
    _STATE["structure"] = StructureSignal()
    _STATE["structure"].load()
    _STATE["ocr"] = OcrSignal()
    _STATE["ocr"].load()


def jpeg_quality(seed: int, index: int, split: str) -> int:
    rng = np.random.default_rng([seed, index, 1])
    return int(rng.integers(75, 96)) if split == "heldout" else int(rng.integers(60, 96))


def raw_outputs(data: bytes, structure, ocr) -> dict:
    """The detector's probabilities and the OCR engine's unfiltered lines: what the two signals leave in
    `Decoded.cache` for the fusion head when stage 1 scores these bytes."""
    from curation.signals.analysis import decode_for_analysis

    img = decode_for_analysis(data)
    structure.score_image(img)
    ocr.score_image(img)
    lines = img.cache["ocr_lines"]
    return {"cnn": img.cache["structure_probs"].astype(np.float32),
            "lines": [(q.tolist(), t, c) for q, t, c in lines], "size": img.image.size}


def _sample(index: int, seed: int, split: str, image, labels: dict, kind: str, shown: str, subject: str) -> dict:
    """A cached sample: the JPEG as stage 1 would read it, its labels and the signals' raw outputs."""
    data = sd.encode_jpeg(image, jpeg_quality(seed, index, split))
    return {"index": index, "jpeg": data, "labels": labels, "kind": kind, "shown": shown, "subject": subject,
            **raw_outputs(data, _STATE["structure"], _STATE["ocr"])}


def _one(job: tuple[int, int, float, str]) -> dict:
    index, seed, procedural, split = job
    r = sd.make_record(_STATE["photos"], index, seed, _STATE["pages"], procedural)
    return _sample(index, seed, split, r["image"], r["labels"], r["kind"], r["shown"], r["subject"])


def incidental_text(image, rng: np.random.Generator, words: tuple[int, int] = (1, 6)):
    """Lettering that is part of the photographed things (a brand on a tank, labels on a shelf, a name on a
    hull): small opaque words warped onto surfaces, lit and blurred with the photo. Real photos are full of
    it, the generator's clean photos are not; without it a head learns "text that is no overlay is a mark"."""
    pool = phrases.LOGO_WORDS + phrases.SIGNS + phrases.POSTERS
    for _ in range(int(rng.integers(*words))):
        word = drawing._phrase(pool, rng)
        colour = drawing._text_colour(rng) if rng.random() < 0.6 else drawing._vivid(rng)
        layer = drawing._text_image(word, drawing._font_path(word, rng, bold=rng.random() < 0.6), 64, drawing._rgba(colour))
        image = scene_text._place_in_scene(image, scene_text._texture(layer, rng), rng, (0.04, 0.2))
    return image


def _incidental(job: tuple[int, int, float, str]) -> dict:
    """A negative: a photo (or collage) with incidental lettering and no mark, labelled as scene text."""
    index, seed, procedural, split = job
    rng = np.random.default_rng([seed, index, 7])
    photos = _STATE["photos"]
    photo = (sd.collage_background(photos, rng) if rng.random() < procedural
             else photos[int(rng.integers(len(photos)))][1])
    image = incidental_text(sd.photo_variant(photo, rng), rng)
    labels = dict.fromkeys(sd.LABELS, 0) | {"scene_text": 1}
    return _sample(index, seed, split, image, labels, "incidental", "incidental", "incidental")


def chunk_digest() -> str:
    """The generator's digest with this module's (it draws the incidental lettering): in every chunk's name."""
    return sd.generator_digest(sys.modules[__name__])


def build(out: Path, split: str, n: int, seed: int, procedural: float, workers: int,
          kind: str = "mixed", extra_photos: Path | None = None) -> list[Path]:
    """Chunks of `CHUNK` samples under `out`; a chunk already there is kept (the run can be resumed).
    `extra_photos`: a folder of more train backgrounds, or the 'unseen' split's only ones (other photos:
    other samples, cached apart)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    extra = None if split == "heldout" else extra_photos
    tag = sd.extra_photos_tag(extra) + "-g" + chunk_digest()
    # the workers' initializer reads the photos; an error there (a missing or empty folder) would make the pool
    # start new workers for ever, so the same read runs here first and fails with its own message
    sd.split_photos(split, extra)
    with Pool(workers, initializer=_init, initargs=(split, extra)) as pool:
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            prefix = (split if kind == "mixed" else f"{kind}-{split}") + tag
            path = out / f"{prefix}-s{seed}-p{procedural}-{start:06d}-{stop:06d}.pkl"
            paths.append(path)
            if path.is_file():
                continue
            t0 = time.time()
            make = _incidental if kind == "incidental" else _one
            rows = pool.map(make, [(i, seed, procedural, split) for i in range(start, stop)], chunksize=4)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(rows))
            tmp.rename(path)
            log.info("%s %d..%d in %.0f s", split, start, stop, time.time() - t0)
    return paths


def load(paths) -> list[dict]:
    rows = []
    for p in paths:
        rows.extend(pickle.loads(Path(p).read_bytes()))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", choices=sd.SPLITS, required=True,
                   help="unseen: over the photos of --extra-photos alone (see detector_factory.structure_data.split_photos)")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--procedural", type=float, default=0.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--kind", choices=["mixed", "incidental"], default="mixed",
                   help="mixed: detector_factory.structure_data's draw; incidental: negatives with lettering on things")
    p.add_argument("--extra-photos", type=Path, default=None, help="a folder of more train backgrounds")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build(a.out, a.split, a.n, a.seed, a.procedural, a.workers, a.kind, a.extra_photos)


if __name__ == "__main__":
    main()
