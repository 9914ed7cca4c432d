import pytest

from curation.signals.alt_text import AltText, clean_caption, decode_caption


@pytest.fixture(scope="module")
def alt():
    a = AltText()
    a.load()
    return a


@pytest.mark.parametrize("text, lang", [
    ("gravel texture", "en"), ("an orange dahlia in bloom", "en"), ("the cat", "en"),
    ("一只猫", "zh"), ("月面的黑白照片 | b&w photo of the moon", "zh"), ("中国的一座古老宝塔", "zh"),
    ("猫が寝ている", "other"), ("el gato negro duerme en el sofá", "other"), ("고양이가 자고 있다", "other"),
    ("", None),
])
def test_language(alt, text, lang):
    assert alt.language(clean_caption(text)) == lang


def test_decoding_falls_back_and_warns():
    assert decode_caption("一只猫".encode("utf-8")) == ("一只猫", [])
    # (very short GB18030 text can be valid UTF-8 by chance; a real caption is long enough not to be)
    assert decode_caption("一只虎斑猫趴在地上".encode("gb18030")) == ("一只虎斑猫趴在地上", ["caption_not_utf8:gb18030"])
    text, warnings = decode_caption(b"\xff\xfe\xfa bad")
    assert "bad" in text and warnings == ["caption_not_utf8:replaced"]
    assert decode_caption(b"\xef\xbb\xbfbom") == ("bom", [])


def test_cleaning_strips_controls_and_collapses_space():
    assert clean_caption("  a\x00 cat\t\n on   a mat ") == "a cat on a mat"
    assert clean_caption(" \x01 ") is None
