"""Conformer: a compact convolutional transformer in the spirit of EEG Conformer (Song et al., IEEE TNSRE 2023).

Patch embedding by convolution (temporal filters -> depthwise spatial filters -> BatchNorm -> ELU ->
average pooling into ~0.25 s tokens), a few pre-norm multi-head self-attention blocks with learned
positions, mean pooling over tokens, linear head. The embedding is exported spatial-first (see
`TemporalSpatialBlock`), so the arena stays at tokens x d_model plus one d_model x T buffer.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgebci.errors import ConfigError
from edgebci.zoo.blocks import TemporalSpatialBlock, require_positive


@dataclass(frozen=True)
class ConformerConfig:
    n_channels: int = 21
    n_samples: int = 480
    n_classes: int = 2
    f1: int = 8                  # temporal filters
    depth: int = 2               # spatial filters per temporal filter: d_model = f1 * depth
    kernel: int = 25
    pool: int = 40               # token length: 0.25 s at 160 Hz
    pool_stride: int = 20
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.5
    input_scale: float = 0.05

    def __post_init__(self):
        require_positive(self, ("n_channels", "n_samples", "n_classes", "f1", "depth", "kernel", "pool",
                                "pool_stride", "blocks", "heads"))
        if (self.f1 * self.depth) % self.heads:
            raise ConfigError(f"d_model = f1*depth = {self.f1 * self.depth} must be divisible by heads ({self.heads})")
        if self.n_samples < self.pool:
            raise ConfigError(f"n_samples ({self.n_samples}) must be >= pool ({self.pool})")

    @property
    def d_model(self) -> int:
        return self.f1 * self.depth

    @property
    def n_tokens(self) -> int:
        return (self.n_samples + 1 - self.kernel % 2 - self.pool) // self.pool_stride + 1

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class Conformer(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_samples), float32 filtered uV -> logits (batch, n_classes)."""

    config_class = ConformerConfig

    def __init__(self, config: ConformerConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = TemporalSpatialBlock(c.n_channels, c.f1, c.depth, c.kernel)
        self.bn = nn.BatchNorm1d(c.d_model)
        self.pool = nn.AvgPool1d(c.pool, c.pool_stride)
        self.pos = nn.Parameter(torch.zeros(1, c.n_tokens, c.d_model))
        self.blocks = nn.Sequential(*[_Block(c.d_model, c.heads, c.dropout) for _ in range(c.blocks)])
        self.norm = nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.d_model, c.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.elu(self.bn(self.embed(x * self.config.input_scale)))
        x = self.drop(self.pool(x)).transpose(1, 2) + self.pos      # (B, tokens, d_model)
        x = self.norm(self.blocks(x))
        return self.head(self.drop(x.mean(dim=1)))

    def fold_alignment(self, matrix: torch.Tensor) -> "Conformer":
        """An eval-mode copy computing self(matrix @ x): the mixing joins the first block's spatial weights."""
        folded = copy.deepcopy(self).eval()
        folded.embed.fold_input_mix(matrix)
        return folded

    def for_export(self) -> "Conformer":
        self.eval()
        self.embed.spatial_first = True
        return self
