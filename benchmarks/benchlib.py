"""What the benchmark and training scripts share: describing the machine, logging progress to stderr and
sample photos. The command line that reproduces a result is `plumbing.cli_options.reproducible_args`."""

from __future__ import annotations

import sys
from pathlib import Path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def require_base(folder: Path, how: str, what: str = "the base") -> None:
    """End the script, saying how to make it, unless `folder` is a pipeline folder (it holds pipeline.json):
    the toy post-training scripts all start from a base that another script trains."""
    if not (Path(folder) / "pipeline.json").is_file():
        sys.exit(f"{folder} is no pipeline folder; train {what} first:\n  {how}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def sample_jpegs(n: int, unique: int | None = None) -> list[bytes]:
    """n 1024x768 JPEGs (quality 90) cropped at random places from scikit-learn's two sample photos, seed 0.

    With `unique`, only that many are made and cycled: decoding the same bytes again is the same work.
    """
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(0)
    out = []
    for i in range(min(n, unique or n)):
        p = photos[i % 2]
        x, y = int(rng.integers(0, 200)), int(rng.integers(0, 120))
        buf = io.BytesIO()
        p.crop((x, y, x + 420, y + 300)).resize((1024, 768)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return [out[i % len(out)] for i in range(n)]

