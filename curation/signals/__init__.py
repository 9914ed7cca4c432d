"""Scorers by name: the one registry every stage builds its signals through.

Entries are import paths, resolved when a stage builds the signal: the registry imports no scorer module
but the two light ones every ingest runs (also importable from here by class).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from curation.signals.alt_text import AltText
from curation.signals.image_header import ImageHeader

# Every scorer a config can turn on, by its `name`: "module:class". tests/curation/test_signal_registry.py
# checks that every scorer class under curation/signals/ is here and that each entry resolves.
SIGNALS: dict[str, str] = {
    "image_header": "curation.signals.image_header:ImageHeader",
    "alt_text": "curation.signals.alt_text:AltText",
    "quality": "curation.signals.quality:QualitySignal",
    "layout": "curation.signals.layout:LayoutSignal",
    "structure": "curation.signals.structure:StructureSignal",
    "ocr": "curation.signals.ocr:OcrSignal",
    "structure_fusion": "curation.signals.structure_fusion:StructureFusionSignal",
    "phash": "curation.signals.phash:PHashSignal",
    "embed": "curation.signals.embed:EmbedSignal",
    "aesthetic": "curation.signals.aesthetic:AestheticSignal",
    "concepts": "curation.signals.concepts:ConceptSignal",
    "probe": "curation.signals.probe:Probe",
}

# A stage's signals: (registry name, settings) in the order they run. `settings(cfg, built)` gives the
# signal's constructor arguments from the stage's config and the signals built before it (a signal that
# reads another's output is given it), or None when the config turns it off, or a str saying why it is off.
Builder = tuple[str, Callable[[object, dict], "dict | str | None"]]


def signal_class(name: str) -> type:
    """The scorer class registered under `name`."""
    if name not in SIGNALS:
        raise ValueError(f"no signal named {name!r}; the signals are {', '.join(sorted(SIGNALS))}")
    module, cls = SIGNALS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def resolve(builders: Iterable[Builder], cfg) -> tuple[dict[str, object], dict[str, str]]:
    """The signals `cfg` turns on, by name in the builders' order, and why each one it leaves off is off
    (for the manifest; only those a builder explains)."""
    built: dict[str, object] = {}
    off: dict[str, str] = {}
    for name, settings in builders:
        kwargs = settings(cfg, built)
        if isinstance(kwargs, dict):
            built[name] = signal_class(name)(**kwargs)
        elif kwargs is not None:
            off[name] = kwargs
    return built, off


__all__ = ["SIGNALS", "AltText", "Builder", "ImageHeader", "resolve", "signal_class"]
