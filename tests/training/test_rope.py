"""Scaling RoPE: relative-position invariance, centred grids, plain axial RoPE at the reference size."""

import pytest

torch = pytest.importorskip("torch")


def _plain_axial(h, w, head_dim, theta=10000.0):
    """Textbook axial RoPE with integer row/col indices, written independently of the module."""
    axis = head_dim // 2
    inv = 1.0 / theta ** (torch.arange(0, axis, 2).double() / axis)
    rows, cols = torch.meshgrid(torch.arange(h).double(), torch.arange(w).double(), indexing="ij")
    return torch.cat([rows.reshape(-1, 1) * inv, cols.reshape(-1, 1) * inv], -1).float()


def test_reference_size_equals_plain_axial_rope_for_any_interp():
    from training.models.rope import image_angles

    for interp in (0.0, 0.5, 1.0):
        torch.testing.assert_close(image_angles(8, 8, 16, ref=8, interp=interp), _plain_axial(8, 8, 16))
    assert not torch.allclose(image_angles(16, 16, 16, ref=8)[:64], _plain_axial(8, 8, 16))


def test_centre_patch_keeps_its_position_across_grid_sizes():
    from training.models.rope import grid_positions, image_scale

    for interp in (0.0, 1.0):
        centres = [grid_positions(n, 8, image_scale(n, n, 8, interp))[n // 2].item() for n in (5, 9, 17)]
        assert centres == pytest.approx([3.5] * 3)
        means = [grid_positions(n, 8, image_scale(n, n, 8, interp)).mean().item() for n in (4, 8, 16)]
        assert means == pytest.approx([3.5] * 3)


def test_full_interpolation_spans_the_same_range_at_every_size():
    from training.models.rope import grid_positions, image_scale

    a = grid_positions(8, 8, image_scale(8, 8, 8, 1.0))
    b = grid_positions(16, 8, image_scale(16, 16, 8, 1.0))
    torch.testing.assert_close(b[1::2] - 0.25, a)  # twice the patches, half the step, same span


def test_logits_depend_only_on_relative_position():
    from training.models.rope import apply_rope, axis_freqs

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 6, 16, generator=g), torch.randn(1, 1, 6, 16, generator=g)
    pos = torch.rand(6, generator=g) * 10
    inv = axis_freqs(16, 10000.0)

    def logits(p):
        ang = p[:, None] * inv[None]
        qr, kr = apply_rope(q, ang.cos(), ang.sin()), apply_rope(k, ang.cos(), ang.sin())
        return qr[0, 0] @ kr[0, 0].T

    torch.testing.assert_close(logits(pos), logits(pos + 3.7), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits(pos), logits(pos * 2), atol=1e-3)


def test_ntk_only_changes_larger_grids_and_tables_are_fp32_and_cached():
    from training.models.rope import image_angles, joint_tables

    torch.testing.assert_close(image_angles(8, 8, 16, 8, ntk=1.0), image_angles(8, 8, 16, 8, ntk=0.0))
    assert not torch.allclose(image_angles(16, 16, 16, 8, ntk=1.0), image_angles(16, 16, 16, 8, ntk=0.0))
    cos, sin = joint_tables(4, 6, 3, 16, 8)
    assert cos.dtype == torch.float32 and cos.shape == (4 * 6 + 3, 8)
    assert joint_tables(4, 6, 3, 16, 8)[0] is cos
    with pytest.raises(ValueError, match="divisible by 4"):
        image_angles(4, 4, 6, 4)
