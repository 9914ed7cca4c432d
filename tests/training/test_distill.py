"""TSCD (Hyper-SD) distillation: the segment schedule, the consistency target, the student's sampler."""

import json

import pytest

torch = pytest.importorskip("torch")


def _cfg(d):
    from training.config import TrainConfig

    return TrainConfig.model_validate(d)


def _tscd_stage(stage_config, base="full", schedule=((8, 2), (4, 2), (2, 2), (1, 2)), solver_steps=8):
    stage_config["objective"] = {"terms": {"tscd": 1.0},
                                 "tscd": {"schedule": [{"segments": k, "steps": s} for k, s in schedule],
                                          "solver_steps": solver_steps, "cfg_scale": 3.0}}
    stage_config["stage"] = {"name": "distill_tscd", "base": base, "conditioner": "frozen", "lora": {"rank": 4}}
    return stage_config


def _random_dit(seed):
    """A debug DiT with every weight random (a fresh one outputs exactly 0: adaLN-Zero)."""
    from training.models.dit import preset

    dit = preset("debug", in_channels=3, patch_size=2)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return dit.eval()


def _fns(dit, n, seed=0):
    """(cond, null) velocity functions of `dit` for n rows: random text vs the all-masked empty prompt."""
    g = torch.Generator().manual_seed(seed)
    d = dit.config.text_dim
    text, pooled = torch.randn(n, 5, d, generator=g), torch.randn(n, d, generator=g)
    mask = torch.ones(n, 5, dtype=torch.bool)
    null = (torch.zeros(n, 1, d), torch.zeros(n, 1, dtype=torch.bool), torch.zeros(n, d))
    return (lambda x, t: dit(x, t, text, mask, pooled)), (lambda x, t: dit(x, t, *null))


# ---- the schedule ------------------------------------------------------------------------------------------

def test_segments_follow_the_schedule_and_their_boundaries_lie_on_the_solver_grid():
    from training.config import TSCDConfig
    from training.objectives.consistency import boundaries, segment_end, segments_at

    c = TSCDConfig(schedule=[{"segments": 8, "steps": 3}, {"segments": 4, "steps": 2}, {"segments": 2, "steps": 2},
                             {"segments": 1, "steps": 1}], solver_steps=48)
    assert [segments_at(c.schedule, s) for s in range(10)] == [8, 8, 8, 4, 4, 2, 2, 1, 1, 1]
    assert boundaries(4, 48) == [0, 12, 24, 36, 48] and boundaries(1, 48) == [0, 48]
    idx = torch.arange(48)
    for k in (8, 4, 2, 1):
        end = segment_end(idx, k, 48)
        # every interval ends its segment at the next boundary at or after idx + 1, and never crosses one
        assert all(e in boundaries(k, 48) and i < e <= i + 48 // k for i, e in zip(idx.tolist(), end.tolist()))
    with pytest.raises(ValueError, match="decrease phase by phase"):
        TSCDConfig(schedule=[{"segments": 2, "steps": 1}, {"segments": 4, "steps": 1}])
    with pytest.raises(ValueError, match="solver_steps=30 is not divisible by segments \\[8, 4\\]"):
        TSCDConfig(solver_steps=30)


def test_a_tscd_stage_lowers_segments_as_scheduled_and_exports_its_student(stage_config):
    from training.engine.loop import Trainer
    from training.pipeline import Pipeline

    tr = Trainer(_cfg(_tscd_stage(stage_config, schedule=((8, 2), (4, 2), (2, 2), (1, 2)))))
    assert tr.reference is not None and tr.reference.copy is not None  # the teacher: a frozen copy of the base
    seen, it = [], iter(tr.data)
    for _ in range(5):
        m = tr.train_step(next(it))
        seen.append(m["terms"]["tscd_segments"])
        assert m["loss"] > 0 and torch.isfinite(torch.tensor(m["loss"]))
    assert seen == [8, 8, 4, 4, 2]
    tr.step = 6  # the 2-segment phase just ended: the export is a 2-step student
    pipe = Pipeline.load(tr.export())
    assert pipe.sampler == {"kind": "tscd", "segments": 2, "solver_steps": 8, "cfg_scale": 3.0}
    assert pipe.default_steps() == 2


def test_tscd_needs_a_frozen_conditioner(stage_config):
    cfg = _tscd_stage(stage_config)
    cfg["stage"]["conditioner"] = "train"
    with pytest.raises(ValueError, match="freeze it \\(stage.conditioner=frozen\\)"):
        _cfg(cfg)


# ---- the consistency target --------------------------------------------------------------------------------

def test_the_consistency_target_is_the_teachers_guided_euler_step():
    from training.objectives.consistency import jump, tscd_pair
    from training.objectives.flow_matching import euler_sample, sigmas

    teacher, student = _random_dit(1), _random_dit(2)
    n = 4
    cond, null = _fns(teacher, n)
    s_cond, _ = _fns(student, n)
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(n, 3, 8, 8, generator=g), torch.randn(n, 3, 8, 8, generator=g)

    # one segment over a one-step grid: the target is exactly the teacher's sampler run for one step
    grid = sigmas(1, 1.0)
    _, target, x_hat, t, s = tscd_pair(s_cond, cond, null, x0, noise, torch.zeros(n, dtype=torch.long), grid, 1, 3.0)
    assert torch.equal(target, euler_sample(cond, noise, 1, 1.0, 64, 2, 3.0, null))

    # 8 segments over an 8-step shifted grid: every interval is its own segment, the target is one Euler step
    grid = sigmas(8, 2.0)
    idx = torch.tensor([0, 3, 5, 7])
    pred, target, x_hat, t, s = tscd_pair(s_cond, cond, null, x0, noise, idx, grid, 8, 3.0)
    x_t = (1 - grid[idx]).view(-1, 1, 1, 1) * x0 + grid[idx].view(-1, 1, 1, 1) * noise
    vc, vu = cond(x_t, grid[idx]), null(x_t, grid[idx])
    step = x_t + (grid[idx + 1] - grid[idx]).view(-1, 1, 1, 1) * (vu + 3.0 * (vc - vu))
    assert torch.allclose(target, step, atol=1e-6) and torch.equal(s, grid[idx + 1])
    assert torch.allclose(pred, x_t + (s - t).view(-1, 1, 1, 1) * s_cond(x_t, t), atol=1e-6)

    # 2 segments: inside a segment the target goes on from the teacher's step with the (stop-gradient) student
    _, target, x_hat, t, s = tscd_pair(s_cond, cond, null, x0, noise, idx, grid, 2, 3.0)
    assert torch.equal(s, grid[torch.tensor([4, 4, 8, 8])])
    t_next = grid[idx + 1]
    inside = target[[0, 1, 2]]
    expect = x_hat + (s - t_next).view(-1, 1, 1, 1) * s_cond(x_hat, t_next)
    assert torch.allclose(inside, expect[[0, 1, 2]], atol=1e-6)
    assert torch.equal(target[3], x_hat[3])  # interval 7 ends at t=0, its segment's end: the teacher's step itself
    assert not target.requires_grad
    # the boundary condition: a jump of length 0 is the identity
    assert torch.equal(jump(x0, t, t, s_cond(x0, t)), x0)


# ---- the student's sampler ---------------------------------------------------------------------------------

def _count_forwards(dit):
    calls = []
    dit.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_a_student_samples_segment_boundaries_in_its_steps_without_cfg(stage_config, base_pipeline):
    from training.engine.loop import Trainer
    from training.objectives.consistency import boundaries, student_grid
    from training.objectives.flow_matching import sigmas
    from training.pipeline import Pipeline

    tr = Trainer(_cfg(_tscd_stage(stage_config, schedule=((4, 1), (2, 1)), solver_steps=8)))
    tr.run()
    student = Pipeline.load(tr.export())
    assert student.sampler["segments"] == 2
    assert torch.equal(student_grid(2, 8, 1.5), sigmas(8, 1.5)[boundaries(2, 8)])
    calls = _count_forwards(student.dit)
    images = student(["一个红色的圆", "a red circle"], 16, 16, seed=0)
    assert len(calls) == 2 and len(images) == 2 and images[0].size == (16, 16)  # 2 jumps, one evaluation each
    calls.clear()
    student(["a red circle"], 16, 16, steps=1)
    assert len(calls) == 1
    teacher = Pipeline.load(base_pipeline)
    calls = _count_forwards(teacher.dit)
    teacher(["a red circle"], 16, 16, steps=4)
    assert len(calls) == 8 and teacher.sampler is None  # the Euler teacher: CFG, two evaluations per step


def test_a_lora_student_records_its_sampler_in_the_adapter_and_generates(stage_config, base_pipeline, tmp_path):
    from typer.testing import CliRunner

    from training.cli import app
    from training.engine.loop import Trainer

    tr = Trainer(_cfg(_tscd_stage(stage_config, base="lora", schedule=((4, 1), (2, 1)), solver_steps=8)))
    assert tr.reference is not None and tr.reference.copy is None  # the teacher: the base with LoRA disabled
    tr.run()
    adapter = tr.export()
    assert json.loads((adapter / "adapter.json").read_text())["sampler"]["segments"] == 2
    res = CliRunner().invoke(app, ["generate", "-m", str(base_pipeline), "--adapter", str(adapter), "-p", "a red circle",
                                   "-p", "一个蓝色的方块", "--width", "16", "--height", "16", "--steps", "2",
                                   "-o", str(tmp_path / "gen")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "gen").glob("*.png"))) == 2
