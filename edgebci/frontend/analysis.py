"""Front-end stage, checks: what quantisation does to a design, and the designs the device refuses.

`analyze_frontend` compares the fixed-point sections the device runs with scipy's float design:
gain error in the passband (dB), group delay across the passband (the reason to use a Bessel),
rounding noise at the output, pole radii. `check_frontend` turns the numbers into refusals that say
why and what to do instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from edgebci.errors import ConfigError
from edgebci.frontend.bessel import FrontEnd
from edgebci.frontend.fixed import FixedFrontEnd, quantize_frontend

MAX_GAIN_ERROR_DB = 0.1          # fixed vs float magnitude response, anywhere in the passband
MAX_ROUNDING_NOISE_UV = 0.05     # RMS at the output; the int16 input's own quantisation noise is 0.29 uV
N_FREQS = 512


@dataclass(frozen=True)
class FrontEndAnalysis:
    """Float design vs the device's fixed-point sections, on a grid of N_FREQS frequencies.

    passband_hz          : where the float design is within 3 dB of its peak
    gain_error_db        : largest |dB(fixed) - dB(float)| in the passband
    group_delay_ms       : (min, mean, max) of the fixed design's group delay in the passband
    rounding_noise_uv    : RMS output noise from the int32 rounding (white-noise model), uV
    max_pole_radius      : of the quantised sections
    """
    passband_hz: tuple[float, float]
    gain_error_db: float
    float32_gain_error_db: float
    group_delay_ms: tuple[float, float, float]
    group_delay_samples: tuple[float, float, float]
    rounding_noise_uv: float
    max_pole_radius: float
    freqs_hz: np.ndarray
    mag_db: np.ndarray               # float design
    mag_db_fixed: np.ndarray
    phase_deg: np.ndarray            # float design, unwrapped
    phase_deg_fixed: np.ndarray
    group_delay_ms_curve: np.ndarray  # fixed design

    def to_dict(self) -> dict:
        return {"passband_hz": list(self.passband_hz), "gain_error_db": self.gain_error_db,
                "gain_error_db_limit": MAX_GAIN_ERROR_DB, "float32_gain_error_db": self.float32_gain_error_db,
                "group_delay_ms": dict(zip(("min", "mean", "max"), self.group_delay_ms)),
                "group_delay_samples": dict(zip(("min", "mean", "max"), self.group_delay_samples)),
                "rounding_noise_uv_rms": self.rounding_noise_uv, "rounding_noise_limit_uv_rms": MAX_ROUNDING_NOISE_UV,
                "max_pole_radius": self.max_pole_radius}


def _response(sos: np.ndarray, freqs_hz: np.ndarray, fs_hz: float) -> np.ndarray:
    _, h = signal.sosfreqz(sos, worN=freqs_hz, fs=fs_hz)
    return h


def _group_delay_samples(sos: np.ndarray, freqs_hz: np.ndarray, fs_hz: float) -> np.ndarray:
    w = 2 * np.pi * freqs_hz / fs_hz
    total = np.zeros_like(w)
    for s in sos:
        _, gd_b = signal.group_delay((s[:3], [1.0]), w=w)
        _, gd_a = signal.group_delay((s[3:], [1.0]), w=w)
        total += gd_b - gd_a        # numerator and denominator separately: no 0/0 at the zeros of b
    return total


def _rounding_noise_uv(fixed: FixedFrontEnd, n: int = 1 << 14) -> float:
    """RMS output noise: each section's output rounding (variance q^2/12, q = 2^-in_shift uV) runs
    through its own recursion 1/A and every later section."""
    sos = fixed.sos()
    q = 2.0 ** -fixed.in_shift
    impulse = np.zeros(n)
    impulse[0] = 1.0
    power = 0.0
    for k in range(len(sos)):
        path = np.vstack([[1.0, 0.0, 0.0, *sos[k, 3:]], sos[k + 1:]])
        power += float(np.sum(signal.sosfilt(path, impulse) ** 2))
    return float(np.sqrt(power * q * q / 12.0))


def _db(h: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(np.abs(h), 1e-12))


def analyze_frontend(frontend: FrontEnd, fixed: FixedFrontEnd | None = None) -> FrontEndAnalysis:
    fixed = quantize_frontend(frontend) if fixed is None else fixed
    fs = frontend.fs_hz
    # linear for the band, logarithmic near DC where high-pass edges and their group delay live
    freqs = np.unique(np.concatenate([np.linspace(0.0, fs / 2, N_FREQS + 1)[1:-1],
                                      np.geomspace(fs * 1e-4, fs / 2, N_FREQS // 2, endpoint=False)]))
    sos = np.asarray(frontend.sos, np.float64)
    h, hq = _response(sos, freqs, fs), _response(fixed.sos(), freqs, fs)
    h32 = _response(np.asarray(frontend.sos, np.float32).astype(np.float64), freqs, fs)
    mag, magq = _db(h), _db(hq)
    band = mag >= mag.max() - 3.0
    gd = _group_delay_samples(fixed.sos(), freqs, fs)
    gd_band = gd[band]
    gd_stats = (float(gd_band.min()), float(gd_band.mean()), float(gd_band.max()))
    poles = np.concatenate([np.roots(s[3:]) for s in fixed.sos()])
    return FrontEndAnalysis(
        passband_hz=(float(freqs[band].min()), float(freqs[band].max())),
        gain_error_db=float(np.abs(magq[band] - mag[band]).max()),
        float32_gain_error_db=float(np.abs(_db(h32)[band] - mag[band]).max()),
        group_delay_ms=tuple(v * 1e3 / fs for v in gd_stats), group_delay_samples=gd_stats,
        rounding_noise_uv=_rounding_noise_uv(fixed), max_pole_radius=float(np.abs(poles).max()),
        freqs_hz=freqs, mag_db=mag, mag_db_fixed=magq,
        phase_deg=np.degrees(np.unwrap(np.angle(h))), phase_deg_fixed=np.degrees(np.unwrap(np.angle(hq))),
        group_delay_ms_curve=gd * 1e3 / fs)


def _describe(fe: FrontEnd) -> str:
    cut = "-".join(f"{c:g}" for c in fe.cutoffs_hz)
    return f"the order-{fe.order} {cut} Hz {fe.btype} at {fe.fs_hz:g} Hz"


def check_frontend(frontend: FrontEnd, analysis: FrontEndAnalysis | None = None) -> FrontEndAnalysis:
    """Refuse a design the device cannot run faithfully; return its analysis otherwise."""
    a = analyze_frontend(frontend) if analysis is None else analysis
    what = _describe(frontend)
    if a.max_pole_radius >= 1.0:
        raise ConfigError(f"{what} is unstable once quantised: pole radius {a.max_pole_radius:.9f} >= 1; "
                          f"lower the order or move the cutoffs away from 0 and fs_hz/2")
    if a.rounding_noise_uv > MAX_ROUNDING_NOISE_UV:
        raise ConfigError(f"{what} is badly conditioned in fixed point: int32 rounding adds {a.rounding_noise_uv:.3g} uV "
                          f"RMS at the output (limit {MAX_ROUNDING_NOISE_UV} uV, the int16 input's own quantisation "
                          f"noise is 0.29 uV): its slowest pole (radius {a.max_pole_radius:.6f}) integrates the rounding "
                          f"error; raise the low cutoff, lower the order, or remove DC first with a separate "
                          f"order-1 high-pass")
    if a.gain_error_db > MAX_GAIN_ERROR_DB:
        raise ConfigError(f"{what}: Q31 coefficients move the passband gain by {a.gain_error_db:.3g} dB (limit "
                          f"{MAX_GAIN_ERROR_DB} dB); lower the order or widen the band")
    if a.float32_gain_error_db > MAX_GAIN_ERROR_DB:
        raise ConfigError(f"{what}: float32 coefficients (the training path, edgebci.frontend.apply_frontend) move "
                          f"the passband gain by {a.float32_gain_error_db:.3g} dB (limit {MAX_GAIN_ERROR_DB} dB); "
                          f"lower the order or raise the low cutoff")
    return a
