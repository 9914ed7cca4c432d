"""Caption checks: boilerplate stripped, each failure named, text-in-image held to the OCR result."""

import pandas as pd
import pytest

from curation.steps.caption_checks import Bounds, DEFAULT_BOUNDS, apply_checks, check, strip_boilerplate

EN = "A red cat sleeping on a blue sofa next to a window, in warm afternoon light."
ZH = "一只红色的猫在靠窗的蓝色沙发上睡觉，午后的阳光很温暖。"


@pytest.mark.parametrize("text,lang,expected", [
    ("The image shows a red cat on a sofa.", "en", "A red cat on a sofa."),
    ("This picture depicts a red cat on a sofa.", "en", "A red cat on a sofa."),
    ("In this image, we can see a dog.", "en", "A dog."),
    ("An image of a dog in a park.", "en", "A dog in a park."),
    ("这张图片展示了一只猫。", "zh", "一只猫。"),
    ("图中是一只猫。", "zh", "一只猫。"),
    ("A photographer's image shows nothing.", "en", "A photographer's image shows nothing."),  # not an opening
])
def test_boilerplate_openings_are_stripped(text, lang, expected):
    assert strip_boilerplate(text, lang) == expected


def test_good_captions_pass_cleaned():
    assert check("The image shows " + EN[0].lower() + EN[1:], "long", "en") == (None, "too_short")
    assert check(EN, "short", "en") == (EN, None)
    assert check("这张图片展示了" + ZH, "short", "zh") == (ZH, None)
    assert check("  A  cat\x07 on a\nsofa today.  ", "short", "en") == ("A cat on a sofa today.", None)


@pytest.mark.parametrize("text,style,lang,reason", [
    (None, "short", "en", "empty"),
    ("   ", "short", "en", "empty"),
    ("#### 1234 !!!! ####", "short", "en", "degenerate"),
    (ZH, "short", "en", "wrong_language"),
    (EN, "short", "zh", "wrong_language"),
    ("A cat.", "short", "en", "too_short"),
    (" ".join(a + b + c for a in "bcdfg" for b in "aeiou" for c in "lmnrst")[:400], "short", "en", "too_long"),
    ("a cat on a sofa " * 12, "long", "en", "repetitive"),
    ("A very very very very very very big cat on a sofa.", "short", "en", "repetitive"),
    ("猫猫猫猫猫猫猫在沙发上", "short", "zh", "repetitive"),
])
def test_failures_are_named(text, style, lang, reason):
    assert check(text, style, lang) == (None, reason)


def test_text_in_image_is_held_to_ocr():
    ocr = "GRAND SALE\n50% OFF"
    good = 'A shop window with a banner that reads "GRAND SALE" in large red letters above the door.'
    assert check(good, "text_in_image", "en", ocr) == (good, None)
    # Case and spacing differ, the text is the same: fine.
    assert check(good.replace("GRAND SALE", "Grand  sale"), "text_in_image", "en", ocr)[1] is None
    assert check(good.replace("GRAND SALE", "GRAND SELL"), "text_in_image", "en", ocr) == (None, "ocr_mismatch")
    assert check(good.replace('"GRAND SALE"', "big words"), "text_in_image", "en", ocr) == (None, "ocr_not_quoted")
    # Chinese OCR quoted inside an English caption is not a language error.
    zh_ocr = 'A coffee shop sign with the characters "咖啡" painted in white on a dark wooden board.'
    assert check(zh_ocr, "text_in_image", "en", "咖啡") == (zh_ocr, None)
    zh = "深色木板上用白色写着“咖啡”两个字，挂在咖啡店门口。"
    assert check(zh, "text_in_image", "zh", "咖啡") == (zh, None)
    assert check(zh.replace("“咖啡”", "“奶茶”"), "text_in_image", "zh", "咖啡") == (None, "ocr_mismatch")


def test_apply_checks_keeps_every_row_and_leaves_errors_alone():
    rows = pd.DataFrame([
        {"id": "a", "style": "short", "lang": "en", "text": "The image shows " + EN, "drop_reason": None, "error": None},
        {"id": "a", "style": "short", "lang": "zh", "text": EN, "drop_reason": None, "error": None},
        {"id": "b", "style": "long", "lang": "en", "text": None, "drop_reason": None, "error": "HTTP 503"},
        {"id": "b", "style": "text_in_image", "lang": "en", "text": None, "drop_reason": "no_text_in_image",
         "error": None},
    ])
    out = apply_checks(rows, {"a": None, "b": None})
    assert len(out) == 4
    assert out["drop_reason"].tolist() == [None, "wrong_language", None, "no_text_in_image"]
    assert out["text"].tolist()[0].startswith("A red cat") and out["text"].tolist()[1:] == [None, None, None]
    assert out["error"].tolist()[2] == "HTTP 503"


def test_bounds_override():
    tight = {**DEFAULT_BOUNDS, "short": {"en": Bounds(3, 5), "zh": Bounds(1, 5)}}
    assert check(EN, "short", "en", bounds=tight) == (None, "too_long")
    assert check(ZH, "short", "zh", bounds=tight) == (None, "too_long")
