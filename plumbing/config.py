"""Config as validated data: YAML instances of frozen pydantic models, with `--set a.b=c` overrides.

A bad value fails before any work starts, with the key, what was wrong and how to fix it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base of every config model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and the fix."""


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_override(data: dict, assignment: str) -> dict:
    """Apply one `a.b.c=value`; the value is parsed as YAML (so `3`, `true`, `[a, b]` get their types)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r} is not of the form key.path=value, e.g. --set ingest.max_pixels=1e8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out = copy.deepcopy(data)
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:parts.index(p) + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value
    return out


def _describe(err: dict, model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        parent = _submodel(model, err["loc"][:-1])
        valid = ", ".join(sorted(parent.model_fields)) if parent else "?"
        return f"  {key}: unknown key. Valid keys here: {valid}"
    got = err.get("input")
    got_s = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"  {key}: {err['msg']}{got_s}. Fix it in the YAML or with --set {key}=<value>"


def _submodel(model: type[BaseModel], loc) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def validate(model: type[M], data: dict, where: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = [_describe(err, model) for err in e.errors()]
        raise ConfigError(f"{where} is invalid:\n" + "\n".join(lines)) from None


def load(model: type[M], default: Path | None = None, path: Path | None = None, overrides: list[str] = (),
         patch: dict | None = None) -> M:
    """Defaults file, the user's file, `--set` overrides, then `patch` (from CLI flags); validated once."""
    data: dict[str, Any] = read_yaml(default) if default else {}
    if path:
        data = deep_merge(data, read_yaml(path))
    for assignment in overrides or ():
        data = apply_override(data, assignment)
    if patch:
        data = deep_merge(data, patch)
    return validate(model, data, where=f"config ({path or default or 'defaults'})")


def dump(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
