"""One training loop for every stage: single process on CPU, or `torchrun` over many GPUs with FSDP2.

Per step: a bucketed batch -> VAE latents (optionally cached) -> text/glyph conditioning with CFG dropout ->
rectified-flow loss -> backward -> clip -> AdamW -> EMA. Logged: loss, loss per timestep bucket, samples/s,
TFLOP/s and MFU from FLOPs counted once per batch shape, all to TensorBoard and the log. Checkpoints resume
exactly (see engine/checkpoint.py). All randomness of a step comes from one generator saved in checkpoints.
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


def build_dit(cfg: TrainConfig, channels: int):
    from training.models.dit import DiT, preset

    if cfg.model.init_from:
        return DiT.from_pretrained(cfg.model.init_from)
    return preset(cfg.model.preset, in_channels=channels, **dict(cfg.model.overrides))


def build_data(cfg: TrainConfig, multiple: int, rank: int, world: int, pin_memory: bool = False):
    """The batch stream: read in this process (data.workers=0) or by DataLoader worker processes."""
    from functools import partial

    from training.data.buckets import BucketBatches
    from training.data.loader import WorkerBatches
    from training.data.shards import list_shards

    d = cfg.data
    sources = {n: (list_shards(s.path), s.weight) for n, s in d.sources.items()}
    make = partial(BucketBatches, sources, d.batch_size, cfg.run.seed, dict(d.styles), dict(d.langs), d.resolution,
                   d.scale, multiple, rank, world, shuffle_buffer=d.shuffle_buffer)
    if not d.workers:
        return make()
    return WorkerBatches(make, d.workers, d.prefetch_factor, pin_memory)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        from training.engine.ema import EMA
        from training.models.vae import LatentCache, load_vae
        from training.pipeline import build_conditioner

        self.cfg, self.out = cfg, Path(cfg.run.out_dir)
        self.rank, self.world, self.device = setup_distributed()
        torch.manual_seed(cfg.run.seed)
        self.vae = load_vae(cfg.vae.path).to(self.device)
        self.cache = LatentCache(cfg.vae.cache_dir)
        self.dit = build_dit(cfg, self.vae.channels)
        self.cond = build_conditioner(cfg.text, self.dit.config.text_dim)
        self.nets = nn.ModuleDict({"dit": self.dit, "cond": self.cond}).to(self.device)
        self.distributed = self._parallelize()
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
            self.step, data_state = checkpoint.load(last, self.nets, self.opt, self.ema, self.gen, self.distributed)
            self.data.load_state_dict(data_state)
            log.info("resumed from %s at step %d", last, self.step)

    def lr_at(self, step: int) -> float:
        w = self.cfg.optim.warmup
        return self.cfg.optim.lr * (min(1.0, (step + 1) / w) if w else 1.0)

    def autocast(self):
        on = self.cfg.run.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on)

    def loss(self, batch: dict):
        """(mean loss, per-sample losses, t) for one batch."""
        from training.objectives.flow_matching import training_loss

        obj = self.cfg.objective
        pixels = batch["pixels"].to(self.device, non_blocking=True)  # pinned when read by workers on CUDA
        x0 = self.cache.encode(self.vae, pixels, batch["ids"], batch["size"])
        with self.autocast(), attention_kernel(self.cfg.run.attention):
            text, mask, pooled = self.cond(batch["captions"], generator=self.gen)
            return training_loss(lambda x, t: self.dit(x, t, text, mask, pooled), x0, self.gen, obj.timesteps,
                                 obj.base_shift, obj.ref_tokens, self.dit.config.patch_size, mean=obj.logit_mean,
                                 std=obj.logit_std)

    def train_step(self, batch: dict) -> dict:
        self.nets.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        loss, losses, t = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for p in self.nets.parameters() if p.requires_grad],
                                               self.cfg.optim.grad_clip)
        self.opt.step()
        self.ema.update(self.nets)
        self.step += 1
        return {"loss": loss.item(), "grad_norm": gnorm.item(), "losses": losses.detach(), "t": t}

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
                     self.gen, self.distributed)
            if run.sample_every and self.step % run.sample_every == 0:
                self.sample_grid()
        save(self.out / "checkpoints", self.step, self.nets, self.opt, self.ema, self.data.state_dict(), self.gen,
             self.distributed)
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
        for name, (total, count) in bucket_losses(m["t"], m["losses"], self.cfg.objective.t_buckets).items():
            scalars[f"loss_by_t/{name}"] = total / count
        log.info("step %d %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if "/" not in k))
        if self.writer:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.step)

    def pipeline(self):
        from training.pipeline import Pipeline

        c = self.cfg
        return Pipeline(self.dit, self.cond, self.vae, c.objective, c.text, c.vae)

    def sample_grid(self, size: tuple[int, int] | None = None) -> Path | None:
        """Samples of run.sample_prompts with the EMA weights, as one PNG row (and in TensorBoard)."""
        import numpy as np
        from PIL import Image

        if self.rank or self.distributed:
            return None  # sampling a sharded model needs every rank; left to `sluice generate` on the export
        run, (w, h) = self.cfg.run, size or self.last_size
        with self.ema.applied(self.nets):
            images = self.pipeline()(list(run.sample_prompts), w, h, run.sample_steps, run.cfg_scale, run.seed)
        grid = Image.fromarray(np.concatenate([np.asarray(im) for im in images], axis=1))
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        if self.writer:
            self.writer.add_image("samples", np.asarray(grid), self.step, dataformats="HWC")
        return path

    def export(self) -> Path:
        """The EMA weights as a pipeline folder for `sluice generate` (a collective call under FSDP)."""
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
        return Pipeline(dit, cond, self.vae.cpu(), c.objective, c.text, c.vae).save(self.out / "pipeline")


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
