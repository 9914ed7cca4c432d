import io
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFont

from curation.signals.analysis import ImageSignals, decode_for_analysis
from curation.signals.ocr import OcrSignal, reading_order, text_language, union_area
from schemas.stage1 import OCR
from training.rewards.ocr import edit_distance  # the one Levenshtein the project has

ZH, EN = "限时特卖 全场五折", "Grand Opening Sale"
SIZE = (1024, 768)


def _char_accuracy(ref: str, got: str) -> float:
    ref, got = "".join(ref.split()), "".join(got.split())
    return 1 - edit_distance(ref, got) / len(ref)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _photo(subject: str) -> Image.Image:
    from synthetic.sample_corpus import real_photos

    return dict(real_photos())[subject].resize(SIZE, Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def ocr():
    pytest.importorskip("rapidocr", reason="the ocr extra is not installed")
    signal = OcrSignal()
    signal.load()
    return signal


@pytest.fixture(scope="module")
def rendered():
    """A photo with a Chinese line (on a banner) above an English subtitle; the text boxes in pixels."""
    from synthetic.sample_corpus import cjk_font_path

    font_path = cjk_font_path()
    if not font_path:
        pytest.skip("no CJK font (apt-get install fonts-wqy-microhei)")
    image = _photo("coffee")
    draw = ImageDraw.Draw(image)
    boxes = []
    for text, xy, px, outline in ((ZH, (120, 160), 56, False), (EN, (160, 520), 48, True)):
        font = ImageFont.truetype(font_path, px, layout_engine=ImageFont.Layout.BASIC)
        box = draw.textbbox(xy, text, font=font)
        if outline:
            draw.text(xy, text, font=font, fill=(255, 255, 255), stroke_width=3, stroke_fill=(0, 0, 0))
        else:
            draw.rectangle((box[0] - 12, box[1] - 12, box[2] + 12, box[3] + 12), fill=(200, 20, 30))
            draw.text(xy, text, font=font, fill=(255, 255, 255))
        boxes.append(box)
    return _jpeg(image), boxes


@pytest.fixture(scope="module")
def rendered_row(ocr, rendered):
    return ocr.score_image(decode_for_analysis(rendered[0]))


def test_reads_chinese_and_english_lines(rendered_row):
    row = rendered_row
    lines = row["ocr_text"].split("\n")
    assert row["ocr_n_lines"] == len(lines) == len(row["ocr_boxes"])
    zh_lines = [t for t in lines if text_language(t) == "zh"]
    en_lines = [t for t in lines if text_language(t) == "en"]
    assert zh_lines and en_lines, lines  # the Chinese line is read, not dropped as noise
    assert _char_accuracy(ZH, "".join(zh_lines)) >= 0.9, lines
    assert _char_accuracy(EN, "".join(en_lines)) >= 0.9, lines
    assert lines.index(zh_lines[0]) < lines.index(en_lines[0])  # reading order: the upper line first
    assert row["ocr_lang"] == "mixed"
    assert 0.5 <= row["ocr_conf"] <= 1.0
    assert row["ocr_n_chars"] == sum(len("".join(t.split())) for t in lines)


def test_boxes_are_fractions_in_reading_order(rendered_row):
    boxes = rendered_row["ocr_boxes"]
    for b in boxes:
        assert 0.0 <= b["x0"] < b["x1"] <= 1.0 and 0.0 <= b["y0"] < b["y1"] <= 1.0, b
        assert b["conf"] >= 0.5 and b["text"]
    centres = [(b["y0"] + b["y1"]) / 2 for b in boxes]
    assert centres == sorted(centres)
    assert "\n".join(b["text"] for b in boxes) == rendered_row["ocr_text"]


def test_area_fraction_matches_the_rendered_text(rendered, rendered_row):
    _, pixel_boxes = rendered
    truth = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in pixel_boxes) / (SIZE[0] * SIZE[1])
    assert truth / 2 <= rendered_row["ocr_area_frac"] <= truth * 2, (rendered_row["ocr_area_frac"], truth)


def test_photo_without_text(ocr):
    row = ocr.score_image(decode_for_analysis(_jpeg(_photo("chelsea"))))
    assert row == {"ocr_boxes": [], "ocr_text": None, "ocr_conf": None, "ocr_lang": None,
                   "ocr_area_frac": 0.0, "ocr_n_chars": 0, "ocr_n_lines": 0}


def test_rows_fit_the_schema_through_image_signals(ocr, rendered):
    """The batch path: one decode per image, columns exactly the schema's OCR fields, Arrow-typed."""
    assert OcrSignal.columns == {f.name: f.type for f in OCR}
    batch = pd.DataFrame({"image": [rendered[0], b"not an image"]}, index=[7, 9])
    out = ImageSignals(signals=(ocr,))(batch)
    assert list(out.index) == [7, 9]
    assert out.loc[9, "error_kind"] == "decode_error"
    for name, dtype in OcrSignal.columns.items():
        pa.array([out.loc[7, name]], type=dtype)  # raises if a value does not fit the declared type
        pa.array(out[name], type=dtype, from_pandas=True)  # the error row: missing values become nulls
    assert out.loc[7, "ocr_n_lines"] >= 2


def test_paddleocr_backend_without_paddleocr_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "paddleocr", None)  # import fails even where paddleocr is installed
    signal = OcrSignal(backend="paddleocr", det_model=str(tmp_path), rec_model=str(tmp_path))
    with pytest.raises(ImportError) as e:
        signal.load()
    assert "pip install paddleocr paddlepaddle" in str(e.value)
    assert "det_model" in str(e.value) and "rapidocr" in str(e.value)


def test_bad_config_fails_early_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="rapidocr, paddleocr"):
        OcrSignal(backend="tesseract")
    with pytest.raises(ValueError, match="det_max_side"):
        OcrSignal(det_max_side=0)
    pytest.importorskip("rapidocr", reason="the ocr extra is not installed")
    missing = tmp_path / "det.onnx"
    with pytest.raises(FileNotFoundError, match="det.onnx"):
        OcrSignal(det_model=str(missing)).load()


@pytest.mark.parametrize("text, lang", [
    ("限时特卖 全场五折", "zh"), ("Grand Opening Sale", "en"), ("欢迎光临 Welcome", "mixed"),
    ("限时特卖 全场五折\nGrand Opening Sale", "mixed"), ("全场五折 SALE", "mixed"), ("全场商品限时优惠大促销 VIP", "zh"),
    ("iPhone 15 Pro 限时优惠", "mixed"), ("书店 Bookstore", "mixed"), ("Welcome to 北京 city center", "en"),
    ("ありがとうございます", "other"), ("감사합니다", "other"), ("Распродажа", "other"), ("50%", "other"),
    ("", None), ("  ", None), (None, None),
])
def test_text_language(text, lang):
    assert text_language(text) == lang


def test_reading_order_rows_then_columns():
    boxes = np.array([
        [0.6, 0.10, 0.9, 0.20],  # row 1, right
        [0.1, 0.52, 0.4, 0.60],  # row 2, left
        [0.1, 0.11, 0.5, 0.19],  # row 1, left (slightly lower top than its neighbour)
        [0.5, 0.50, 0.9, 0.62],  # row 2, right, taller
    ])
    assert reading_order(boxes) == [2, 0, 1, 3]
    assert reading_order(np.zeros((0, 4))) == []


def test_union_area_counts_overlaps_once():
    assert union_area(np.array([[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])) == pytest.approx(0.4375)
    assert union_area(np.array([[0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4]])) == pytest.approx(1.0)
    assert union_area(np.zeros((0, 4))) == 0.0
