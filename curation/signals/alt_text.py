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
        from lingua import Language, LanguageDetectorBuilder

        # The languages web alt texts mostly come in. A short list keeps start-up (~3 s per worker) and
        # per-caption cost (~0.2 ms) low; a language outside it still comes out as "other", via its
        # nearest listed neighbour, never as en or zh by default.
        names = ("ENGLISH", "CHINESE", "JAPANESE", "KOREAN", "SPANISH", "FRENCH", "GERMAN", "ITALIAN",
                 "PORTUGUESE", "RUSSIAN", "ARABIC", "DUTCH", "VIETNAMESE", "THAI", "INDONESIAN", "TURKISH",
                 "POLISH", "HINDI")
        detector = LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in names)).build()
        object.__setattr__(self, "_detector", detector)  # frozen dataclass: the model is not config

    def language(self, text: str | None) -> str | None:
        """zh, en or other. A caption mostly in Han script (and no kana) is Chinese even with English words."""
        if not text:
            return None
        letters = len(_LETTER.findall(text)) or 1
        han = len(_HAN.findall(text))
        if han and not _KANA.search(text) and han / letters >= 0.2:
            return "zh"
        found = self._detector.detect_language_of(text)
        code = found.iso_code_639_1.name.lower() if found else None
        return code if code in ("zh", "en") else "other"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for raw in batch["caption_raw"]:
            text, warnings = decode_caption(raw)
            text = clean_caption(text)
            rows.append({"alt_text": text, "alt_lang": self.language(text), "warnings": warnings})
        return pd.DataFrame(rows, index=batch.index, columns=list(self.columns))
