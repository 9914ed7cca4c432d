"""Which fonts the structure generator draws Latin text with: fontconfig's list, or a folder standing in for it."""

import subprocess
from types import SimpleNamespace

import pytest

from detector_factory import drawing, overlays


@pytest.fixture(autouse=True)
def _fresh_font_list():
    drawing.latin_font_paths.cache_clear()
    yield
    drawing.latin_font_paths.cache_clear()


def test_fontconfig_lines_are_parsed_to_font_files(monkeypatch):
    # fc-list prints "path: " per font; a filter on the raw line ("...ttf: ") once matched nothing, and every
    # Latin word was drawn in the CJK font while the model cards said DejaVu and Liberation.
    listing = ("/fonts/dejavu/DejaVuSans.ttf: \n/fonts/lib/LiberationSerif-Bold.ttf: \n"
               "/fonts/dejavu/DejaVuMathTeXGyre.ttf: \n/fonts/wqy/wqy-microhei.ttc: \n")
    monkeypatch.delenv("SLUICE_LATIN_FONT_DIR", raising=False)
    monkeypatch.setattr(drawing.shutil, "which", lambda name: "/usr/bin/fc-list")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: SimpleNamespace(stdout=listing))
    assert drawing.latin_font_paths() == ("/fonts/dejavu/DejaVuSans.ttf", "/fonts/lib/LiberationSerif-Bold.ttf")


def test_font_folder_stands_in_for_fontconfig(monkeypatch, tmp_path):
    for name in ("b/Serif.otf", "a/Sans.ttf", "a/MathSymbols.ttf", "a/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("SLUICE_LATIN_FONT_DIR", str(tmp_path))
    assert drawing.latin_font_paths() == (str(tmp_path / "a/Sans.ttf"), str(tmp_path / "b/Serif.otf"))


def test_empty_font_folder_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("SLUICE_LATIN_FONT_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no .ttf or .otf"):
        drawing.latin_font_paths()


def test_this_machine_draws_latin_text_in_latin_fonts():
    fonts = drawing.latin_font_paths()
    if not fonts or fonts == (drawing.cjk_font_path(),):
        pytest.skip("no Latin font installed here")
    assert all(f.endswith((".ttf", ".otf")) for f in fonts)


def test_caption_bar_with_a_wide_tag_on_a_narrow_picture_renders():
    # A bold Latin tag can be wider than a narrow picture leaves room for; the headline beside it once
    # crashed the generator (a crop with right < left) and ended a GPU training run's data stream.
    from PIL import Image
    import numpy as np

    image = Image.new("RGB", (120, 900), (90, 120, 150))  # a tall strip: a tall bar, a big tag
    for seed in range(150):
        out = overlays.caption_bar(image, np.random.default_rng(seed))
        assert out.size == image.size
