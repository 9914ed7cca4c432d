"""The watermark map's trainer when it renders while it trains (a GPU box): a sample the generator fails on
is left out and counted, not allowed to end the run; a stream that yields nothing says so. Fine-tuning from an
exported map (`--init-onnx`) starts from the same function, keeps its BatchNorm statistics, and says which
--widths a file of other shapes needs."""

import importlib

import numpy as np
import pytest


@pytest.fixture(scope="module")
def script():
    return importlib.import_module("detector_factory.train_watermark_map")


def _render_failing_every_third(job):
    if job[0] % 3 == 0:
        raise ValueError("no room for the headline")
    return {"index": job[0], "x": np.zeros((3, 16, 16), np.uint8)}


def test_stream_leaves_out_and_counts_samples_the_generator_fails_on(script, monkeypatch):
    monkeypatch.setattr(script, "_render", _render_failing_every_third)
    monkeypatch.setattr(script, "_init_worker", lambda split, extra_photos=None: None)
    stream = script.StreamingSet(9, 0, 0.0, 1, None)  # workers fork with the patched module
    stream.thread.join(timeout=120)
    rows = stream.close()
    assert sorted(r["index"] for r in rows) == [1, 2, 4, 5, 7, 8]
    assert len(stream.errors) == 3 and all("ValueError: no room for the headline" in e for e in stream.errors)


def test_a_stream_that_renders_nothing_says_so(script, monkeypatch):
    monkeypatch.setattr(script, "_render", lambda job: 1 / 0)
    monkeypatch.setattr(script, "_init_worker", lambda split, extra_photos=None: None)
    stream = script.StreamingSet(4, 0, 0.0, 1, None)
    stream.thread.join(timeout=120)
    with pytest.raises(RuntimeError, match="no training sample"):
        stream.wait_for(2)
    stream.close()
    assert len(stream.errors) == 4


def _tiny_exported_map(script, tmp_path, widths=(4, 6, 8, 10)):
    import torch

    torch.manual_seed(0)
    net = script.build_model(widths)
    net.train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that folding them changes weights
        for _ in range(3):
            net(torch.rand(4, 3, 64, 64))
    net.eval()
    path = tmp_path / "map.onnx"
    script.export_onnx(net, path)
    return net, path


def test_a_map_started_from_its_onnx_file_computes_the_same_function(script, tmp_path):
    import torch

    trained, path = _tiny_exported_map(script, tmp_path)
    fresh = script.build_model((4, 6, 8, 10))
    script.init_from_onnx(fresh, path)
    fresh.eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        assert torch.allclose(fresh(x), trained(x), atol=1e-4)
        assert not torch.allclose(script.build_model((4, 6, 8, 10)).eval()(x), trained(x), atol=1e-2)


def test_fine_tuning_keeps_the_batchnorm_statistics(script, tmp_path):
    import torch

    _, path = _tiny_exported_map(script, tmp_path)
    net = script.build_model((4, 6, 8, 10))
    script.init_from_onnx(net, path)
    stats = [m.running_var.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    script.set_training(net)
    net(torch.rand(4, 3, 64, 64) * 5).mean().backward()
    after = [m.running_var for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))
    assert net.out.weight.grad is not None  # still learning


def test_a_map_file_of_other_widths_is_refused_with_what_to_give(script, tmp_path):
    _, path = _tiny_exported_map(script, tmp_path)
    with pytest.raises(ValueError, match="--widths"):
        script.init_from_onnx(script.build_model((4, 6, 8, 12)), path)


def test_a_file_that_is_no_onnx_model_is_named(script, tmp_path):
    junk = tmp_path / "map.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="map.onnx is not an ONNX model"):
        script.init_from_onnx(script.build_model((4, 6, 8, 10)), junk)


def test_a_missing_init_file_is_refused_before_any_rendering(script, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(script, "render_set", lambda *a, **k: pytest.fail("rendered before checking --init-onnx"))
    with pytest.raises(SystemExit):
        script.main(["--init-onnx", str(tmp_path / "nope.onnx"), "--out", str(tmp_path)])
    assert "no such file" in capsys.readouterr().err
