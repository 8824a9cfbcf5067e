"""SpikingLIF: a convolutional encoder feeding leaky integrate-and-fire (LIF) neurons.

spatial filters (learned CSP-like mixing) -> depthwise temporal convolution -> log band power over
short overlapping segments, one segment per time step -> linear input currents -> one or two layers
of LIF neurons run over the segments -> spike rates -> linear head.

Training runs snntorch's `Leaky` neurons (Heaviside forward, fast-sigmoid surrogate gradient).
Deployment runs `step`: the same neuron update in plain torch ops with the membrane potentials as
explicit tensors, so a device can loop the time steps itself. `encode`, `step` and `readout` are
separate methods so each can be exported on its own; `for_export` chains them, unrolling the time
loop, for a compiler that wants one graph from window to logits; `for_device` gives the three graphs
(encode, step, readout) whose loop the device runs (see edgebci.zoo.stepped).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgebci.errors import ConfigError, missing_extra
from edgebci.zoo.blocks import fold_into_pointwise
from edgebci.zoo.stepped import Method, SteppedExport

RESETS = ("subtract", "zero")
# for_export unrolls one step per segment; the lowered graph, and its compile time, grow with it.
MAX_STEPS = 120


@dataclass(frozen=True)
class SpikingLIFConfig:
    n_channels: int = 21
    n_samples: int = 480
    n_classes: int = 2
    n_spatial: int = 8
    depth: int = 2                  # temporal filters per spatial filter
    temporal_kernel: int = 33       # 0.2 s at 160 Hz
    segment: int = 16               # samples per band-power segment (0.1 s at 160 Hz)
    step_samples: int = 8           # hop between segments: one LIF time step (50 ms at 160 Hz)
    n_hidden: int = 32              # LIF neurons per layer
    n_layers: int = 2               # LIF layers, 1 or 2
    beta: float = 0.9               # membrane decay per time step
    threshold: float = 1.0
    reset: str = "subtract"         # after a spike: subtract the threshold, or set the membrane to zero
    surrogate_slope: float = 25.0   # fast-sigmoid surrogate gradient steepness (training only)
    dropout: float = 0.25
    input_scale: float = 0.05       # uV -> O(1) activations

    def __post_init__(self):
        for key in ("n_channels", "n_samples", "n_classes", "n_spatial", "depth", "temporal_kernel", "segment",
                    "step_samples", "n_hidden"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"SpikingLIFConfig.{key} must be > 0, got {getattr(self, key)}")
        if self.n_layers not in (1, 2):
            raise ConfigError(f"SpikingLIFConfig.n_layers must be 1 or 2, got {self.n_layers}")
        if not 0.0 < self.beta <= 1.0:
            raise ConfigError(f"SpikingLIFConfig.beta must be in (0, 1] (the membrane decay per step), "
                              f"got {self.beta}")
        if self.threshold <= 0 or self.surrogate_slope <= 0:
            raise ConfigError(f"SpikingLIFConfig.threshold and surrogate_slope must be > 0, got "
                              f"{self.threshold}, {self.surrogate_slope}")
        if self.reset not in RESETS:
            raise ConfigError(f"SpikingLIFConfig.reset must be one of {RESETS}, got {self.reset!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"SpikingLIFConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.n_samples < self.segment:
            raise ConfigError(f"n_samples ({self.n_samples}) must be >= segment ({self.segment}): "
                              f"shorten the segment")
        if self.n_steps > MAX_STEPS:
            fewest = -(-(self.n_samples - self.segment) // (MAX_STEPS - 1))    # ceiling division
            raise ConfigError(f"{self.n_samples} samples in hops of step_samples={self.step_samples} give "
                              f"{self.n_steps} time steps, but the exported graph unrolls at most {MAX_STEPS}: "
                              f"raise step_samples to at least {fewest}")

    @property
    def n_steps(self) -> int:
        """LIF time steps per window: one per band-power segment."""
        return (self.n_samples - self.segment) // self.step_samples + 1

    def to_dict(self) -> dict:
        return asdict(self)


def lif_update(current: torch.Tensor, mem: torch.Tensor, beta: float, threshold: float,
               reset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step of snntorch's `Leaky` (reset_delay=True) in plain torch ops.

    current, mem : Tensor, shape (batch, n) -> (spikes in {0, 1}, next membrane), both (batch, n).
    The reset uses the *incoming* membrane, i.e. the spike emitted last step, and the float ops run in
    snntorch's order so the membranes match it bit for bit. beta and threshold are Python floats:
    as graph constants they cost nothing per step (a tensor would be re-folded at every unrolled step).
    """
    fired = (mem > threshold).to(mem.dtype)
    if reset == "subtract":
        mem = beta * mem + current - fired * threshold
    else:
        mem = beta * ((1 - fired) * mem) + current
    return (mem > threshold).to(mem.dtype), mem


class Dense(nn.Module):
    """y = x @ weight + bias with weight stored (in, out): nn.Linear without the per-call transpose.

    The step runs once per segment; an nn.Linear there exports a weight transpose at every unrolled
    step, and TVM constant-folds each one separately (about 0.1 s apiece).
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        bound = n_in ** -0.5      # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def _at_step(current: torch.Tensor, t: int) -> torch.Tensor:
    """current[:, t] as a slice and a reshape: TVM imports `select` as a `take` that warns at every step."""
    return current[:, t:t + 1].flatten(1)


class SpikingLIF(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_samples), float32 filtered uV -> logits (batch, n_classes)."""

    config_class = SpikingLIFConfig

    def __init__(self, config: SpikingLIFConfig):
        super().__init__()
        try:
            import snntorch as snn
            from snntorch import surrogate
        except ImportError:
            raise missing_extra("snntorch", "train") from None
        c = config
        self.config = c
        n_bands = c.n_spatial * c.depth
        self.spatial = nn.Conv1d(c.n_channels, c.n_spatial, 1, bias=False)
        self.temporal = nn.Conv1d(c.n_spatial, n_bands, c.temporal_kernel, padding=c.temporal_kernel // 2,
                                  groups=c.n_spatial, bias=False)
        self.bn = nn.BatchNorm1d(n_bands)
        self.pool = nn.AvgPool1d(c.segment, c.step_samples)
        self.norm = nn.BatchNorm1d(n_bands)
        self.drop = nn.Dropout(c.dropout)
        self.current = nn.Conv1d(n_bands, c.n_hidden, 1)
        self.synapses = nn.ModuleList(Dense(c.n_hidden, c.n_hidden) for _ in range(c.n_layers - 1))
        grad = surrogate.fast_sigmoid(slope=c.surrogate_slope)
        self.lifs = nn.ModuleList(snn.Leaky(beta=c.beta, threshold=c.threshold, spike_grad=grad,
                                            reset_mechanism=c.reset) for _ in range(c.n_layers))
        self.head = nn.Linear(c.n_hidden, c.n_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x : (batch, n_channels, n_samples) uV -> input currents (batch, n_steps, n_hidden)."""
        z = self.bn(self.temporal(self.spatial(x * self.config.input_scale)))
        power = torch.log(torch.clamp(self.pool(z * z), min=1e-4))     # (B, bands, steps): log band power
        return self.current(self.drop(self.norm(power))).transpose(1, 2)

    def initial_state(self, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Resting membranes for a window whose currents are `current` (batch, n_steps, n_hidden)."""
        return tuple(torch.zeros_like(_at_step(current, 0)) for _ in self.lifs)

    def step(self, current_t: torch.Tensor, mem: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple]:
        """One time step of the LIF layers, state in and out.

        current_t : (batch, n_hidden) input current; mem : n_layers membranes, each (batch, n_hidden)
        -> (spikes of the last layer (batch, n_hidden) in {0, 1}, the n_layers next membranes).
        """
        c = self.config
        spikes, mem_next = current_t, []
        for i in range(c.n_layers):
            if i:
                spikes = self.synapses[i - 1](spikes)
            spikes, m = lif_update(spikes, mem[i], c.beta, c.threshold, c.reset)
            mem_next.append(m)
        return spikes, tuple(mem_next)

    def readout(self, spike_count: torch.Tensor) -> torch.Tensor:
        """spike_count : (batch, n_hidden) last-layer spikes summed over the steps -> logits (batch, n_classes)."""
        return self.head(self.drop(spike_count * (1.0 / self.config.n_steps)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The training form: snntorch's neurons (surrogate gradients), same numbers as `step`."""
        current = self.encode(x)
        mem = list(self.initial_state(current))
        count = torch.zeros_like(_at_step(current, 0))
        for t in range(current.shape[1]):
            spikes = _at_step(current, t)
            for i, lif in enumerate(self.lifs):
                if i:
                    spikes = self.synapses[i - 1](spikes)
                spikes, mem[i] = lif(spikes, mem[i])
            count = count + spikes
        return self.readout(count)

    def fold_alignment(self, matrix: torch.Tensor) -> "SpikingLIF":
        """An eval-mode copy computing self(matrix @ x): the mixing joins the first (spatial) weights."""
        folded = copy.deepcopy(self).eval()
        fold_into_pointwise(folded.spatial, matrix)
        return folded

    def for_export(self) -> "UnrolledSpikingLIF":
        """Eval mode, time loop unrolled over `step`: one graph from window to logits (ONNX, .pt2)."""
        return UnrolledSpikingLIF(self.eval()).eval()

    def for_device(self) -> SteppedExport:
        """Eval mode as three graphs (encode, one LIF step with the membranes as I/O, readout) whose time
        loop the device runs: what `edgebci compile` uses."""
        m, c = self.eval(), self.config
        return SteppedExport(Method(m.encode), _SpikingCell(m), Method(m.head),
                             tuple((1, c.n_hidden) for _ in range(c.n_layers)), c.n_steps, c.n_hidden, c.n_hidden)


class _SpikingCell(nn.Module):
    """(current_t, *membranes) -> (spikes of the last layer, *next membranes)."""

    def __init__(self, model: SpikingLIF):
        super().__init__()
        self.model = model

    def forward(self, current_t: torch.Tensor, *mem: torch.Tensor):
        spikes, mem = self.model.step(current_t, mem)
        return (spikes, *mem)


class UnrolledSpikingLIF(nn.Module):
    """encode -> `step` once per segment (a Python loop that torch.export unrolls) -> readout."""

    def __init__(self, model: SpikingLIF):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        current = m.encode(x)
        mem = m.initial_state(current)
        spikes = []
        for t in range(current.shape[1]):
            spikes_t, mem = m.step(_at_step(current, t), mem)
            spikes.append(spikes_t)
        # one sum over the stacked steps: a running `count + spikes` chain would be fused by TVM into a
        # single kernel nested n_steps deep, which takes its C code generator ~20 s to build
        return m.readout(torch.stack(spikes, 1).sum(1))
