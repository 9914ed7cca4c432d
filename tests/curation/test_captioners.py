"""Captioners: prompts per style and language, the served backend against a real loopback HTTP server
(slow, failing, flaky and malformed answers, server down), and a tiny random BLIP loaded by path."""

from __future__ import annotations

import io
import socket

import pandas as pd
import pytest

from curation.captioners.base import MODEL_STYLES, load_prompt, prompt_versions
from curation.captioners.served_openai import ServedCaptioner, endpoint
from curation.steps.caption_checks import apply_checks
from schemas.captions import CAPTION_LANGS
from tests.fixtures.fake_openai_server import FakeOpenAIServer


def _jpeg(color, size=(96, 64)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def batch():
    return pd.DataFrame({
        "id": ["plain", "sign", "broken"], "uri": ["u0", "u1", "u2"],
        "image": [_jpeg((200, 30, 30)), _jpeg((30, 30, 200)), b"\xff\xd8 not a jpeg"],
        "ocr_text": [None, "GRAND SALE\n咖啡", None],
    })


def _expected(batch) -> int:
    # Every (sample, style, lang) once: text-in-image for a sample without OCR text is a drop row.
    return len(batch) * len(MODEL_STYLES) * len(CAPTION_LANGS)


def _one_row_each(out: pd.DataFrame, batch) -> None:
    assert len(out) == _expected(batch)
    assert not out.duplicated(["id", "style", "lang"]).any()
    assert set(out["id"]) == set(batch["id"])


def test_every_style_and_language_has_a_versioned_prompt():
    for style in MODEL_STYLES:
        for lang in CAPTION_LANGS:
            text, version = load_prompt(style, lang)
            assert version == f"{style}.{lang}.v{prompt_versions()[(style, lang)][-1]}" and len(text) > 40
    assert "{ocr_text}" in load_prompt("text_in_image", "zh")[0]
    with pytest.raises(ValueError, match="versions"):
        load_prompt("short", "en", 99)


def test_endpoint_urls():
    assert endpoint("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_served_captions_every_style_with_model_and_prompt_version(batch, monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_KEY", "secret-token")
    with FakeOpenAIServer(latency_s=0.05, boilerplate=True) as srv:
        cap = ServedCaptioner(srv.url, "fake-vlm", concurrency=4, api_key_env="SLUICE_TEST_KEY")
        cap.samples_per_chunk = 2  # the batch is captioned in two chunks; rows of both come back
        cap.load()
        out = cap(batch)
        headers, counts = srv.behaviour.last_headers, dict(srv.behaviour.counts)
    _one_row_each(out, batch)
    assert 1 < counts["max_in_flight"] <= 4  # concurrent, and bounded
    assert headers.get("Authorization") == "Bearer secret-token"  # the key comes from the environment
    good = out[out["id"] == "sign"]
    assert good["error"].isna().all() and (good["model"] == "fake-vlm").all()
    assert set(good["prompt_version"]) == {f"{s}.{lang}.v1" for s in MODEL_STYLES for lang in CAPTION_LANGS}
    plain = out[out["id"] == "plain"].set_index(["style", "lang"])
    assert plain.loc[("text_in_image", "en"), "drop_reason"] == "no_text_in_image"
    broken = out[out["id"] == "broken"]
    assert broken["error"].dropna().str.contains("could not be decoded").all()
    assert broken["error"].notna().sum() == (len(MODEL_STYLES) - 1) * len(CAPTION_LANGS)
    checked = apply_checks(out, dict(zip(batch["id"], batch["ocr_text"]))).set_index(["id", "style", "lang"])
    assert checked.loc[("sign", "short", "en"), "text"].startswith("A colourful")  # "The image shows" cut
    assert checked.loc[("sign", "long", "zh"), "text"].startswith("一幅")  # "这张图片展示了" cut
    tii = checked.loc[("sign", "text_in_image", "en"), "text"]
    assert '"GRAND SALE"' in tii and '"咖啡"' in tii


def test_served_failures_become_error_rows_and_retries_recover(batch):
    with FakeOpenAIServer(fail_rate=0.2, flaky_rate=0.3, malformed_rate=0.15, slow_rate=0.1, slow_s=1.5) as srv:
        cap = ServedCaptioner(srv.url, "m", concurrency=3, timeout_s=0.4, retries=2, backoff_s=0.01)
        out = cap(batch)
        counts = dict(srv.behaviour.counts)
    _one_row_each(out, batch)
    errors = out["error"].dropna()
    assert errors.str.contains("HTTP 503").any() and errors.str.contains("failed after 3 attempts").any()
    assert errors.str.contains("malformed response").any()
    assert errors.str.contains("timed out after 0.4 s").any()
    flaky_recovered = counts["requests"] - counts["failed"] - counts["malformed"] - counts["slow"]
    assert flaky_recovered == counts["ok"] > 0
    ok = out[out["error"].isna() & out["drop_reason"].isna()]
    assert ok["text"].notna().all() and len(ok) == counts["ok"]


def test_server_down_is_an_error_row_per_request(batch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cap = ServedCaptioner(f"http://127.0.0.1:{port}", "m", retries=1, backoff_s=0.01, timeout_s=2)
    out = cap(batch.iloc[:1])
    assert len(out) == len(MODEL_STYLES) * len(CAPTION_LANGS)
    requested = out[out["drop_reason"].isna()]
    assert requested["error"].str.contains("connection failed").all()


def test_served_config_is_checked():
    with pytest.raises(ValueError, match="not model styles"):
        ServedCaptioner("http://x", "m", styles=("alt",))
    with pytest.raises(ValueError, match="concurrency"):
        ServedCaptioner("http://x", "m", concurrency=0)


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    from tests.fixtures.tiny_vlm import save_tiny_blip

    return save_tiny_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


def test_transformers_captioner_loads_a_saved_model_by_path(tiny_blip, batch):
    from curation.captioners.transformers_vlm import TransformersCaptioner

    cap = TransformersCaptioner(str(tiny_blip), styles=("short", "text_in_image"), batch_size=2,
                                max_new_tokens=6, device="cpu")
    cap.load()
    out = cap(batch)
    assert len(out) == 3 * 2 * 2 and not out.duplicated(["id", "style", "lang"]).any()
    ran = out[out["id"] != "broken"].dropna(subset=["prompt_version"])
    ran = ran[ran["drop_reason"].isna()]
    assert len(ran) == 2 * 2 + 2  # short for both, text-in-image only where OCR read text
    assert ran["error"].isna().all() and (ran["model"] == str(tiny_blip)).all()
    assert ran["text"].map(lambda t: isinstance(t, str)).all()
    assert out[out["id"] == "broken"]["error"].notna().sum() == 2


def test_transformers_captioner_names_a_bad_model(tmp_path):
    from curation.captioners.transformers_vlm import TransformersCaptioner

    with pytest.raises(ValueError, match="cannot load captioner model"):
        TransformersCaptioner(str(tmp_path / "nothing-here"), device="cpu").load()


def test_transformers_batch_failure_falls_back_to_rows(batch, monkeypatch):
    """A batch that fails is retried row by row; a row that still fails is an error row, the rest kept."""
    from curation.captioners.transformers_vlm import TransformersCaptioner

    cap = TransformersCaptioner("some/model", styles=("short",), batch_size=4, device="cpu")

    def generate(images, prompts):
        if len(images) > 1:
            raise RuntimeError("CUDA out of memory")
        if "中文" in prompts[0]:
            raise RuntimeError("bad row")
        return ["a caption"]

    monkeypatch.setattr(cap, "_generate", generate, raising=False)
    out = cap(batch).set_index(["id", "lang"])
    assert out.loc[("plain", "en"), "text"] == "a caption" and out.loc[("sign", "en"), "text"] == "a caption"
    assert "bad row" in out.loc[("plain", "zh"), "error"]
    assert out.loc[("broken", "en"), "error"].startswith("image could not be decoded")
