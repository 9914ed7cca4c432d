"""The caption that came with a record: decoded, cleaned, and its language identified.

Captions in the wild are often not UTF-8 (GB18030 is common for Chinese). Such a caption is decoded
with the fallback and the row gets a warning; bytes no encoding can read are replaced, with a warning.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pyarrow as pa

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_LETTER = re.compile(r"\w", re.UNICODE)


def decode_caption(raw: bytes | None) -> tuple[str | None, list[str]]:
    if raw is None:
        return None, []
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), ["caption_not_utf8:gb18030"]
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), ["caption_not_utf8:replaced"]


def clean_caption(text: str | None) -> str | None:
    if text is None:
        return None
    text = _CONTROL.sub(" ", unicodedata.normalize("NFC", text))
    text = " ".join(text.split())
    return text or None


@dataclass(frozen=True)
class AltText:
    name: ClassVar[str] = "alt_text"
    requires: ClassVar[tuple[str, ...]] = ("caption_raw",)
    needs_image: ClassVar[bool] = False
    columns: ClassVar[dict[str, pa.DataType]] = {
        "alt_text": pa.string(), "alt_lang": pa.string(), "warnings": pa.list_(pa.string()),
    }

    def load(self) -> None:
        import langid

        # langid loads its model on first use; do it here, once per worker.
        langid.classify("warm up")
        object.__setattr__(self, "_langid", langid)  # frozen dataclass: the model is not config

    def language(self, text: str | None) -> str | None:
        """zh, en or other. Han script decides Chinese (langid confuses short Chinese with Japanese)."""
        if not text:
            return None
        letters = len(_LETTER.findall(text)) or 1
        han = len(_HAN.findall(text))
        if han and not _KANA.search(text) and han / letters >= 0.2:
            return "zh"
        lang, _ = self._langid.classify(text)
        return lang if lang in ("zh", "en") else "other"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for raw in batch["caption_raw"]:
            text, warnings = decode_caption(raw)
            text = clean_caption(text)
            rows.append({"alt_text": text, "alt_lang": self.language(text), "warnings": warnings})
        return pd.DataFrame(rows, index=batch.index, columns=list(self.columns))
