"""Demo corpus -> curation funnel -> stage 3 (alt text) -> export shards -> two training steps -> one sample."""

import math
import shutil

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo_export(spark, demo_run, tmp_path_factory):
    from curation.config import CurateConfig
    from curation.jobs import export, stage3

    run = tmp_path_factory.mktemp("e2e") / "run"
    shutil.copytree(demo_run[0], run)  # the shared demo run stays as other tests expect it
    cfg = CurateConfig.model_validate({"export": {"shard_size": 8, "max_side": 256, "resolutions": [256]}})
    stage3.run(spark, run, run / "stage3", cfg)
    manifest = export.run(spark, run, run / "export", cfg)
    assert manifest["samples"] > 0
    return run / "export"


def tiny_vae(folder):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                  layers_per_block=1, norm_num_groups=8, sample_size=32).save_pretrained(folder)
    return str(folder)


@pytest.mark.slow
def test_demo_export_trains_two_steps_and_samples(demo_export, train_config, tmp_path):
    from training.config import TrainConfig
    from training.engine.loop import Trainer

    train_config["data"] = {"sources": {"demo": {"path": str(demo_export)}}, "batch_size": 2, "resolution": "256",
                            "scale": 0.125}
    train_config["vae"] = {"path": tiny_vae(tmp_path / "vae")}
    tr = Trainer(TrainConfig.model_validate(train_config))
    assert tr.vae.kind == "AutoencoderKL" and tr.dit.config.in_channels == 4
    losses = tr.run(steps=2)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    png = tr.sample_grid()
    from PIL import Image

    w, h = tr.last_size
    assert Image.open(png).size == (w * 2, h)  # two prompts side by side at the training size
