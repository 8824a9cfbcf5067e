"""Quantised twin of the spiking decoder (edgebci.zoo.spiking): leaky integrate-and-fire in fixed point.

encode: qin -> spatial 1x1 -> temporal depthwise (BN folded) -> x*x (table) -> band-power pooling ->
log (table) -> input currents (1x1, the second BN folded in), int8 per step. Then per time step and
layer (the `step` graph, whose loop the device runs), with the membrane an int8 tensor at one learned
scale shared by every step:

    fired = mem > threshold                      an integer compare against round-down(threshold / s_mem)
    mem   = requant(beta * mem + current - fired * threshold)
    spike = mem > threshold

beta and the threshold cost nothing: multiplying by a constant only changes a scale, so the update
is two scaled additions and a requantisation. Spikes are exact 0/1 integers, their count over the
window the loop's int32 sum, and the rate (count / n_steps) the readout's int8 input.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from edgebci.errors import ConfigError
from edgebci.quantize.recipe import Recipe
from edgebci.quantize.twins import SteppedTwin, Twin, _bn_affine, _Part, _qnn, _value, run_loop

LOG_FLOOR = 1e-4          # edgebci.zoo.spiking: log(clamp(power, 1e-4))


class SpikingTwin(Twin):
    def __init__(self, model, recipe: Recipe, input_threshold: float):
        super().__init__(recipe, input_threshold)
        c = model.config
        if c.reset != "subtract":
            raise ConfigError(f"the integer LIF implements reset='subtract', got {c.reset!r}; retrain with "
                              f"reset='subtract'")
        n_bands = c.n_spatial * c.depth
        self.beta, self.threshold = float(c.beta), float(c.threshold)
        self.n_layers, self.n_steps, self.n_hidden = c.n_layers, c.n_steps, c.n_hidden
        self.segment, self.step_samples, self.dropout = c.segment, c.step_samples, c.dropout
        a1, b1 = _bn_affine(model.bn)
        a2, b2 = _bn_affine(model.norm)
        self.spatial = self._conv(c.n_channels, c.n_spatial, 1, bias=False, first=True)
        self.temporal = self._conv(c.n_spatial, n_bands, c.temporal_kernel, bias=True,
                                   padding=c.temporal_kernel // 2, groups=c.n_spatial)
        self.q_square = self._act()
        self.q_power = self._act()
        self.q_log = self._act()
        self.current = self._conv(n_bands, c.n_hidden, 1, bias=True)
        self.synapses = torch.nn.ModuleList(self._linear(c.n_hidden, c.n_hidden) for _ in range(c.n_layers - 1))
        self.q_synapse = torch.nn.ModuleList(self._act() for _ in range(c.n_layers - 1))
        self.q_mem = torch.nn.ModuleList(self._act() for _ in range(c.n_layers))
        # 0/1 spikes as an int8 tensor at scale 1: [-128, 128) exactly, so quantising a spike changes nothing
        self.q_spike = _qnn().QuantIdentity(return_quant_tensor=True, **recipe.const_act_kwargs(128.0))
        self.q_rate = self._act()
        self.head = self._linear(c.n_hidden, c.n_classes)
        with torch.no_grad():
            self.spatial.weight.copy_(model.spatial.weight * c.input_scale)
            self.temporal.weight.copy_(model.temporal.weight * a1[:, None, None])
            self.temporal.bias.copy_(b1)
            w = model.current.weight[:, :, 0]                                    # (hidden, bands)
            self.current.weight.copy_((w * a2[None, :])[:, :, None])
            self.current.bias.copy_(model.current.bias + w @ b2)
            for q, d in zip(self.synapses, model.synapses):
                q.weight.copy_(d.weight.T)
                q.bias.copy_(d.bias)
            self.head.weight.copy_(model.head.weight)
            self.head.bias.copy_(model.head.bias)

    def encode(self, x):
        """(B, C, T) uV -> input currents (B, n_steps, n_hidden), the values of int8 at the current's scale."""
        z = self.temporal(self.spatial(self.qin(x)))
        sq = self.q_square(_value(z) * _value(z))
        power = self.q_power(F.avg_pool1d(_value(sq), self.segment, self.step_samples))
        logp = torch.log(torch.clamp(_value(power), min=LOG_FLOOR))
        logp = self.q_log(F.dropout(logp, self.dropout, self.training))       # as the float model trains (QAT)
        return _value(self.current(logp)).transpose(1, 2)

    def step(self, current_t, *mems):
        """One time step of every layer: (current (B, n_hidden), *membranes) -> (last layer's spikes, *membranes)."""
        spikes, new_mems = current_t, []
        for layer in range(self.n_layers):
            if layer:
                spikes = _value(self.q_synapse[layer - 1](self.synapses[layer - 1](self.q_spike(spikes))))
            mem = mems[layer]
            fired = (mem > self.threshold).to(mem.dtype)
            new = _value(self.q_mem[layer](self.beta * mem + spikes - fired * self.threshold))
            spikes = _spike(new, self.threshold)
            new_mems.append(new)
        return (spikes, *new_mems)

    def readout(self, count):
        """count : (B, n_hidden) spikes summed over the steps -> logits."""
        return self.head(self.q_rate(F.dropout(count * (1.0 / self.n_steps), self.dropout, self.training)))

    @property
    def state_widths(self) -> tuple[int, ...]:
        return (self.n_hidden,) * self.n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_loop(self, x)

    def stepped_parts(self) -> SteppedTwin:
        """The three graphs a device runs with its own time loop, and the scales of what the loop carries."""
        with torch.no_grad():
            state_scales = tuple(float(q(torch.zeros(1, self.n_hidden)).scale) for q in self.q_mem)
        return SteppedTwin(_Part(self, "encode"), _Part(self, "step"), _Part(self, "readout"), self.n_steps, self.n_hidden,
                           self.n_hidden, self.state_widths, state_scales, 1.0)


class _Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid surrogate backward (the float training's, snntorch slope 25)."""

    @staticmethod
    def forward(ctx, mem, threshold):
        ctx.save_for_backward(mem)
        ctx.threshold = threshold
        return (mem > threshold).to(mem.dtype)

    @staticmethod
    def backward(ctx, grad):
        (mem,) = ctx.saved_tensors
        return grad / (1.0 + 25.0 * (mem - ctx.threshold).abs()) ** 2, None

    @staticmethod
    def symbolic(g, mem, threshold):
        thr = g.op("Constant", value_t=torch.tensor(threshold, dtype=torch.float32))
        return g.op("Cast", g.op("Greater", mem, thr), to_i=1)


def _spike(mem, threshold: float):
    return _Spike.apply(mem, threshold)
