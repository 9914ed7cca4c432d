"""The signal registry is complete, and stages build their signals through it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import curation.signals
from curation.config import Stage1Config, Stage2Config
from curation.signals import SIGNALS, signal_class

COMPOSITES = {"image_signals"}  # runs other signals on one decode; not configured by name


def scorer_classes() -> dict[str, type]:
    """Every class under curation/signals/ with a name, `load` and a way to score (a batch or a decoded image)."""
    found = {}
    for info in pkgutil.iter_modules(curation.signals.__path__):
        module = importlib.import_module(f"curation.signals.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            def has(attr, cls=cls):
                return any(attr in vars(k) for k in cls.__mro__[:-1])

            named = cls.__module__ == module.__name__ and isinstance(getattr(cls, "name", None), str)
            if named and has("load") and (has("__call__") or has("score_image")) and cls.name not in COMPOSITES:
                found[cls.name] = cls
    return found


def test_every_scorer_is_registered_under_its_name():
    classes = scorer_classes()
    assert set(classes) == set(SIGNALS), "register each scorer in curation.signals.SIGNALS (and nothing else)"
    for name in SIGNALS:
        assert signal_class(name) is classes[name] and signal_class(name).name == name


def test_stages_build_their_signals_in_order_through_the_registry():
    from curation.jobs import ingest, stage1, stage2

    assert [s.name for s in stage1.build_signals(Stage1Config())] == [
        "quality", "layout", "structure", "ocr", "structure_fusion"]
    scorers, notes = stage2.build_scorers(Stage2Config())
    assert [s.name for s in scorers] == ["image_signals", "embed"] and scorers[0].signals[0].name == "phash"
    assert set(notes) == {"aesthetic", "concepts", "embedding"}
    for builders in (ingest.SIGNAL_BUILDERS, stage1.SIGNAL_BUILDERS, stage2.SIGNAL_BUILDERS):
        assert all(name in SIGNALS for name, _ in builders)


def test_an_unknown_name_lists_the_signals():
    import pytest

    with pytest.raises(ValueError, match="no signal named 'sharpness'; the signals are aesthetic, alt_text"):
        signal_class("sharpness")
