"""State-space decoders: S4D (diagonal linear SSM as a learned IIR filter bank) and Mamba (selective scan).

S4D: spatial filters (1x1 convolution) -> depthwise strided stem (anti-aliased downsampling) -> BN ->
S4D blocks (a diagonal SSM per channel applied as a causal depthwise convolution whose kernel is computed
from the SSM parameters, + D skip, GELU, 1x1 mixing, residual) -> log power over short segments -> mean ->
linear head. A damped complex mode is a resonator, so each channel's kernel is a learned band-pass filter
bank over the mu/beta band; log power of its output is the classic motor-imagery feature.

Mamba: the same spatial filters and depthwise temporal convolution, then log power over segments as the
downsampling stem (480 samples -> ~29 steps), Mamba blocks over those steps (input-dependent dt, B, C;
A = -exp(A_log); causal depthwise convolution; SiLU gate; residual), LayerNorm, mean, linear head.

Both export through torch.export with static shapes only: S4D's `for_export` materialises the kernels as
fixed depthwise convolution weights (no trig or exp of parameters on the device; TVM cannot import FFTs
anyway), and Mamba's scan is a Python loop over the static number of steps, unrolled by torch.export.
Arithmetic is real throughout: complex modes are carried as (real, imaginary) pairs.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgebci.errors import ConfigError
from edgebci.zoo.blocks import fold_into_pointwise, require_positive
from edgebci.zoo.stepped import Method, SteppedExport

MAX_SCAN_STEPS = 64        # the scan is unrolled at compile time: more steps, more C and compile time
LOG_POWER_FLOOR = 1e-4     # log(0) guard for a silent channel


def _require_dt_range(cfg) -> None:
    name = type(cfg).__name__
    if not 0.0 < cfg.dt_min <= cfg.dt_max:
        raise ConfigError(f"{name} needs 0 < dt_min <= dt_max, got dt_min={cfg.dt_min}, dt_max={cfg.dt_max}; "
                          f"swap them or use the defaults")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"{name}.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.input_scale > 0.0:
        raise ConfigError(f"{name}.input_scale must be > 0, got {cfg.input_scale}; "
                          f"it maps microvolts to O(1) activations (0.05 for 5-50 uV)")


def _log_power(x: torch.Tensor, pool: int, stride: int) -> torch.Tensor:
    """(batch, channels, time) -> (batch, channels, segments): log mean square over each segment."""
    return torch.log(torch.clamp(F.avg_pool1d(x * x, pool, stride), min=LOG_POWER_FLOOR))


def _lowpass_taps(n_taps: int) -> torch.Tensor:
    """A sin^2 (Hann without zero end taps) low-pass summing to 1: the stem's anti-aliasing init."""
    w = torch.sin(math.pi * (torch.arange(n_taps, dtype=torch.float32) + 0.5) / n_taps) ** 2
    return w / w.sum()


# ---------------------------------------------------------------------------------------------- S4D

@dataclass(frozen=True)
class S4DConfig:
    n_channels: int = 21
    n_samples: int = 480
    n_classes: int = 2
    d_model: int = 16           # H: spatial filters = SSM channels
    d_state: int = 16           # N per channel: N/2 complex-conjugate mode pairs
    n_layers: int = 1
    stem_kernel: int = 8        # depthwise low-pass taps before the stride
    stem_stride: int = 2        # 160 Hz -> 80 Hz: the 7-30 Hz band survives, the kernel is half as long
    init: str = "lin"           # S4D-Lin (modes pi*n) or S4D-Inv
    dt_min: float = 0.06        # step sizes, log-uniform per channel. Mode n of S4D-Lin resonates at
    dt_max: float = 0.12        #   n*dt/2 cycles per sample: at 80 Hz, 8 modes span 0-17 Hz (dt=0.06) to
                                #   0-34 Hz (dt=0.12). Smaller dt puts a channel's filters below 7 Hz,
                                #   where the band-passed input has no power (15 epochs: validation
                                #   0.65 with 0.01-0.1, 0.68 with these)
    pool: int = 20              # log-power segment, in stem samples (0.25 s at 80 Hz)
    pool_stride: int = 10
    dropout: float = 0.3
    input_scale: float = 0.05   # uV -> O(1) activations

    def __post_init__(self):
        require_positive(self, ("n_channels", "n_samples", "n_classes", "d_model", "d_state", "n_layers",
                                 "stem_kernel", "stem_stride", "pool", "pool_stride"))
        if self.d_state % 2:
            raise ConfigError(f"S4DConfig.d_state must be even (complex-conjugate pairs), got {self.d_state}; "
                              f"use {self.d_state + 1}")
        if self.init not in ("lin", "inv"):
            raise ConfigError(f"S4DConfig.init must be 'lin' or 'inv', got {self.init!r}")
        if self.stem_kernel > self.n_samples:
            raise ConfigError(f"S4DConfig.stem_kernel ({self.stem_kernel}) is longer than the window "
                              f"({self.n_samples} samples); use a shorter stem")
        if self.seq_len < self.pool:
            raise ConfigError(f"after the stem the sequence has {self.seq_len} samples, fewer than pool "
                              f"({self.pool}); lower pool or stem_stride")
        _require_dt_range(self)

    @property
    def seq_len(self) -> int:
        """L: samples after the stem, which is also the SSM kernel length."""
        return (self.n_samples - self.stem_kernel) // self.stem_stride + 1

    def to_dict(self) -> dict:
        return asdict(self)


class S4DKernel(nn.Module):
    """Diagonal SSM x' = A x + B u, y = C x per channel, ZOH-discretised; B = 1 (absorbed into C).

    A_n = -exp(log_a_re) + i a_im for N/2 modes per channel; the conjugate half is implied by taking
    twice the real part. K[h, l] = 2 Re sum_n C'_hn exp(dt_h A_hn l), C' = C (exp(dt A) - 1) / A.
    """

    def __init__(self, channels: int, d_state: int, length: int, init: str, dt_min: float, dt_max: float):
        super().__init__()
        modes = d_state // 2
        self.length = length
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        n = torch.arange(modes, dtype=torch.float32)
        a_im = math.pi * n if init == "lin" else (d_state / math.pi) * (d_state / (2 * n + 1) - 1)
        self.log_dt = nn.Parameter(log_dt)
        self.log_a_re = nn.Parameter(torch.full((channels, modes), math.log(0.5)))
        self.a_im = nn.Parameter(a_im.repeat(channels, 1))
        self.c_re = nn.Parameter(torch.randn(channels, modes) * 0.5 ** 0.5)
        self.c_im = nn.Parameter(torch.randn(channels, modes) * 0.5 ** 0.5)

    def forward(self) -> torch.Tensor:
        """The convolution kernel, shape (channels, length): K[:, l] weights the input l samples ago."""
        dt = torch.exp(self.log_dt)[:, None]
        a_re, a_im = -torch.exp(self.log_a_re), self.a_im
        x_re, x_im = a_re * dt, a_im * dt                                   # dt * A
        decay = torch.exp(x_re)
        num_re, num_im = decay * torch.cos(x_im) - 1.0, decay * torch.sin(x_im)   # exp(dt A) - 1
        den = a_re * a_re + a_im * a_im
        q_re, q_im = (num_re * a_re + num_im * a_im) / den, (num_im * a_re - num_re * a_im) / den
        c_re = self.c_re * q_re - self.c_im * q_im                          # C' = C (exp(dt A) - 1) / A
        c_im = self.c_re * q_im + self.c_im * q_re
        l = torch.arange(self.length, dtype=dt.dtype, device=dt.device)
        mag = torch.exp(x_re[..., None] * l)                                # (channels, modes, length)
        phase = x_im[..., None] * l
        return 2.0 * (c_re[..., None] * mag * torch.cos(phase) - c_im[..., None] * mag * torch.sin(phase)).sum(1)


def _causal_depthwise(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """y[:, h, t] = sum_l kernel[h, l] u[:, h, t - l]; u (batch, channels, time), kernel (channels, taps)."""
    taps = kernel.shape[-1]
    return F.conv1d(F.pad(u, (taps - 1, 0)), kernel.flip(-1).unsqueeze(1), groups=kernel.shape[0])


class S4DLayer(nn.Module):
    """u (batch, channels, L) -> SSM(u) + D u, same shape. Training computes the kernel every step."""

    def __init__(self, channels: int, d_state: int, length: int, init: str, dt_min: float, dt_max: float):
        super().__init__()
        self.kernel = S4DKernel(channels, d_state, length, init, dt_min, dt_max)
        self.d = nn.Parameter(torch.randn(channels))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return _causal_depthwise(u, self.kernel()) + u * self.d[:, None]

    @torch.no_grad()
    def freeze(self) -> "FrozenS4DLayer":
        kernel = self.kernel().clone()
        kernel[:, 0] += self.d          # D u is the kernel's zero-lag tap
        return FrozenS4DLayer(kernel)


class FrozenS4DLayer(nn.Module):
    """An S4D layer's inference form: the materialised kernel as a fixed causal depthwise convolution."""

    def __init__(self, kernel: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(kernel.flip(-1).unsqueeze(1).contiguous(), requires_grad=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return F.conv1d(F.pad(u, (self.weight.shape[-1] - 1, 0)), self.weight, groups=self.weight.shape[0])


class S4DBlock(nn.Module):
    def __init__(self, c: S4DConfig):
        super().__init__()
        self.ssm: nn.Module = S4DLayer(c.d_model, c.d_state, c.seq_len, c.init, c.dt_min, c.dt_max)
        self.drop = nn.Dropout(c.dropout)
        self.mix = nn.Conv1d(c.d_model, c.d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.drop(F.gelu(self.ssm(x))))


class S4D(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_samples), float32 filtered uV -> logits (batch, n_classes)."""

    config_class = S4DConfig

    def __init__(self, config: S4DConfig):
        super().__init__()
        c = config
        self.config = c
        self.spatial = nn.Conv1d(c.n_channels, c.d_model, 1, bias=False)
        self.stem = nn.Conv1d(c.d_model, c.d_model, c.stem_kernel, stride=c.stem_stride, groups=c.d_model,
                              bias=False)
        with torch.no_grad():   # start as a low-pass so the stride does not fold 60 Hz mains onto 20 Hz
            self.stem.weight.copy_(_lowpass_taps(c.stem_kernel).expand_as(self.stem.weight))
        self.bn = nn.BatchNorm1d(c.d_model)
        self.blocks = nn.ModuleList(S4DBlock(c) for _ in range(c.n_layers))
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.d_model, c.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = self.bn(self.stem(self.spatial(x * c.input_scale)))            # (B, H, L)
        for block in self.blocks:
            x = block(x)
        x = _log_power(x, c.pool, c.pool_stride).mean(-1)                  # (B, H)
        return self.head(self.drop(x))

    def fold_alignment(self, matrix: torch.Tensor) -> "S4D":
        """An eval-mode copy computing self(matrix @ x): the mixing joins the first (spatial) weights."""
        folded = copy.deepcopy(self).eval()
        fold_into_pointwise(folded.spatial, matrix)
        return folded

    def for_export(self) -> "S4D":
        """An eval-mode copy whose SSM layers are fixed depthwise convolutions (equal to `forward`)."""
        frozen = copy.deepcopy(self).eval()
        for block in frozen.blocks:
            if isinstance(block.ssm, S4DLayer):
                block.ssm = block.ssm.freeze()
        return frozen


# -------------------------------------------------------------------------------------------- Mamba

@dataclass(frozen=True)
class MambaConfig:
    n_channels: int = 21
    n_samples: int = 480
    n_classes: int = 2
    d_model: int = 8            # spatial filters = log-power features per step = residual width
    d_state: int = 8            # N per inner channel
    expand: int = 2             # d_inner = expand * d_model
    dt_rank: int = 2
    d_conv: int = 4             # causal depthwise convolution inside the block, in steps
    n_layers: int = 1
    temporal_kernel: int = 25   # stem: depthwise filter before the log power
    pool: int = 32              # stem: log-power segment and stride, in samples: 480 -> 29 steps
    pool_stride: int = 16
    dt_min: float = 0.01
    dt_max: float = 0.5         # a few steps' memory at most: the sequence is only ~29 steps long
    dropout: float = 0.5        # d_model 16 / dropout 0.3 overfit the training subjects within 5 epochs
    input_scale: float = 0.05   # uV -> O(1) activations

    def __post_init__(self):
        require_positive(self, ("n_channels", "n_samples", "n_classes", "d_model", "d_state", "expand",
                                 "dt_rank", "d_conv", "n_layers", "temporal_kernel", "pool", "pool_stride"))
        if self.pool > self.n_samples:
            raise ConfigError(f"MambaConfig.pool ({self.pool}) is longer than the window ({self.n_samples} "
                              f"samples); lower pool")
        if self.n_steps > MAX_SCAN_STEPS:
            raise ConfigError(f"the scan would run {self.n_steps} steps, more than {MAX_SCAN_STEPS} (it is "
                              f"unrolled at compile time); raise pool_stride to at least "
                              f"{-(-(self.n_samples - self.pool) // (MAX_SCAN_STEPS - 1))}")
        _require_dt_range(self)

    @property
    def n_steps(self) -> int:
        """T': scan steps, one per log-power segment."""
        return (self.n_samples - self.pool) // self.pool_stride + 1

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


class MambaBlock(nn.Module):
    """Pre-norm Mamba block on (batch, steps, d_model); `step` runs the same map one step at a time.

    Recurrent state per sequence, one tensor: (d_inner, d_state + d_conv - 1), the SSM state in
    [:, :d_state] and the last d_conv - 1 convolution inputs (oldest first) in [:, d_state:].
    """

    def __init__(self, c: MambaConfig):
        super().__init__()
        e, n = c.d_inner, c.d_state
        self.d_inner, self.d_state, self.dt_rank, self.d_conv = e, n, c.dt_rank, c.d_conv
        self.norm = nn.LayerNorm(c.d_model)
        self.in_proj = nn.Linear(c.d_model, 2 * e)
        self.conv = nn.Conv1d(e, e, c.d_conv, groups=e)
        self.x_proj = nn.Linear(e, c.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(c.dt_rank, e)
        dt = torch.exp(torch.rand(e) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        with torch.no_grad():   # softplus(bias) = dt: start each channel at its own time scale
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.a_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(e, 1))
        self.d = nn.Parameter(torch.ones(e))
        self.drop = nn.Dropout(c.dropout)
        self.out_proj = nn.Linear(e, c.d_model)

    def _in(self, x: torch.Tensor):
        """x (..., d_model) -> scan input u and gate z, each (..., d_inner)."""
        uz = self.in_proj(self.norm(x))
        return uz[..., :self.d_inner], uz[..., self.d_inner:]   # slices, not split: no tuple in the graph

    def _selective(self, u: torch.Tensor):
        """u (..., d_inner) after the convolution -> dt (..., d_inner), B and C (..., d_state)."""
        dbc = self.x_proj(u)
        r, n = self.dt_rank, self.d_state
        return F.softplus(self.dt_proj(dbc[..., :r])), dbc[..., r:r + n], dbc[..., r + n:]

    @staticmethod
    def _scan_step(h, a, dt, u, b, c):
        """h (B, E, N), a (E, N), dt and u (B, E), b and c (B, N) -> (h_next, y (B, E))."""
        h = torch.exp(dt[..., None] * a) * h + (dt * u)[..., None] * b[:, None, :]
        return h, (h * c[:, None, :]).sum(-1)

    def _out(self, x, y, u, z):
        return x + self.out_proj(self.drop((y + u * self.d) * F.silu(z)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, steps, d_model) -> same shape."""
        steps = x.shape[1]
        u, z = self._in(x)
        u = F.silu(self.conv(F.pad(u.transpose(1, 2), (self.d_conv - 1, 0))).transpose(1, 2))
        dt, b, c = self._selective(u)
        a = -torch.exp(self.a_log)
        h = x.new_zeros(x.shape[0], self.d_inner, self.d_state)
        ys = []
        for t in range(steps):    # static length: torch.export unrolls it
            at = slice(t, t + 1)  # a slice, not an index: TVM imports x[:, t] as a gather
            h, y = self._scan_step(h, a, dt[:, at].squeeze(1), u[:, at].squeeze(1), b[:, at].squeeze(1),
                                   c[:, at].squeeze(1))
            ys.append(y)
        return self._out(x, torch.stack(ys, 1), u, z)

    def step(self, x_t: torch.Tensor, state: torch.Tensor):
        """x_t (batch, d_model), state (batch, d_inner, d_state + d_conv - 1) -> (y_t, next state)."""
        n = self.d_state
        u, z = self._in(x_t)
        window = torch.cat([state[..., n:], u[..., None]], -1)             # (B, E, d_conv), oldest first
        u = F.silu((window * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias)
        dt, b, c = self._selective(u)
        h, y = self._scan_step(state[..., :n], -torch.exp(self.a_log), dt, u, b, c)
        return self._out(x_t, y, u, z), torch.cat([h, window[..., 1:]], -1)


class Mamba(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_samples), float32 filtered uV -> logits (batch, n_classes).

    Recurrent use, one log-power segment at a time (equal to `forward`):

        feats = model.embed(x)                       # (batch, n_steps, d_model)
        ys, state = [], model.init_state(batch)
        for t in range(feats.shape[1]):
            y_t, state = model.step(feats[:, t], state)
            ys.append(y_t)
        logits = model.classify(torch.stack(ys, 1))
    """

    config_class = MambaConfig

    def __init__(self, config: MambaConfig):
        super().__init__()
        c = config
        self.config = c
        self.spatial = nn.Conv1d(c.n_channels, c.d_model, 1, bias=False)
        self.temporal = nn.Conv1d(c.d_model, c.d_model, c.temporal_kernel, padding=c.temporal_kernel // 2,
                                  groups=c.d_model, bias=False)
        self.bn = nn.BatchNorm1d(c.d_model)
        self.blocks = nn.ModuleList(MambaBlock(c) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.d_model, c.n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The downsampling stem: (batch, n_channels, n_samples) uV -> (batch, n_steps, d_model) log power."""
        c = self.config
        x = self.bn(self.temporal(self.spatial(x * c.input_scale)))
        return _log_power(x, c.pool, c.pool_stride).transpose(1, 2)

    def classify(self, ys: torch.Tensor) -> torch.Tensor:
        """(batch, n_steps, d_model) block outputs -> logits (batch, n_classes)."""
        return self.head(self.drop(self.norm(ys).mean(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(x))      # the scan overfits the training subjects without it
        for block in self.blocks:
            x = block(x)
        return self.classify(x)

    def fold_alignment(self, matrix: torch.Tensor) -> "Mamba":
        """An eval-mode copy computing self(matrix @ x): the mixing joins the first (spatial) weights."""
        folded = copy.deepcopy(self).eval()
        fold_into_pointwise(folded.spatial, matrix)
        return folded

    def init_state(self, batch: int) -> torch.Tensor:
        """Zero state for `step`, shape (batch, n_layers, d_inner, d_state + d_conv - 1)."""
        c = self.config
        return torch.zeros(batch, c.n_layers, c.d_inner, c.d_state + c.d_conv - 1)

    def step(self, x_t: torch.Tensor, state: torch.Tensor):
        """One scan step: x_t (batch, d_model) stem feature, state from `init_state` -> (y_t, next state)."""
        states = []
        for i, block in enumerate(self.blocks):
            x_t, s = block.step(x_t, state[:, i])
            states.append(s)
        return x_t, torch.stack(states, 1)

    def for_device(self) -> SteppedExport:
        """Eval mode as three graphs (stem, one scan step with the state as I/O, head) whose loop over the
        log-power segments the device runs: what `edgebci compile` uses."""
        m, c = self.eval(), self.config
        state = (1, c.n_layers, c.d_inner, c.d_state + c.d_conv - 1)
        return SteppedExport(Method(m.embed), _MambaCell(m), Method(m.head), (state,), c.n_steps, c.d_model,
                             c.d_model)


class _MambaCell(nn.Module):
    """(x_t, state) -> (LayerNorm of the block output: the head's input before the mean, next state)."""

    def __init__(self, model: Mamba):
        super().__init__()
        self.model = model

    def forward(self, x_t: torch.Tensor, state: torch.Tensor):
        y, state = self.model.step(x_t, state)
        return self.model.norm(y), state
