"""CrossViT (Chen, Fan, Panda, ICCV 2021): two ViT branches on small and large patches, fused by cross-attention.

The small-patch branch (patch 12) sees detail, the large-patch branch (patch 16) is cheap; after each stage the
CLS token of one branch attends to the other branch's patch tokens (cross-attention: linear in tokens) and brings
their information back to its own branch. The prediction averages the two branches' heads.
"""
from __future__ import annotations

import torch
from torch import nn

from cryorl.perception.layers import Block, Mlp, PatchEmbed
from cryorl.perception.registry import register_model

__all__ = ["CrossViT", "CrossAttentionFusion"]


class CrossAttentionFusion(nn.Module):
    """The CLS token of branch ``i`` (projected to branch ``j``'s width) attends to branch ``j``'s tokens."""

    def __init__(self, dim_i: int, dim_j: int, heads: int, extra_blocks: int = 0, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.to_j = nn.Sequential(nn.LayerNorm(dim_i), nn.GELU(), nn.Linear(dim_i, dim_j))
        self.norm = nn.LayerNorm(dim_j)
        self.attn = nn.MultiheadAttention(dim_j, heads, batch_first=True)
        self.extra = nn.ModuleList([Mlp(dim_j, mlp_ratio) for _ in range(extra_blocks)])
        self.back = nn.Sequential(nn.LayerNorm(dim_j), nn.GELU(), nn.Linear(dim_j, dim_i))

    def forward(self, cls_i: torch.Tensor, tokens_j: torch.Tensor) -> torch.Tensor:
        query = self.to_j(cls_i)                                             # (B, 1, Dj)
        context = self.norm(torch.cat([query, tokens_j[:, 1:]], dim=1))
        fused = query + self.attn(self.norm(query), context, context, need_weights=False)[0]
        for mlp in self.extra:
            fused = fused + mlp(fused)
        return cls_i + self.back(fused)


class CrossViT(nn.Module):
    def __init__(self, dims=(96, 192), patches=(12, 16), depth=((1, 4, 0),) * 3, heads=(3, 3),
                 mlp_ratio: float = 4.0, reference_size: int = 144, in_chans: int = 1, num_outputs: int = 1,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.embeds = nn.ModuleList([PatchEmbed(in_chans, d, p, reference_size) for d, p in zip(dims, patches)])
        self.stages = nn.ModuleList()
        for small, large, extra in depth:
            branches = nn.ModuleList([nn.Sequential(*[Block(dims[b], heads[b], mlp_ratio, drop) for _ in range(n)])
                                      for b, n in enumerate((small, large))])
            fusion = nn.ModuleList([CrossAttentionFusion(dims[0], dims[1], heads[1], extra, mlp_ratio),
                                    CrossAttentionFusion(dims[1], dims[0], heads[0], extra, mlp_ratio)])
            self.stages.append(nn.ModuleList([branches, fusion]))
        self.norms = nn.ModuleList([nn.LayerNorm(d) for d in dims])
        self.heads = nn.ModuleList([nn.Sequential(nn.Dropout(drop), nn.Linear(d, num_outputs)) for d in dims])
        self.num_features = sum(dims)

    def _branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = [embed(x)[0] for embed in self.embeds]
        for branches, fusion in self.stages:
            tokens = [branch(t) for branch, t in zip(branches, tokens)]
            cls_small = fusion[0](tokens[0][:, :1], tokens[1])
            cls_large = fusion[1](tokens[1][:, :1], tokens[0])
            tokens = [torch.cat([cls_small, tokens[0][:, 1:]], 1), torch.cat([cls_large, tokens[1][:, 1:]], 1)]
        return [norm(t[:, 0]) for norm, t in zip(self.norms, tokens)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._branches(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(c) for head, c in zip(self.heads, self._branches(x))]).mean(dim=0)


register_model("crossvit_tiny", "crossvit", CrossViT, "CrossViT-Ti: dims (96, 192), 3 × [1, 4, 0], 3 heads",
               dims=(96, 192), patches=(12, 16), depth=((1, 4, 0),) * 3, heads=(3, 3), mlp_ratio=4.0,
               reference_size=144, drop=0.0)
register_model("crossvit_9", "crossvit", CrossViT, "CrossViT-9: dims (128, 256), 3 × [1, 3, 0], 4 heads",
               dims=(128, 256), patches=(12, 16), depth=((1, 3, 0),) * 3, heads=(4, 4), mlp_ratio=3.0,
               reference_size=144, drop=0.0)
register_model("crossvit_test", "crossvit", CrossViT, "test size", dims=(16, 32), patches=(12, 16),
               depth=((1, 1, 0),), heads=(2, 2), mlp_ratio=2.0, reference_size=144, drop=0.0)
