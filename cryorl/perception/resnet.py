"""ResNet (He et al. 2016), the backbone of the CryoRL hole-quality regressor (ResNet-50 on 8-bit crops)."""
from __future__ import annotations

import torch
from torch import nn

from cryorl.perception.registry import register_model

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "StagedBackbone"]


class ResidualBlock(nn.Module):
    """``relu(body(x) + skip(x))``: the skip is the identity, or a strided 1×1 projection where the shape changes.
    Subclasses give ``expansion`` (output channels per unit of width) and ``_body``."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out = width * self.expansion
        self.body = self._body(in_ch, width, out, stride)
        self.skip = nn.Identity() if stride == 1 and in_ch == out else nn.Sequential(
            nn.Conv2d(in_ch, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def _body(self, in_ch: int, width: int, out: int, stride: int) -> nn.Sequential:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class BasicBlock(ResidualBlock):
    """Two 3×3 convolutions (ResNet-18/34)."""

    expansion = 1

    def _body(self, in_ch: int, width: int, out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_ch, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out))


class Bottleneck(ResidualBlock):
    """1×1 reduce, 3×3, 1×1 expand by 4 (ResNet-50)."""

    expansion = 4

    def _body(self, in_ch: int, width: int, out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_ch, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))


class StagedBackbone(nn.Module):
    """A convolutional ``stem``, ``stages``, global average pooling and a ``head``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class ResNet(StagedBackbone):
    """Stem (7×7 stride 2, max-pool), four stages of residual blocks, global average pooling, a linear head.
    Any input size ≥ 32 pixels."""

    def __init__(self, block: str = "basic", layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem: int = 64,
                 in_chans: int = 1, num_outputs: int = 1, drop: float = 0.0) -> None:
        super().__init__()
        cls = Bottleneck if block == "bottleneck" else BasicBlock
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, channels = [], stem
        for i, (n, width) in enumerate(zip(layers, widths)):
            blocks = []
            for k in range(n):
                blocks.append(cls(channels, width, 2 if (k == 0 and i > 0) else 1))
                channels = width * cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(channels, num_outputs))


register_model("resnet18", "resnet", ResNet, "ResNet-18", block="basic", layers=(2, 2, 2, 2),
               widths=(64, 128, 256, 512), stem=64, drop=0.0)
register_model("resnet50", "resnet", ResNet, "ResNet-50 (the CryoRL regressor's backbone)", block="bottleneck",
               layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), stem=64, drop=0.0)
register_model("resnet10_small", "resnet", ResNet, "ResNet-10 at half width: the default CPU predictor",
               block="basic", layers=(1, 1, 1, 1), widths=(32, 64, 128, 256), stem=32, drop=0.0)
register_model("resnet_test", "resnet", ResNet, "test size", block="basic", layers=(1, 1, 1, 1),
               widths=(8, 16, 32, 32), stem=8, drop=0.0)
