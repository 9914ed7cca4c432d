from pathlib import Path

import pytest

from curation.config import CurateConfig
from plumbing.config import ConfigError, apply_override, load

DEFAULT = Path(__file__).resolve().parents[2] / "curation" / "configs" / "default.yaml"


def test_default_yaml_is_a_valid_instance():
    cfg = load(CurateConfig, default=DEFAULT)
    # The YAML documents the code's defaults and must not drift from them; the rules live only in YAML.
    cfg_without_rules = cfg.model_copy(update={"stage1": cfg.stage1.model_copy(update={"rules": ()}),
                                               "stage2": cfg.stage2.model_copy(update={"rules": ()})})
    assert cfg_without_rules == CurateConfig()
    names = [r.name for r in cfg.stage1.rules]
    assert sorted(names) == sorted(["too_small", "bad_aspect", "blurry", "bad_exposure", "low_information", "border",
                                    "collage", "watermark", "logo", "text_overlay"])


def test_set_overrides_parse_types():
    cfg = load(CurateConfig, default=DEFAULT, overrides=["ingest.max_pixels=1000", "ingest.format=parquet",
                                                        "ingest.parquet.key_column=uid"])
    assert cfg.ingest.max_pixels == 1000 and cfg.ingest.format == "parquet"
    assert cfg.ingest.parquet.key_column == "uid"


def test_bad_value_names_key_and_fix():
    with pytest.raises(ConfigError) as e:
        load(CurateConfig, default=DEFAULT, overrides=["ingest.max_pixels=lots"])
    assert "ingest.max_pixels" in str(e.value) and "--set ingest.max_pixels=" in str(e.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        load(CurateConfig, default=DEFAULT, overrides=["ingest.max_pixel=5"])
    assert "ingest.max_pixel: unknown key" in str(e.value) and "max_pixels" in str(e.value)


def test_config_is_frozen():
    cfg = CurateConfig()
    with pytest.raises(Exception):
        cfg.ingest = None


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override({}, "no-equals-sign")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(CurateConfig, default=DEFAULT, path=tmp_path / "nope.yaml")


def test_spark_conf_keys_must_be_spark_settings():
    with pytest.raises(ConfigError, match="spark"):
        load(CurateConfig, default=DEFAULT, patch={"spark": {"conf": {"executor.memory": "1g"}}})
