"""Embedding backends: weight-free descriptor, tiny open_clip and transformers CLIP / Chinese-CLIP / AltCLIP from disk."""

import io
import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from curation.signals import embedding_codec as codec


def _photos():
    from sklearn.datasets import load_sample_images

    from PIL import Image

    return [Image.fromarray(a) for a in load_sample_images().images]  # china.jpg, flower.jpg


def _jpeg(img, quality=90, size=None) -> bytes:
    buf = io.BytesIO()
    (img.resize(size) if size else img).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pytest.importorskip("open_clip")
    from tests.fixtures.tiny_clip import write_tiny_hf_clip, write_tiny_open_clip

    d = tmp_path_factory.mktemp("tiny_models")
    return {"open_clip": write_tiny_open_clip(d / "oc"), "clip": write_tiny_hf_clip(d / "clip", "clip"),
            "chinese_clip": write_tiny_hf_clip(d / "zh", "chinese_clip"),
            "altclip": write_tiny_hf_clip(d / "alt", "altclip")}


def test_codec_round_trip_is_float16_little_endian():
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    cells = codec.encode(x)
    assert all(len(c) == 16 for c in cells)
    assert np.frombuffer(cells[0], dtype="<f2")[0] == np.float16(x[0, 0])
    np.testing.assert_allclose(codec.decode(cells), x, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="different sizes"):
        codec.decode([cells[0], cells[0][:8]])


def test_descriptor_is_near_for_copies_and_far_for_other_photos():
    from curation.signals.descriptor import DIM, describe

    from PIL import Image

    china, flower = _photos()
    a = describe(china)
    recoded = describe(Image.open(io.BytesIO(_jpeg(china, quality=30, size=(320, 213)))))
    assert a.shape == (DIM,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert float(a @ recoded) > 0.97  # a re-encoded, downscaled copy
    assert float(a @ describe(flower)) < 0.6  # another photo
    assert float(a @ describe(china.rotate(180))) < float(a @ recoded)  # layout counts


def test_descriptor_signal_has_no_text_and_names_itself():
    from curation.signals.embed import EmbedSignal

    china, flower = _photos()
    batch = pd.DataFrame({"image": [_jpeg(china), b"not an image", _jpeg(flower)],
                          "alt_text": ["a pagoda", "x", None]}, index=[10, 11, 12])
    s = EmbedSignal(model="descriptor-v1")
    s.load()
    out = s(batch)
    assert list(out.index) == [10, 11, 12]
    assert out.loc[10, "emb_model"] == "descriptor-v1" and out.loc[11, "error_kind"] == "decode_error"
    assert out["txt_emb"].isna().all() and out["clip_score"].isna().all()  # not CLIP: no alignment claimed
    assert codec.decode(out["img_emb"].dropna()).shape == (2, 160)


@pytest.mark.parametrize("kind", ["open_clip", "clip", "chinese_clip", "altclip"])
def test_clip_backends_load_from_disk_and_score_alignment(models, kind):
    from curation.signals.embed import EmbedSignal, make_embedder

    china, flower = _photos()
    batch = pd.DataFrame({"image": [_jpeg(china), _jpeg(flower), b"\xff\xd8broken"],
                          "alt_text": ["a photo of the city", "一张花的照片", "x"]}, index=[1, 2, 3])
    s = EmbedSignal(model=models[kind], device="cpu", batch_size=2)
    s.load()
    out = s(batch)
    assert out.loc[3, "error_kind"] == "decode_error" and out.loc[1, "emb_model"] == models[kind]
    img, txt = codec.decode(out["img_emb"].iloc[:2]), codec.decode(out["txt_emb"].iloc[:2])
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=2e-3)
    np.testing.assert_allclose(out["clip_score"].iloc[:2].astype(float), (img * txt).sum(axis=1), atol=5e-3)
    # loading the same weights again gives the same vectors: nothing random at load time
    again = make_embedder(models[kind], "cpu")
    again.load()
    np.testing.assert_allclose(again.encode_images([china]), img[:1], atol=5e-3)


@pytest.mark.parametrize("kind", ["chinese_clip", "altclip"])
def test_chinese_text_is_not_unknown_tokens(models, kind):
    """A Chinese caption must reach the text tower as characters, not [UNK]: different texts, different vectors."""
    from curation.signals.embed import get_embedder

    emb = get_embedder(models[kind], "cpu")
    assert type(emb.model).__name__ == {"chinese_clip": "ChineseCLIPModel", "altclip": "AltCLIPModel"}[kind]
    ids = emb.tokenizer(["书法", "汉服"])["input_ids"]
    assert emb.tokenizer.unk_token_id not in ids[0] + ids[1]
    v = emb.encode_texts(["书法", "汉服", "a photo of the city"])
    assert np.abs(v[0] - v[1]).max() > 1e-4 and np.abs(v[0] - v[2]).max() > 1e-4


def test_altclip_long_text_fits_its_position_table(models):
    """XLM-R numbers positions from pad_token_id + 1: a text as long as the table must be cut two tokens
    shorter, not fail (the tiny tokenizer has no model_max_length, so only the config bounds it)."""
    from curation.signals.embed import get_embedder

    emb = get_embedder(models["altclip"], "cpu")
    assert emb.max_len == emb.model.config.text_config.max_position_embeddings - 2
    v = emb.encode_texts(["书" * 300, "a photo of the city " * 40])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_bad_model_spec_names_the_choices():
    from curation.signals.embed import make_embedder

    with pytest.raises(ValueError, match="open_clip:NAME"):
        make_embedder("clip-vit")
    with pytest.raises(ValueError, match="hf:PATH"):
        make_embedder("hf:")


def test_gpu_conf_and_discovery_script():
    from curation.signals.gpu import discovery_script, pick_device, spark_gpu_conf

    assert spark_gpu_conf("auto", None, 1.0, 1) == {}  # local mode has no resource scheduling
    assert spark_gpu_conf("cpu", "spark://h:7077", 1.0, 1) == {}
    conf = spark_gpu_conf("auto", "spark://h:7077", 0.5, 2)
    assert conf["spark.task.resource.gpu.amount"] == "0.5" and conf["spark.executor.resource.gpu.amount"] == "2"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == discovery_script()
    out = subprocess.run(["bash", discovery_script()], capture_output=True, text=True, check=True,
                         env={"CUDA_VISIBLE_DEVICES": "0,3", "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout) == {"name": "gpu", "addresses": ["0", "3"]}
    assert pick_device("cpu") == "cpu"


def test_caption_rows_are_embedded_and_scored_against_the_stored_image(models):
    """Only kept captions get a vector; clip_score is the cosine with the sample's stored img_emb."""
    from curation.signals.embed import embed_captions, get_embedder

    emb = get_embedder(models["altclip"], "cpu")
    china, _ = _photos()
    img = emb.encode_images([china])
    rows = pd.DataFrame({"id": ["a", "a", "a", "b", "c"], "text": ["一座城市", "a photo of the city", None, "cat", "dog"],
                         "drop_reason": [None, None, "too_short", None, None],
                         "error": [None, None, None, None, "HTTP 503"]}, index=[5, 6, 7, 8, 9])
    out = embed_captions(rows, {"a": codec.encode(img)[0], "b": None}, emb, batch_size=1)
    assert list(out.index) == [5, 6, 7, 8, 9] and out["txt_emb"].notna().tolist() == [True, True, False, True, False]
    assert out["emb_model"].dropna().eq(models["altclip"]).all()
    txt = codec.decode(out["txt_emb"].iloc[:2])
    np.testing.assert_allclose(txt, emb.encode_texts(["一座城市", "a photo of the city"]), atol=2e-3)
    want = txt @ img[0] / np.linalg.norm(txt, axis=1)
    np.testing.assert_allclose(out["clip_score"].iloc[:2].astype(float), want, atol=5e-3)
    assert out.loc[8, "clip_score"] is None  # no stored image vector: text embedded, no score
    with pytest.raises(ValueError, match="was not made by"):
        embed_captions(rows, {"a": codec.encode(np.ones((1, 8)))[0]}, emb)


def test_descriptor_cannot_embed_captions():
    from curation.signals.embed import require_text_tower

    with pytest.raises(ValueError, match="no text tower"):
        require_text_tower("descriptor-v1", "stage3.embed_captions")
    require_text_tower("open_clip:ViT-B-32", "x")  # not loaded: only the spec is checked
