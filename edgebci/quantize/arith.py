"""The integer arithmetic of a quantised decoder, stated once: how a real scale becomes integers.

Every tensor on the device is an integer array q with a real scale s (value = q * s, zero point 0:
edgebci quantises symmetrically). Changing scale, `requantise`, is the only rounding step:

    p = acc * m0,  out = clamp(rshift_even(p, n), qmin, qmax)   general: m0 in [2^30, 2^31), 1 <= n <= 62
    p = acc,       out = clamp(rshift_even(p, n), qmin, qmax)   m0 == 1: the scale ratio is 2^-n, a shift
    out = clamp(acc << -n, qmin, qmax)                          m0 == 1, n <= 0: an exact left shift

    rshift_even(p, n) = (p + 2^(n-1) - 1 + ((p >> n) & 1)) >> n      p / 2^n rounded half to even

with int64 intermediates for the multiplier (int32 for the shifts, |acc| < 2^30) and arithmetic shifts.
Ties go to even, as torch.round in Brevitas' fake quantisation and ONNX QuantizeLinear do: with
power-of-two scales ties are frequent (an average of 4 is a tie one time in four), and rounding them
the way training did keeps the device equal to the QAT model, not biased by half a step per layer. `Multiplier.from_real` chooses
(m0, n) from the real ratio M = s_in / s_out; a power-of-two M (the `int8-pow2` recipe makes every
one so) becomes a pure shift. The numpy reference (edgebci.quantize.reference) and the Relax
emitter (edgebci.compile.integer) both use these constants and nothing else, so the device and the
reference agree bit for bit.

Element-wise functions of one int8 tensor (ELU, GELU, exp, log, x*x, ...) are 256-entry tables,
computed here from the function in float64: the table is data, not arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebci.errors import UnsupportedOpError

MAX_SHIFT = 62          # (acc * m0) stays below 2^63 for |acc| < 2^31
ROUND_BITS = 8          # extra fractional bits when two tensors of different scales are added


@dataclass(frozen=True)
class Multiplier:
    """A real positive multiplier as integers, per tensor (shape ()) or per channel (shape (C,)).

    m0 : int64 array, 1 for pure shifts, else in [2^30, 2^31); n : int64 array, the right shift.
    """
    m0: np.ndarray
    n: np.ndarray

    @property
    def is_shift(self) -> bool:
        return bool(np.all(self.m0 == 1))

    @property
    def size(self) -> int:
        return int(np.asarray(self.m0).size)

    def real(self) -> np.ndarray:
        return np.asarray(self.m0, np.float64) * np.exp2(-np.asarray(self.n, np.float64))

    @classmethod
    def from_real(cls, ratio, what: str = "requantisation") -> "Multiplier":
        m = np.asarray(ratio, np.float64)
        if not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise UnsupportedOpError(f"{what}: scale ratio must be finite and > 0, got {m.ravel()[:4]}; "
                                     f"a scale of zero comes from an all-zero tensor in calibration")
        frac, exp = np.frexp(m)                       # m = frac * 2^exp, frac in [0.5, 1)
        pow2 = frac == 0.5
        if np.all(pow2):                              # every ratio a power of two: shifts only
            return cls(np.ones_like(exp, np.int64), (1 - exp).astype(np.int64))
        m0 = np.round(frac * 2.0 ** 31).astype(np.int64)
        n = (31 - exp).astype(np.int64)
        carry = m0 == 2 ** 31
        m0 = np.where(carry, 2 ** 30, m0)
        n = np.where(carry, n - 1, n)
        if np.any(n < 1) or np.any(n > MAX_SHIFT):
            raise UnsupportedOpError(f"{what}: scale ratio {m.ravel()[np.argmax(np.abs(np.log2(m.ravel())))]:.3g} "
                                     f"is outside what a 32-bit multiplier and a shift of 1..{MAX_SHIFT} can "
                                     f"represent; the quantiser scales around this op are inconsistent")
        return cls(m0, n)


def requantize(acc: np.ndarray, mult: Multiplier, axis: int | None, qmin: int, qmax: int) -> np.ndarray:
    """The requantisation above on int64 numpy arrays. axis: where per-channel constants broadcast."""
    a = np.asarray(acc, np.int64)
    m0, n = _broadcast(mult.m0, a.ndim, axis), _broadcast(mult.n, a.ndim, axis)
    if mult.is_shift:                 # int32 on the device: refuse what would overflow it there
        right = np.maximum(n, 0)
        out = np.where(n > 0, rshift_even(a, right), a << np.maximum(-n, 0))
        if np.any(np.abs(a) >= 2 ** 30) or np.any(np.abs(out) >= 2 ** 31):
            raise UnsupportedOpError(f"shift requantisation of {int(np.abs(a).max())} overflows int32")
    else:
        if np.any(np.abs(a) >= 2 ** 31):
            raise UnsupportedOpError(f"requantisation input reaches {int(np.abs(a).max())}, beyond int32")
        out = rshift_even(a * m0, n)
    return np.clip(out, qmin, qmax)


def rshift_even(p: np.ndarray, n) -> np.ndarray:
    """p / 2^n rounded half to even, for n >= 0 (n == 0: p itself), on int64 arrays."""
    n = np.asarray(n, np.int64)
    half_minus_1 = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)) - 1, 0)
    odd = np.where(n > 0, (p >> n) & 1, 0)
    return (p + half_minus_1 + odd) >> n


def _broadcast(v: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    v = np.asarray(v, np.int64)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis if axis is not None else 1] = -1
    return v.reshape(shape)


def build_table(fn, scale_in: float, scale_out: float, qmin: int = -128, qmax: int = 127,
                reachable: tuple[int, int] = (-128, 127)) -> np.ndarray:
    """[256] (int8, or int16 for an unsigned 8-bit output): entry i holds clamp(round(fn((i - 128) * scale_in) / scale_out)), for an int8 input whose
    codes lie in `reachable` (entries outside it are 0: the input never takes them).

    Evaluated in float32, as the QAT model (torch) and the QCDQ graph (onnxruntime) evaluate it: where
    fn lands on a rounding tie (x*x at a scale chosen from the same x is one), float64 would break the
    tie the other way from training."""
    codes = np.arange(-128, 128, dtype=np.float32)
    with np.errstate(all="ignore"):
        y = np.asarray(fn(codes * np.float32(scale_in)), np.float32) / np.float32(scale_out)
    unreachable = (codes < reachable[0]) | (codes > reachable[1])
    y = np.where(unreachable, np.float32(0), y)
    if not np.all(np.isfinite(y)):
        bad = codes[~np.isfinite(y)][0]
        raise UnsupportedOpError(f"an element-wise function is not finite at input code {int(bad)} "
                                 f"(value {bad * scale_in:.4g}); clamp its input before quantising (e.g. log of 0)")
    return np.clip(np.round(y), qmin, qmax).astype(storage_dtype(qmin, qmax))


def int_range(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1 - int(narrow)


# the program's integer types, narrowest first, with their ranges
INT_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767), "int32": (-2 ** 31, 2 ** 31 - 1)}


def storage_dtype(qmin: int, qmax: int) -> str:
    """The narrowest C integer type holding [qmin, qmax]."""
    for name, (lo, hi) in INT_RANGES.items():
        if qmin >= lo and qmax <= hi:
            return name
    raise UnsupportedOpError(f"integer range [{qmin}, {qmax}] does not fit 32 bits")
