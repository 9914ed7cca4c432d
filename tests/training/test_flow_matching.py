"""Rectified flow: timestep densities, the shift, the oracle velocity, the Euler sampler with CFG."""

import math

import pytest

torch = pytest.importorskip("torch")


def test_logit_normal_median_and_modes():
    from training.objectives.flow_matching import sample_t

    g = torch.Generator().manual_seed(0)
    t = sample_t(100_000, "logit_normal", g, mean=0.5, std=1.0)
    assert t.median().item() == pytest.approx(1 / (1 + math.exp(-0.5)), abs=0.01)
    u = sample_t(100_000, "uniform", g)
    assert u.mean().item() == pytest.approx(0.5, abs=0.01)
    m = sample_t(10_000, "mode", g)
    assert 0 <= m.min() and m.max() <= 1
    with pytest.raises(ValueError, match="choose one of"):
        sample_t(3, "cosine", g)


def test_shift_is_monotone_fixes_ends_and_matches_quantiles():
    from training.objectives.flow_matching import apply_shift, sample_t, shift_for

    grid = torch.linspace(0, 1, 101)
    s = apply_shift(grid, 3.0)
    assert s[0] == 0 and s[-1] == 1 and (s[1:] > s[:-1]).all()
    t = sample_t(50_000, "uniform", torch.Generator().manual_seed(1))
    q = torch.quantile(apply_shift(t, 3.0), torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(q, apply_shift(torch.tensor([0.25, 0.5, 0.75]), 3.0), atol=0.01, rtol=0)
    assert shift_for(1024, 1.0, 256) == pytest.approx(2.0) and shift_for(256, 1.5, 256) == pytest.approx(1.5)


def test_oracle_velocity_gives_zero_loss_and_one_euler_step_recovers_data():
    from training.objectives.flow_matching import euler_sample, training_loss

    x0 = torch.randn(4, 4, 8, 8)
    g = torch.Generator().manual_seed(0)

    def oracle(xt, t):  # knows x0, so v = (xt - x0) / t = eps - x0
        return (xt - x0) / t.view(-1, 1, 1, 1)

    loss, losses, t = training_loss(oracle, x0, g)
    assert loss.item() < 1e-8 and losses.shape == (4,) and ((t > 0) & (t < 1)).all()
    noise = torch.randn(4, 4, 8, 8)
    out = euler_sample(lambda x, t: noise - x0, noise, steps=1)
    torch.testing.assert_close(out, x0)


def test_cfg_combines_conditional_and_unconditional_velocities():
    from training.objectives.flow_matching import euler_sample

    noise = torch.zeros(1, 1, 2, 2)
    out = euler_sample(lambda x, t: torch.ones_like(x), noise, steps=4, cfg_scale=3.0,
                       uncond_fn=lambda x, t: torch.zeros_like(x))
    torch.testing.assert_close(out, torch.full_like(noise, -3.0))  # v = 0 + 3 * (1 - 0) = 3, integrated from 1 to 0


def test_bucket_losses_count_every_sample_once():
    from training.objectives.flow_matching import bucket_losses

    t = torch.tensor([0.05, 0.3, 0.31, 0.99])
    out = bucket_losses(t, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert sum(n for _, n in out.values()) == 4 and out["t0.25-0.50"] == (5.0, 2)
