"""Bessel front-end design: validation, agreement with scipy, causality."""
import numpy as np
import pytest
from scipy import signal

from edgebci.errors import ConfigError
from edgebci.frontend import FrontEnd, apply_frontend, design_bessel


def test_design_matches_scipy_and_is_stable():
    fe = design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag")
    ref = signal.bessel(4, (7.0, 30.0), btype="bandpass", norm="mag", fs=160.0, output="sos")
    np.testing.assert_array_equal(np.asarray(fe.sos), ref)
    assert fe.n_sections == 4
    _, h = signal.sosfreqz(fe.sos, worN=[7.0, 15.0, 30.0], fs=160.0)
    db = 20 * np.log10(np.abs(h))
    assert abs(db[0] + 3.01) < 0.1 and abs(db[2] + 3.01) < 0.1 and abs(db[1]) < 1.0   # norm="mag": -3 dB edges
    assert FrontEnd.from_dict(fe.to_dict()) == fe


@pytest.mark.parametrize("kwargs, message", [
    (dict(order=4, cutoffs_hz=(7.0, 30.0), fs_hz=-160.0), r"fs_hz must be > 0, got -160.0"),
    (dict(order=4, cutoffs_hz=(7.0, 90.0), fs_hz=160.0), r"cutoff 90.0 Hz must lie between 0 and fs_hz/2 = 80.0"),
    (dict(order=4, cutoffs_hz=(30.0, 7.0), fs_hz=160.0), r"low < high"),
    (dict(order=0, cutoffs_hz=(7.0, 30.0), fs_hz=160.0), r"order must be 1..8, got 0"),
    (dict(order=4, cutoffs_hz=7.0, fs_hz=160.0), r"bandpass needs 2 cutoff"),
    (dict(order=4, cutoffs_hz=(7.0, 30.0), fs_hz=160.0, norm="zero"), r"norm must be one of"),
    (dict(order=4, cutoffs_hz=(7.0, 30.0), fs_hz=160.0, btype="notch"), r"btype must be one of"),
])
def test_design_rejects_bad_input(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        design_bessel(**kwargs)


def test_unstable_sections_are_refused():
    with pytest.raises(ConfigError, match="unstable: pole radius"):
        FrontEnd("lowpass", 1, (10.0,), 160.0, "phase", ((1.0, 0.0, 0.0, 1.0, -0.5, 1.2),))


def test_apply_is_causal_and_starts_from_zero_state():
    fe = design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag")
    rng = np.random.default_rng(0)
    x = rng.integers(-200, 200, size=(2, 8, 480)).astype(np.int16)
    y = apply_frontend(fe, x)
    assert y.dtype == np.float32 and y.shape == x.shape
    x2 = x.copy()
    x2[..., 300:] = 0                                   # change the future only
    np.testing.assert_array_equal(apply_frontend(fe, x2)[..., :300], y[..., :300])
    ref = signal.sosfilt(np.asarray(fe.sos, np.float32), x[0, 0].astype(np.float32))
    np.testing.assert_allclose(y[0, 0], ref, rtol=1e-5, atol=1e-3)
