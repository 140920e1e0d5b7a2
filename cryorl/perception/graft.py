"""GrafT: a multi-scale "graft" branch added to a ViT / DeiT backbone, sharing its blocks.

From the graft point on, a copy of the patch tokens is pooled 2 × 2 and run through the *same* transformer
blocks as the full-resolution tokens (no new attention weights: the branch is grafted onto the backbone). After
every block the coarse tokens — which see more of the image per token and carry global, high-level semantics —
are upsampled and fused back into the high-resolution tokens through a small linear layer. The head reads the
CLS token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryorl.perception.layers import Block, PatchEmbed
from cryorl.perception.registry import register_model

__all__ = ["GrafT"]


class GrafT(nn.Module):
    def __init__(self, dim: int = 192, depth: int = 12, heads: int = 3, patch: int = 16, graft_at: int = 4,
                 mlp_ratio: float = 4.0, reference_size: int = 144, in_chans: int = 1, num_outputs: int = 1,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.embed = PatchEmbed(in_chans, dim, patch, reference_size)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, drop) for _ in range(depth)])
        self.graft_at = graft_at
        self.fuse = nn.ModuleList([nn.Linear(dim, dim) for _ in range(depth - graft_at)])
        for layer in self.fuse:                                  # grafting starts as the identity
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(dim, num_outputs))
        self.num_features = dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (gh, gw) = self.embed(x)
        for block in self.blocks[:self.graft_at]:
            tokens = block(tokens)
        b, _, d = tokens.shape
        grid = tokens[:, 1:].transpose(1, 2).reshape(b, d, gh, gw)
        coarse_grid = F.avg_pool2d(grid, 2, ceil_mode=True)
        coarse = torch.cat([tokens[:, :1], coarse_grid.flatten(2).transpose(1, 2)], dim=1)
        for block, fuse in zip(self.blocks[self.graft_at:], self.fuse):
            tokens, coarse = block(tokens), block(coarse)             # shared weights
            ch, cw = coarse_grid.shape[-2:]
            up = F.interpolate(coarse[:, 1:].transpose(1, 2).reshape(b, d, ch, cw), size=(gh, gw), mode="nearest")
            tokens = tokens + fuse(torch.cat([coarse[:, :1], up.flatten(2).transpose(1, 2)], dim=1))
        return self.norm(tokens[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


register_model("graft_deit_tiny", "graft", GrafT, "GrafT on DeiT-Tiny (192 wide, 12 blocks, 3 heads, patch 16)",
               dim=192, depth=12, heads=3, patch=16, graft_at=4, mlp_ratio=4.0, reference_size=144, drop=0.0)
register_model("graft_small_cpu", "graft", GrafT, "GrafT at a CPU size (96 wide, 6 blocks, patch 10)", dim=96,
               depth=6, heads=3, patch=10, graft_at=2, mlp_ratio=3.0, reference_size=150, drop=0.0)
register_model("graft_test", "graft", GrafT, "test size", dim=16, depth=2, heads=2, patch=15, graft_at=1,
               mlp_ratio=2.0, reference_size=150, drop=0.0)
