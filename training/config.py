"""Training config as validated data (frozen pydantic models; YAML files are instances, `--set a.b=c` overrides).

One config shape serves every stage: a stage is a YAML file, not a copied script. What differs between
pre-training, continue training (CT) and SFT is data (sources, filters, weights), the objective's terms
(`objective.terms`) and what trains (`stage`: the base in full, LoRA or frozen; the conditioner; a VMix adapter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from plumbing.config import Frozen, apply_override, read_yaml, validate
from training.data.degrade import DegradeConfig
from training.rewards.config import FeedbackConfig


class ModelConfig(Frozen):
    preset: str = "debug"  # training/models/dit.py PRESETS: debug, toy, 2b, 8b
    overrides: dict[str, float | int | str] = Field(default_factory=dict)  # DiT constructor args over the preset
    # A pipeline folder written by `sluice train` (DiT, trained conditioner, text/VAE config) or a bare DiT folder
    # (diffusers format) to start from. A pipeline also supplies `text` and `vae` when the config leaves them out.
    init_from: str | None = None
    # An adapter folder (LoRA/VMix) written by an earlier stage over the same base: this stage goes on training
    # it (e.g. SFT round 2, with model-generated negatives, from round 1's adapter). Its shape must match `stage`.
    adapter_from: str | None = None
    # Make the DiT an instruction-editing model (SeedEdit): a source image read through a zero-gated path in every
    # dual-stream block, so the stage starts exactly at the base (training/models/dit.py `as_edit_model`).
    edit: bool = False


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


class LabelSelect(Frozen):
    """Keep the samples whose clean label for `task` (the majority where annotators disagree) is one of `keep`."""

    path: str  # a `labels` table (Parquet file or folder) pulled from Label Studio by `sluice annotate`
    task: str = "showcase"
    keep: list[str] = Field(min_length=1)


class SourceConfig(Frozen):
    path: str  # an export folder, a .tar, or a glob of tars
    weight: float = Field(1.0, gt=0)
    # Filters over each sample's json; a sample that fails one is passed over (and counted), so `weight` is the
    # share of the filtered stream. Signals are the export's `signals` (docs/export-format.md).
    min_signals: dict[str, float] = Field(default_factory=dict)  # e.g. {aesthetic: 5.5}: signal >= value
    max_signals: dict[str, float] = Field(default_factory=dict)  # e.g. {q_flat_frac: 0.2}: signal <= value
    signal_in: dict[str, list[str]] = Field(default_factory=dict)  # e.g. {tier: [A, B]}: signal is one of them
    labels: LabelSelect | None = None  # human-selected: only samples labelled so in Label Studio


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


class DPOConfig(Frozen):
    # Diffusion-DPO's beta: how far from the reference the preference may pull (larger: stronger, less
    # anchored). On a per-element mean squared velocity error; SD used 5000 on eps-MSE.
    beta: float = Field(1000.0, gt=0)


class TSCDPhase(Frozen):
    segments: int = Field(ge=1)  # k: the solver grid from t=1 to 0 split into k segments
    steps: int = Field(ge=1)  # training steps of this phase; the last phase goes on to run.steps


class TSCDConfig(Frozen):
    """Trajectory-segmented consistency distillation (Hyper-SD; training/objectives/consistency.py)."""

    # k lowers phase by phase (8 -> 4 -> 2 -> 1), each going on from the previous one's weights: a student
    # exported after the k-segment phase samples in k steps
    schedule: list[TSCDPhase] = Field(default_factory=lambda: [TSCDPhase(segments=k, steps=1000) for k in (8, 4, 2, 1)],
                                      min_length=1)
    # the teacher's Euler grid, shifted as the sampler shifts it; segment boundaries lie on it, so every k divides it
    solver_steps: int = Field(48, ge=1)
    cfg_scale: float = Field(3.0, ge=1)  # the teacher's CFG, distilled into the student (which samples without)
    loss: Literal["l2", "huber"] = "l2"
    huber_c: float = Field(0.001, gt=0)  # huber: sqrt(d^2 + c^2) - c

    @model_validator(mode="after")
    def _phases(self):
        ks = [p.segments for p in self.schedule]
        if any(a <= b for a, b in zip(ks, ks[1:])):
            raise ValueError(f"schedule segments {ks} must decrease phase by phase, e.g. 8 -> 4 -> 2 -> 1")
        bad = [k for k in ks if self.solver_steps % k]
        if bad:
            raise ValueError(f"solver_steps={self.solver_steps} is not divisible by segments {bad}: segment "
                             f"boundaries must lie on the solver grid; use e.g. solver_steps=48 for 8, 4, 2, 1")
        return self


class FeatureNetConfig(Frozen):
    """A frozen network for an identity-preservation term, from a file the user gives: a TorchScript archive
    (`torch.jit.save`) or an exported program (`torch.export.save`, .pt2, exported with a free batch dimension),
    taking pixels (B, 3, H, W) in [-1, 1] and returning features (a tensor or a list of them)."""

    model: str
    t_max: float = Field(0.6, gt=0, le=1)  # the term's timesteps are drawn below this: x0 estimates are sharper


class RefinerConfig(Frozen):
    """A refiner (the `refine` term, training/objectives/refine.py): from the base output upsampled by
    `degrade.scale` to a refined image, over the low-noise end of the flow only (SDXL's refiner)."""

    # training t is drawn in [0, t_max]; sampling starts there, from the condition noised to t_max. 0.35: SDXL's
    # refiner takes the first 200 of 1000 noise levels, whose noise-to-signal ratio is that of t = 0.36 here
    t_max: float = Field(0.35, gt=0, le=1)
    # training t is drawn at or above t_min: the sampler evaluates the model at t_max * k / steps (k = steps..1)
    # only, so t_min = t_max / steps spends nothing below its last step, where x_t all but shows the answer and
    # the model learns to copy it (a copy that leaks noise at t_max); 0 serves any number of steps; t_min = t_max
    # trains the one-step sampler only (its estimate of the clean image's mean, best for PSNR)
    t_min: float = Field(0.0, ge=0, le=1)
    steps: int = Field(4, ge=1)  # the sampler's default Euler steps from t_max to 0
    # What the DiT's output means. "velocity": the flow's velocity, as the base's: the refiner starts exactly at
    # its base. "residual": the clean image minus the condition, v = (x_t - cond - out) / t: a refiner trained
    # from scratch (its DiT outputs 0 at init) then starts as the plain upsampler, and the noise it is handed
    # passes through exactly instead of being relearned (use it without a base to start from).
    predict: Literal["velocity", "residual"] = "velocity"
    # how the per-sample losses weigh t: "velocity", rectified flow's own; or "x0", the squared error of the clean
    # estimate x_t - t v (the velocity's x t^2): detail the condition cannot tell, amplified by 1/t in the
    # velocity target, then no longer dominates the gradient at low t, where the sampler spends little
    loss: Literal["velocity", "x0"] = "velocity"
    # The training path from the clean image x0 (t = 0) to t_max. "flow": the base's, x_t = (1 - t) x0 + t eps; the
    # sampler, though, starts from the condition noised, so at t_max training shows the model 0.65 x0 (at 0.35)
    # where sampling shows it 0.65 cond, and a model that learns to read the answer off x_t finds none there.
    # "bridge" (ResShift's, Yue et al. 2023): x_t = x0 + (t / t_max) (x_start - x0) with x_start = (1 - t_max) cond
    # + t_max eps, the sampler's own start, so training and sampling see the same x_t at every step; the noise
    # level at t stays t. Velocity and residual keep their meaning (x_t - x0 = t v).
    path: Literal["flow", "bridge"] = "flow"
    degrade: DegradeConfig = DegradeConfig()  # how clean images become training conditions

    @model_validator(mode="after")
    def _residual_in_x0(self):
        if self.t_min > self.t_max:
            raise ValueError(f"objective.refiner.t_min={self.t_min} must not exceed t_max={self.t_max}: e.g. "
                             "t_max / steps, or t_max for a one-step refiner")
        if self.predict == "residual" and self.loss != "x0":
            raise ValueError("objective.refiner.predict=residual needs loss=x0 (its velocity loss divides by t^2, "
                             "unbounded as t -> 0)")
        return self


class ObjectiveConfig(Frozen):
    # The loss is the weighted sum of these terms (training/objectives: flow_matching, diffusion_dpo).
    terms: dict[str, float] = Field(default_factory=lambda: {"flow_matching": 1.0})
    timesteps: Literal["logit_normal", "uniform", "mode"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    base_shift: float = Field(1.0, gt=0)  # shift at ref_tokens; grows as sqrt(tokens / ref_tokens)
    ref_tokens: int = Field(256, ge=1)
    t_buckets: int = Field(4, ge=1)
    dpo: DPOConfig = DPOConfig()
    tscd: TSCDConfig = TSCDConfig()  # the tscd term: segments schedule, teacher solver and CFG
    feedback: FeedbackConfig = FeedbackConfig()  # reward models and rollout of the reward_feedback term
    perceptual: FeatureNetConfig | None = None  # the perceptual term's feature network (editing)
    identity: FeatureNetConfig | None = None  # the identity term's embedding model, e.g. a face model (editing)
    refiner: RefinerConfig = RefinerConfig()  # the refine term: its t window, sampler steps and degradations

    @field_validator("terms")
    @classmethod
    def _known_terms(cls, v):
        from training.objectives import TERMS

        unknown = sorted(set(v) - set(TERMS))
        if unknown or not v:
            raise ValueError(f"unknown objective terms {unknown}; choose from {sorted(TERMS)}, e.g. "
                             "{flow_matching: 1.0}")
        return v


class LoRAConfig(Frozen):
    rank: int = Field(8, ge=1)
    alpha: float = Field(8.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # DiT module names (or their last parts) that get LoRA: the attention and MLP projections of both block kinds
    targets: list[str] = Field(default_factory=lambda: ["qkv", "proj_img", "proj_txt", "mlp_img.0", "mlp_img.2",
                                                        "mlp_txt.0", "mlp_txt.2", "lin1", "lin2"], min_length=1)


class LabelPair(Frozen):
    """One opposing aesthetic label pair; each side by its names in any language (all are embedded)."""

    positive: list[str] = Field(min_length=1)  # e.g. ["soft light", "柔光"]
    negative: list[str] = Field(min_length=1)  # e.g. ["flat light", "平光"]


class VMixConfig(Frozen):
    pairs: list[LabelPair] = Field(min_length=1)
    drop: float = Field(0.1, ge=0, le=1)  # CFG dropout of the aesthetic part (then the adapter is off)
    hidden: int | None = None  # width of the label features; None: the DiT width


# int8_weight: int8 weights, float activations; int8_dynamic: int8 weights and per-token int8 activations
# quantized at run time; fp8_*: the same in float8 (CUDA GPUs of compute capability >= 8.9 only)
QuantMode = Literal["none", "int8_weight", "int8_dynamic", "fp8_weight", "fp8_dynamic"]


class QuantConfig(Frozen):
    """Quantization per part of a pipeline (training/quantize.py); as stage.qat, what fine-tuning fake-quantizes."""

    dit: QuantMode = "int8_dynamic"  # the attention and MLP Linears of the DiT's blocks
    text: QuantMode = "int8_weight"  # the frozen LLM and glyph encoder (their refiner and mapper stay)
    vae: QuantMode = "none"  # the VAE's Linears (its convolutions stay: the int8 configs cover Linears)
    # torchao, or torch's own dynamic int8 (torch.ao.quantization.quantize_dynamic, CPU, int8_dynamic only)
    backend: Literal["torchao", "torch"] = "torchao"
    # DiT block modules left in full precision (names or their last parts): adaLN modulation, which scales
    # every activation of a block, is where int8 error hurts most (embeddings and proj_out are outside blocks)
    keep: list[str] = Field(default_factory=lambda: ["mod", "mod_img", "mod_txt"])


class StageConfig(Frozen):
    """What trains in this stage, and how the result is saved (a pipeline when the base trains, an adapter else)."""

    name: str = "pretrain"
    base: Literal["full", "lora", "frozen"] = "full"  # the DiT: all weights, LoRA on `lora.targets`, or none
    conditioner: Literal["train", "frozen"] = "train"  # the text refiner, glyph mapper, type embeddings
    lora: LoRAConfig = LoRAConfig()
    vmix: VMixConfig | None = None  # an aesthetic adapter (training/models/adapters.py); trains when set
    # quantization-aware fine-tuning: the DiT's block Linears train under int8 fake quantization as qat.dit says;
    # the exported pipeline records qat, so loading it quantizes for real
    qat: QuantConfig | None = None


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
    sample_aesthetics: list[str] = Field(default_factory=list)  # VMix stages: each prompt under each of these
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
    text: TextConfig | None = None  # None: from model.init_from's pipeline
    data: DataConfig
    vae: VAEConfig | None = None  # None: from model.init_from's pipeline, else pixel space
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()
    stage: StageConfig = StageConfig()

    @model_validator(mode="after")
    def _consistent(self):
        if self.text is None and not self.model.init_from:
            raise ValueError("text: give the text encoder (text.llm=<causal LM folder or hub id>) or start from a "
                             "pipeline with model.init_from=<pipeline folder>")
        if self.stage.base != "full" and not self.model.init_from:
            raise ValueError(f"stage.base={self.stage.base} trains on top of a base model: give it with "
                             "model.init_from=<pipeline folder written by sluice train>")
        if "diffusion_dpo" in self.objective.terms and self.stage.conditioner == "train":
            raise ValueError("objective.terms.diffusion_dpo compares with the frozen model the stage starts from, "
                             "which shares the conditioner: freeze it (stage.conditioner=frozen)")
        if "refine" in self.objective.terms and self.model.edit:
            raise ValueError("objective.terms.refine makes a refiner (the condition image joins each token) and "
                             "model.edit=true an edit model: set model.edit=false for a refiner stage")
        if "tscd" in self.objective.terms and self.stage.conditioner == "train":
            raise ValueError("objective.terms.tscd distils the teacher (the frozen model the stage starts from), "
                             "which shares the conditioner: freeze it (stage.conditioner=frozen)")
        qat = self.stage.qat
        if qat is not None and self.stage.base != "full":
            raise ValueError(f"stage.qat fine-tunes the base's own weights under fake quantization: set "
                             f"stage.base=full (got {self.stage.base})")
        if qat is not None and qat.dit not in ("int8_weight", "int8_dynamic"):
            raise ValueError(f"stage.qat.dit={qat.dit}: quantization-aware training fake-quantizes int8 here; "
                             "use int8_dynamic or int8_weight")
        return self


def load_train_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    data = read_yaml(path) if path else {}
    for o in overrides:
        data = apply_override(data, o)
    return resolve_base(validate(TrainConfig, data, where=f"training config ({path or '--set only'})"))


def read_pipeline_meta(folder: str | Path) -> dict | None:
    """pipeline.json of a pipeline folder, None for another folder (e.g. a bare DiT)."""
    import json

    meta = Path(folder) / "pipeline.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def resolve_base(cfg: TrainConfig) -> TrainConfig:
    """Fill `text` and `vae` from model.init_from's pipeline where the config leaves them out; refuse a
    config whose text encoder differs from the one the base was trained with (its conditioner would not fit)."""
    from plumbing.config import ConfigError

    meta = read_pipeline_meta(cfg.model.init_from) if cfg.model.init_from else None
    if cfg.model.init_from and not Path(cfg.model.init_from).is_dir():
        raise ConfigError(f"model.init_from: {cfg.model.init_from} is not a folder; give the `pipeline` folder "
                          "that `sluice train` writes into its run.out_dir")
    if meta is None:
        if cfg.text is None:
            raise ConfigError(f"model.init_from: {cfg.model.init_from} has no pipeline.json, so give text.llm too")
        return cfg if cfg.vae else cfg.model_copy(update={"vae": VAEConfig()})
    text, vae = TextConfig(**meta["text"]), VAEConfig(**meta["vae"])
    if cfg.text is not None and cfg.text != text:
        diff = sorted(k for k in TextConfig.model_fields if getattr(cfg.text, k) != getattr(text, k))
        raise ConfigError(f"text: differs from the base pipeline {cfg.model.init_from} in {diff}; leave `text` "
                          "out to use the base's, or start from a base trained with this text encoder")
    return cfg.model_copy(update={"text": text, "vae": cfg.vae or vae})
