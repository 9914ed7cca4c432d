"""Which samples of a source train: the export's signals (machine-selected) or Label Studio labels
(human-selected). A filter is a small picklable value, so DataLoader workers can carry it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.config import SourceConfig


@dataclass(frozen=True)
class SampleFilter:
    min_signals: tuple[tuple[str, float], ...] = ()  # signal >= value
    signal_in: tuple[tuple[str, frozenset[str]], ...] = ()  # str(signal) is one of them
    ids: frozenset[str] | None = None  # sample ids to keep (human-selected); None: every id
    max_signals: tuple[tuple[str, float], ...] = ()  # signal <= value

    def __call__(self, meta: dict) -> bool:
        signals = meta.get("signals") or {}
        for name, low in self.min_signals:
            v = signals.get(name)
            if not isinstance(v, (int, float)) or math.isnan(v) or v < low:  # a missing score never passes
                return False
        for name, high in self.max_signals:
            v = signals.get(name)
            if not isinstance(v, (int, float)) or math.isnan(v) or v > high:
                return False
        if any(str(signals.get(name, "")) not in allowed for name, allowed in self.signal_in):
            return False
        return self.ids is None or str(meta.get("id")) in self.ids

    @property
    def active(self) -> bool:
        return bool(self.min_signals or self.max_signals or self.signal_in or self.ids is not None)


def source_filter(src: SourceConfig) -> SampleFilter:
    """The filter a source config asks for; its labels table is read once, here, in the training process."""
    ids = None
    if src.labels is not None:
        from plumbing.tables import read_majority_labels

        labels = read_majority_labels(src.labels.path, src.labels.task)
        keep = set(src.labels.keep)
        ids = frozenset(i for i, label in labels.items() if set(label.split(",")) & keep)
        if not ids:
            found = sorted({v for v in labels.values()})[:10]
            raise ValueError(f"labels table {src.labels.path} has no sample labelled {sorted(keep)} for task "
                             f"{src.labels.task!r} (its labels: {found}); label some in Label Studio first, or "
                             "fix data.sources.<name>.labels")
    return SampleFilter(tuple(sorted(src.min_signals.items())),
                        tuple((k, frozenset(v)) for k, v in sorted(src.signal_in.items())), ids,
                        tuple(sorted(src.max_signals.items())))
