"""RegionViT (Chen, Panda, Fan, ICLR 2022): regional-to-local attention on a pyramid.

Two token sets: *regional* tokens from large patches (28 × 28 pixels) and *local* tokens from small ones (4 × 4),
so each regional token owns a window of 7 × 7 local tokens. Each R2L block first lets the regional tokens attend
to one another (global context, few tokens), then each regional token attends jointly with its own local tokens
(window attention), carrying the global information to them; both attentions share their weights. Stages halve
both token grids and widen the channels. Inputs are resized to the nearest size the pyramid allows (a multiple
of 28 · 2^(stages−1)).
"""
from __future__ import annotations

import torch
from torch import nn

from cryorl.perception.layers import Block, resize_to_multiple
from cryorl.perception.registry import register_model

__all__ = ["RegionViT", "R2LBlock"]


class R2LBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int, drop: float = 0.0) -> None:
        super().__init__()
        self.window = window
        self.attention = Block(dim, heads, mlp_ratio, drop)     # regional and local attention share weights

    def forward(self, regional: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = regional.shape
        ws = self.window
        r = self.attention(regional.flatten(2).transpose(1, 2))                        # (B, h·w, C)
        windows = local.reshape(b, c, h, ws, w, ws).permute(0, 2, 4, 3, 5, 1).reshape(b * h * w, ws * ws, c)
        seq = self.attention(torch.cat([r.reshape(b * h * w, 1, c), windows], dim=1))
        regional = seq[:, 0].reshape(b, h, w, c).permute(0, 3, 1, 2)
        local = seq[:, 1:].reshape(b, h, w, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * ws, w * ws)
        return regional, local


class RegionViT(nn.Module):
    def __init__(self, dims=(64, 64, 128, 256, 512), depths=(2, 2, 8, 2), heads=(2, 4, 8, 16), patch: int = 4,
                 window: int = 7, mlp_ratio: float = 4.0, in_chans: int = 1, num_outputs: int = 1,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.multiple = patch * window * 2 ** (len(depths) - 1)
        self.local_embed = nn.Sequential(nn.Conv2d(in_chans, dims[0], patch, patch), nn.GELU())
        self.regional_embed = nn.Conv2d(in_chans, dims[0], patch * window, patch * window)
        self.stages = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, (depth, head) in enumerate(zip(depths, heads)):
            c_in, c_out = dims[i], dims[i + 1]
            self.downsample.append(nn.ModuleList([
                nn.Conv2d(c_in, c_out, 3, 2 if i else 1, 1), nn.Conv2d(c_in, c_out, 3, 2 if i else 1, 1)]))
            self.stages.append(nn.ModuleList([R2LBlock(c_out, head, mlp_ratio, window, drop) for _ in range(depth)]))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(dims[-1], num_outputs))
        self.num_features = dims[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_to_multiple(x, self.multiple)
        local, regional = self.local_embed(x), self.regional_embed(x)
        for (down_r, down_l), blocks in zip(self.downsample, self.stages):
            regional, local = down_r(regional), down_l(local)
            for block in blocks:
                regional, local = block(regional, local)
        return self.norm(regional.flatten(2).mean(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


register_model("regionvit_tiny", "regionvit", RegionViT, "RegionViT-Ti: dims [64, 64, 128, 256, 512], depths "
               "[2, 2, 8, 2], heads [2, 4, 8, 16]", dims=(64, 64, 128, 256, 512), depths=(2, 2, 8, 2),
               heads=(2, 4, 8, 16), patch=4, window=7, mlp_ratio=4.0, drop=0.0)
register_model("regionvit_small_cpu", "regionvit", RegionViT, "RegionViT at a CPU size: 3 stages",
               dims=(32, 32, 64, 128), depths=(1, 2, 1), heads=(2, 2, 4), patch=4, window=7, mlp_ratio=3.0,
               drop=0.0)
register_model("regionvit_test", "regionvit", RegionViT, "test size", dims=(16, 16, 32), depths=(1, 1),
               heads=(2, 2), patch=4, window=2, mlp_ratio=2.0, drop=0.0)
