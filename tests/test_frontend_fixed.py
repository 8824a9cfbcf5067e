"""Host tests of the fixed-point front end: firmware_bridge/src/ebci_filter.c (built with the host gcc)
against its numpy reference bit for bit, chunking, saturation, and the float twin within tolerance."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from scipy import signal

from edgebci.data import read_recording
from edgebci.errors import ConfigError
from edgebci.firmware.build import FIRMWARE_DIR
from edgebci.frontend import (FixedFrontEnd, analyze_frontend, apply_fixed_frontend, apply_frontend, check_frontend,
                              design_bessel, filter_fixed, quantize_frontend, to_microvolts)
from edgebci.frontend.cgen import emit_frontend
from edgebci.frontend.fixed import INT32_MAX, INT32_MIN

# Float twin tolerances (uV), measured on the bundled recordings with margin: the fixed-point output
# is within 1e-3 uV of scipy's float64 sosfilt and of the float32 training path (apply_frontend);
# one int16 input step is 1 uV.
TWIN_ATOL_UV = 0.01
BUNDLED = design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag")

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed (apt-get install gcc)")


class _Design(ctypes.Structure):
    _fields_ = [("n_sections", ctypes.c_int), ("in_shift", ctypes.c_int), ("coeffs", ctypes.c_void_p),
                ("post_shift", ctypes.c_void_p)]


class _Filter(ctypes.Structure):
    _fields_ = [("design", ctypes.c_void_p), ("n_ch", ctypes.c_int), ("state", ctypes.c_void_p),
                ("n_saturated", ctypes.c_uint32)]


class CFilter:
    """ebci_filter.c through ctypes: one filter instance with its own state."""

    def __init__(self, lib, fixed: FixedFrontEnd, n_ch: int):
        self.lib, self.n_ch = lib, n_ch
        self._coeffs = np.ascontiguousarray(fixed.coeffs, np.int32)
        self._shifts = np.ascontiguousarray(fixed.post_shift, np.uint8)
        self._design = _Design(fixed.n_sections, fixed.in_shift, self._coeffs.ctypes.data, self._shifts.ctypes.data)
        self._state = np.zeros(n_ch * fixed.n_sections * 4, np.int32)
        self._filter = _Filter()
        rc = lib.ebci_filter_init(ctypes.byref(self._filter), ctypes.byref(self._design), n_ch,
                                  ctypes.c_void_p(self._state.ctypes.data), ctypes.c_size_t(self._state.size))
        assert rc == 0

    def push(self, x_channel_major: np.ndarray) -> np.ndarray:
        """x : (n_ch, n) int16 -> (n_ch, n) int32, continuing from the last call."""
        inter = np.ascontiguousarray(np.asarray(x_channel_major, np.int16).T)
        out = np.zeros(inter.shape, np.int32)
        self.lib.ebci_filter_push(ctypes.byref(self._filter), ctypes.c_void_p(inter.ctypes.data),
                                  ctypes.c_size_t(inter.shape[0]), ctypes.c_void_p(out.ctypes.data))
        return out.T

    @property
    def n_saturated(self) -> int:
        return self._filter.n_saturated


@pytest.fixture(scope="module")
def filter_lib(tmp_path_factory):
    lib = tmp_path_factory.mktemp("filter_c") / "libebci_filter.so"
    cmd = ["gcc", "-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-I",
           str(FIRMWARE_DIR / "include"), str(FIRMWARE_DIR / "src" / "ebci_filter.c"), "-o", str(lib)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="module")
def recording(sample_edf):
    return read_recording(sample_edf).samples          # (21, ~20000) int16 uV, a whole recorded run


def test_c_equals_reference_on_random_input(filter_lib):
    rng = np.random.default_rng(0)
    x = rng.integers(-32768, 32768, size=(3, 4000)).astype(np.int16)
    x[:, 100:110] = 32767                                # full-scale steps
    x[:, 200:210] = -32768
    fixed = quantize_frontend(BUNDLED)
    want, state = filter_fixed(fixed, x)
    got = CFilter(filter_lib, fixed, 3).push(x)
    np.testing.assert_array_equal(got, want)
    assert state.n_saturated == 0                        # the default in_shift leaves headroom for any int16


@pytest.mark.parametrize("args", [(2, 0.5, 160.0, "highpass", "phase"), (4, 40.0, 160.0, "lowpass", "delay"),
                                  (3, (1.0, 45.0), 250.0, "bandpass", "mag")])
def test_c_equals_reference_for_other_designs(filter_lib, args):
    fe = design_bessel(*args, notch_hz=50.0 if args[2] == 250.0 else None)
    fixed = quantize_frontend(fe)
    x = np.random.default_rng(1).normal(0, 3000, size=(2, 3000)).clip(-32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(CFilter(filter_lib, fixed, 2).push(x), filter_fixed(fixed, x)[0])


def _held_in_recording():
    """S001R04, a training subject's run, where the EEGMMIDB folder is present (else skipped)."""
    from edgebci.data import default_data_dir
    path = default_data_dir() / "S001R04.edf"
    if not path.exists():
        pytest.skip(f"{path} not present: set EDGEBCI_DATA to the EEGMMIDB folder")
    return read_recording(path).samples


@pytest.mark.parametrize("which", ["held_out_S015R04", "held_in_S001R04"])
def test_c_equals_reference_on_a_whole_recording(filter_lib, recording, which):
    x = recording if which.startswith("held_out") else _held_in_recording()
    fixed = quantize_frontend(BUNDLED)
    want, _ = filter_fixed(fixed, x)
    got = CFilter(filter_lib, fixed, x.shape[0]).push(x)
    assert got.shape == x.shape and x.shape[1] > 19_000
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("chunks", [[1] * 7 + [93], [80] * 5, [479, 1, 37, 3]])
def test_chunking_does_not_change_the_output(filter_lib, recording, chunks):
    """State carries across calls: any chunking gives the same samples as one call, in C and in Python."""
    fixed = quantize_frontend(BUNDLED)
    x = recording[:, :sum(chunks) + 500]
    whole, _ = filter_fixed(fixed, x)
    c = CFilter(filter_lib, fixed, x.shape[0])
    py_state, start, c_parts, py_parts = None, 0, [], []
    for n in [*chunks, x.shape[1] - sum(chunks)]:
        c_parts.append(c.push(x[:, start:start + n]))
        part, py_state = filter_fixed(fixed, x[:, start:start + n], py_state)
        py_parts.append(part)
        start += n
    np.testing.assert_array_equal(np.concatenate(c_parts, axis=1), whole)
    np.testing.assert_array_equal(np.concatenate(py_parts, axis=1), whole)


def test_saturation_clips_instead_of_wrapping(filter_lib):
    """With more fractional bits than the headroom allows, a worst-case full-scale input drives the
    output past int32: both implementations clip at the rails, count it, and never flip sign."""
    fe = design_bessel(2, 20.0, 160.0, "lowpass", "phase")
    auto = quantize_frontend(fe)
    fixed = FixedFrontEnd(auto.coeffs, auto.post_shift, 16)
    impulse = np.zeros(400)
    impulse[0] = 1
    h = signal.sosfilt(fixed.sos(), impulse)
    worst = np.where(h[::-1] >= 0, 32767, -32768).astype(np.int16)     # maximises y at the last sample
    x = np.tile(worst, 3)[None, :]
    want, state = filter_fixed(fixed, x)
    c = CFilter(filter_lib, fixed, 1)
    got = c.push(x)
    np.testing.assert_array_equal(got, want)
    assert state.n_saturated > 0 and c.n_saturated == state.n_saturated
    assert want.max() == INT32_MAX
    ideal = signal.sosfilt(fixed.sos(), x[0].astype(np.float64) * 2.0 ** 16)
    over = np.abs(ideal) > 2.0 ** 31 * 1.01                 # where the exact output leaves int32 by 1 %
    assert over.any()
    assert np.all(np.sign(want[0][over]) == np.sign(ideal[over]))   # clipped, not wrapped round
    assert np.all(np.abs(want[0][over].astype(np.int64)) >= INT32_MAX)


def test_float_twin_on_recorded_eeg(recording):
    """The device's fixed-point front end equals the float designs within TWIN_ATOL_UV on recorded EEG:
    continuously (scipy float64) and per window from rest (apply_frontend, the training path)."""
    fixed = quantize_frontend(BUNDLED)
    y = to_microvolts(fixed, filter_fixed(fixed, recording)[0])
    ref = signal.sosfilt(np.asarray(BUNDLED.sos), recording.astype(np.float64), axis=-1)
    assert np.abs(y - ref).max() <= TWIN_ATOL_UV
    windows = np.stack([recording[:, s:s + 480] for s in range(0, 4800, 480)])
    twin = apply_fixed_frontend(BUNDLED, windows, fixed)
    train = apply_frontend(BUNDLED, windows)
    assert np.abs(twin - train).max() <= TWIN_ATOL_UV
    assert np.abs(train).max() > 10.0                        # the comparison is on real signal, not zeros


@pytest.mark.parametrize("args", [(4, (7.0, 30.0), 160.0, "bandpass", "mag"), (4, (8.0, 30.0), 160.0, "bandpass", "phase"),
                                  (2, 0.5, 160.0, "highpass", "delay"), (6, 35.0, 160.0, "lowpass", "mag")])
def test_quantised_magnitude_within_0p1_db_of_scipy(args):
    fe = design_bessel(*args)
    a = analyze_frontend(fe)
    assert a.gain_error_db < 0.1
    _, h = signal.sosfreqz(np.asarray(fe.sos), worN=a.freqs_hz, fs=fe.fs_hz)
    _, hq = signal.sosfreqz(quantize_frontend(fe).sos(), worN=a.freqs_hz, fs=fe.fs_hz)
    band = (a.freqs_hz >= a.passband_hz[0]) & (a.freqs_hz <= a.passband_hz[1])
    assert np.abs(20 * np.log10(np.abs(hq[band]) / np.abs(h[band]))).max() < 0.1


def test_group_delay_is_reported_across_the_passband():
    fe = design_bessel(4, 10.0, 160.0, "lowpass", "phase")
    a = analyze_frontend(fe)
    lo, mean, hi = a.group_delay_samples
    assert 0 < lo <= mean <= hi
    assert hi - lo < 0.02 * mean                    # flat group delay over the passband: what a Bessel is for
    _, gd = signal.group_delay(signal.sos2tf(np.asarray(fe.sos)), w=[2.0, 5.0], fs=160.0)   # independent: the tf
    assert lo - 1e-3 <= gd.min() and gd.max() <= hi + 1e-3
    assert a.group_delay_ms == pytest.approx(tuple(v * 1e3 / 160.0 for v in a.group_delay_samples))


@pytest.mark.parametrize("kwargs, message", [
    (dict(order=2, cutoffs_hz=0.05, fs_hz=160.0, btype="highpass"), r"badly conditioned in fixed point: int32 "
                                                                    r"rounding adds .* raise the low cutoff"),
    (dict(order=8, cutoffs_hz=(0.1, 40.0), fs_hz=160.0, btype="bandpass"), r"remove DC first"),
])
def test_badly_conditioned_designs_are_refused(kwargs, message):
    fe = design_bessel(**kwargs)
    with pytest.raises(ConfigError, match=message):
        check_frontend(fe)
    with pytest.raises(ConfigError, match=message):
        emit_frontend(fe)                             # nothing the device cannot run gets compiled


@pytest.mark.parametrize("kwargs, message", [
    (dict(notch_hz=55.0), r"notch_hz must be one of \(50.0, 60.0\)"),
    (dict(notch_hz=60.0, notch_q=0.1), r"notch_q must be 1..200"),
])
def test_notch_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag", **kwargs)
    with pytest.raises(ConfigError, match=r"60 Hz notch needs fs_hz > 120"):
        design_bessel(2, 20.0, 100.0, "lowpass", notch_hz=60.0)


def test_notch_removes_mains_and_round_trips():
    from edgebci.frontend import FrontEnd
    fe = design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag", notch_hz=60.0)
    assert fe.n_sections == 5
    _, h = signal.sosfreqz(np.asarray(fe.sos), worN=[60.0], fs=160.0)
    assert 20 * np.log10(abs(h[0])) < -60
    assert FrontEnd.from_dict(fe.to_dict()) == fe
    assert check_frontend(fe).gain_error_db < 0.1


def test_fixed_design_validation():
    fixed = quantize_frontend(BUNDLED)
    with pytest.raises(ConfigError, match=r"in_shift must be 0..16"):
        FixedFrontEnd(fixed.coeffs, fixed.post_shift, 17)
    with pytest.raises(ConfigError, match=r"accumulator overflow; raise its post_shift"):
        FixedFrontEnd(((INT32_MAX, INT32_MAX, INT32_MAX, INT32_MIN, INT32_MAX),), (0,), 8)
    with pytest.raises(ConfigError, match=r"must hold int16 microvolts \(-32768..32767\), got values 40000..40000: clip"):
        filter_fixed(fixed, np.full((1, 4), 40000))
    with pytest.raises(ConfigError, match=r"integer microvolts .* got dtype float64"):
        filter_fixed(fixed, np.zeros((1, 4)))


def test_emitted_tables_are_the_quantised_sections():
    c, h = emit_frontend(BUNDLED)
    fixed = quantize_frontend(BUNDLED)
    assert f"#define EBCI_FRONTEND_IN_SHIFT {fixed.in_shift}" in h
    for row in fixed.coeffs:
        assert "{" + ", ".join(str(v) for v in row) + "}" in c
    assert "ebci_frontend_design" in c and "ebci_frontend_sos" in c
