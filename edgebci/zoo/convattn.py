"""ConvAttn: a compact convolution + self-attention decoder for motor imagery.

Spatial filters (learned CSP-like mixing) -> depthwise temporal convolution -> log band power over
short segments (the ShallowConvNet feature, robust across people) -> one pre-norm self-attention
block over those segments -> mean over time -> linear head. Every op lowers through TVM to plain C,
and the largest activation (n_spatial x n_samples floats) fits a Cortex-M4's RAM.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgebci.errors import ConfigError


@dataclass(frozen=True)
class ConvAttnConfig:
    n_channels: int = 21
    n_samples: int = 480
    n_classes: int = 2
    n_spatial: int = 8
    temporal_kernel: int = 25
    pool: int = 40
    pool_stride: int = 20
    heads: int = 2
    dropout: float = 0.5
    input_scale: float = 0.05          # uV -> O(1) activations

    def __post_init__(self):
        for key in ("n_channels", "n_samples", "n_classes", "n_spatial", "temporal_kernel", "pool",
                    "pool_stride", "heads"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"ConvAttnConfig.{key} must be > 0, got {getattr(self, key)}")
        if self.n_spatial % self.heads:
            raise ConfigError(f"n_spatial ({self.n_spatial}) must be divisible by heads ({self.heads})")
        if self.n_samples < self.pool:
            raise ConfigError(f"n_samples ({self.n_samples}) must be >= pool ({self.pool})")

    def to_dict(self) -> dict:
        return asdict(self)


class ConvAttn(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_samples), float32 filtered uV -> logits (batch, n_classes)."""

    config_class = ConvAttnConfig

    def __init__(self, config: ConvAttnConfig):
        super().__init__()
        c = config
        self.config = c
        self.spatial = nn.Conv1d(c.n_channels, c.n_spatial, 1, bias=False)
        self.temporal = nn.Conv1d(c.n_spatial, c.n_spatial, c.temporal_kernel, padding=c.temporal_kernel // 2,
                                  groups=c.n_spatial, bias=False)
        self.bn = nn.BatchNorm1d(c.n_spatial)
        self.pool = nn.AvgPool1d(c.pool, c.pool_stride)
        self.norm1 = nn.LayerNorm(c.n_spatial)
        self.attn = nn.MultiheadAttention(c.n_spatial, c.heads, dropout=0.0, batch_first=True)
        self.norm2 = nn.LayerNorm(c.n_spatial)
        self.ff = nn.Sequential(nn.Linear(c.n_spatial, 2 * c.n_spatial), nn.GELU(),
                                nn.Linear(2 * c.n_spatial, c.n_spatial))
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.n_spatial, c.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.temporal(self.spatial(x * self.config.input_scale)))
        x = torch.log(torch.clamp(self.pool(x * x), min=1e-4))      # (B, F, segments): log band power
        x = self.drop(x.transpose(1, 2))                             # (B, segments, F)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.ff(self.norm2(x))
        return self.head(self.drop(x.mean(dim=1)))
