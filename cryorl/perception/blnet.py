"""Big-Little Net (Chen, Fan et al., ICLR 2019): bL-ResNet.

Each stage runs two branches on the same input and merges them: a *big* branch with the stage's full width and
depth at half resolution, and a *little* branch at full resolution with the width divided by α and the depth by
β (α = 2, β = 4 in the paper). The big branch is upsampled and added to the little one (widened by a 1×1 conv),
then a residual block fuses them; merging happens at every stage, so the network sees fine detail cheaply and
context at full capacity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryorl.perception.registry import register_model
from cryorl.perception.resnet import BasicBlock, StagedBackbone

__all__ = ["BigLittleNet", "BigLittleStage"]


class BigLittleStage(nn.Module):
    def __init__(self, in_ch: int, width: int, blocks: int, alpha: int, beta: int) -> None:
        super().__init__()
        self.big = nn.Sequential(BasicBlock(in_ch, width, stride=2),
                                 *[BasicBlock(width, width) for _ in range(blocks - 1)])
        little = max(width // alpha, 4)
        self.little = nn.Sequential(BasicBlock(in_ch, little),
                                    *[BasicBlock(little, little) for _ in range(max(blocks // beta, 1) - 1)])
        self.widen = nn.Sequential(nn.Conv2d(little, width, 1, bias=False), nn.BatchNorm2d(width))
        self.fuse = BasicBlock(width, width, stride=2)                       # merge, then halve the resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        little = self.widen(self.little(x))
        big = F.interpolate(self.big(x), size=little.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.relu(big + little))


class BigLittleNet(StagedBackbone):
    """bL-ResNet for single-channel crops; any input size ≥ 32 pixels."""

    def __init__(self, layers=(2, 3, 5, 3), widths=(64, 128, 256, 512), stem: int = 32, alpha: int = 2,
                 beta: int = 4, in_chans: int = 1, num_outputs: int = 1, drop: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        stages, channels = [], stem
        for blocks, width in zip(layers, widths):
            stages.append(BigLittleStage(channels, width, blocks, alpha, beta))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(channels, num_outputs))


register_model("bl_resnet50", "blnet", BigLittleNet, "bL-ResNet-50 (α=2, β=4)", layers=(2, 3, 5, 3),
               widths=(64, 128, 256, 512), stem=32, alpha=2, beta=4, drop=0.0)
register_model("bl_resnet_small", "blnet", BigLittleNet, "bL-ResNet at a CPU size", layers=(1, 2, 2, 1),
               widths=(32, 64, 128, 256), stem=16, alpha=2, beta=4, drop=0.0)
register_model("bl_resnet_test", "blnet", BigLittleNet, "test size", layers=(1, 1, 1, 1), widths=(8, 16, 32, 32),
               stem=8, alpha=2, beta=4, drop=0.0)
