"""Where a model runs: the GPU Spark gave this task, any local GPU, or the CPU.

GPUs are requested through Spark's resource scheduling, never by a scheduler of our own: an executor
declares how many GPUs it has (found by `curation/scripts/gpu_discovery.sh`) and each task asks for a
share (`spark.task.resource.gpu.amount`); Spark then tells the task which GPU is its own.
"""

from __future__ import annotations

import logging
from importlib import resources

log = logging.getLogger(__name__)


def discovery_script() -> str:
    """Path of the shipped discovery script (package data), for `spark.executor.resource.gpu.discoveryScript`."""
    return str(resources.files("curation") / "scripts" / "gpu_discovery.sh")


def spark_gpu_conf(device: str, master: str | None, task_amount: float, executor_amount: int) -> dict[str, str]:
    """Spark settings that schedule GPU tasks; empty on CPU and in local mode (which has no resource scheduling).

    `task_amount` 0.5 lets two tasks share a GPU (two batches in flight while one decodes).
    """
    if device == "cpu" or not master or master.startswith("local"):
        return {}
    return {
        "spark.executor.resource.gpu.amount": str(executor_amount),
        "spark.executor.resource.gpu.discoveryScript": discovery_script(),
        "spark.task.resource.gpu.amount": str(task_amount),
    }


def task_gpu() -> str | None:
    """The GPU address Spark assigned to the running task, if any (the worker may not run Spark at all)."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    ctx = TaskContext.get()
    if ctx is None:
        return None
    gpus = ctx.resources().get("gpu")
    return gpus.addresses[0] if gpus and gpus.addresses else None


def pick_device(wanted: str = "auto") -> str:
    """`cpu`, `cuda` (fails without one) or `auto`; a Spark-assigned GPU wins over cuda:0."""
    if wanted == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if wanted.startswith("cuda"):
            raise RuntimeError(f"device {wanted!r} (stage2.embed.device / stage3.captioner.device) but torch sees no GPU "
                               f"(torch {torch.__version__}); use device: auto or cpu, or install a CUDA build")
        return "cpu"
    if wanted.startswith("cuda:"):
        return wanted
    addr = task_gpu()
    return f"cuda:{addr}" if addr is not None else "cuda:0"
