"""Caption checks: strip boilerplate openings, then keep a caption or name the check it failed.

Checks, in order (the first that fails is the drop reason): `empty`, `degenerate` (mostly symbols or
digits), `wrong_language`, `too_short`, `too_long`, `repetitive` (the same words or characters over and
over: a model stuck in a loop), and for text-in-image captions `ocr_not_quoted`
(no quoted text although OCR read some) and `ocr_mismatch` (a quoted text that OCR did not read).
Lengths count words in English and characters in Chinese.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import pandas as pd

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[A-Za-z\u00c0-\u024f0-9']+|[\u3400-\u9fff]")
# Quoted spans: "…", “…”, 「…」, 『…』, ‘…’ (not ' … ': apostrophes are everywhere in English).
_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”|「([^」]+)」|『([^』]+)』|‘([^’]+)’')

_BOILER_EN = re.compile(
    r"^\s*(?:(?:the|this) (?:image|picture|photo(?:graph)?|illustration|scene)"
    r"(?: (?:shows|depicts|features|displays|presents|captures|is of|contains|portrays))?(?: an image of)?"
    r"|(?:in|within) (?:the|this) (?:image|picture|photo(?:graph)?),?(?: we (?:can )?see| there (?:is|are))?"
    r"|an? (?:image|picture|photo(?:graph)?) (?:of|showing|depicting))\s*[,:]?\s*",
    re.IGNORECASE,
)
_BOILER_ZH = re.compile(
    r"^\s*(?:这(?:张|幅|是一张|是一幅)?(?:图片|图像|照片|画面|图)(?:中|里|上)?"
    r"|(?:在)?(?:图片|图像|照片|画面|图)(?:中|里|上)"
    r")(?:展示了|显示了|描绘了|呈现了|展现了|展示的是|显示的是|描绘的是|是|有)?\s*[，,：:]?\s*"
)


@dataclass(frozen=True)
class Bounds:
    min: int
    max: int


# Per style: (English words, Chinese characters). Wide on purpose: a check catches broken output,
# it does not grade style. Config can override each (Stage3Config.length_bounds).
DEFAULT_BOUNDS: dict[str, dict[str, Bounds]] = {
    "alt": {"en": Bounds(1, 400), "zh": Bounds(2, 800)},
    "short": {"en": Bounds(3, 40), "zh": Bounds(4, 60)},
    "long": {"en": Bounds(20, 400), "zh": Bounds(30, 800)},
    "text_in_image": {"en": Bounds(5, 250), "zh": Bounds(8, 500)},
    "aesthetic": {"en": Bounds(10, 250), "zh": Bounds(15, 500)},
    "imagination": {"en": Bounds(10, 250), "zh": Bounds(15, 500)},
}


def strip_boilerplate(text: str, lang: str) -> str:
    """Cut an opening like "The image shows" / "这张图片展示了"; the rest starts with a capital."""
    pattern = _BOILER_ZH if lang == "zh" else _BOILER_EN
    out = pattern.sub("", text, count=1).strip()
    if not out:
        return text.strip()
    return out[0].upper() + out[1:] if lang == "en" else out


def clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text)
    return " ".join(text.split())


def length(text: str, lang: str) -> int:
    if lang == "zh":
        return len(_HAN.findall(text)) + len(re.findall(r"[A-Za-z0-9]+", text))
    return len(_WORD.findall(text))


def language_matches(text: str, lang: str, quoted_ok: bool = False) -> bool:
    """zh: mostly Han script. en: mostly Latin letters. Quoted spans (OCR text) are ignored if allowed."""
    if quoted_ok:
        text = _QUOTED.sub(" ", text)
    han, latin, other = len(_HAN.findall(text)), len(_LATIN.findall(text)), len(_KANA_HANGUL.findall(text))
    letters = han + latin + other
    if letters == 0:
        return False
    if lang == "zh":
        return han / letters >= 0.5
    return latin / letters >= 0.9


def repetitive(text: str, lang: str) -> bool:
    """True when distinct n-grams are few: a looping model repeats a phrase until max tokens."""
    units = list(re.sub(r"\s+", "", text)) if lang == "zh" else text.lower().split()
    n = 4 if lang == "zh" else 3
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    if len(grams) >= 8 and len(set(grams)) / len(grams) < 0.5:
        return True
    # The same unit many times in a row ("very very very ...", "哈哈哈哈哈哈...")
    run = best = 1
    for a, b in zip(units, units[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best >= 6


def degenerate(text: str) -> bool:
    letters = len(_HAN.findall(text)) + len(_LATIN.findall(text)) + len(_KANA_HANGUL.findall(text))
    return letters / max(1, len(re.sub(r"\s", "", text))) < 0.5


def _norm(s: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", s).casefold())


def quotes(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)]


def ocr_disagreement(text: str, ocr_text: str | None) -> str | None:
    """Why a text-in-image caption disagrees with OCR (None when it agrees)."""
    if not ocr_text or not ocr_text.strip():
        return None
    found = [q for q in quotes(text) if _norm(q)]
    if not found:
        return "ocr_not_quoted"
    ocr = _norm(ocr_text)
    return None if all(_norm(q) in ocr for q in found) else "ocr_mismatch"


def check(text, style: str, lang: str, ocr_text: str | None = None,
          bounds: dict[str, dict[str, Bounds]] | None = None) -> tuple[str | None, str | None]:
    """(cleaned text, None) when the caption passes, else (None, the first failed check)."""
    if not isinstance(text, str) or not clean(text):
        return None, "empty"
    text = strip_boilerplate(clean(text), lang)
    is_tii = style == "text_in_image"
    if degenerate(text):
        return None, "degenerate"
    if not language_matches(text, lang, quoted_ok=is_tii):
        return None, "wrong_language"
    b = (bounds or DEFAULT_BOUNDS).get(style, DEFAULT_BOUNDS.get(style, {})).get(lang)
    n = length(text, lang)
    if b and n < b.min:
        return None, "too_short"
    if b and n > b.max:
        return None, "too_long"
    if repetitive(text, lang):
        return None, "repetitive"
    if is_tii:
        reason = ocr_disagreement(text, ocr_text)
        if reason:
            return None, reason
    return text, None


def apply_checks(rows: pd.DataFrame, ocr_by_id: dict[str, str | None],
                 bounds: dict[str, dict[str, Bounds]] | None = None) -> pd.DataFrame:
    """Check every caption row that has text and no error; failed ones lose their text, gain a reason."""
    out = rows.copy()
    texts, reasons = out["text"].tolist(), out["drop_reason"].tolist()
    for n, (id_, style, lang, err) in enumerate(zip(out["id"], out["style"], out["lang"], out["error"])):
        if _present(err) or _present(reasons[n]):
            texts[n] = None
            continue
        texts[n], reasons[n] = check(texts[n], style, lang, ocr_by_id.get(id_), bounds)
    out["text"] = pd.Series(texts, index=out.index, dtype=object)
    out["drop_reason"] = pd.Series(reasons, index=out.index, dtype=object)
    return out


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)
