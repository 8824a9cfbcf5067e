"""Bessel front-end design (scipy) and its causal application.

Bessel filters have the flattest group delay of the classic IIR families, so the shape of an EEG
rhythm survives filtering; they run forward only (filtfilt needs future samples a device never has).
The device runs the same second-order sections in float32, direct form II transposed, from a zero
state at the start of every window; `apply_frontend` does the same for training and evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from edgebci.errors import ConfigError

BTYPES = ("lowpass", "highpass", "bandpass")
NORMS = ("phase", "delay", "mag")


@dataclass(frozen=True)
class FrontEnd:
    """A causal Bessel filter as second-order sections (scipy layout: b0 b1 b2 a0 a1 a2, a0 == 1)."""
    btype: str
    order: int
    cutoffs_hz: tuple[float, ...]
    fs_hz: float
    norm: str
    sos: tuple[tuple[float, ...], ...]

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
        return {"btype": self.btype, "order": self.order, "cutoffs_hz": list(self.cutoffs_hz),
                "fs_hz": self.fs_hz, "norm": self.norm, "sos": [list(r) for r in self.sos]}

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEnd":
        return cls(d["btype"], int(d["order"]), tuple(float(c) for c in d["cutoffs_hz"]), float(d["fs_hz"]),
                   d["norm"], tuple(tuple(float(v) for v in r) for r in d["sos"]))


def design_bessel(order: int, cutoffs_hz: tuple[float, ...] | float, fs_hz: float,
                  btype: str = "bandpass", norm: str = "phase") -> FrontEnd:
    """Design a causal Bessel filter as second-order sections.

    order : filter order per edge (a band-pass of order N has 2N poles, N sections)
    cutoffs_hz : (low, high) for a band-pass, one frequency for low/high-pass, in Hz
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
    return FrontEnd(btype, order, cut, float(fs_hz), norm, tuple(tuple(float(v) for v in r) for r in sos))


def apply_frontend(frontend: FrontEnd, x: np.ndarray) -> np.ndarray:
    """Filter each window causally from a zero state, as the device does.

    x : ndarray, shape (..., n_channels, n_samples), int16 or float uV
    returns float32 of the same shape
    """
    sos = np.asarray(frontend.sos, np.float32)
    return signal.sosfilt(sos, np.asarray(x, np.float32), axis=-1).astype(np.float32)
