"""Bessel front-end design (scipy) and its causal application.

Bessel filters have the flattest group delay of the classic IIR families, so the shape of an EEG
rhythm survives filtering; they run forward only (filtfilt needs future samples a device never has).
Training and evaluation filter each window in float32 from a zero state (`apply_frontend`); the
device runs the same sections in fixed point (edgebci.frontend.fixed, proven equal within a stated
tolerance by tests/test_frontend_fixed.py). An optional notch (50 or 60 Hz mains) is one more section.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from edgebci.errors import ConfigError

BTYPES = ("lowpass", "highpass", "bandpass")
NORMS = ("phase", "delay", "mag")
NOTCH_HZ = (50.0, 60.0)
DEFAULT_NOTCH_Q = 30.0


@dataclass(frozen=True)
class FrontEnd:
    """A causal Bessel filter as second-order sections (scipy layout: b0 b1 b2 a0 a1 a2, a0 == 1).

    notch_hz : mains notch appended as the last section (50 or 60 Hz), or None
    """
    btype: str
    order: int
    cutoffs_hz: tuple[float, ...]
    fs_hz: float
    norm: str
    sos: tuple[tuple[float, ...], ...]
    notch_hz: float | None = None
    notch_q: float = DEFAULT_NOTCH_Q

    def __post_init__(self):
        sos = np.asarray(self.sos, np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6 or len(sos) == 0:
            raise ConfigError(f"sos must have shape (n_sections, 6), got {sos.shape}")
        poles = np.concatenate([np.roots(s[3:]) for s in sos])
        if np.any(np.abs(poles) >= 1.0):
            raise ConfigError(f"front end is unstable: pole radius {np.abs(poles).max():.6f} >= 1; "
                              f"lower the order or move the cutoffs away from 0 and fs_hz/2")

    @property
    def n_sections(self) -> int:
        return len(self.sos)

    def to_dict(self) -> dict:
        d = {"btype": self.btype, "order": self.order, "cutoffs_hz": list(self.cutoffs_hz),
             "fs_hz": self.fs_hz, "norm": self.norm, "sos": [list(r) for r in self.sos]}
        if self.notch_hz is not None:
            d.update(notch_hz=self.notch_hz, notch_q=self.notch_q)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEnd":
        notch = d.get("notch_hz")
        return cls(d["btype"], int(d["order"]), tuple(float(c) for c in d["cutoffs_hz"]), float(d["fs_hz"]),
                   d["norm"], tuple(tuple(float(v) for v in r) for r in d["sos"]),
                   None if notch is None else float(notch), float(d.get("notch_q", DEFAULT_NOTCH_Q)))


def design_bessel(order: int, cutoffs_hz: tuple[float, ...] | float, fs_hz: float,
                  btype: str = "bandpass", norm: str = "phase", notch_hz: float | None = None,
                  notch_q: float = DEFAULT_NOTCH_Q) -> FrontEnd:
    """Design a causal Bessel filter as second-order sections.

    order : filter order per edge (a band-pass of order N has 2N poles, N sections)
    cutoffs_hz : (low, high) for a band-pass, one frequency for low/high-pass, in Hz
    notch_hz : 50 or 60 to append a mains notch (scipy.signal.iirnotch, quality notch_q), or None
    """
    if fs_hz <= 0:
        raise ConfigError(f"fs_hz must be > 0, got {fs_hz}")
    if btype not in BTYPES:
        raise ConfigError(f"btype must be one of {BTYPES}, got {btype!r}")
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {NORMS}, got {norm!r}")
    if not 1 <= order <= 8:
        raise ConfigError(f"order must be 1..8, got {order}; high orders are badly conditioned in float32")
    cut = tuple(float(c) for c in np.atleast_1d(cutoffs_hz))
    want = 2 if btype == "bandpass" else 1
    if len(cut) != want:
        raise ConfigError(f"a {btype} needs {want} cutoff(s), got {cut}")
    nyq = fs_hz / 2
    for c in cut:
        if not 0 < c < nyq:
            raise ConfigError(f"cutoff {c} Hz must lie between 0 and fs_hz/2 = {nyq} Hz")
    if want == 2 and cut[0] >= cut[1]:
        raise ConfigError(f"band-pass cutoffs must be (low, high) with low < high, got {cut}")
    sos = signal.bessel(order, cut if want == 2 else cut[0], btype=btype, norm=norm, fs=fs_hz, output="sos")
    if notch_hz is not None:
        notch_hz = float(notch_hz)
        if notch_hz not in NOTCH_HZ:
            raise ConfigError(f"notch_hz must be one of {NOTCH_HZ} (mains) or None, got {notch_hz}")
        if notch_hz >= nyq:
            raise ConfigError(f"a {notch_hz:g} Hz notch needs fs_hz > {2 * notch_hz:g} Hz, got {fs_hz}; drop the "
                              f"notch (the signal holds no {notch_hz:g} Hz at this rate)")
        if not 1.0 <= notch_q <= 200.0:
            raise ConfigError(f"notch_q must be 1..200 (notch width = notch_hz / notch_q), got {notch_q}")
        b, a = signal.iirnotch(notch_hz, notch_q, fs=fs_hz)
        sos = np.vstack([sos, np.concatenate([b, a]) / a[0]])
    return FrontEnd(btype, order, cut, float(fs_hz), norm, tuple(tuple(float(v) for v in r) for r in sos),
                    notch_hz, float(notch_q))


def apply_frontend(frontend: FrontEnd, x: np.ndarray) -> np.ndarray:
    """Filter each window causally from a zero state, as the device does.

    x : ndarray, shape (..., n_channels, n_samples), int16 or float uV
    returns float32 of the same shape
    """
    sos = np.asarray(frontend.sos, np.float32)
    return signal.sosfilt(sos, np.asarray(x, np.float32), axis=-1).astype(np.float32)
