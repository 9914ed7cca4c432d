"""The end of `make demo`: check that the exported shards read back, train a TOY model a few steps on them,
write one sample image, and rewrite the run's report to show it.

The toy is what fits a laptop without downloads: the `toy` DiT preset in pixel space (no VAE), conditioned by
a randomly initialised stand-in LLM whose tokenizer is trained on the export's captions
(`synthetic.toy_shapes.build_tiny_llm`). A few steps teach it nothing; the sample shows that curated shards flow
through the real trainer and sampler, not what a trained model draws. Everything it writes says so.

    python -m sluice.demo --run runs/demo            # after `sluice curate run ... --until export`
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from schemas.shards import IMAGE_MEMBER, META_MEMBER, split_member
from plumbing import runs

log = logging.getLogger(__name__)

FOLDER = "demo_model"  # under the run; curation/report/shards.py shows it
LABEL = ("TOY MODEL, trained {steps} steps: the `toy` DiT preset in pixel space with a randomly initialised "
         "stand-in text encoder. It learns nothing in so few steps; its sample shows that the curated shards "
         "flow through the real trainer and sampler, not what a trained model draws.")


def check_readers(export_dir: Path, cache_dir: Path) -> dict[str, int]:
    """Read every shard with `webdataset` and with HF `datasets`; both must see every exported sample."""
    import webdataset as wds
    from datasets import load_dataset

    expected = runs.read_manifest(export_dir)["samples"]
    tars = sorted(str(p) for p in (export_dir / "shards").rglob("*.tar"))
    if not tars or not expected:
        raise ValueError(f"{export_dir} holds no samples; the demo needs some kept rows to export")
    n_wds = 0
    samples = wds.WebDataset(tars, shardshuffle=False).decode("pil").to_tuple("__key__", IMAGE_MEMBER, META_MEMBER)
    for key, image, meta in samples:
        if meta["key"] != key or image.size != (meta["width"], meta["height"]):
            raise ValueError(f"webdataset read sample {key} with json key {meta['key']} and size {image.size}; "
                             f"the shards break docs/export-format.md")
        n_wds += 1
    ds = load_dataset("webdataset", data_files={"train": tars}, split="train", cache_dir=str(cache_dir))
    counts = {"webdataset": n_wds, "datasets": len(ds)}
    if set(counts.values()) != {expected}:
        raise ValueError(f"the export's manifest counts {expected} samples but the readers saw {counts}")
    return counts


def captions(export_dir: Path) -> list[str]:
    """Every caption in the shards (for the stand-in tokenizer and the sample's prompt)."""
    import tarfile

    out = []
    for tar in sorted((export_dir / "shards").rglob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf:
                if split_member(m.name)[1] == META_MEMBER:
                    meta = json.loads(tf.extractfile(m).read())
                    out += [t for langs in meta["captions"].values() for t in langs.values() if t]
    return out


def train_config(folder: Path, export_dir: Path, steps: int, batch: int, prompt: str) -> dict:
    """A TrainConfig (as data) for the toy: pixel space, tiny random text encoders, buckets scaled to ~64 px."""
    return {
        "model": {"preset": "toy"},
        "text": {"llm": str(folder / "llm"), "max_length": 64,
                 "glyph": {"t5": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 1, "num_heads": 4}}},
        "data": {"sources": {"demo": {"path": str(export_dir)}}, "batch_size": batch, "scale": 1 / 16,
                 "styles": {"alt": 1.0, "short": 1.0, "long": 1.0, "text_in_image": 1.0}, "shuffle_buffer": 16},
        "vae": {"path": "pixel"},
        "objective": {"ref_tokens": 64},
        "optim": {"lr": 5e-4, "warmup": 0, "ema_decay": 0.9},
        # every log step counts FLOPs once per batch shape, which costs more than a toy step: log twice
        "run": {"out_dir": str(folder / "train"), "steps": steps, "log_every": max(1, steps // 2),
                "sample_prompts": [prompt], "sample_steps": 20, "resume": False},
    }


def train_toy(run_dir: Path, export_dir: Path, steps: int = 20, batch: int = 4, threads: int = 2) -> dict:
    """Train the toy on the export, write <run>/demo_model/{sample.png, pipeline/, _manifest.json}."""
    import torch

    from synthetic.toy_shapes import build_tiny_llm
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    folder = run_dir / FOLDER
    runs.clear(folder)
    folder.mkdir(parents=True)
    torch.set_num_threads(threads)
    texts = captions(export_dir)
    prompt = min(texts, key=lambda t: (len(t) > 60, t)) if texts else "a photo"  # a short real caption
    build_tiny_llm(folder / "llm", corpus=texts or [prompt])
    t0 = time.perf_counter()
    trainer = Trainer(TrainConfig.model_validate(train_config(folder, export_dir, steps, batch, prompt)))
    losses = trainer.run()
    if hasattr(trainer.data, "close"):
        trainer.data.close()
    seconds = time.perf_counter() - t0
    grid = trainer.sample_grid()  # one prompt: one image, at the last batch's bucket size
    shutil.copyfile(grid, folder / "sample.png")
    pipeline = trainer.export()
    if trainer.writer:
        trainer.writer.close()
    return runs.write_manifest(folder, {
        "job": "demo_train", "label": LABEL.format(steps=trainer.step), "steps": trainer.step,
        "batch_size": batch, "train_seconds": round(seconds, 1), "dit_preset": "toy",
        "vae": trainer.vae.kind, "text_encoder": "randomly initialised Qwen3 stand-in (synthetic.toy_shapes)",
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4), "prompt": prompt,
        "sample": "sample.png", "sample_size": list(trainer.last_size), "pipeline": str(pipeline),
        "export": str(export_dir), "export_written_at": runs.read_manifest(export_dir)["written_at"]})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="the run folder `sluice curate run` exported")
    ap.add_argument("--export", type=Path, default=None, help="its export folder; default <run>/export")
    ap.add_argument("--steps", type=int, default=20, help="training steps of the toy (default 20)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--force", action="store_true", help="train again although <run>/demo_model is done")
    a = ap.parse_args(argv)
    from plumbing import log as logsetup

    logsetup.setup()
    run_dir = runs.local_path(a.run)
    export_dir = runs.local_path(a.export) if a.export else runs.stage_dir(run_dir, "export")
    if not runs.is_current(export_dir):
        raise SystemExit(f"error: {export_dir} is not a finished, current export; run "
                         f"`sluice curate run --input ... -o {a.run} --until export` first")
    with tempfile.TemporaryDirectory(prefix="sluice_demo_hf_") as cache:
        counts = check_readers(export_dir, Path(cache))
    print(f"shards: {counts['webdataset']} samples read by webdataset, {counts['datasets']} by HF datasets")
    folder = run_dir / FOLDER
    done = runs.read_manifest(folder) if runs.is_current(folder) else {}
    exported_at = runs.read_manifest(export_dir)["written_at"]
    same = done.get("steps") == a.steps and done.get("export_written_at") == exported_at
    if same and not a.force:
        log.info("%s is done on this export; skipping (--force to train again)", folder)
        m = done
    else:
        m = train_toy(run_dir, export_dir, a.steps, a.batch)
    from curation.report.funnel import write_report

    print(m["label"])
    print(f"sample: {folder / m['sample']}  (prompt: {m['prompt']})")
    print(f"report: {write_report(run_dir)}")


if __name__ == "__main__":
    main()
