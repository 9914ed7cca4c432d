"""Config models of the curation jobs. YAML files in `curation/configs/` are instances of these."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from plumbing.config import Frozen

# Pillow's own bomb limit (MAX_IMAGE_PIXELS) is 89.5 MP for a warning and twice that for an error;
# we refuse above the error level.
DEFAULT_MAX_PIXELS = 178_956_970


class SparkConfig(Frozen):
    master: str | None = Field(None, description="Spark master; null = local[*], or the one spark-submit gives")
    driver_memory: str = "2g"
    conf: dict[str, str] = Field(default_factory=dict, description="any spark.* setting, passed through")

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"Spark settings must start with 'spark.', got {bad}")
        return {k: str(x) for k, x in v.items()}


class FolderInput(Frozen):
    extensions: tuple[str, ...] = (
        "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jfif", "avif", "heic", "heif", "jxl",
    )
    caption_extensions: tuple[str, ...] = ("txt", "json")
    json_caption_keys: tuple[str, ...] = ("caption", "text", "alt_text", "alt", "TEXT")


class WebdatasetInput(Frozen):
    image_extensions: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
    json_caption_keys: tuple[str, ...] = ("caption", "text", "alt_text", "TEXT")


class ParquetInput(Frozen):
    image_column: str | None = Field("image", description="column with image bytes (binary, or a struct with bytes)")
    path_column: str | None = Field(None, description="column with image paths, used when image_column is null")
    caption_column: str | None = "caption"
    key_column: str | None = Field(None, description="column with a record key; default: file and row index")


class HFInput(Frozen):
    image_column: str | None = Field(None, description="null = the first column of Image type")
    text_column: str | None = Field(None, description="null = the first of text, caption, alt_text, sentence")
    splits: tuple[str, ...] | None = Field(None, description="null = every split")


class IngestConfig(Frozen):
    format: Literal["auto", "folder", "webdataset", "parquet", "hf"] = "auto"
    source: str | None = Field(None, description="name of the source; null = from the input path")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="decompression-bomb limit in pixels")
    max_bytes: int = Field(256 * 2**20, gt=0, description="larger files are errors, not read into memory")
    verify: Literal["header", "decode"] = Field(
        "decode", description="decode: a reduced full decode catches truncated files; header: parse headers only"
    )
    partitions: int | None = Field(None, gt=0, description="read tasks; null = from the input size")
    records_per_partition: int = Field(2000, gt=0)
    folder: FolderInput = FolderInput()
    webdataset: WebdatasetInput = WebdatasetInput()
    parquet: ParquetInput = ParquetInput()
    hf: HFInput = HFInput()


class Rule(Frozen):
    """Keep a row when `keep_if` (Spark SQL over the stage's columns) holds; `name` is the drop reason."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    keep_if: str = Field(min_length=1)


class OcrConfig(Frozen):
    enabled: bool = True
    backend: Literal["rapidocr", "paddleocr"] = "rapidocr"
    det_max_side: int = Field(960, ge=64, description="detection runs on the image downscaled to this long side")
    min_conf: float = Field(0.5, ge=0, le=1, description="recognised lines below this confidence are dropped")
    det_model: str | None = Field(None, description="user model file/dir for detection; null = shipped model")
    rec_model: str | None = None
    cls_model: str | None = None


class StructureConfig(Frozen):
    enabled: bool = True
    model: str | None = Field(None, description="null = the shipped structure_v1.onnx; a .onnx path; timm:<ckpt>")
    fusion: bool = Field(True, description="with OCR on: refine the detector's probabilities with where OCR "
                         "found text (structure_fusion_v7 with the watermark map and its line head); false for a "
                         "detector of your own")
    fusion_model: str | None = Field(None, description="null = the shipped structure_fusion_v7.npz; a head of your "
                                     "own needs its <name>.lines.npz beside it")


class Stage1Signals(Frozen):
    quality: bool = True
    layout: bool = True
    structure: StructureConfig = StructureConfig()
    ocr: OcrConfig = OcrConfig()


class ProbeRef(Frozen):
    """A probe exported by `sluice annotate`, scored as column `p_<name>` before the stage's rules."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the column is p_<name>, e.g. p_valuable")
    path: str = Field(min_length=1, description="the probe folder (probe.json + probe.joblib)")


def _distinct_probes(v: tuple[ProbeRef, ...]) -> tuple[ProbeRef, ...]:
    names = [p.name for p in v]
    if len(set(names)) != len(names):
        raise ValueError(f"probe names must differ (each writes column p_<name>), got {names}")
    return v


class Stage1Config(Frozen):
    signals: Stage1Signals = Stage1Signals()
    probes: tuple[ProbeRef, ...] = Field((), description="probes scored after the signals; rules name p_<name>")
    rules: tuple[Rule, ...] = ()

    _probes = field_validator("probes")(classmethod(lambda cls, v: _distinct_probes(v)))


class EmbedConfig(Frozen):
    model: str = Field("descriptor-v1", description="descriptor-v1 (weight-free, no text), "
                       "open_clip:NAME[@CHECKPOINT] or hf:PATH_OR_HUB_ID (CLIP, Chinese-CLIP, AltCLIP)")
    batch_size: int = Field(32, ge=1, description="images (and texts) per forward pass")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto: the task's GPU if any, else CPU")
    gpus_per_task: float = Field(1.0, gt=0, le=1, description="spark.task.resource.gpu.amount on a GPU cluster")
    gpus_per_executor: int = Field(1, ge=1, description="spark.executor.resource.gpu.amount on a GPU cluster")
    rows_per_task: int = Field(1000, ge=1, description="rows per Spark task while embedding")


class Cut(Frozen):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    min: float


class AestheticConfig(Frozen):
    head: str | None = Field(None, description="weights of a LAION-style head (.pth/.safetensors); null = no score")
    tiers: tuple[Cut, ...] = Field(
        (Cut(name="professional", min=6.5), Cut(name="good", min=5.5), Cut(name="average", min=4.5)),
        description="aesthetic_tier: the first tier whose min the score reaches, highest first")
    below: str = Field("poor", description="aesthetic_tier of a score under every cut")


class ConceptsConfig(Frozen):
    enabled: bool = Field(True, description="needs a model with a text tower; skipped (and said) for descriptor-v1")
    vocabularies: tuple[str, ...] = Field(("default",), description="shipped names or .yaml paths")
    top_k: int = Field(5, ge=1)
    min_score: float = Field(0.0, ge=0, le=1)
    scale: float = Field(100.0, gt=0, description="softmax scale over cosines (CLIP's logit scale)")


class DedupConfig(Frozen):
    exact: bool = True
    near: bool = True
    semantic: bool = True
    max_hamming: int = Field(10, ge=0, le=32, description="near: pHash bits that may differ")
    candidates: Literal["lsh", "exact"] = Field(
        "lsh", description="near: pairs to check from bit-sampling LSH (scales; recall per lsh.collision_probability) "
                           "or exact pigeonhole banding (recall 1, ~0.8 N^2 checks at max_hamming 10)")
    lsh_bits: int = Field(16, ge=1, le=40, description="near, lsh: sampled bits per table (bucket ~ N / 2^bits)")
    lsh_tables: int = Field(24, ge=1, le=256, description="near, lsh: tables (more: higher recall, more entries)")
    semantic_threshold: float = Field(0.95, gt=0, le=1, description="semantic: cosine above which rows are duplicates")
    keep_order: str = Field("aesthetic DESC NULLS LAST, q_sharpness DESC NULLS LAST, width * height DESC",
                            description="Spark SQL ORDER BY: which member of a duplicate group is kept")


class ClusterConfig(Frozen):
    levels: tuple[int, ...] = Field((64, 16, 4), description="clusters per level, fine to coarse")
    min_rows_per_cluster: int = Field(8, ge=1, description="levels are scaled down so clusters get about this many")
    sample_size: int = Field(100_000, ge=1, description="rows the k-means is fitted on")
    seed: int = 0


class Tier(Frozen):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    when: str = Field(min_length=1, description="Spark SQL over the stage-2 columns; null counts as false")


class Stage2Config(Frozen):
    embed: EmbedConfig = EmbedConfig()
    aesthetic: AestheticConfig = AestheticConfig()
    concepts: ConceptsConfig = ConceptsConfig()
    dedup: DedupConfig = DedupConfig()
    cluster: ClusterConfig = ClusterConfig()
    tiers: tuple[Tier, ...] = Field(
        (Tier(name="A", when="coalesce(aesthetic, 6.0) >= 6.0 AND q_sharpness >= 20 AND least(width, height) >= 512"),
         Tier(name="B", when="coalesce(aesthetic, 5.0) >= 5.0 AND q_sharpness >= 8")),
        description="first match wins, in order; rows matching none get default_tier")
    default_tier: str = "C"
    probes: tuple[ProbeRef, ...] = Field((), description="probes scored after the signals; tiers and rules name p_<name>")
    rules: tuple[Rule, ...] = ()

    _probes = field_validator("probes")(classmethod(lambda cls, v: _distinct_probes(v)))


class DownsampleConfig(Frozen):
    """Balanced downsampling over (groups, then the cluster tree): share of a node ~ size**temperature."""

    size: int | None = Field(None, gt=0, description="rows to keep; null = every row in play")
    group_by: tuple[str, ...] = Field(("source",), description="columns balanced as levels above the cluster tree")
    levels: int | None = Field(None, gt=0, description="cluster levels used (coarse first); null = all of cluster_path")
    temperature: float = Field(1.0, ge=0, le=2, description="1 keeps the distribution, < 1 lifts the tail, 0 = equal")
    level_temperatures: tuple[float, ...] | None = Field(
        None, description="one temperature per level (groups first, then clusters); overrides temperature")
    order: Literal["quality", "random"] = Field("quality", description="which rows of a leaf are kept first")
    quality: tuple[str, ...] = Field(("tier ASC", "aesthetic DESC"),
                                     description="Spark SQL sort keys, each with ASC or DESC; ties by hash(id, seed)")
    seed: int = 0

    @field_validator("level_temperatures")
    @classmethod
    def _temps(cls, v):
        if v is not None and any(not 0 <= t <= 2 for t in v):
            raise ValueError(f"level temperatures must lie in [0, 2], got {list(v)}")
        return v


class MixPool(Frozen):
    """One quota of the training mix: kept rows of `table` that match `where`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    quota: float = Field(gt=0, le=1, description="share of the mix")
    table: str = Field("pool", description="a table folder under the run folder, or a path to one")
    concepts: tuple[str, ...] = Field((), description="keep rows tagged with any of these concepts (stage-2 ids)")
    min_score: float = Field(0.3, ge=0, le=1, description="a concept counts when its tag score is at least this")
    where: str | None = Field(None, description="Spark SQL filter, e.g. source = 'museum' or ocr_n_chars >= 4")


# The report's knowledge-injection example. Concept ids are those of the chinese_* categories of stage 2's
# default vocabulary (curation/configs/concepts/default.yaml).
CHINESE_CULTURE = (
    "calligraphy", "ink_painting", "gongbi", "landscape_painting", "paper_cutting", "seal", "porcelain", "jade",
    "peking_opera", "shadow_puppetry", "new_year_print", "guochao", "hanfu", "qipao", "tang_suit", "tea_ceremony",
    "red_lantern", "chinese_knot", "dragon", "lion_dance", "kung_fu", "tai_chi", "mahjong", "go_game", "guzheng",
    "couplets", "spring_festival", "lantern_festival", "dragon_boat_festival", "mid_autumn_festival", "qingming",
    "double_ninth", "red_envelope", "great_wall", "forbidden_city", "pagoda", "chinese_temple", "classical_garden",
    "siheyuan", "water_town", "tulou", "hutong", "paifang", "pavilion", "dumplings", "mooncake", "zongzi",
    "tangyuan", "hot_pot", "dim_sum", "noodles", "peking_duck", "baozi", "chinese_tea", "tanghulu",
)
DEFAULT_MIX = (
    MixPool(name="general", quota=0.70),
    MixPool(name="chinese_culture", quota=0.15, concepts=CHINESE_CULTURE),
    MixPool(name="text_rendering", quota=0.10, where="ocr_n_chars >= 4"),
    MixPool(name="portraits", quota=0.05, concepts=("portrait", "selfie")),
)


class MixConfig(Frozen):
    pools: tuple[MixPool, ...] = DEFAULT_MIX
    size: int | None = Field(None, gt=0, description="rows of the mix; null = the largest size no pool must repeat for")
    max_copies: int = Field(3, ge=1, description="a short pool repeats each row at most this many times in all")
    seed: int = 0

    @field_validator("pools")
    @classmethod
    def _quotas(cls, v):
        names = [p.name for p in v]
        if len(set(names)) != len(names):
            raise ValueError(f"mix pool names must differ, got {names}")
        total = sum(p.quota for p in v)
        if v and abs(total - 1) > 1e-6:
            raise ValueError(f"mix quotas must add up to 1, they add up to {total:g}: fix the quotas of {names}")
        return v


class CaptionerConfig(Frozen):
    """The VLM that writes captions; backend none = no model (stage 3 keeps the cleaned alt text only)."""

    backend: Literal["none", "transformers", "served"] = "none"
    model: str | None = Field(None, description="transformers: local folder or hub id; served: the served model name")
    url: str | None = Field(None, description="served: base URL of an OpenAI-compatible server, e.g. http://host:8000/v1")
    styles: tuple[Literal["short", "long", "text_in_image", "aesthetic", "imagination"], ...] = (
        "short", "long", "text_in_image", "aesthetic", "imagination")
    langs: tuple[Literal["zh", "en"], ...] = ("zh", "en")
    prompt_versions: dict[str, int] = Field(default_factory=dict, description="style -> prompt version; default latest")
    image_max_side: int = Field(768, ge=64, description="images are downscaled to this long side before captioning")
    concurrency: int = Field(8, ge=1, description="served: requests in flight per Spark task")
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, description="served: retries of timeouts, connection errors, 429 and 5xx")
    backoff_s: float = Field(0.5, ge=0)
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.2, ge=0)
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    batch_size: int = Field(8, ge=1, description="transformers: images per generate() call")
    device: str = Field("auto", description="transformers: auto (the GPU Spark gave the task, else cuda:0 when "
                                            "there is one, else cpu), cpu, cuda, cuda:1")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    gpus_per_task: float = Field(1.0, gt=0, le=1, description="transformers: spark.task.resource.gpu.amount on a GPU cluster")
    gpus_per_executor: int = Field(1, ge=1, description="transformers: spark.executor.resource.gpu.amount on a GPU cluster")

    @model_validator(mode="after")
    def _complete(self):
        if self.backend != "none" and not self.model:
            raise ValueError(f"stage3.captioner.backend={self.backend} needs stage3.captioner.model")
        if self.backend == "served" and not self.url:
            raise ValueError("stage3.captioner.backend=served needs stage3.captioner.url (e.g. http://127.0.0.1:8000/v1)")
        return self


class Stage3Config(Frozen):
    input: Literal["auto", "mix", "pool", "stage2", "stage1"] = Field(
        "auto", description="funnel table to caption (its kept rows; the mix's samples once each); auto = the "
                            "latest present: mix > pool > stage2 > stage1")
    captioner: CaptionerConfig = CaptionerConfig()
    keep_alt: bool = Field(True, description="keep the record's own alt text, cleaned, as style alt")
    length_bounds: dict[str, dict[Literal["zh", "en"], tuple[int, int]]] = Field(
        default_factory=dict, description="style -> lang -> (min, max) words (en) or characters (zh); overrides")
    rows_per_task: int = Field(256, ge=1, description="samples per Spark task (model time dominates)")
    embed_captions: bool = Field(False, description="embed each kept caption with stage 2's embedding model (from "
                                 "its manifest; stage2.embed.device and batch_size) and store txt_emb, emb_model "
                                 "and clip_score (cosine with the row's img_emb); needs a model with a text tower")

    @model_validator(mode="after")
    def _something(self):
        if self.captioner.backend == "none" and not self.keep_alt:
            raise ValueError("stage3 has nothing to write: set stage3.keep_alt=true or configure stage3.captioner")
        return self


class ExportConfig(Frozen):
    dir: str | None = Field(None, description="export folder; null = <run>/export")
    max_side: int = Field(1024, ge=64, description="images are resized so the long side is at most this")
    jpeg_quality: int = Field(90, ge=50, le=100)
    resolutions: tuple[int, ...] = Field((1024,), min_length=1, description="target resolutions of the bucket ladder")
    aspect_ratios: tuple[float, ...] = Field(
        (0.25, 0.33, 0.5, 0.57, 0.67, 0.75, 0.8, 1.0, 1.25, 1.33, 1.5, 1.75, 2.0, 3.0, 4.0), min_length=1,
        description="width/height of the buckets")
    divisible: int = Field(64, ge=8, description="bucket sides are multiples of this")
    shard_size: int = Field(1000, ge=1, description="samples per tar")
    shard_prefix: str = Field("shard", pattern=r"^[A-Za-z0-9_-]+$")
    require_caption: bool = Field(False, description="skip samples without any caption that passed the checks")


# The stages whose tables carry named rules (`decide`, `calibrate`).
RULE_STAGES = ("stage1", "stage2")


class CurateConfig(Frozen):
    """Everything `sluice curate` needs; each stage reads its own section."""

    spark: SparkConfig = SparkConfig()
    ingest: IngestConfig = IngestConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    stage3: Stage3Config = Stage3Config()
    export: ExportConfig = ExportConfig()
    downsample: DownsampleConfig = DownsampleConfig()
    mix: MixConfig = MixConfig()

    def rules(self, stage: str) -> tuple[Rule, ...]:
        """The named rules of `stage` (stage1 or stage2)."""
        if stage not in RULE_STAGES:
            raise ValueError(f"stage {stage!r} has no rules; choose one of {', '.join(RULE_STAGES)}")
        return getattr(self, stage).rules
