"""Reward models: OCR character match, the learned match model, CLIP alignment and aesthetics by path, loading
failures that say what to fix. Every model is tiny and built here; nothing is downloaded."""

import json
import math

import pytest

torch = pytest.importorskip("torch")


def _spec(**kw):
    from training.rewards.config import RewardSpec

    return RewardSpec(**kw)


# ---- text rendering: OCR ---------------------------------------------------------------------------------

def test_char_match_ignores_spaces_and_case_and_counts_edits():
    from training.rewards.ocr import char_match

    assert char_match("Summer Sale", "SUMMERSALE") == 1.0
    assert char_match("山水画", "山水画") == 1.0
    assert char_match("山水面", "山水画") == pytest.approx(2 / 3)
    assert char_match("", "CAT") == 0.0 and char_match("CATS", "CAT") == pytest.approx(0.75)


def _render(text: str, font_path, size=(256, 96)):
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", size, (245, 245, 240))
    font = ImageFont.truetype(font_path, 44)
    ImageDraw.Draw(im).text((size[0] / 2, size[1] / 2), text, fill=(15, 15, 15), font=font, anchor="mm")
    return im


def test_ocr_reward_is_one_on_an_exact_rendering_and_less_on_a_wrong_character():
    pytest.importorskip("rapidocr")
    from synthetic.sample_corpus import cjk_font_path
    from training.rewards import build_reward
    from training.rewards.base import to_pixels

    font = cjk_font_path()
    if font is None:
        pytest.skip("no CJK font (apt-get install fonts-wqy-microhei)")
    reward = build_reward("text", _spec(kind="ocr"))
    assert not reward.differentiable
    images = [_render("山水画", font), _render("SUMMER", font), _render("山水画", font), _render("SUMMER", font),
              _render("SUMMER", font)]
    prompts = ["一幅写着“山水画”的海报", 'a poster that says "SUMMER"', "一幅写着“山水面”的海报",
               'a poster that says "SUMMFR"', "a poster with no quoted text"]
    r = reward(to_pixels(images), prompts).tolist()
    assert r[0] == 1.0 and r[1] == 1.0
    assert r[2] < 1.0 and r[3] < 1.0
    assert math.isnan(r[4])  # nothing to render: the reward does not apply


# ---- the learned match model -----------------------------------------------------------------------------

def test_a_match_model_learns_toy_prompt_image_match_and_its_reward_is_differentiable(tmp_path):
    from synthetic.toy_shapes import match_data
    from training.rewards import build_reward
    from training.rewards.match import MatchNet, evaluate, fit_match, save_match

    torch.manual_seed(0)
    net = MatchNet(size=32, width=32, text_layers=1)
    x, texts, y = match_data(1000, seed=5)
    chance = evaluate(net, *match_data(200, seed=6))["accuracy"]
    fit_match(net, x, texts, y, epochs=8, lr=3e-3, batch=32)
    held = evaluate(net, *match_data(200, seed=6))
    assert held["accuracy"] > max(0.75, chance + 0.2)
    folder = save_match(net, tmp_path / "toy_match", {"name": "toy match", "metrics": held})
    assert "Held-out" in (folder / "MODEL_CARD.md").read_text()
    reward = build_reward("toy", _spec(kind="match", path=str(folder)))
    pixels = x[:4].clone().requires_grad_(True)
    r = reward(pixels, texts[:4])
    assert r.shape == (4,) and ((r >= 0) & (r <= 1)).all()
    r.sum().backward()
    assert pixels.grad.abs().sum() > 0  # feedback learning can follow it
    assert all(p.grad is None and not p.requires_grad for p in reward.net.parameters())  # and never trains it
    logp = build_reward("toy", _spec(kind="match", path=str(folder), options={"output": "logprob"}))
    assert torch.allclose(logp(x[:4], texts[:4]), r.detach().log(), atol=1e-5)
    with pytest.raises(Exception, match="output, one of"):
        build_reward("toy", _spec(kind="match", path=str(folder), options={"output": "logit"}))


def test_a_quoted_text_match_model_does_not_apply_to_prompts_without_quotes(tmp_path):
    from training.rewards import build_reward
    from training.rewards.match import MatchNet, save_match

    folder = save_match(MatchNet(size=32, width=16, text_layers=1, text_input="quoted"), tmp_path / "proxy", {})
    reward = build_reward("text_proxy", _spec(kind="match", path=str(folder)))
    r = reward(torch.zeros(2, 3, 32, 32), ['the word "CAT"', "a red circle"])
    assert not math.isnan(r[0].item()) and math.isnan(r[1].item())


# ---- CLIP alignment and aesthetics ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    pytest.importorskip("open_clip")
    pytest.importorskip("transformers")
    from tests.fixtures.tiny_clip import write_tiny_hf_clip, write_tiny_open_clip

    d = tmp_path_factory.mktemp("clips")
    return {"open_clip": write_tiny_open_clip(d / "oc"), "clip": write_tiny_hf_clip(d / "clip"),
            "chinese_clip": write_tiny_hf_clip(d / "cn", "chinese_clip"),
            "altclip": write_tiny_hf_clip(d / "alt", "altclip")}


@pytest.mark.parametrize("kind", ["open_clip", "clip", "chinese_clip", "altclip"])
def test_clip_alignment_loads_by_path_and_its_gradient_reaches_the_pixels_only(tiny_clips, kind):
    from training.rewards import build_reward

    reward = build_reward("align", _spec(kind="clip", path=tiny_clips[kind]))
    pixels = (torch.rand(2, 3, 48, 40) * 2 - 1).requires_grad_(True)  # not the CLIP's size: resized inside
    r = reward(pixels, ["一只红色的猫", "a red cat"])
    assert r.shape == (2,) and (r.abs() <= 1 + 1e-5).all()  # a cosine
    r.sum().backward()
    assert pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in reward.net.parameters())


def _laion_head(path, dim, card=None):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    shapes = [(8, dim), (4, 8), (1, 4)]
    save_file({f"layers.{2 * i}.{k}": (torch.randn(o, n, generator=g) if k == "weight" else torch.randn(o, generator=g))
               for i, (o, n) in enumerate(shapes) for k in ("weight", "bias")}, str(path))
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card))
    return path


def test_aesthetic_reward_is_the_laion_head_over_normalised_clip_features(tiny_clips, tmp_path):
    import torch.nn.functional as F

    from training.rewards import RewardLoadError, build_reward

    spec = tiny_clips["clip"]
    head = _laion_head(tmp_path / "aesthetic_head.safetensors", 16, {"emb_model": spec})
    reward = build_reward("aes", _spec(kind="aesthetic", path=str(head)))  # the CLIP comes from the card
    pixels = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        emb = F.normalize(reward.clip.image_features(pixels), dim=-1)
        want = reward.head(emb)[:, 0]
    assert torch.allclose(reward(pixels, ["", "", ""]), want)
    with pytest.raises(RewardLoadError, match="trained on"):
        build_reward("aes", _spec(kind="aesthetic", path=str(head), clip=tiny_clips["altclip"]))
    wrong = _laion_head(tmp_path / "wide.safetensors", 32)
    with pytest.raises(RewardLoadError, match="takes 32-d embeddings"):
        build_reward("aes", _spec(kind="aesthetic", path=str(wrong), clip=spec))


def test_a_preference_head_starts_as_clip_similarity_and_learns_the_preferred_side(tiny_clips, tmp_path):
    import torch.nn.functional as F

    from training.rewards import build_reward
    from training.rewards.heads import PreferenceHead, fit_preference_head, save_preference_head

    g = torch.Generator().manual_seed(0)
    direction = F.normalize(torch.randn(16, generator=g), dim=0)
    txt = F.normalize(torch.randn(200, 16, generator=g), dim=-1)
    noise = lambda: F.normalize(torch.randn(200, 16, generator=g), dim=-1)  # noqa: E731
    win, lose = F.normalize(noise() + direction, dim=-1), F.normalize(noise() - direction, dim=-1)
    head = PreferenceHead(16, 32)
    assert torch.allclose(head(win, txt), (win * txt).sum(-1))  # zero-initialised correction
    metrics = fit_preference_head(head, win, lose, txt, epochs=30, lr=3e-3)
    assert metrics["pair_accuracy"] > 0.9
    path = save_preference_head(head, tmp_path / "pref.safetensors", tiny_clips["clip"], {"data": "synthetic"})
    reward = build_reward("align", _spec(kind="clip", path=tiny_clips["clip"], head=str(path)))
    assert reward(torch.zeros(1, 3, 32, 32), ["a cat"]).shape == (1,)


# ---- loading fails before training, with the fix ----------------------------------------------------------

def test_a_reward_that_cannot_load_says_what_to_fix(tmp_path, tiny_clips):
    from training.rewards import RewardLoadError, build_reward

    with pytest.raises(RewardLoadError, match="not a match model folder.*train_toy_rlhf"):
        build_reward("toy", _spec(kind="match", path=str(tmp_path / "nowhere")))
    with pytest.raises(RewardLoadError, match="cannot load the CLIP.*local folder"):
        build_reward("align", _spec(kind="clip", path=f"hf:{tmp_path / 'no_clip'}"))
    with pytest.raises(RewardLoadError, match="does not exist.*train-aesthetic"):
        build_reward("aes", _spec(kind="aesthetic", path=str(tmp_path / "head.safetensors"), clip="hf:x"))
    with pytest.raises(RewardLoadError, match="preference head .* does not exist"):
        build_reward("align", _spec(kind="clip", path=tiny_clips["clip"], head=str(tmp_path / "h.safetensors")))


def test_reward_paths_are_required_in_config_and_named_in_the_error():
    from pydantic import ValidationError

    from training.rewards.config import FeedbackConfig

    with pytest.raises(ValidationError, match=r"objective\.feedback\.rewards\.align\.path: a CLIP"):
        FeedbackConfig(rewards={"align": {"kind": "clip"}, "text": {"kind": "ocr"}})
    with pytest.raises(ValidationError, match="kind"):
        FeedbackConfig(rewards={"x": {"kind": "pickscore", "path": "p"}})
    with pytest.raises(ValidationError, match="grad_steps <= window <= steps"):
        FeedbackConfig(steps=4, window=2, grad_steps=3)
