"""Quantised twin of the Mamba decoder (edgebci.zoo.ssm.Mamba): the selective scan in fixed point, step by step.

encode: qin -> spatial 1x1 (input_scale folded) -> temporal depthwise (BN folded) -> x*x (table) -> band-power
pooling -> log (table), int8 (n_steps, d_model). Then per time step and block (the `step` graph, whose loop
the device runs), each line ends in an int8 tensor at one learned scale (the products between are int32):

    xn   = LayerNorm(x)                              integer LayerNorm; its affine is folded into in_u and in_z
    u, z = in_u(xn), in_z(xn)                        two linears (one per half of in_proj: one scale each)
    win  = cat(conv_state, u)                        (E, d_conv), oldest first; the state holds u at u's scale
    u    = silu(conv(win))                           depthwise conv (+bias), then a table
    dt   = softplus(dt_lin(u))                       x_proj's dt rows and dt_proj folded into one linear; a table
    B, C = to_b(u), to_c(u)                          x_proj's B and C rows
    dA   = dt x A                                    a grouped 1x1 conv (E -> E*N, A its per-channel weights)
    h    = exp(dA) * h + (dt * u) x B                a table, two int32 products at a common scale
    y    = sum_n h * C + D * u                       D a depthwise 1x1 conv (per-channel weights)
    x    = x + out_proj(y * silu(z))                 a table for silu(z), the residual add at a common scale
    y_t  = LayerNorm(x)                              the last block's, affine folded into the head

A and D are constants of a multiplication; as per-channel weights of a 1x1 convolution each is an int8 at its
own scale (exact to 8 bits), where one int8 scale for the whole tensor would round the slow modes' A away.
The state per block is two int8 tensors, flat (batch, width) as the device hands them over: the last
d_conv - 1 values of u per inner channel (oldest first, `MambaBlock.step`'s layout) at u's scale, and h
(E, N) at h's scale. The readout takes the int32 sum of y_t over the steps; the 1/n_steps of the mean joins
its scale.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from edgebci.errors import ConfigError
from edgebci.quantize.recipe import Recipe
from edgebci.quantize.twins import (SteppedTwin, Twin, _bn_affine, _Part, _qnn, _value, fold_norm,
                                    plain_layer_norm, run_loop)
from edgebci.quantize.twins_s4d import POWER_PERCENTILE
from edgebci.zoo.ssm import LOG_POWER_FLOOR

# Bits of the SSM state h. The device holds int8 states; a wider h is a measurement knob, not a deployable form:
# int16 h changes nothing measurable (bundled checkpoint, int8 PTQ, 450 training windows: mean |logit error|
# 0.0263 with int8 h, 0.0264 with int16; argmax agreement with the float decoder 98.2% both).
STATE_BITS = 8


class MambaBlockTwin(nn.Module):
    """One MambaBlock's step on (batch, d_model) with its state as explicit inputs and outputs."""

    def __init__(self, twin: Twin, block, d_model: int, dropout: float):
        super().__init__()
        e, n, k, r = block.d_inner, block.d_state, block.d_conv, block.dt_rank
        self.d_inner, self.d_state, self.d_conv, self.eps, self.dropout = e, n, k, block.norm.eps, dropout
        qnn, recipe = _qnn(), twin.recipe
        # A and D multiply, they are no matrix: 8 bits per channel whatever the recipe's weight bits
        scale_w = replace(recipe, weight_bits=8, weight_granularity="per-channel").weight_kwargs()
        self.q_norm = twin._act()
        self.in_u = twin._linear(d_model, e)
        self.in_z = twin._linear(d_model, e)
        self.q_u = twin._act()           # u and the conv window (state + u): one scale, so the state joins u exactly
        self.q_z = twin._act()
        self.conv = twin._conv(e, e, k, bias=True, groups=e)
        self.q_uc = twin._act()          # silu(conv(window)): the scan's input
        self.dt_lin = twin._linear(e, e)
        self.q_dt_lin = twin._act()
        self.q_dt = twin._act()          # softplus: dt
        # x_proj has no bias; a zero int32 bias makes these one Gemm each, like every other linear of the twin
        self.to_b = twin._linear(e, n)
        self.to_c = twin._linear(e, n)
        self.q_b = twin._act()
        self.q_c = twin._act()
        self.dt_a = qnn.QuantConv1d(e, e * n, 1, groups=e, bias=False, output_quant=recipe.act_quant(),
                                    return_quant_tensor=True, **scale_w)
        self.q_decay = twin._act()       # exp(dt A) in (0, 1]
        self.q_dtu = twin._act()
        self.q_h = _qnn().QuantIdentity(act_quant=recipe.act_quant(), bit_width=STATE_BITS, return_quant_tensor=True)
        self.skip = qnn.QuantConv1d(e, e, 1, groups=e, bias=False, return_quant_tensor=False, **scale_w)
        self.q_y = twin._act()
        self.q_gate = twin._act()        # silu(z)
        self.q_gated = twin._act()
        self.out_proj = twin._linear(e, d_model)
        self.q_res = twin._act()
        with torch.no_grad():
            w_in, b_in = fold_norm(block.norm, block.in_proj.weight, block.in_proj.bias)
            self.in_u.weight.copy_(w_in[:e])
            self.in_u.bias.copy_(b_in[:e])
            self.in_z.weight.copy_(w_in[e:])
            self.in_z.bias.copy_(b_in[e:])
            self.conv.weight.copy_(block.conv.weight)
            self.conv.bias.copy_(block.conv.bias)
            # dt_proj(x_proj[:r](u)) is one linear of u: one int32 product and one rounding instead of two
            self.dt_lin.weight.copy_(block.dt_proj.weight @ block.x_proj.weight[:r])
            self.dt_lin.bias.copy_(block.dt_proj.bias)
            self.to_b.weight.copy_(block.x_proj.weight[r:r + n])
            self.to_b.bias.zero_()
            self.to_c.weight.copy_(block.x_proj.weight[r + n:])
            self.to_c.bias.zero_()
            self.dt_a.weight.copy_((-torch.exp(block.a_log)).reshape(e * n, 1, 1))   # out channel e*N + n: A[e, n]
            self.skip.weight.copy_(block.d.reshape(e, 1, 1))
            self.out_proj.weight.copy_(block.out_proj.weight)
            self.out_proj.bias.copy_(block.out_proj.bias)

    @property
    def state_widths(self) -> tuple[int, int]:
        return self.d_inner * (self.d_conv - 1), self.d_inner * self.d_state

    def state_scales(self) -> tuple[float, float]:
        with torch.no_grad():
            return (float(self.q_u(torch.zeros(1, self.d_inner)).scale),
                    float(self.q_h(torch.zeros(1, self.d_inner)).scale))

    def forward(self, x, conv_state, h):
        """x (B, d_model), conv_state (B, E*(d_conv-1)), h (B, E*N) -> (x out, conv_state, h). Shapes are
        written with -1 for the batch: a traced x.shape[0] would put Shape/Gather arithmetic in the graph."""
        e, n, k = self.d_inner, self.d_state, self.d_conv
        xn = self.q_norm(plain_layer_norm(_value(x), self.eps))
        u, z = self.q_u(self.in_u(xn)), self.q_z(self.in_z(xn))
        # the state and the new u carry u's scale: the concatenation is of integers, the quantiser a no-op
        window = self.q_u(torch.cat([conv_state.reshape(-1, e, k - 1), _value(u).reshape(-1, e, 1)], -1))
        uc = self.q_uc(F.silu(_value(self.conv(window)).reshape(-1, e)))
        dt = self.q_dt(F.softplus(_value(self.q_dt_lin(self.dt_lin(uc)))))
        b, c = _value(self.q_b(self.to_b(uc))), _value(self.q_c(self.to_c(uc)))
        decay = self.q_decay(torch.exp(_value(self.dt_a(_value(dt).reshape(-1, e, 1))).reshape(-1, e, n)))
        dtu = self.q_dtu(_value(dt) * _value(uc))
        # both products are int32; the sum is taken at the finer of their scales and requantised once
        h = self.q_h(_value(decay) * h.reshape(-1, e, n) + _value(dtu).reshape(-1, e, 1) * b.reshape(-1, 1, n))
        y = (_value(h) * c.reshape(-1, 1, n)).sum(-1)
        y = self.q_y(y + self.skip(_value(uc).reshape(-1, e, 1)).reshape(-1, e))
        gated = F.dropout(_value(y) * _value(self.q_gate(F.silu(_value(z)))), self.dropout, self.training)
        x = self.q_res(_value(x) + self.out_proj(self.q_gated(gated)))
        return x, _value(window)[..., 1:].reshape(-1, e * (k - 1)), _value(h).reshape(-1, e * n)


class MambaTwin(Twin):
    """Mamba's recurrent form, BN folded into the stem: encode (log power), step (the blocks and the final
    LayerNorm), readout (mean over steps -> head, the final LayerNorm's affine folded)."""

    def __init__(self, model, recipe: Recipe, input_threshold: float):
        super().__init__(recipe, input_threshold)
        c = model.config
        if c.d_conv < 2:
            raise ConfigError(f"the Mamba twin carries a convolution window of d_conv - 1 steps; d_conv={c.d_conv} "
                              f"leaves none: use d_conv >= 2")
        d = c.d_model
        self.d_model, self.n_steps, self.pool, self.pool_stride = d, c.n_steps, c.pool, c.pool_stride
        self.dropout, self.eps = c.dropout, model.norm.eps
        a, b = _bn_affine(model.bn)
        self.spatial = self._conv(c.n_channels, d, 1, bias=False, first=True)
        self.temporal = self._conv(d, d, c.temporal_kernel, bias=True, padding=c.temporal_kernel // 2, groups=d)
        self.q_square = self._power_act()
        self.q_power = self._power_act()
        self.q_log = self._act()
        self.blocks = nn.ModuleList(MambaBlockTwin(self, blk, d, c.dropout) for blk in model.blocks)
        self.q_final = self._act()       # the step output y_t
        self.q_mean = self._act()
        self.head = self._linear(d, c.n_classes)
        with torch.no_grad():
            self.spatial.weight.copy_(model.spatial.weight * c.input_scale)
            self.temporal.weight.copy_(model.temporal.weight * a[:, None, None])
            self.temporal.bias.copy_(b)
            w, bias = fold_norm(model.norm, model.head.weight, model.head.bias)   # the mean is linear
            self.head.weight.copy_(w)
            self.head.bias.copy_(bias)

    def _power_act(self):
        return _qnn().QuantIdentity(act_quant=self.recipe.act_quant(), high_percentile_q=POWER_PERCENTILE,
                                    return_quant_tensor=True)

    @property
    def state_widths(self) -> tuple[int, ...]:
        return tuple(w for blk in self.blocks for w in blk.state_widths)

    def encode(self, x):
        """(B, C, T) uV -> log band power (B, n_steps, d_model), the values of int8 at q_log's scale."""
        z = _value(self.temporal(self.spatial(self.qin(x))))
        power = self.q_power(F.avg_pool1d(_value(self.q_square(z * z)), self.pool, self.pool_stride))
        logp = torch.log(torch.clamp(_value(power), min=LOG_POWER_FLOOR))
        logp = self.q_log(F.dropout(logp, self.dropout, self.training))      # as the float model trains (QAT)
        return _value(logp).transpose(1, 2)

    def step(self, x_t, *states):
        """(x_t (B, d_model), conv_state_0, h_0, conv_state_1, ...) -> (y_t (B, d_model), *states)."""
        new = []
        for i, blk in enumerate(self.blocks):
            x_t, conv_state, h = blk(x_t, states[2 * i], states[2 * i + 1])
            new += [conv_state, h]
        return (_value(self.q_final(plain_layer_norm(_value(x_t), self.eps))), *new)

    def readout(self, total):
        """total : (B, d_model) y_t summed over the steps -> logits."""
        return self.head(self.q_mean(F.dropout(total * (1.0 / self.n_steps), self.dropout, self.training)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_loop(self, x)

    def stepped_parts(self) -> SteppedTwin:
        """The three graphs a device runs with its own time loop, and the scales of what the loop carries."""
        with torch.no_grad():
            out_scale = float(self.q_final(torch.zeros(1, self.d_model)).scale)
        state_scales = tuple(s for blk in self.blocks for s in blk.state_scales())
        return SteppedTwin(_Part(self, "encode"), _Part(self, "step"), _Part(self, "readout"), self.n_steps,
                           self.d_model, self.d_model, self.state_widths, state_scales, out_scale)
