"""Temporal models for exposure movie stacks (B, T frames, C, H, W).

- ``TemporalSegmentModel`` (TSN / TAM): a 2D image backbone on every frame; frame features are aggregated over
  time — by averaging (TSN) or by a temporal adaptive module (TAM: a local branch re-weights each frame's
  channels from its temporal neighbourhood, a global branch predicts a per-clip temporal kernel applied as a
  depthwise temporal convolution) before averaging.
- ``SuperImage``: frames tiled into one near-square "super image" for any image backbone.
Both take any number of frames.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cryorl.perception.registry import create_model, register_model

__all__ = ["TemporalSegmentModel", "TemporalAdaptiveModule", "SuperImage"]


class TemporalAdaptiveModule(nn.Module):
    def __init__(self, channels: int, kernel: int = 3, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.kernel = kernel
        self.local = nn.Sequential(nn.Conv1d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                   nn.Conv1d(hidden, channels, 1), nn.Sigmoid())
        self.global_kernel = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                           nn.Linear(hidden, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) frame features → (B, T, C)."""
        b, t, c = x.shape
        seq = x.transpose(1, 2)                                               # (B, C, T)
        seq = seq * self.local(seq)
        weights = torch.softmax(self.global_kernel(x.mean(dim=1)), dim=-1)    # (B, K): one kernel per clip
        padded = F.pad(seq, (self.kernel // 2, self.kernel // 2), mode="replicate")
        windows = padded.unfold(2, self.kernel, 1)                            # (B, C, T, K)
        return (windows * weights[:, None, None, :]).sum(-1).transpose(1, 2)


class TemporalSegmentModel(nn.Module):
    def __init__(self, backbone: str = "resnet_test", aggregation: str = "tam", in_chans: int = 1,
                 num_outputs: int = 1, drop: float = 0.0) -> None:
        super().__init__()
        if aggregation not in ("tam", "avg"):
            raise ValueError(f"aggregation must be 'tam' or 'avg', got {aggregation!r}")
        self.backbone = create_model(backbone, in_chans=in_chans, num_outputs=1)
        self.backbone.head = nn.Identity()                        # frame features only; the clip has the head
        features = self.backbone.num_features
        self.tam = TemporalAdaptiveModule(features) if aggregation == "tam" else None
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(features, num_outputs))
        self.num_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"a movie model needs (batch, frames, channels, H, W), got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        frames = self.backbone.forward_features(x.flatten(0, 1)).reshape(b, t, -1)
        if self.tam is not None:
            frames = frames + self.tam(frames)
        return self.head(frames.mean(dim=1))


class SuperImage(nn.Module):
    def __init__(self, backbone: str = "resnet_test", in_chans: int = 1, num_outputs: int = 1,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.model = create_model(backbone, in_chans=in_chans, num_outputs=num_outputs)

    @staticmethod
    def tile(x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) → (B, C, rows·H, cols·W), frames row by row, missing tiles zero."""
        b, t, c, h, w = x.shape
        cols = math.ceil(math.sqrt(t))
        rows = math.ceil(t / cols)
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, rows * cols - t))
        return x.reshape(b, rows, cols, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * h, cols * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"a movie model needs (batch, frames, channels, H, W), got shape {tuple(x.shape)}")
        return self.model(self.tile(x))


MOVIE = (8, 1, 150, 150)
register_model("tam_resnet18", "temporal", TemporalSegmentModel, "TAM on ResNet-18 frames", input_shape=MOVIE,
               backbone="resnet18", aggregation="tam", drop=0.0)
register_model("tsn_resnet10_small", "temporal", TemporalSegmentModel, "TSN (average) on small ResNet-10 frames",
               input_shape=MOVIE, backbone="resnet10_small", aggregation="avg", drop=0.0)
register_model("tam_resnet_test", "temporal", TemporalSegmentModel, "test size", input_shape=(4, 1, 64, 64),
               backbone="resnet_test", aggregation="tam", drop=0.0)
register_model("superimage_resnet10_small", "temporal", SuperImage, "super image of the frames, small ResNet-10",
               input_shape=MOVIE, backbone="resnet10_small", drop=0.0)
register_model("superimage_resnet_test", "temporal", SuperImage, "test size", input_shape=(4, 1, 64, 64),
               backbone="resnet_test", drop=0.0)
