"""EEGNet (Lawhern et al., J Neural Eng 2018): the compact CNN every BCI engineer measures against.

temporal convolution (F1 filters) -> depthwise spatial convolution (D per filter) -> ELU -> pool ->
separable convolution (F2) -> ELU -> pool -> linear. Training runs that graph as published; for
deployment `forward` can run the first two linear stages spatial-first (see `deploy`), which is the
same function but keeps the largest activation at F1*D x T instead of F1 x C x T floats.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgebci.errors import ConfigError


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
        for key in ("n_channels", "n_samples", "n_classes", "f1", "depth", "f2", "kernel", "pool1", "pool2"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"EEGNetConfig.{key} must be > 0, got {getattr(self, key)}")
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
        self.temporal = nn.Conv2d(1, c.f1, (1, c.kernel), padding=(0, c.kernel // 2), bias=False)
        self.bn1 = nn.BatchNorm2d(c.f1)
        self.spatial = nn.Conv2d(c.f1, f1d, (c.n_channels, 1), groups=c.f1, bias=False)
        self.bn2 = nn.BatchNorm2d(f1d)
        self.pool1 = nn.AvgPool2d((1, c.pool1))
        self.sep_depth = nn.Conv2d(f1d, f1d, (1, 16), padding=(0, 8), groups=f1d, bias=False)
        self.sep_point = nn.Conv2d(f1d, c.f2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c.f2)
        self.pool2 = nn.AvgPool2d((1, c.pool2))
        self.drop = nn.Dropout(c.dropout)
        with torch.no_grad():
            n_feat = self._features(torch.zeros(1, c.n_channels, c.n_samples)).shape[1]
        self.head = nn.Linear(n_feat, c.n_classes)

    def _first_block(self, x: torch.Tensor) -> torch.Tensor:
        """temporal conv -> BN1 -> depthwise spatial conv, as published: (B, F1*D, 1, T')."""
        x = self.bn1(self.temporal(x.unsqueeze(1)))
        return self.spatial(x)

    def _first_block_spatial_first(self, x: torch.Tensor) -> torch.Tensor:
        """The same linear map computed spatial-first (exact up to float rounding).

        spatial weights w_s[f*D+d, c], temporal w_t[f, k], BN1 as scale a_f and shift b_f:
        y[f*D+d, t] = a_f * sum_k w_t[f,k] * (sum_c w_s[f*D+d,c] x[c,t+k]) + b_f * sum_c w_s[f*D+d,c]
        """
        c = self.config
        d = c.depth
        a = self.bn1.weight / torch.sqrt(self.bn1.running_var + self.bn1.eps)
        b = self.bn1.bias - self.bn1.running_mean * a
        w_s = self.spatial.weight[:, 0, :, 0]                               # (F1*D, C)
        z = F.conv1d(x, w_s.unsqueeze(-1))                                  # (B, F1*D, T)
        w_t = (self.temporal.weight[:, 0, 0, :] * a[:, None]).repeat_interleave(d, dim=0)   # (F1*D, K)
        y = F.conv1d(z, w_t.unsqueeze(1), padding=c.kernel // 2, groups=c.f1 * d)
        y = y + (b.repeat_interleave(d) * w_s.sum(1))[None, :, None]
        return y.unsqueeze(2)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.config.input_scale
        first = self._first_block_spatial_first if (not self.training and getattr(self, "deploy", False)) \
            else self._first_block
        x = F.elu(self.bn2(first(x)))
        x = self.drop(self.pool1(x))
        x = F.elu(self.bn3(self.sep_point(self.sep_depth(x))))
        x = self.drop(self.pool2(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def for_export(self) -> "EEGNet":
        """Eval mode, first block spatial-first: the arena holds F1*D x T, not F1 x C x T, floats."""
        self.eval()
        self.deploy = True
        return self
