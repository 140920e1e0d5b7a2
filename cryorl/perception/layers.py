"""Building blocks shared by the transformer families: attention blocks, patch embeddings, input sizing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Mlp", "Block", "PatchEmbed", "resize_to_multiple", "interpolate_pos_embed"]


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float = 4.0, drop: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim),
                                 nn.Dropout(drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and an MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=drop, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio, drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def resize_to_multiple(x: torch.Tensor, multiple: int, minimum: int | None = None) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) so that H and W are multiples of ``multiple`` (nearest, at least
    ``minimum``); unchanged when they already are."""
    h, w = x.shape[-2:]
    low = minimum or multiple
    th = max(low, int(round(h / multiple)) * multiple)
    tw = max(low, int(round(w / multiple)) * multiple)
    if (th, tw) == (h, w):
        return x
    return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)


def interpolate_pos_embed(pos: torch.Tensor, grid: tuple[int, int], extra_tokens: int = 1) -> torch.Tensor:
    """Position embeddings (1, extra + g*g, D) learned on a square grid, resampled to ``grid`` (rows, cols)."""
    extra, table = pos[:, :extra_tokens], pos[:, extra_tokens:]
    side = int(round(table.shape[1] ** 0.5))
    if (side, side) == tuple(grid):
        return pos
    table = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([extra, table.flatten(2).transpose(1, 2)], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch`` × ``patch`` patches → tokens, with a CLS token and position embeddings learned
    for ``reference_size`` and interpolated for other sizes."""

    def __init__(self, in_chans: int, dim: int, patch: int, reference_size: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        side = max(1, reference_size // patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + side * side, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = resize_to_multiple(x, self.patch)
        x = self.proj(x)
        grid = tuple(x.shape[-2:])
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        return tokens + interpolate_pos_embed(self.pos, grid), grid
