"""EEGNet (Lawhern et al., J Neural Eng 2018): the compact CNN every BCI engineer measures against.

temporal convolution (F1 filters) -> depthwise spatial convolution (D per filter) -> ELU -> pool ->
separable convolution (F2) -> ELU -> pool -> linear. Exported spatial-first (see
`TemporalSpatialBlock`), so the largest activation is F1*D x T floats, not F1 x C x T.
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
class EEGNetConfig:
    n_channels: int = 21
    n_samples: int = 480
    n_classes: int = 2
    f1: int = 8
    depth: int = 2
    f2: int = 16
    kernel: int = 64            # temporal kernel: 0.4 s at 160 Hz
    pool1: int = 4
    pool2: int = 8
    dropout: float = 0.5
    input_scale: float = 0.05

    def __post_init__(self):
        require_positive(self, ("n_channels", "n_samples", "n_classes", "f1", "depth", "f2", "kernel", "pool1",
                                "pool2"))
        if self.n_samples // self.pool1 // self.pool2 < 1:
            raise ConfigError(f"n_samples ({self.n_samples}) is shorter than pool1*pool2 ({self.pool1 * self.pool2})")

    def to_dict(self) -> dict:
        return asdict(self)


class EEGNet(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_samples), float32 filtered uV -> logits (batch, n_classes)."""

    config_class = EEGNetConfig

    def __init__(self, config: EEGNetConfig):
        super().__init__()
        c = config
        self.config = c
        f1d = c.f1 * c.depth
        self.block1 = TemporalSpatialBlock(c.n_channels, c.f1, c.depth, c.kernel)
        self.bn2 = nn.BatchNorm1d(f1d)
        self.pool1 = nn.AvgPool1d(c.pool1)
        self.sep_depth = nn.Conv1d(f1d, f1d, 16, padding=8, groups=f1d, bias=False)
        self.sep_point = nn.Conv1d(f1d, c.f2, 1, bias=False)
        self.bn3 = nn.BatchNorm1d(c.f2)
        self.pool2 = nn.AvgPool1d(c.pool2)
        self.drop = nn.Dropout(c.dropout)
        with torch.no_grad():
            n_feat = self._features(torch.zeros(1, c.n_channels, c.n_samples)).shape[1]
        self.head = nn.Linear(n_feat, c.n_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.elu(self.bn2(self.block1(x * self.config.input_scale)))
        x = self.drop(self.pool1(x))
        x = F.elu(self.bn3(self.sep_point(self.sep_depth(x))))
        x = self.drop(self.pool2(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def fold_alignment(self, matrix: torch.Tensor) -> "EEGNet":
        """An eval-mode copy computing self(matrix @ x): the mixing joins the first block's spatial weights."""
        folded = copy.deepcopy(self).eval()
        folded.block1.fold_input_mix(matrix)
        return folded

    def for_export(self) -> "EEGNet":
        self.eval()
        self.block1.spatial_first = True
        return self
