"""`torchrun` with FSDP2 over two CPU ranks (gloo), data read by a DataLoader worker per rank: trains, keeps
ranks in step, checkpoints (each rank its own data position), resumes, exports."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]


def _torchrun(config: Path, steps: int, port: int) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "sluice.cli", "train", "--config", str(config), "--set", f"run.steps={steps}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_fsdp2_on_two_cpu_ranks_trains_resumes_and_exports(train_config, tmp_path):
    import yaml

    train_config["data"]["batch_size"] = 2
    train_config["data"]["workers"] = 1  # each rank reads through a DataLoader worker, as on GPU nodes
    train_config["run"].update(fsdp="on", ckpt_every=2, log_every=1)
    config = tmp_path / "fsdp.yaml"
    config.write_text(yaml.safe_dump(train_config, allow_unicode=True))
    port = 29500 + os.getpid() % 400
    first = _torchrun(config, 3, port)
    norms = re.findall(r"step 3 loss=\S+ grad_norm=(\S+)", first)
    assert len(norms) == 2 and norms[0] == norms[1]  # both ranks clip the same, all-reduced gradient
    ckpt = Path(train_config["run"]["out_dir"]) / "checkpoints" / "step-00000003"
    assert (ckpt / "_COMPLETE").exists() and {p.name for p in ckpt.glob("extra-rank*.pt")} == {"extra-rank0.pt",
                                                                                            "extra-rank1.pt"}
    import torch

    for rank in (0, 1):  # each rank saved the position of its own DataLoader worker
        data = torch.load(ckpt / f"extra-rank{rank}.pt", weights_only=False)["data"]
        assert data["workers"] == 1 and data["states"][0] is not None
    second = _torchrun(config, 4, port + 1)
    assert "resumed from" in second and "at step 3" in second and "step 4 loss" in second

    from training.pipeline import Pipeline

    pipe = Pipeline.load(Path(train_config["run"]["out_dir"]) / "pipeline")
    assert len(pipe(["一个红色的圆"], 32, 32, steps=2)) == 1
