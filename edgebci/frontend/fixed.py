"""Front-end stage, fixed point: the device's biquad cascade and its bit-exact numpy reference.

The arithmetic (firmware_bridge/src/ebci_filter.c runs exactly this, tests hold them bit for bit):

    data      int32 per channel: x_q = x_uV * 2^in_shift, one value per section input/output
    section   direct form I, coefficients int32 c = round(coef * 2^(31 - post_shift))
              acc = b0*x[n] + b1*x[n-1] + b2*x[n-2] - a1*y[n-1] - a2*y[n-2]          (int64)
              y[n] = saturate_int32((acc + 2^(30 - post_shift)) >> (31 - post_shift))  (round half up)

Why this form (the CMSIS-DSP arm_biquad_cascade_df1_q31 layout, with rounding and saturation):
- Direct form I keeps the state as past inputs and outputs, which are bounded by the data format,
  so a section cannot overflow internally the way direct form II's recursive state can.
- Q31 coefficients with a per-section post-shift: for an order-2 0.5 Hz high-pass at 160 Hz, Q15
  moves the pole angle by 7 %, Q31 by 6e-7. |a1| is up to 2, hence the post-shift.
- int32 data with 64-bit accumulators: the Cortex-M4 SMLAL does 32x32+64 in one instruction. The
  post-shift is chosen so that the sum of |coefficients| times the largest int32 stays below 2^63:
  the accumulator cannot overflow for any state, only the output saturates (clips, never wraps).
- in_shift gives the data fractional bits: chosen so that no int16 input can saturate any section
  (the L1 norm of every partial cascade bounds its output), the rest is precision (2^-in_shift uV).

scipy puts the whole gain of a design into its first section, which would starve it of bits; the
quantiser spreads the gain so that every partial cascade peaks at 0 dB (the float design, and
so the training path, is untouched: the product of the section gains is the same).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from edgebci.errors import ConfigError
from edgebci.frontend.bessel import FrontEnd

COEF_BITS = 31                 # Q31 coefficients (before the post-shift)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_IN_SHIFT = 16              # int16 << 16 fills an int32: more fractional bits would not fit
_IMPULSE_SAMPLES = 1 << 15     # length used for the L1 norms (the slowest pole allowed decays by then)


@dataclass(frozen=True)
class FixedFrontEnd:
    """Quantised second-order sections as the device runs them.

    coeffs     : per section (b0, b1, b2, a1, a2) as int32, scaled by 2^(31 - post_shift)
    post_shift : per section, 0..2 (|coef| up to 2^post_shift)
    in_shift   : fractional bits of the int32 data: y_uV = y_q * 2^-in_shift
    """
    coeffs: tuple[tuple[int, int, int, int, int], ...]
    post_shift: tuple[int, ...]
    in_shift: int

    def __post_init__(self):
        if len(self.coeffs) == 0 or len(self.coeffs) != len(self.post_shift):
            raise ConfigError(f"a fixed-point front end needs one post_shift per section, got {len(self.coeffs)} "
                              f"sections and {len(self.post_shift)} shifts")
        if not 0 <= self.in_shift <= MAX_IN_SHIFT:
            raise ConfigError(f"in_shift must be 0..{MAX_IN_SHIFT} (fractional bits of int32 data), got {self.in_shift}")
        for k, (row, ps) in enumerate(zip(self.coeffs, self.post_shift)):
            if not 0 <= ps <= 30:
                raise ConfigError(f"section {k}: post_shift must be 0..30, got {ps}")
            if any(not INT32_MIN <= c <= INT32_MAX for c in row):
                raise ConfigError(f"section {k}: coefficients must fit int32, got {row}")
            if sum(abs(c) for c in row) * (1 << 31) + (1 << 30) >= (1 << 63):
                raise ConfigError(f"section {k}: sum of |coefficients| {sum(abs(c) for c in row)} lets the 64-bit "
                                  f"accumulator overflow; raise its post_shift")

    @property
    def n_sections(self) -> int:
        return len(self.coeffs)

    def sos(self) -> np.ndarray:
        """The coefficients the device really uses, as float64 sos rows (b0 b1 b2 1 a1 a2)."""
        out = np.zeros((self.n_sections, 6))
        for k, (row, ps) in enumerate(zip(self.coeffs, self.post_shift)):
            c = np.asarray(row, np.float64) / 2.0 ** (COEF_BITS - ps)
            out[k] = (c[0], c[1], c[2], 1.0, c[3], c[4])
        return out

    def to_dict(self) -> dict:
        return {"format": "DF-I, Q31 coefficients with post-shift, int32 data, int64 accumulator",
                "coeffs_b0_b1_b2_a1_a2": [list(r) for r in self.coeffs], "post_shift": list(self.post_shift),
                "in_shift": self.in_shift}


def _l1_norm(sos: np.ndarray) -> float:
    impulse = np.zeros(_IMPULSE_SAMPLES)
    impulse[0] = 1.0
    return float(np.abs(signal.sosfilt(sos, impulse)).sum())


def _peak_gain(sos: np.ndarray) -> float:
    _, h = signal.sosfreqz(sos, worN=4096)
    return float(np.abs(h).max())


def _balance_gains(sos: np.ndarray) -> np.ndarray:
    """Rescale the numerators so that every partial cascade peaks at 0 dB; the last section takes
    the inverse of the product of those factors, so the whole filter is unchanged."""
    out = sos.copy()
    product = 1.0
    for k in range(len(out) - 1):
        g = 1.0 / _peak_gain(out[:k + 1])
        out[k, :3] *= g
        product *= g
    out[-1, :3] /= product
    return out


def _post_shift(row: np.ndarray) -> int:
    """Smallest shift that fits every coefficient in Q31 and keeps the accumulator below 2^63."""
    total = float(np.abs(row).sum())
    for ps in range(0, 31):
        scale = 2.0 ** (COEF_BITS - ps)
        q = np.round(row * scale)
        if np.all(np.abs(q) <= INT32_MAX) and np.abs(q).sum() * 2.0 ** 31 + 2.0 ** 30 < 2.0 ** 63 * (1 - 1e-12):
            return ps
    raise ConfigError(f"a section has coefficients summing to {total:.3g} in magnitude: no post-shift up to 30 "
                      f"fits them; lower the filter order")


def quantize_frontend(frontend: FrontEnd, in_shift: int | None = None) -> FixedFrontEnd:
    """The fixed-point sections the device runs for `frontend`.

    in_shift : fractional bits of the int32 data; by default the most that no int16 input can
               saturate (from the L1 norm of every partial cascade). A larger value buys precision
               at the risk of saturation on large inputs (then the output clips, it never wraps).
    """
    sos = _balance_gains(np.asarray(frontend.sos, np.float64))
    rows, shifts = [], []
    for s in sos:
        coef = np.array([s[0], s[1], s[2], s[4], s[5]]) / s[3]
        ps = _post_shift(coef)
        rows.append(tuple(int(v) for v in np.round(coef * 2.0 ** (COEF_BITS - ps))))
        shifts.append(ps)
    if in_shift is None:
        worst = max(_l1_norm(sos[:k + 1]) for k in range(len(sos)))
        # |y| <= 32768 * L1 * 2^s must stay below 2^31, with a margin for rounding
        in_shift = int(np.clip(np.floor(np.log2(INT32_MAX / (32768.0 * worst * 1.001))), 0, MAX_IN_SHIFT))
    return FixedFrontEnd(tuple(rows), tuple(shifts), int(in_shift))


@dataclass
class FilterState:
    """Per channel and section: x[n-1], x[n-2], y[n-1], y[n-2] as int32 values (held in int64)."""
    z: np.ndarray   # int64, shape (n_channels, n_sections, 4)
    n_saturated: int = 0

    @classmethod
    def zeros(cls, n_channels: int, n_sections: int) -> "FilterState":
        return cls(np.zeros((n_channels, n_sections, 4), np.int64))

    def copy(self) -> "FilterState":
        return FilterState(self.z.copy(), self.n_saturated)


def filter_fixed(fixed: FixedFrontEnd, x: np.ndarray, state: FilterState | None = None) -> tuple[np.ndarray, FilterState]:
    """Bit-exact reference of ebci_filter_push.

    x : ndarray, shape (n_channels, n_samples), int16 uV (any integer dtype within int16)
    returns (y, state): y int32, shape (n_channels, n_samples), uV * 2^in_shift; state to continue from
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ConfigError(f"x must have shape (n_channels, n_samples), got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ConfigError(f"x must hold integer microvolts (int16 range), got dtype {x.dtype}: round the samples to "
                          f"integers first")
    if x.size and (x.min() < -32768 or x.max() > 32767):
        raise ConfigError(f"x must hold int16 microvolts (-32768..32767), got values {x.min()}..{x.max()}: clip or "
                          f"rescale the recording (a cast to int16 would wrap them)")
    n_ch, n = x.shape
    state = FilterState.zeros(n_ch, fixed.n_sections) if state is None else state.copy()
    if state.z.shape != (n_ch, fixed.n_sections, 4):
        raise ConfigError(f"filter state has shape {state.z.shape}, expected {(n_ch, fixed.n_sections, 4)}")
    c = np.asarray(fixed.coeffs, np.int64)
    z = state.z
    cur = x.astype(np.int64) << fixed.in_shift
    for k in range(fixed.n_sections):
        b0, b1, b2, a1, a2 = c[k]
        shift = COEF_BITS - fixed.post_shift[k]
        half = np.int64(1) << (shift - 1)
        x1, x2, y1, y2 = z[:, k, 0].copy(), z[:, k, 1].copy(), z[:, k, 2].copy(), z[:, k, 3].copy()
        out = np.empty_like(cur)
        for t in range(n):   # recursive: one sample after the other, all channels at once
            x0 = cur[:, t]
            acc = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2 + half
            y = acc >> shift
            clipped = np.clip(y, INT32_MIN, INT32_MAX)
            state.n_saturated += int(np.count_nonzero(clipped != y))
            x2, x1, y2, y1 = x1, x0, y1, clipped
            out[:, t] = clipped
        z[:, k] = np.stack([x1, x2, y1, y2], axis=1)
        cur = out
    return cur.astype(np.int32), state


def to_microvolts(fixed: FixedFrontEnd, y: np.ndarray) -> np.ndarray:
    """int32 filter output -> float32 uV, exactly as the device converts it for the model."""
    return (np.asarray(y, np.int32).astype(np.float32) * np.float32(2.0 ** -fixed.in_shift)).astype(np.float32)


def apply_fixed_frontend(frontend: FrontEnd, x: np.ndarray, fixed: FixedFrontEnd | None = None) -> np.ndarray:
    """The device's front end from a zero state per window (float32 uV), the fixed-point twin of
    edgebci.frontend.apply_frontend.

    x : ndarray, shape (..., n_channels, n_samples), int16 uV
    """
    fixed = quantize_frontend(frontend) if fixed is None else fixed
    x = np.asarray(x)
    flat = x.reshape(-1, x.shape[-1])
    y, _ = filter_fixed(fixed, flat)
    return to_microvolts(fixed, y).reshape(x.shape)
