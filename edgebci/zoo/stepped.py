"""Recurrent decoders in the form a device runs them: encode once, step a cell over time, read out.

A family whose core is a recurrence (the spiking LIF layers, the Mamba selective scan) exports three
graphs instead of one unrolled graph:

    seq = encode(window)                  # (1, n_steps, seq_width): one input vector per time step
    state = zeros                         # state_shapes, e.g. membrane potentials or SSM states
    for t in range(n_steps):              # the loop runs on the device, not in the graph
        y_t, *state = cell(seq[:, t], *state)
        total += y_t
    logits = readout(total / n_steps)     # the mean over steps of the cell's output

The compiler (`edgebci.compile.sources.import_checkpoint`) lowers the three graphs into one program
and its static driver owns the loop, the state buffers and the mean. The state is explicit input and
output of `cell`, so a device could equally carry it across windows. `run_stepped` is the same loop
in torch: the reference that tests compare the device with.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgebci.errors import ConfigError


@dataclass(frozen=True)
class SteppedExport:
    """The three graphs of a recurrent decoder and the loop's geometry (batch 1)."""
    encode: nn.Module       # (1, n_channels, n_samples) -> (1, n_steps, seq_width)
    cell: nn.Module         # (x_t (1, seq_width), *states) -> (y_t (1, out_width), *next states)
    readout: nn.Module      # (1, out_width), the mean of y_t over the steps -> logits (1, n_classes)
    state_shapes: tuple[tuple[int, ...], ...]
    n_steps: int
    seq_width: int
    out_width: int

    def __post_init__(self):
        if self.n_steps <= 0 or self.seq_width <= 0 or self.out_width <= 0 or not self.state_shapes:
            raise ConfigError(f"a stepped export needs n_steps, seq_width, out_width > 0 and at least one state; "
                              f"got {self.n_steps}, {self.seq_width}, {self.out_width}, {self.state_shapes}")
        for m in (self.encode, self.cell, self.readout):
            m.eval()


class Method(nn.Module):
    """One tensor -> tensor method of a model (e.g. `model.encode`) as a module of its own, for torch.export."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def run_stepped(export: SteppedExport, x: torch.Tensor) -> torch.Tensor:
    """The device's loop in torch. x : (batch, n_channels, n_samples) -> logits (batch, n_classes)."""
    with torch.no_grad():
        seq = export.encode(x)
        if tuple(seq.shape[1:]) != (export.n_steps, export.seq_width):
            raise ConfigError(f"encode returned {tuple(seq.shape)}, expected (batch, {export.n_steps}, "
                              f"{export.seq_width})")
        state = [torch.zeros((x.shape[0], *s[1:])) for s in export.state_shapes]
        total = torch.zeros(x.shape[0], export.out_width)
        for t in range(export.n_steps):
            y, *state = export.cell(seq[:, t], *state)
            total = total + y
        return export.readout(total * (1.0 / export.n_steps))
