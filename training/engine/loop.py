"""One training loop for every stage: single process on CPU, or `torchrun` over many GPUs with FSDP2.

Per step: a bucketed batch -> VAE latents (optionally cached) -> text/glyph conditioning with CFG dropout (and
the aesthetic labels of a VMix stage) -> the weighted sum of the stage's objective terms (training/objectives)
-> backward -> clip -> AdamW -> EMA. What trains is the stage's choice (training/engine/stage.py); the loop sees
only parameters that require gradients. Logged: loss, each term's metrics, loss per timestep bucket,
samples/s, TFLOP/s and MFU from FLOPs counted once per batch shape, all to TensorBoard and the log.
Checkpoints resume exactly (see engine/checkpoint.py). All randomness of a step comes from one generator
saved in checkpoints.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from training.config import TrainConfig
from training.engine.parallel import attention_kernel

log = logging.getLogger(__name__)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world, device); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank()
    else:
        rank = 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, world, device


def build_models(cfg: TrainConfig, channels: int):
    """(DiT, conditioner): from model.init_from (a pipeline, or a bare DiT with a new conditioner) or new."""
    from training.config import read_pipeline_meta
    from training.models.dit import DiT, preset
    from training.pipeline import build_conditioner, load_trained

    from training.models.dit import as_edit_model, as_refiner

    init = cfg.model.init_from
    if init and read_pipeline_meta(init) is not None:
        dit, cond = load_trained(init, cfg.text)
    else:
        dit = DiT.from_pretrained(init) if init else preset(cfg.model.preset, in_channels=channels,
                                                            **dict(cfg.model.overrides))
        cond = build_conditioner(cfg.text, dit.config.text_dim)
    if "refine" in cfg.objective.terms:  # a zero-initialised condition path: the refiner starts as its base
        dit = as_refiner(dit)
    return (as_edit_model(dit) if cfg.model.edit else dit), cond


def build_data(cfg: TrainConfig, multiple: int, rank: int, world: int, pin_memory: bool = False):
    """The batch stream: read in this process (data.workers=0) or by DataLoader worker processes."""
    from functools import partial

    from training.data.buckets import BucketBatches
    from training.data.filters import source_filter
    from training.data.loader import WorkerBatches
    from training.data.shards import list_shards

    d = cfg.data
    sources = {n: (list_shards(s.path), s.weight) for n, s in d.sources.items()}
    filters = {n: f for n, f in ((n, source_filter(s)) for n, s in d.sources.items()) if f.active}
    degrade = cfg.objective.refiner.degrade if "refine" in cfg.objective.terms else None  # a refiner's conditions
    make = partial(BucketBatches, sources, d.batch_size, cfg.run.seed, dict(d.styles), dict(d.langs), d.resolution,
                   d.scale, multiple, rank, world, shuffle_buffer=d.shuffle_buffer, filters=filters, degrade=degrade)
    if not d.workers:
        return make()
    return WorkerBatches(make, d.workers, d.prefetch_factor, pin_memory)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        from training.config import resolve_base
        from training.engine.ema import EMA
        from training.engine.stage import Reference, apply_stage, needs_reference, trainable_counts
        from training.models.vae import LatentCache, load_vae

        cfg = resolve_base(cfg)
        self.cfg, self.out = cfg, Path(cfg.run.out_dir)
        self.rank, self.world, self.device = setup_distributed()
        torch.manual_seed(cfg.run.seed)
        self.vae = load_vae(cfg.vae.path).to(self.device)
        self.cache = LatentCache(cfg.vae.cache_dir)
        self.dit, self.cond = build_models(cfg, self.vae.channels)
        self.vmix = apply_stage(cfg, self.dit, self.cond)
        nets = {"dit": self.dit, "cond": self.cond, **({"vmix": self.vmix} if self.vmix is not None else {})}
        self.nets = nn.ModuleDict(nets).to(self.device)
        self.reference = Reference(cfg, self.dit) if needs_reference(cfg) else None
        from training.objectives import build_term

        self.terms = {name: build_term(name, cfg) for name in cfg.objective.terms}
        log.info("stage %s trains %s", cfg.stage.name,
                 {k: f"{t:,} of {n:,}" for k, (t, n) in trainable_counts(self.nets).items()})
        self.distributed = self._parallelize()
        if self.distributed and (cfg.stage.base != "full" or self.vmix is not None):
            raise ValueError("LoRA and VMix stages run in one process for now (their adapter export does not "
                             "gather FSDP shards); set run.fsdp=off and launch without torchrun")
        self.data = build_data(cfg, self.vae.factor * self.dit.config.patch_size, self.rank, self.world,
                               pin_memory=self.device.type == "cuda")
        params = [p for p in self.nets.parameters() if p.requires_grad]
        o = cfg.optim
        self.opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.ema = EMA(self.nets, o.ema_decay)
        self.gen = torch.Generator().manual_seed(cfg.run.seed * 1000 + self.rank)
        self.step, self.flops = 0, {}
        self.last_size = (16 * self.vae.factor * self.dit.config.patch_size,) * 2  # (W, H) of the latest batch
        self._resume()
        self.writer = self._writer()

    def _parallelize(self) -> bool:
        from training.engine import parallel

        run = self.cfg.run
        if run.activation_checkpointing:
            parallel.apply_activation_checkpointing(self.dit)
        if run.compile:
            parallel.apply_compile(self.dit)
        shard = run.fsdp == "on" or (run.fsdp == "auto" and self.world > 1)
        if shard:
            parallel.apply_fsdp(self.dit, self.cond, bf16=run.precision == "bf16")
        return shard

    def _writer(self):
        if self.rank:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tb"))

    def _resume(self) -> None:
        from training.engine import checkpoint

        last = checkpoint.latest(self.out / "checkpoints") if self.cfg.run.resume else None
        if last is not None:
            self.step, data_state = checkpoint.load(last, self.nets, self.opt, self.ema, self.gen, self.distributed,
                                                    self.terms)
            self.data.load_state_dict(data_state)
            log.info("resumed from %s at step %d", last, self.step)

    def term_states(self) -> dict:
        """State of the objective terms that keep one across steps (saved in checkpoints for exact resume)."""
        return {n: t.state_dict() for n, t in self.terms.items() if hasattr(t, "state_dict")}

    def lr_at(self, step: int) -> float:
        w = self.cfg.optim.warmup
        return self.cfg.optim.lr * (min(1.0, (step + 1) / w) if w else 1.0)

    def autocast(self):
        on = self.cfg.run.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on)

    def conditioning(self, batch: dict) -> tuple:
        """(text, mask, pooled, aesthetic choices or None) for the batch, with CFG dropout from the generator."""
        text, mask, pooled = self.cond(batch["captions"], generator=self.gen)
        choice = None
        if self.vmix is not None:
            from training.models.adapters import UNSET

            choice = self.vmix.choose(batch["aesthetics"])
            drop = torch.rand(len(choice), generator=self.gen) < self.cfg.stage.vmix.drop
            choice[drop.to(choice.device)] = UNSET
        return text, mask, pooled, choice

    def velocity_fns(self, cond: tuple, source: tuple = (None, None)):
        """(velocity, reference velocity or None) of the model under `cond` and an edit pair's source
        (latents, rows that have one); see objectives/base.py."""
        cond = (*cond, *source)

        def pick(rows):
            return cond if rows is None else tuple(None if c is None else c[rows] for c in cond)

        def velocity(x, t, rows=None):
            text, mask, pooled, choice, src, src_rows = pick(rows)
            adapter = None if choice is None else self.vmix(choice)
            return self.dit(x, t, text, mask, pooled, adapter, src, src_rows)

        if self.reference is None:
            return velocity, None

        def reference(x, t, rows=None):
            text, mask, pooled, _, src, src_rows = pick(rows)
            with self.reference.context(self.dit):
                return self.reference.model(self.dit)(x, t, text, mask, pooled, None, src, src_rows)

        return velocity, reference

    def guided_fn(self, batch: dict):
        """(x, t, cfg_scale, rows=None) -> the trained model's velocity as `sluice generate` runs it (no CFG
        dropout; the unconditional branch has no aesthetic part). Conditioning is computed on first use only."""
        memo = {}

        def guided(x, t, cfg_scale=1.0, rows=None):
            if not memo:
                memo["cond"], memo["null"] = self.cond(batch["captions"]), self.cond.null(len(batch["captions"]))
                aes = batch.get("aesthetics")
                memo["choice"] = self.vmix.choose(aes) if self.vmix is not None and aes and any(aes) else None
            pick = (lambda c: c) if rows is None else (lambda c: tuple(v[rows] for v in c))
            choice = memo["choice"] if rows is None or memo["choice"] is None else memo["choice"][rows]
            v = self.dit(x, t, *pick(memo["cond"]), None if choice is None else self.vmix(choice))
            if cfg_scale == 1.0:
                return v
            vu = self.dit(x, t, *pick(memo["null"]))
            return vu + cfg_scale * (v - vu)

        return guided

    def null_reference(self):
        """The reference velocity under the empty prompt (a guided teacher's unconditional branch), or None."""
        if self.reference is None:
            return None

        def reference_null(x, t, rows=None):
            with torch.no_grad():
                null = self.cond.null(x.shape[0])
                with self.reference.context(self.dit):
                    return self.reference.model(self.dit)(x, t, *null)

        return reference_null

    def sampler(self) -> dict | None:
        """How the exported model samples when the stage changed that (a TSCD student), for pipeline.json."""
        from training.objectives.consistency import student_sampler

        return student_sampler(self.cfg, self.step)

    def loss(self, batch: dict):
        """(total loss, per-sample losses or None, their t or None, metrics of every term) for one batch."""
        from training.objectives.base import StepInputs

        ids, size = batch["ids"], batch["size"]
        pixels = batch["pixels"].to(self.device, non_blocking=True)  # pinned when read by workers on CUDA
        x0 = self.cache.encode(self.vae, pixels, ids, size)
        x0_lose = has_lose = None
        if "pixels_lose" in batch:
            x0_lose = self.cache.encode(self.vae, batch["pixels_lose"].to(self.device), [f"{i}:lose" for i in ids],
                                        size)
            has_lose = batch["has_lose"].to(self.device)
        source = (None, None)
        if "pixels_src" in batch:  # an edit pair: the image to edit conditions the model
            source = (self.cache.encode(self.vae, batch["pixels_src"].to(self.device), [f"{i}:src" for i in ids],
                                        size), batch["has_src"].to(self.device))
        with self.autocast(), attention_kernel(self.cfg.run.attention):
            velocity, reference = self.velocity_fns(self.conditioning(batch), source)
            inp = StepInputs(x0, velocity, reference, self.gen, self.cfg.objective, self.dit.config.patch_size,
                             x0_lose, has_lose, list(batch["captions"]), list(batch.get("aesthetics") or []),
                             self.vae.decode, guided=self.guided_fn(batch), x0_src=source[0], has_src=source[1])
            inp.reference_null, inp.step = self.null_reference(), self.step
            total, metrics, losses, t = 0.0, {}, None, None
            for name, weight in self.cfg.objective.terms.items():
                out = self.terms[name](inp)
                total = total + weight * out.loss
                metrics.update(out.metrics)
                if losses is None and out.losses is not None:
                    losses, t = out.losses, out.t
        return total, losses, t, metrics

    def train_step(self, batch: dict) -> dict:
        self.nets.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        loss, losses, t, metrics = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for p in self.nets.parameters() if p.requires_grad],
                                               self.cfg.optim.grad_clip)
        self.opt.step()
        self.ema.update(self.nets)
        self.step += 1
        return {"loss": loss.item(), "grad_norm": gnorm.item(), "losses": None if losses is None else losses.detach(),
                "t": t, "terms": metrics}

    def step_flops(self, batch: dict) -> int:
        """FLOPs of the DiT's forward + backward for this batch shape, counted once per shape."""
        from training.engine.metrics import count_flops
        from training.objectives.flow_matching import per_sample_loss

        key = (tuple(batch["pixels"].shape), len(batch["captions"]))
        if key not in self.flops:
            b, _, h, w = batch["pixels"].shape
            f, c = self.vae.factor, self.vae.channels
            x = torch.randn(b, c, h // f, w // f, device=self.device)
            with torch.no_grad():
                text, mask, pooled = self.cond(batch["captions"])

            def fwd_bwd():
                with self.autocast():
                    out = self.dit(x, torch.rand(b, device=self.device), text, mask, pooled)
                per_sample_loss(out, x, x).mean().backward()

            self.flops[key] = count_flops(fwd_bwd)
            self.opt.zero_grad(set_to_none=True)
        return self.flops[key]

    def run(self, steps: int | None = None) -> list[float]:
        """Train to `steps` (default run.steps) total steps; returns this call's losses."""
        from training.engine.checkpoint import save

        steps, run = steps or self.cfg.run.steps, self.cfg.run
        losses, it, tick = [], iter(self.data), time.perf_counter()
        while self.step < steps:
            batch = next(it)
            self.last_size = batch["size"]
            flops = self.step_flops(batch) if self.step % max(run.log_every, 1) == 0 else None
            t0 = time.perf_counter()
            m = self.train_step(batch)
            losses.append(m["loss"])
            if flops is not None:
                self.log(m, batch, flops, time.perf_counter() - t0)
            if run.ckpt_every and self.step % run.ckpt_every == 0 and self.step < steps:
                save(self.out / "checkpoints", self.step, self.nets, self.opt, self.ema, self.data.state_dict(),
                     self.gen, self.distributed, self.term_states())
            if run.sample_every and self.step % run.sample_every == 0:
                self.sample_grid()
        save(self.out / "checkpoints", self.step, self.nets, self.opt, self.ema, self.data.state_dict(), self.gen,
             self.distributed, self.term_states())
        log.info("trained to step %d in %.1fs", self.step, time.perf_counter() - tick)
        return losses

    def log(self, m: dict, batch: dict, flops: int, seconds: float) -> None:
        from training.engine.metrics import mfu, peak_tflops
        from training.objectives.flow_matching import bucket_losses

        n = len(batch["captions"])
        scalars = {"loss": m["loss"], "grad_norm": m["grad_norm"], "samples_per_s": n / seconds,
                   "tflops": flops / seconds / 1e12, "lr": self.lr_at(self.step - 1)}
        u = mfu(flops, seconds, peak_tflops(self.device, self.cfg.run.peak_tflops))
        if u is not None:
            scalars["mfu"] = u
        scalars.update({f"terms/{k}": v for k, v in m["terms"].items()})
        if m["losses"] is not None:
            for name, (total, count) in bucket_losses(m["t"], m["losses"], self.cfg.objective.t_buckets).items():
                scalars[f"loss_by_t/{name}"] = total / count
        log.info("step %d %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if "/" not in k))
        if self.writer:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.step)

    def export_adapter(self) -> Path:
        from training.models.adapters import save_adapter

        stage = self.cfg.stage
        with self.ema.applied(self.nets):
            cond = self.cond.saved_state() if stage.conditioner == "train" and stage.base != "full" else None
            return save_adapter(self.out / "adapter", stage, self.dit, self.vmix, cond, self.cfg.model.init_from,
                                sampler=self.sampler())

    def pipeline(self):
        from training.pipeline import Pipeline

        c = self.cfg
        return Pipeline(self.dit, self.cond, self.vae, c.objective, c.text, c.vae, self.vmix, sampler=self.sampler(),
                        quant=c.stage.qat)

    def sample_grid(self, size: tuple[int, int] | None = None) -> Path | None:
        """Samples of run.sample_prompts with the EMA weights, as one PNG row (and in TensorBoard)."""
        import numpy as np
        from PIL import Image

        if self.rank or self.distributed:
            return None  # sampling a sharded model needs every rank; left to `sluice generate` on the export
        run, (w, h) = self.cfg.run, size or self.last_size
        prompts, aesthetics = list(run.sample_prompts), None
        if self.vmix is not None and run.sample_aesthetics:  # every prompt under every label, side by side
            pairs = [(p, a) for a in run.sample_aesthetics for p in run.sample_prompts]
            prompts, aesthetics = [p for p, _ in pairs], [a for _, a in pairs]
        with self.ema.applied(self.nets):
            pipe = self.pipeline()  # a TSCD student samples in its own steps, without CFG
            steps, cfg = (run.sample_steps, run.cfg_scale) if pipe.sampler is None else (None, None)
            images = pipe(prompts, w, h, steps, cfg, run.seed, aesthetics)
        grid = Image.fromarray(np.concatenate([np.asarray(im) for im in images], axis=1))
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        if self.writer:
            self.writer.add_image("samples", np.asarray(grid), self.step, dataformats="HWC")
        return path

    def export(self) -> Path:
        """The EMA weights for `sluice generate`: a pipeline folder when the base trained (a collective call
        under FSDP), and an adapter folder (LoRA, VMix, a trained conditioner) when the stage has one; returns
        the adapter folder when the base stayed frozen, else the pipeline."""
        stage = self.cfg.stage
        adapter = None
        if stage.base == "lora" or self.vmix is not None:
            adapter = self.export_adapter()
            if stage.base != "full":
                return adapter
        if not self.distributed:
            with self.ema.applied(self.nets):
                return self.pipeline().save(self.out / "pipeline")
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        from training.engine.ema import clean
        from training.models.dit import DiT
        from training.pipeline import Pipeline, build_conditioner

        with self.ema.applied(self.nets):  # every rank gathers; rank 0 writes
            full = get_model_state_dict(self.nets, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank:
            return self.out / "pipeline"
        dit = DiT.from_config(self.dit.config)
        cond = build_conditioner(self.cfg.text, dit.config.text_dim)
        nn.ModuleDict({"dit": dit, "cond": cond}).load_state_dict({clean(k): v for k, v in full.items()}, strict=False)
        c = self.cfg
        return Pipeline(dit, cond, self.vae.cpu(), c.objective, c.text, c.vae, sampler=self.sampler(),
                        quant=c.stage.qat).save(self.out / "pipeline")


def train(cfg: TrainConfig) -> Path:
    trainer = Trainer(cfg)
    trainer.run()
    if hasattr(trainer.data, "close"):
        trainer.data.close()  # the DataLoader workers, before sampling and export
    trainer.sample_grid()  # rank 0 of a single-process run only
    path = trainer.export()
    if trainer.writer:
        trainer.writer.close()
    return path
