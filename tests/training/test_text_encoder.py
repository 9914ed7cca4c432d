"""LLM text encoder (layer, mask, refiner), ByT5 glyph encoder, quoted spans, CFG dropout."""

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from synthetic.toy_shapes import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("llm"), hidden=32)


def test_quoted_spans_in_any_quote_style_and_script():
    from training.models.text_encoder import quoted_spans

    assert quoted_spans('a sign that says "OPEN" and “限时特卖”') == ["OPEN", "限时特卖"]
    assert quoted_spans("招牌上写着「欢迎光临」和『好』, ‘hi’") == ["欢迎光临", "好", "hi"]
    assert quoted_spans("a red circle") == []


def test_llm_features_ignore_padding_and_use_the_chosen_layer(llm_dir):
    from training.models.text_encoder import LLMTextEncoder, masked_mean

    torch.manual_seed(0)
    enc = LLMTextEncoder(str(llm_dir), out_dim=16, hidden_layer=-2).eval()
    assert not any(p.requires_grad for p in enc.llm.parameters())
    with torch.no_grad():
        alone, m1 = enc(["一个红色的圆"])
        padded, m2 = enc(["一个红色的圆", "a yellow triangle on a white background, and a green square"])
    n = int(m1.sum())
    assert m2[0].sum() == n and m2.shape[1] > n  # the first prompt is padded in the batch
    torch.testing.assert_close(padded[0, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
    assert (padded[0, n:] == 0).all()
    torch.testing.assert_close(masked_mean(padded, m2)[0], masked_mean(alone, m1)[0], atol=1e-5, rtol=1e-5)
    enc.hidden_layer = -1
    with torch.no_grad():
        assert not torch.allclose(enc(["一个红色的圆"])[0], alone)


def test_conditioner_joins_glyph_tokens_and_drops_per_encoder(llm_dir):
    from training.models.text_encoder import Conditioner, GlyphEncoder, LLMTextEncoder

    torch.manual_seed(0)
    t5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    cond = Conditioner(LLMTextEncoder(str(llm_dir), 16), GlyphEncoder(16, t5_config=t5), 16, drop_text=0.5,
                       drop_glyph=0.5).eval()
    with torch.no_grad():
        tok, mask, pooled = cond(['the word "CAT"', "a red circle"])
        assert tok.shape[-1] == 16 and pooled.shape == (2, 16) and torch.isfinite(tok).all()
        n_llm = cond.llm(['the word "CAT"', "a red circle"])[1].shape[1]
        assert mask[0, n_llm:].sum() == len("CAT") + 1  # bytes + </s>
        assert mask[1, n_llm:].sum() == 0  # no quoted text, no glyph tokens
        null_a, null_b = cond.null(2), cond.null(2)
        torch.testing.assert_close(null_a[0], null_b[0])  # the empty prompt is deterministic
        assert null_a[1].sum() == 0  # empty prompt, no glyph: nothing to attend to
        g = torch.Generator().manual_seed(0)
        dropped = cond(['the word "CAT"'] * 64, generator=g)[1]
    glyph_on = dropped[:, n_llm:].any(1).float().mean().item()
    assert 0.1 < glyph_on < 0.45  # kept only when neither the caption (0.5) nor the glyph (0.5) is dropped
