"""Torch building blocks shared by the structure detectors' training scripts (torch needed; not imported by stage 1).

The exported ONNX graphs carry these modules' fixed weights, so stage 1 runs them without torch.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def gaussian(sigma: float, k: int) -> torch.Tensor:
    t = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    g = torch.exp(-t**2 / (2 * sigma**2))
    g2 = torch.outer(g, g)
    return (g2 / g2.sum()).view(1, 1, k, k)


class LocalContrast(nn.Module):
    """Luma minus its local mean, divided by its local spread: a faint mark on a flat sky becomes as
    strong as a printed word, while busy texture stays texture. Fixed weights, exported with the model."""

    def __init__(self, sigma: float = 2.0, k: int = 9, floor: float = 6 / 255):
        super().__init__()
        self.register_buffer("kernel", gaussian(sigma, k))
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))
        self.pad, self.floor2 = k // 2, floor**2

    def forward(self, x):  # (B, 3, H, W) in [0, 1] -> (B, 1, H, W)
        y = (x * self.luma).sum(1, keepdim=True)
        blur = nn.functional.conv2d(nn.functional.pad(y, [self.pad] * 4, mode="replicate"), self.kernel)
        d = y - blur
        var = nn.functional.conv2d(nn.functional.pad(d * d, [self.pad] * 4, mode="replicate"), self.kernel)
        return d / torch.sqrt(var + self.floor2)


def conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def export_sigmoid_onnx(model: nn.Module, path, example: torch.Tensor, output_name: str, dynamic_axes: dict,
                        meta: dict[str, str]) -> None:
    """Export `model` with a sigmoid on its logits (input "image", opset 17) and write `meta` into the file's
    metadata, where the stage-1 loaders read what the net expects."""
    import onnx

    class WithSigmoid(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            return torch.sigmoid(self.net(image))

    wrapped = WithSigmoid(model.to(memory_format=torch.contiguous_format)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(wrapped, (example,), str(path), input_names=["image"], output_names=[output_name],
                      dynamic_axes=dynamic_axes, opset_version=17, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def warmup_cosine(base_lr: float, step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 as `progress` (share of the step or time
    budget spent, 0..1) reaches 1."""
    return base_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
