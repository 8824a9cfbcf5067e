"""Quantised twin of the Conformer (edgebci.zoo.conformer): attention, LayerNorm and softmax in integers.

    qin -> spatial 1x1 (input_scale folded) -> temporal depthwise (+bias, both BatchNorms folded)
        -> ELU (table) -> average pool into tokens (an integer sum) + learned positions -> int8 tokens (T, D)
        -> per block:  h = LN(x)                     integer mean, variance and isqrt (program.LayerNorm)
                       q, k, v = 1x1 products of h   LN's gamma/beta folded into their weights and biases
                       p = softmax(q k^T / sqrt(dh)) int8 scores -> exp table -> integer division, p at 2^-8
                       x = x + W_o (p v)             two products of activations (int8 x int8, uint8 x int8)
                       x = x + W_2 GELU(W_1 LN(x))   GELU a table
        -> LN (its affine folded into the head) -> mean over tokens -> linear head

The tokens are rows (batch, tokens, d_model) where a LayerNorm or a softmax needs its last axis, and
channels-first (batch, d_model, tokens) around the 1x1 products, whose per-channel weight scales the
integer program keeps on axis 1. Between the two, a transpose of an int8 tensor. Every arrow holds
int8 (the probabilities uint8 in an int16), so the QCDQ export reads as integer arithmetic. Dropout is
applied where the float model trains with it (QAT) and is the identity at export.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from edgebci.errors import ConfigError
from edgebci.quantize.recipe import Recipe
from edgebci.quantize.twins import Twin, _qnn, _value, fold_norm, plain_layer_norm

PROB_SHIFT = 8          # softmax probabilities as uint8 at 2^-8: a fixed, power-of-two scale


def _prob_act():
    """Probabilities in [0, 1) on a fixed 2^-8 grid: what the integer softmax's division produces."""
    from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPoint
    return _qnn().QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, scaling_impl_type="const",
                                scaling_init=1.0, return_quant_tensor=True)


@torch.no_grad()
def _set_folded(conv, norm, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """A 1x1 convolution after a plain LayerNorm computing linear(LN(x)) (`fold_norm`)."""
    w, b = fold_norm(norm, weight, bias)
    conv.weight.copy_(w[:, :, None])
    conv.bias.copy_(b)


class _BlockTwin(torch.nn.Module):
    def __init__(self, twin: Twin, block, d: int, heads: int, dropout: float):
        super().__init__()
        if not block.attn.batch_first or block.attn.in_proj_weight is None:
            raise ConfigError("the Conformer twin needs nn.MultiheadAttention(batch_first=True) with one packed "
                              "in_proj_weight, as edgebci.zoo.conformer builds it")
        self.d, self.heads, self.dh, self.dropout = d, heads, d // heads, dropout
        self.eps1, self.eps2 = float(block.norm1.eps), float(block.norm2.eps)
        self.q_ln1, self.q_ln2 = twin._act(), twin._act()
        self.wq, self.wk, self.wv = (twin._conv(d, d, 1, bias=True) for _ in range(3))
        self.q_scores = twin._act()
        self.q_probs = _prob_act()
        self.q_ctx = twin._act()
        self.wo = twin._conv(d, d, 1, bias=True)
        self.q_res1 = twin._act()
        ff1, ff2 = block.ff[0], block.ff[3]
        self.ff1 = twin._conv(d, ff1.out_features, 1, bias=True)
        self.q_gelu = twin._act()
        self.ff2 = twin._conv(ff1.out_features, d, 1, bias=True)
        self.q_res2 = twin._act()
        w, b = block.attn.in_proj_weight.detach(), block.attn.in_proj_bias.detach()
        for k, conv in enumerate((self.wq, self.wk, self.wv)):
            _set_folded(conv, block.norm1, w[k * d:(k + 1) * d], b[k * d:(k + 1) * d])
        _set_folded(self.ff1, block.norm2, ff1.weight, ff1.bias)
        with torch.no_grad():
            self.wo.weight.copy_(block.attn.out_proj.weight[:, :, None])
            self.wo.bias.copy_(block.attn.out_proj.bias)
            self.ff2.weight.copy_(ff2.weight[:, :, None])
            self.ff2.bias.copy_(ff2.bias)

    def _heads(self, t):
        """(B, D, T) -> (B, heads, dh, T): the batch dimension as -1 keeps the exported shape constant."""
        return _value(t).reshape(-1, self.heads, self.dh, _value(t).shape[-1])

    def forward(self, x):
        """x : (B, T, D) int8-valued tokens -> same shape."""
        h = self.q_ln1(plain_layer_norm(_value(x), self.eps1)).transpose(1, 2)   # (B, D, T)
        q, k, v = self._heads(self.wq(h)), self._heads(self.wk(h)), self._heads(self.wv(h))
        scores = self.q_scores(torch.matmul(q.transpose(2, 3), k) * self.dh ** -0.5)          # (B, H, T, T)
        probs = self.q_probs(torch.softmax(_value(scores), -1))
        ctx = torch.matmul(_value(probs), v.transpose(2, 3))                                  # (B, H, T, dh)
        ctx = self.q_ctx(ctx.transpose(2, 3).reshape(-1, self.d, ctx.shape[2]))               # (B, D, T)
        x = self.q_res1(_value(x) + _value(self.wo(ctx)).transpose(1, 2))
        h = self.q_ln2(plain_layer_norm(_value(x), self.eps2)).transpose(1, 2)
        g = F.dropout(F.gelu(_value(self.ff1(h))), self.dropout, self.training)
        return self.q_res2(_value(x) + _value(self.ff2(self.q_gelu(g))).transpose(1, 2))


class ConformerTwin(Twin):
    def __init__(self, model, recipe: Recipe, input_threshold: float):
        super().__init__(recipe, input_threshold)
        c = model.config
        d = c.d_model
        self.pool, self.pool_stride, self.dropout = c.pool, c.pool_stride, c.dropout
        self.eps = float(model.norm.eps)
        self._spatial_first_stem(model.embed, model.bn, c.n_channels, c.depth, c.kernel, c.input_scale)
        self.q_elu = self._act()
        self.pos = torch.nn.Parameter(model.pos.detach().clone())                              # (1, T, d)
        self.q_tok = self._act()
        self.blocks = torch.nn.ModuleList(_BlockTwin(self, b, d, c.heads, c.dropout) for b in model.blocks)
        self.q_norm = self._act()
        self.q_mean = self._act()
        self.head = self._linear(d, c.n_classes)
        with torch.no_grad():
            w, b = fold_norm(model.norm, model.head.weight, model.head.bias)   # the final norm's affine: the mean is linear
            self.head.weight.copy_(w)
            self.head.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.temporal(self.spatial(self.qin(x)))
        e = self.q_elu(F.elu(_value(z)))
        tokens = F.avg_pool1d(_value(e), self.pool, self.pool_stride)
        tokens = F.dropout(tokens, self.dropout, self.training).transpose(1, 2) + self.pos     # (B, T, d)
        x = self.q_tok(tokens)
        for block in self.blocks:
            x = block(x)
        n = self.q_norm(plain_layer_norm(_value(x), self.eps))
        m = F.dropout(_value(n).mean(1), self.dropout, self.training)
        return self.head(self.q_mean(m))
