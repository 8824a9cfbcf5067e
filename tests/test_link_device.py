"""Device tests: the firmware as a Linux process (target "host") and on QEMU mps2-an386, over
the real link code. HELLO, decodes equal to the host reference library, every kind of damaged
frame answered with the right ERROR and the link recovering, and a lossy-link soak.

The model comes from the `model_c_dir` fixture (tests/conftest.py compiles the bundled
checkpoint). Each target's firmware is built once per session. Skipped only when a target's
compiler or emulator is not installed.
"""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edgebci.errors import ConfigError
from edgebci.firmware.build import build_firmware, build_host_library
from edgebci.hil.frames import (DELIMITER, PROTO_VERSION, DeviceError, ErrorCode, MsgType, StreamMode, encode_frame,
                                pack_stream_start, pack_window)
from edgebci.hil.launch import QEMU, open_port, start_process, start_qemu
from edgebci.hil.link import DeviceRejectedError, Link
from edgebci.targets import Target

from .data.make_golden_frames import flip, reencode

pytestmark = pytest.mark.device

TARGETS = ["host", "mps2-an386"]
SOAK_WINDOWS = 8
RTOL = 1e-5


class HostReference:
    """The decoder C built for this machine (build_host_library), called through ctypes."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        self.lib.ebci_decoder_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.n_classes = self.lib.ebci_decoder_n_classes()
        self.shape = (self.lib.ebci_decoder_n_samp(), self.lib.ebci_decoder_n_ch())

    def decode(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.int16)
        scores = np.zeros(self.n_classes, np.float32)
        assert self.lib.ebci_decoder_run(x.ctypes.data, scores.ctypes.data) == 0
        return int(self.lib.ebci_scores_argmax(scores.ctypes.data_as(ctypes.c_void_p), self.n_classes)), scores


def eeg_windows(shape: tuple[int, int], n: int, seed: int) -> list[np.ndarray]:
    """Synthetic int16 microvolt windows, shape (n_samp, n_ch): noise plus a 10 Hz rhythm whose
    strength varies by channel and window, so the classes differ."""
    rng = np.random.default_rng(seed)
    n_samp, n_ch = shape
    t = np.arange(n_samp)[:, None] / 160.0
    out = []
    for _ in range(n):
        gain = rng.uniform(0, 40, size=(1, n_ch))
        x = rng.normal(0, 15, size=shape) + gain * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6.3, size=(1, n_ch)))
        out.append(np.clip(np.round(x), -32768, 32767).astype(np.int16))
    return out


def _missing_tools(target: Target) -> list[str]:
    tools = [target.cc] + ([QEMU] if target.is_emulated else [])
    return [t for t in tools if shutil.which(t) is None]


@pytest.fixture(scope="session")
def decoder_reference(model_c_dir, tmp_path_factory) -> HostReference:
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not installed (apt-get install gcc): no host reference")
    return HostReference(build_host_library(model_c_dir, tmp_path_factory.mktemp("decoder_reference")))


@pytest.fixture(scope="session", params=TARGETS)
def target_image(request, model_c_dir, tmp_path_factory):
    target = Target.from_name(request.param)
    missing = _missing_tools(target)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; apt-get install gcc-arm-none-eabi "
                    f"libnewlib-arm-none-eabi qemu-system-arm")
    return target, build_firmware(model_c_dir, target, tmp_path_factory.mktemp(f"fw-{target.name}"))


@pytest.fixture(scope="session")
def device(target_image, tmp_path_factory):
    target, image = target_image
    log = tmp_path_factory.mktemp(f"log-{target.name}") / "device.log"
    start = start_qemu(target, image.path, log) if target.is_emulated else start_process(image.path, log)
    with start as session:
        yield session


@pytest.fixture
def link(device) -> Link:
    device.link.timeout_s = 5.0
    return device.link


def test_hello_describes_model_and_board(device, target_image, decoder_reference):
    target, _ = target_image
    info = device.info
    assert info.proto_version == PROTO_VERSION
    assert info.window_shape == decoder_reference.shape and info.n_classes == decoder_reference.n_classes
    assert info.board == target.name and info.cpu == target.cpu and Path(target.cc).name in info.build
    assert info.stack_size == target.stack_bytes and 0 < info.stack_used < info.stack_size
    assert info.rx_max >= len(encode_frame(MsgType.WINDOW, 0, pack_window(np.zeros(info.window_shape, np.int16)))) - 1
    assert info.workspace_bytes >= 16 and info.model_id
    if target.is_emulated:
        assert (info.timer_src, info.timer_hz, info.cpu_hz) == (1, target.clock_hz, target.clock_hz)   # SysTick
    else:
        assert (info.timer_src, info.timer_hz) == (2, 1_000_000_000)                                    # OS ns


def test_windows_match_decoder_reference(device, target_image, decoder_reference, link):
    target, _ = target_image
    for x in eeg_windows(device.info.window_shape, 2, seed=1):
        want_cls, want = decoder_reference.decode(x)
        result, attempts = link.decode_window(x)
        assert attempts == 1
        np.testing.assert_allclose(result.scores, want, rtol=RTOL, atol=RTOL * float(np.abs(want).max()))
        assert result.cls == want_cls
        assert result.ticks > 0 and 0 < result.stack_used < target.stack_bytes
    if target.is_emulated:   # -icount: the same window costs exactly the same count
        assert link.decode_window(x)[0].ticks == result.ticks


def _window_wire(device, seq: int = 0x4242) -> bytes:
    return encode_frame(MsgType.WINDOW, seq, pack_window(eeg_windows(device.info.window_shape, 1, seed=2)[0]))


def _expect_framing_error(link: Link, data: bytes, codes: set[ErrorCode]) -> DeviceError:
    """Send raw bytes, read the device's ERROR, and check the link still works after it."""
    link.send_raw(data)
    while (frame := link.receive_frame(5.0)).type != MsgType.ERROR:
        pass   # a late duplicate reply from an earlier test
    error = DeviceError.from_frame(frame)
    assert error.code in codes and error.framing
    assert link.request(MsgType.STATS)[1] == 1, "the link did not recover on the first try"
    return error


def test_corrupted_frames_are_reported(device, link):
    wire = _window_wire(device)
    body_flip = reencode(wire, lambda r: flip(r, 40))
    error = _expect_framing_error(link, body_flip, {ErrorCode.CRC})
    assert error.raw_len == len(body_flip) - 1
    _expect_framing_error(link, reencode(wire, lambda r: flip(r, len(r) - 2)), {ErrorCode.CRC})
    _expect_framing_error(link, reencode(wire, lambda r: r[:-7]), {ErrorCode.LEN})
    _expect_framing_error(link, wire[:len(wire) * 6 // 10] + DELIMITER, {ErrorCode.COBS, ErrorCode.LEN})
    garbage = bytes(random.Random(2).randrange(1, 256) for _ in range(300)) + DELIMITER
    _expect_framing_error(link, garbage, {ErrorCode.COBS, ErrorCode.SHORT, ErrorCode.LEN, ErrorCode.CRC})
    _expect_framing_error(link, b"\x03ab" + DELIMITER, {ErrorCode.SHORT})


def test_oversized_frame_is_discarded(device, link):
    n = device.info.rx_max + 1000
    error = _expect_framing_error(link, bytes(random.Random(3).randrange(1, 256) for _ in range(n)) + DELIMITER,
                                  {ErrorCode.OVERSIZE})
    assert error.raw_len == n == error.detail


def test_truncated_frame_without_delimiter(device, link, decoder_reference):
    wire, x = _window_wire(device), eeg_windows(device.info.window_shape, 1, seed=2)[0]
    fragment, stats = wire[:500], encode_frame(MsgType.STATS, 77)
    # merged with the next frame when nobody flushes: one framing error covering both
    error = _expect_framing_error(link, fragment + stats, {ErrorCode.COBS, ErrorCode.LEN, ErrorCode.CRC})
    assert error.raw_len == len(fragment) + len(stats) - 1
    # the link's leading 0x00 ends the fragment: its ERROR is junk, our window decodes first time
    junk_before = link.counters.junk_errors
    link.send_raw(fragment)
    result, attempts = link.decode_window(x)
    assert attempts == 1 and link.counters.junk_errors == junk_before + 1
    assert result.cls == decoder_reference.decode(x)[0]


def test_requests_the_device_cannot_serve(device, link):
    with pytest.raises(DeviceRejectedError, match="TYPE") as err:
        link.request(0x55, b"xyz")
    assert err.value.error.code == ErrorCode.TYPE and err.value.error.detail == 0x55
    n_samp, n_ch = device.info.window_shape
    short = pack_window(np.zeros((n_samp - 1, n_ch), np.int16))
    with pytest.raises(DeviceRejectedError, match="SHAPE") as err:
        link.request(MsgType.WINDOW, short)
    assert err.value.error.detail == n_ch | (n_samp - 1) << 8
    with pytest.raises(DeviceRejectedError, match="SHAPE"):
        link.request(MsgType.WINDOW, short[:-1])   # length disagrees with its own header
    assert link.request(MsgType.STATS)[1] == 1


class LossyPort:
    """Wraps a port and damages the writes listed in `damage` (write index -> kind): "flip"
    changes one bit inside the frame, "cut" drops its tail, delimiter included."""

    def __init__(self, port, damage: dict[int, str], seed: int):
        self.port, self.damage, self.rng = port, damage, random.Random(seed)
        self.n_writes, self.done = 0, {"flip": 0, "cut": 0}

    def __getattr__(self, name):
        return getattr(self.port, name)

    def __setattr__(self, name, value):
        if name == "timeout":
            setattr(self.port, name, value)
        else:
            super().__setattr__(name, value)

    def write(self, data: bytes) -> int:
        kind = self.damage.get(self.n_writes)
        self.n_writes += 1
        damaged = bytearray(data)
        if kind == "flip":   # never index 0 (the flush) or the delimiter, never to 0x00
            at = self.rng.randrange(1, len(damaged) - 1)
            damaged[at] = (damaged[at] ^ (1 << self.rng.randrange(8))) or 0x11
        elif kind == "cut":
            damaged = damaged[:self.rng.randrange(10, len(damaged) - 1)]
        if kind:
            self.done[kind] += 1
        return self.port.write(bytes(damaged))


# 2 of the soak's 10 sends: a window cut short, then its first resend damaged too
SOAK_DAMAGE = {3: "cut", 4: "flip"}


def test_lossy_link_soak(device, target_image, decoder_reference, link, monkeypatch):
    target, _ = target_image
    # a cut-off frame costs one timeout: keep it short, but well above a clean round trip on a busy machine
    probe = eeg_windows(device.info.window_shape, 1, seed=7)[0]
    start = time.monotonic()
    link.decode_window(probe)
    monkeypatch.setattr(link, "timeout_s", max(1.5, 5 * (time.monotonic() - start)))
    lossy = LossyPort(link.port, SOAK_DAMAGE, seed=5)
    monkeypatch.setattr(link, "port", lossy)
    before = link.counters
    accounted = {"decoded": 0, "retried": 0}
    for x in eeg_windows(device.info.window_shape, SOAK_WINDOWS, seed=6):
        damaged_before = sum(lossy.done.values())
        result, attempts = link.decode_window(x)
        want_cls, want = decoder_reference.decode(x)
        np.testing.assert_allclose(result.scores, want, rtol=RTOL, atol=RTOL * float(np.abs(want).max()))
        assert result.cls == want_cls
        assert attempts >= 1 + sum(lossy.done.values()) - damaged_before
        accounted["retried" if attempts > 1 else "decoded"] += 1
    after = link.counters
    assert lossy.done == {"flip": 1, "cut": 1} and accounted == {"decoded": SOAK_WINDOWS - 1, "retried": 1}
    # a flipped frame is resent at once (the device names it by raw_len), a cut one after a timeout
    assert (after.retransmits - after.timeouts) - (before.retransmits - before.timeouts) == lossy.done["flip"]
    assert after.timeouts - before.timeouts >= lossy.done["cut"]
    assert after.junk_errors - before.junk_errors >= lossy.done["cut"]   # the cut fragment, flushed by the resend
    stats = link.stats()
    assert 0 < stats.stack_used < target.stack_bytes


# -- streaming: STREAM_START / STREAM on both targets ------------------------------------------

@pytest.fixture(scope="session")
def recorded(sample_edf) -> np.ndarray:
    """The first 1300 samples of a recorded run, (n_samples, n_ch) int16 uV, as an amplifier sends them."""
    from edgebci.data import read_recording
    return np.ascontiguousarray(read_recording(sample_edf).samples[:, :1300].T)


@pytest.fixture(scope="session")
def stream_reference(model_c_dir, tmp_path_factory):
    from edgebci.hil.stream import HostStream
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not installed (apt-get install gcc): no host reference")
    lib = build_host_library(model_c_dir, tmp_path_factory.mktemp("stream_reference"))
    return HostStream(lib, ctypes.CDLL(str(lib)).ebci_decoder_n_classes())


def _reference_crcs(bundled_checkpoint, x: np.ndarray, chunks: list[tuple[int, int]]) -> list[int]:
    import zlib

    from edgebci.frontend import filter_fixed, quantize_frontend
    y, _ = filter_fixed(quantize_frontend(bundled_checkpoint.frontend), x.T)
    y = np.ascontiguousarray(y.T).astype("<i4")
    return [zlib.crc32(y[first:first + n].tobytes()) for first, n in chunks]


@pytest.mark.parametrize("mode", list(StreamMode), ids=lambda m: m.name.lower())
def test_stream_is_bit_exact_and_decides_every_hop(device, link, recorded, bundled_checkpoint, stream_reference,
                                                   decoder_reference, mode):
    """Irregular chunks of a recording: the device's filter output equals the Python reference bit for
    bit (crc32 per chunk), a decision closes every hop once a window is full, and each equals the host
    library's streaming decoder on the same chunks; from rest, it is exactly the window decode of the
    same samples (the training path's zero state)."""
    hop, window = bundled_checkpoint.hop_samples, device.info.n_samp
    sizes = [80, 1, 79, 37, 43, 80, 80, 60, 20, 80] * 3
    chunks, start = [], 0
    for n in sizes:
        if start + n > len(recorded):
            break
        chunks.append((start, n))
        start += n
    started = link.stream_start(hop, mode)
    assert (started.hop_samples, started.n_samp, started.n_ch, started.mode) == (hop, window, device.info.n_ch, mode)
    stream_reference.start(hop, mode)
    crcs = _reference_crcs(bundled_checkpoint, recorded, chunks)
    decisions = []
    for (first, n), crc in zip(chunks, crcs):
        result, attempts = link.stream_chunk(first, recorded[first:first + n])
        decided, end, want = stream_reference.push(recorded[first:first + n])
        assert attempts == 1 and result.filter_crc == crc and result.n_saturated == 0
        assert (result.decided, result.end_sample) == (decided, end)
        if decided:
            np.testing.assert_allclose(result.scores, want, rtol=RTOL, atol=RTOL * float(np.abs(want).max()))
            assert result.cls == int(np.argmax(want))
            if mode == StreamMode.FROM_REST:
                np.testing.assert_array_equal(want, decoder_reference.decode(recorded[end - window:end])[1])
            decisions.append(end)
    assert decisions == list(range(window, start + 1, hop))


def test_stream_resent_chunk_is_answered_not_refiltered(device, link, recorded, bundled_checkpoint):
    """A chunk sent twice (its reply lost) gets the same answer; the stream goes on bit-exact."""
    chunks = [(0, 80), (80, 80), (160, 80)]
    crcs = _reference_crcs(bundled_checkpoint, recorded, chunks)
    link.stream_start(80)
    first = link.stream_chunk(0, recorded[:80])[0]
    again = link.stream_chunk(0, recorded[:80])[0]
    assert again == first and first.filter_crc == crcs[0]
    for (start, n), crc in zip(chunks[1:], crcs[1:]):
        assert link.stream_chunk(start, recorded[start:start + n])[0].filter_crc == crc


def test_a_resent_window_is_answered_from_the_last_reply_not_decoded_again(device, link, recorded):
    """Two copies of one WINDOW (the host timed out on a slow decode and resent it) get one decode: the copy is
    answered from the last reply at once, so retransmissions never queue up decodes behind a busy device."""
    n_samp = device.info.window_shape[0]
    wire = encode_frame(MsgType.WINDOW, 4242, pack_window(recorded[:n_samp]))
    link.send_raw(DELIMITER + wire + DELIMITER + wire)
    first, again = link.receive_frame(30.0), link.receive_frame(30.0)
    assert first.type == again.type == MsgType.RESULT and first.seq == again.seq == 4242
    # the same ticks too: one decode, reported twice (on the host process ticks are wall-clock microseconds, so a
    # second decode would report others; under QEMU's -icount they would repeat anyway)
    assert again.body == first.body
    other = link.decode_window(recorded[1:n_samp + 1])[0]    # a new seq is decoded afresh
    assert other.ticks > 0


def test_stream_refuses_gaps_and_oversized_chunks(device, link, recorded):
    link.stream_start(80)
    link.stream_chunk(0, recorded[:50])
    with pytest.raises(DeviceRejectedError, match="expects sample 50 next") as err:
        link.stream_chunk(60, recorded[60:80])        # 10 samples lost
    assert err.value.error.code == ErrorCode.STREAM and err.value.error.detail == 50
    with pytest.raises(DeviceRejectedError, match="expects sample 50 next"):
        link.stream_chunk(0, recorded[:50][:40])       # a different chunk at an old position
    with pytest.raises(DeviceRejectedError, match="SHAPE"):
        link.stream_chunk(50, recorded[50:131])       # 81 samples: more than one hop
    assert link.stream_chunk(50, recorded[50:130])[0].first_sample == 50   # nothing was consumed
    with pytest.raises(ConfigError, match="hop_samples must be 1.."):
        link.stream_start(0)                          # refused on the host: never sent
    with pytest.raises(DeviceRejectedError, match="SHAPE") as err:
        link.request(MsgType.STREAM_START, pack_stream_start(80, 7))    # an unknown mode
    assert err.value.error.detail == 0x80000007


def test_stream_survives_a_lossy_link(device, link, recorded, bundled_checkpoint, monkeypatch):
    """Damaged chunk frames are resent; every chunk is acked or retried and the filter stays bit-exact."""
    chunks = [(s, 80) for s in range(0, 640, 80)]
    crcs = _reference_crcs(bundled_checkpoint, recorded, chunks)
    link.stream_start(80)
    monkeypatch.setattr(link, "timeout_s", 3.0)
    lossy = LossyPort(link.port, {2: "flip", 5: "cut", 6: "flip"}, seed=11)
    monkeypatch.setattr(link, "port", lossy)
    status = []
    for (start, n), crc in zip(chunks, crcs):
        result, attempts = link.stream_chunk(start, recorded[start:start + n])
        assert result.filter_crc == crc
        status.append("acked" if attempts == 1 else "retried")
    assert lossy.done == {"flip": 2, "cut": 1}
    assert status.count("retried") >= 2 and len(status) == len(chunks)


@pytest.mark.hardware
def test_physical_board_answers():
    """A board flashed with edgebci firmware on EDGEBCI_PORT (a device path or pyserial URL)."""
    port = os.environ.get("EDGEBCI_PORT")
    if not port:
        pytest.skip("no physical board: set EDGEBCI_PORT to its serial port")
    with open_port(port) as board:
        assert board.info.proto_version == PROTO_VERSION
        result, attempts = board.link.decode_window(eeg_windows(board.info.window_shape, 1, seed=7)[0])
        assert 0 <= result.cls < board.info.n_classes and attempts >= 1
        assert board.link.stats().stack_used <= board.info.stack_size
