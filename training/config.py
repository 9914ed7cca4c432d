"""Training config as validated data (frozen pydantic models; YAML files are instances, `--set a.b=c` overrides).

One config shape serves every stage: a stage is a YAML file, not a copied script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from tools.config import Frozen, apply_override, read_yaml, validate


class ModelConfig(Frozen):
    preset: str = "debug"  # training/models/dit.py PRESETS: debug, toy, 2b, 8b
    overrides: dict[str, float | int | str] = Field(default_factory=dict)  # DiT constructor args over the preset
    init_from: str | None = None  # a saved DiT folder (diffusers format) to start from


class GlyphConfig(Frozen):
    enabled: bool = True
    path: str | None = None  # a ByT5 / T5 encoder folder or hub id; None builds a random T5 of shape `t5`
    t5: dict[str, int | str] = Field(default_factory=lambda: dict(d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                                                  num_heads=4))
    max_bytes: int = 64
    freeze: bool = True


class TextConfig(Frozen):
    llm: str  # a causal LM folder or hub id, e.g. Qwen/Qwen2.5-1.5B; tokenizer from the same place
    hidden_layer: int = -2
    max_length: int = 128
    refiner_layers: int = 1
    refiner_heads: int = 4
    freeze_llm: bool = True
    prefix: str = ""  # an optional system prompt before every caption
    glyph: GlyphConfig = GlyphConfig()
    drop_text: float = Field(0.1, ge=0, le=1)  # CFG dropout: caption -> empty prompt
    drop_glyph: float = Field(0.1, ge=0, le=1)  # CFG dropout: glyph text -> none


class SourceConfig(Frozen):
    path: str  # an export folder, a .tar, or a glob of tars
    weight: float = Field(1.0, gt=0)


class DataConfig(Frozen):
    sources: dict[str, SourceConfig]
    batch_size: int = Field(8, ge=1)
    styles: dict[str, float] = Field(default_factory=lambda: {"short": 1.0, "long": 1.0, "alt": 0.5,
                                                              "text_in_image": 1.0})
    langs: dict[str, float] = Field(default_factory=lambda: {"zh": 1.0, "en": 1.0})
    resolution: str | None = None  # which of the export's aspect_buckets to use; None: the primary one
    scale: float = Field(1.0, gt=0)  # train at bucket size x scale (e.g. 0.25 for 256-px from 1024 buckets)
    # DataLoader worker processes per rank that read and decode (each its own shards); 0 = in the training
    # process. A checkpoint resumes only with the data.workers it was written with.
    workers: int = Field(0, ge=0)
    prefetch_factor: int = Field(2, ge=1)  # batches each worker reads ahead (data.workers > 0)
    # Samples held to shuffle the key-ordered, one-bucket-per-shard stream, so that a batch is not the same
    # samples every epoch. Costs ~K JPEGs of memory per worker (~50 MB at 256 x 1024 px); a resume re-reads the
    # shards they came from. 0 = tar order. Keep it well below one worker's samples per epoch.
    shuffle_buffer: int = Field(256, ge=0)

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("give at least one source, e.g. data.sources.main.path=runs/demo/export")
        return v


class VAEConfig(Frozen):
    path: str = "pixel"  # an AutoencoderKL folder or hub id; "pixel" = identity (toy/tests only)
    cache_dir: str | None = None  # latents cached here when set


class ObjectiveConfig(Frozen):
    timesteps: Literal["logit_normal", "uniform", "mode"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    base_shift: float = Field(1.0, gt=0)  # shift at ref_tokens; grows as sqrt(tokens / ref_tokens)
    ref_tokens: int = Field(256, ge=1)
    t_buckets: int = Field(4, ge=1)


class OptimConfig(Frozen):
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    ema_decay: float = Field(0.999, ge=0, lt=1)


class RunConfig(Frozen):
    out_dir: str = "runs/train"
    steps: int = Field(100, ge=1)
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 0  # 0: only at the end
    sample_every: int = 0  # 0: only at the end
    sample_prompts: list[str] = Field(default_factory=lambda: ["一个红色的圆", "a red circle"])
    sample_steps: int = 20
    cfg_scale: float = 3.0
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    activation_checkpointing: bool = False
    attention: Literal["auto", "cudnn", "flash", "efficient", "math"] = "auto"  # kernel tried first (engine/parallel.py)
    fsdp: Literal["auto", "off", "on"] = "auto"  # auto: FSDP2 when launched with WORLD_SIZE > 1
    peak_tflops: float | None = None  # for MFU; None: from the GPU's name, none on CPU
    resume: bool = True  # continue from the newest checkpoint in out_dir


class TrainConfig(Frozen):
    model: ModelConfig = ModelConfig()
    text: TextConfig
    data: DataConfig
    vae: VAEConfig = VAEConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()


def load_train_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    data = read_yaml(path) if path else {}
    for o in overrides:
        data = apply_override(data, o)
    return validate(TrainConfig, data, where=f"training config ({path or '--set only'})")
