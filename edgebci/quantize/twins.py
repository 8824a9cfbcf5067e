"""Quantised twins of the zoo families: the same function as the float decoder's inference form, built
from Brevitas layers with a quantiser at every point where the device holds an int8 tensor.

A twin is made from a trained float decoder (`make_twin(ckpt, recipe)`): BatchNorms are folded into
the convolution before them, the input scale into the first weights, and EEGNet runs spatial-first,
exactly as the float export does. What stays float in a twin (ELU, pooling, the element-wise math of
a block) sits between two quantisers, so the QCDQ export reads as integer arithmetic
(edgebci.quantize.qcdq). Every twin has:

    qin                      the input quantiser: fixed range, set from calibration data
    fold_alignment(matrix)   the user's Euclidean alignment into the first (spatial) weights
    set_input_range(t)       the input quantiser's range [-t, t) in microvolts

Training (QAT) runs the twin unfolded on aligned EEG; deployment folds the user's matrix and sets the
input range from the user's raw (unaligned) filtered EEG, which is what the device quantises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgebci.errors import ConfigError
from edgebci.quantize.recipe import Recipe, int32_bias


def _qnn():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import brevitas.nn as qnn
    return qnn


def _value(x):
    """A QuantTensor's float value (what a float op between two quantisers sees)."""
    return x.value if hasattr(x, "value") and not isinstance(x, torch.Tensor) else x


def _bn_affine(bn) -> tuple[torch.Tensor, torch.Tensor]:
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a, bn.bias - bn.running_mean * a


@dataclass(frozen=True)
class SteppedTwin:
    """A recurrent twin as the device runs it (edgebci.zoo.stepped's shape, quantised): encode once, step
    over time with the state as explicit input and output, read out the sum of the step outputs.
    The scales say what the loop carries: each state's, and the step output's (the readout's input unit)."""
    encode: nn.Module        # (1, C, T) -> (1, n_steps, seq_width)
    step: nn.Module          # (x_t (1, seq_width), *states) -> (y_t (1, out_width), *states)
    readout: nn.Module       # (1, out_width), the sum of y_t -> logits
    n_steps: int
    seq_width: int
    out_width: int
    state_widths: tuple[int, ...]
    state_scales: tuple[float, ...]
    out_scale: float


def plain_layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last axis without an affine: the integer LayerNorm (edgebci.quantize.program.LayerNorm),
    whose gamma and beta live in the product after it (`fold_norm`)."""
    return F.layer_norm(x, (x.shape[-1],), None, None, eps)


def fold_norm(norm, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A LayerNorm's affine into the linear after it: linear(LN(x)) == W' plain_LN(x) + b' with W' = W diag(gamma),
    b' = b + W beta (for the head after a mean too: the mean is linear)."""
    w = weight.detach()
    b = torch.zeros(w.shape[0]) if bias is None else bias.detach()
    return w * norm.weight.detach()[None, :], b + w @ norm.bias.detach()


def run_loop(twin, x: torch.Tensor) -> torch.Tensor:
    """A recurrent twin's forward (what QAT trains): encode, step over time from zero states, read out the sum."""
    seq = twin.encode(x)
    states = [seq.new_zeros(seq.shape[0], w) for w in twin.state_widths]
    total = 0
    for t in range(twin.n_steps):
        y, *states = twin.step(seq[:, t], *states)
        total = total + y
    return twin.readout(total)


class _Part(nn.Module):
    """One method of a twin as a module of its own, for export: Brevitas puts the quantisers of the module it
    exports into export mode, so the twin is a submodule here, not just the owner of a bound method."""

    def __init__(self, twin: nn.Module, method: str):
        super().__init__()
        self.twin = twin
        self.method = method

    def forward(self, *args):
        return getattr(self.twin, self.method)(*args)


class Twin(nn.Module):
    """What every quantised twin shares: the recipe, the input quantiser and the alignment fold."""

    first_spatial: str = "spatial"     # the QuantConv1d that sees the input first (1x1, no bias)

    def __init__(self, recipe: Recipe, input_threshold: float):
        super().__init__()
        self.recipe = recipe
        self.set_input_range(input_threshold)

    def _act(self):
        return _qnn().QuantIdentity(act_quant=self.recipe.act_quant(), return_quant_tensor=True)

    def _conv(self, c_in, c_out, k, *, bias, out_quant=True, first=False, **kw):
        qnn = _qnn()
        extra = {"bias_quant": int32_bias()} if bias else {}
        if out_quant:
            extra["output_quant"] = self.recipe.act_quant()
        return qnn.QuantConv1d(c_in, c_out, k, bias=bias, return_quant_tensor=True,
                               **self.recipe.weight_kwargs(first), **extra, **kw)

    def _linear(self, n_in, n_out):
        return _qnn().QuantLinear(n_in, n_out, bias=True, bias_quant=int32_bias(), **self.recipe.weight_kwargs())

    def set_input_range(self, threshold: float) -> None:
        if not threshold > 0 or not math.isfinite(threshold):
            raise ConfigError(f"the input quantiser's range must be > 0 microvolts, got {threshold}: the calibration "
                              f"windows are flat")
        self.qin = _qnn().QuantIdentity(return_quant_tensor=True, **self.recipe.const_act_kwargs(threshold))
        self.input_threshold = float(threshold)

    def _spatial_first_stem(self, block, bn, n_channels: int, depth: int, kernel: int, input_scale: float) -> None:
        """EEGNet's first block (edgebci.zoo.blocks.TemporalSpatialBlock) spatial-first, with its BatchNorm and
        the BatchNorm after it (`bn`) folded: self.spatial (1x1, input_scale folded) -> self.temporal (+bias)."""
        a1, b1 = _bn_affine(block.bn)
        a2, b2 = _bn_affine(bn)
        w_s = block.spatial.weight[:, 0, :, 0].detach()                                      # (f1*depth, C)
        w_t = (block.temporal.weight[:, 0, 0, :] * a1[:, None]).repeat_interleave(depth, 0)  # (f1*depth, K)
        d = w_s.shape[0]
        self.spatial = self._conv(n_channels, d, 1, bias=False, first=True)
        self.temporal = self._conv(d, d, kernel, bias=True, padding=kernel // 2, groups=d)
        with torch.no_grad():
            self.spatial.weight.copy_((w_s * input_scale)[:, :, None])
            self.temporal.weight.copy_((w_t * a2[:, None])[:, None, :])
            self.temporal.bias.copy_(a2 * b1.repeat_interleave(depth) * w_s.sum(1) + b2)

    @torch.no_grad()
    def fold_alignment(self, matrix) -> None:
        conv = getattr(self, self.first_spatial)
        m = torch.as_tensor(matrix, dtype=conv.weight.dtype)
        conv.weight.copy_((conv.weight[:, :, 0] @ m)[:, :, None])


class EEGNetTwin(Twin):
    """EEGNet spatial-first, BN folded: qin -> spatial 1x1 -> temporal depthwise (+bias) -> ELU -> pool ->
    separable depthwise -> pointwise (+bias) -> ELU -> pool -> linear. Every arrow holds int8."""

    def __init__(self, model, recipe: Recipe, input_threshold: float):
        super().__init__(recipe, input_threshold)
        c = model.config
        f1d = c.f1 * c.depth
        self.pool1, self.pool2, self.dropout = c.pool1, c.pool2, c.dropout
        a3, b3 = _bn_affine(model.bn3)
        self._spatial_first_stem(model.block1, model.bn2, c.n_channels, c.depth, c.kernel, c.input_scale)
        self.act1 = self._act()
        self.q_pool1 = self._act()
        self.sep_depth = self._conv(f1d, f1d, 16, bias=False, padding=8, groups=f1d)
        self.sep_point = self._conv(f1d, c.f2, 1, bias=True)
        self.act2 = self._act()
        self.q_pool2 = self._act()
        self.head = self._linear(model.head.in_features, model.head.out_features)
        with torch.no_grad():
            self.sep_depth.weight.copy_(model.sep_depth.weight)
            self.sep_point.weight.copy_(model.sep_point.weight * a3[:, None, None])
            self.sep_point.bias.copy_(b3)
            self.head.weight.copy_(model.head.weight)
            self.head.bias.copy_(model.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.temporal(self.spatial(self.qin(x)))
        x = F.avg_pool1d(_value(self.act1(F.elu(_value(x)))), self.pool1)
        x = self.q_pool1(F.dropout(x, self.dropout, self.training))    # as the float model trains (QAT)
        x = self.sep_point(self.sep_depth(x))
        x = F.avg_pool1d(_value(self.act2(F.elu(_value(x)))), self.pool2)
        x = self.q_pool2(F.dropout(x, self.dropout, self.training))
        return self.head(x.flatten(1))


# arch -> "module:class" of its twin (one module per family, imported when used)
TWINS = {"eegnet": "edgebci.quantize.twins:EEGNetTwin", "s4d": "edgebci.quantize.twins_s4d:S4DTwin",
         "spiking": "edgebci.quantize.twins_spiking:SpikingTwin",
         "conformer": "edgebci.quantize.twins_conformer:ConformerTwin",
         "mamba": "edgebci.quantize.twins_mamba:MambaTwin"}


def make_twin(arch: str, model, recipe: Recipe, input_threshold: float) -> Twin:
    """model : the family's float decoder (eval, unaligned) -> its quantised twin (eval)."""
    import importlib
    if arch not in TWINS:
        raise ConfigError(f"no integer form of the {arch!r} family yet: quantisable families are "
                          f"{', '.join(sorted(TWINS))}; compile {arch} as float (without --recipe)")
    module, cls = TWINS[arch].split(":")
    try:
        twin_cls = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise ConfigError(f"the quantised form of {arch!r} is not available in this edgebci ({TWINS[arch]} is "
                          f"missing); compile {arch} as float (without --recipe)") from None
    return twin_cls(model.eval(), recipe, input_threshold).eval()
