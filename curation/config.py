"""Config models of the curation jobs. YAML files in `curation/configs/` are instances of these."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tools.config import Frozen

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


class Stage1Signals(Frozen):
    quality: bool = True
    layout: bool = True
    structure: StructureConfig = StructureConfig()
    ocr: OcrConfig = OcrConfig()


class Stage1Config(Frozen):
    signals: Stage1Signals = Stage1Signals()
    rules: tuple[Rule, ...] = ()


class CurateConfig(Frozen):
    """Everything `sluice curate` needs; each stage reads its own section."""

    spark: SparkConfig = SparkConfig()
    ingest: IngestConfig = IngestConfig()
    stage1: Stage1Config = Stage1Config()
