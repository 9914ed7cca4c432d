"""The DiT: exact zero at init, padding invariance, diffusers save/load, presets."""

import pytest

torch = pytest.importorskip("torch")

from tests.training.conftest import trained_like  # noqa: E402


def _inputs(b=2, L=5, text_dim=32, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(b, 4, size, size, generator=g), t=torch.rand(b, generator=g),
                text=torch.randn(b, L, text_dim, generator=g), text_mask=torch.ones(b, L, dtype=torch.bool),
                pooled=torch.randn(b, text_dim, generator=g))


def _trained_like(model, seed=1):
    return trained_like(model, seed).eval()


def test_output_is_exactly_zero_at_init_and_shape_kept():
    from training.models.dit import preset

    m = preset("debug").eval()
    out = m(**_inputs())
    assert out.shape == (2, 4, 16, 16)
    assert torch.equal(out, torch.zeros_like(out))


def test_padding_tokens_do_not_change_the_output():
    from training.models.dit import preset

    m = _trained_like(preset("debug", depth_double=2, depth_single=2))
    a = _inputs()
    pad = torch.randn(2, 7, 32) * 5  # random pad content: only the mask may hide it
    b = dict(a, text=torch.cat([a["text"], pad], 1),
             text_mask=torch.cat([a["text_mask"], torch.zeros(2, 7, dtype=torch.bool)], 1))
    with torch.no_grad():
        out_a, out_b = m(**a), m(**b)
    assert out_a.abs().mean() > 1e-3  # the perturbed model is not trivially zero
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    # and unmasked padding would change it: the test can fail
    c = dict(b, text_mask=torch.ones(2, 12, dtype=torch.bool))
    with torch.no_grad():
        assert (m(**c) - out_a).abs().max() > 1e-3


def test_gradients_flow_and_are_finite():
    from training.models.dit import preset

    m = _trained_like(preset("debug")).train()
    m(**_inputs()).square().mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_diffusers_save_and_from_pretrained_round_trip(tmp_path):
    from training.models.dit import DiT, preset

    m = _trained_like(preset("debug", rope_interp=0.5))
    m.save_pretrained(tmp_path / "dit")
    assert (tmp_path / "dit" / "config.json").is_file()
    assert (tmp_path / "dit" / "diffusion_pytorch_model.safetensors").is_file()
    back = DiT.from_pretrained(tmp_path / "dit").eval()
    assert back.config.rope_interp == 0.5
    with torch.no_grad():
        torch.testing.assert_close(m(**_inputs()), back(**_inputs()), atol=0, rtol=0)


def test_presets_have_their_sizes_and_unknown_names_fail():
    from training.models.dit import preset

    with torch.device("meta"):
        n2 = sum(p.numel() for p in preset("2b").parameters())
        n8 = sum(p.numel() for p in preset("8b").parameters())
    sd3_medium = 2.028e9  # diffusers SD3Transformer2DModel at SD3-medium's shape, the GPU benchmark's baseline
    assert abs(n2 / sd3_medium - 1) < 0.10 and 7.5e9 < n8 < 8.5e9
    with pytest.raises(ValueError, match="choose one of"):
        preset("huge")


def test_attention_kernel_choice_keeps_the_output_and_refuses_unknown_names():
    from training.engine.parallel import attention_kernel
    from training.models.dit import preset

    m = _trained_like(preset("debug"))
    a = _inputs()
    padded = dict(a, text_mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    with torch.no_grad():
        ref, ref_padded = m(**a), m(**padded)
        for name in ("math", "flash", "cudnn"):  # kernels the CPU lacks fall back in torch's order
            with attention_kernel(name):
                torch.testing.assert_close(m(**a), ref, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(m(**padded), ref_padded, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="choose one of"):
        attention_kernel("fast")
