"""Building blocks shared by zoo families."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgebci.errors import ConfigError


def fold_into_pointwise(conv: nn.Conv1d, matrix: torch.Tensor) -> None:
    """conv(matrix @ x) == conv'(x) for a bias-free 1x1 Conv1d that sees the input first: weight @ matrix."""
    if conv.kernel_size != (1,) or conv.bias is not None or conv.groups != 1:
        raise ConfigError(f"cannot fold a channel mixing into {conv}: it needs a bias-free, ungrouped 1x1 Conv1d")
    with torch.no_grad():
        conv.weight.copy_((conv.weight[:, :, 0] @ matrix)[:, :, None])


def require_positive(cfg, keys: tuple[str, ...]) -> None:
    """Config validation shared by the families: each named field must be a positive integer."""
    name = type(cfg).__name__
    for key in keys:
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name}.{key} must be a positive integer, got {value!r}")


class TemporalSpatialBlock(nn.Module):
    """EEGNet's first block: temporal convolution (f1 filters) -> BatchNorm -> depthwise spatial convolution.

    x : (batch, n_channels, n_samples) -> (batch, f1 * depth, n_samples + 1 - kernel % 2)

    Training runs it as published (temporal first). The stages are linear, so with `spatial_first`
    set (inference only) it runs the spatial mixing first: the same function up to float rounding,
    but the largest activation holds f1*depth x T floats instead of f1 x n_channels x T, which is
    what lets it fit a microcontroller's RAM. With temporal weights w_t[f, k], BN as scale a_f and
    shift b_f, and spatial weights w_s[f*D+d, c]:
        y[f*D+d, t] = a_f sum_k w_t[f,k] sum_c w_s[f*D+d,c] x[c,t+k] + b_f sum_c w_s[f*D+d,c]
    """

    def __init__(self, n_channels: int, f1: int, depth: int, kernel: int):
        super().__init__()
        self.f1, self.depth, self.kernel = f1, depth, kernel
        self.temporal = nn.Conv2d(1, f1, (1, kernel), padding=(0, kernel // 2), bias=False)
        self.bn = nn.BatchNorm2d(f1)
        self.spatial = nn.Conv2d(f1, f1 * depth, (n_channels, 1), groups=f1, bias=False)
        self.spatial_first = False
        # an input channel mixing (the user's alignment) folded in: x -> input_mix @ x before the block
        self.register_buffer("input_mix", None, persistent=False)

    def fold_input_mix(self, matrix: torch.Tensor) -> None:
        """Make the block compute block(matrix @ x). The temporal convolution and BatchNorm act on each input
        channel alike, so the mixing commutes with them and, spatial-first, joins the spatial weights."""
        self.input_mix = matrix.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_first and not self.training:
            return self._spatial_first(x)
        if self.input_mix is not None:
            x = torch.matmul(self.input_mix, x)
        return self.spatial(self.bn(self.temporal(x.unsqueeze(1))))[:, :, 0, :]

    def _spatial_first(self, x: torch.Tensor) -> torch.Tensor:
        a = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        b = self.bn.bias - self.bn.running_mean * a
        w_s = self.spatial.weight[:, 0, :, 0]                                            # (f1*D, C)
        w_in = w_s if self.input_mix is None else w_s @ self.input_mix                   # the bias keeps w_s
        z = F.conv1d(x, w_in.unsqueeze(-1))                                              # (B, f1*D, T)
        w_t = (self.temporal.weight[:, 0, 0, :] * a[:, None]).repeat_interleave(self.depth, dim=0)
        y = F.conv1d(z, w_t.unsqueeze(1), padding=self.kernel // 2, groups=self.f1 * self.depth)
        return y + (b.repeat_interleave(self.depth) * w_s.sum(1))[None, :, None]
