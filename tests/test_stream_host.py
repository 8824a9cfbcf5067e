"""Host tests of streaming decode: the host library's ebci_stream_* (the same C as the device), chunk
accounting when the link fails, label alignment, and the report's numbers (no emulator)."""
from __future__ import annotations

import ctypes
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgebci.data import read_recording
from edgebci.errors import ConfigError, LinkError
from edgebci.firmware.build import build_host_library
from edgebci.frontend import design_bessel, quantize_frontend
from edgebci.hil.frames import StreamMode, StreamResult, StreamStarted
from edgebci.hil.stream import (Decision, HostStream, RecordingStream, StreamRun, align_labels, plan_chunks,
                                stream_recording)

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed (apt-get install gcc)")


@pytest.fixture(scope="module")
def libs(model_c_dir, tmp_path_factory):
    """Two separately loaded host libraries: a reference and a stand-in device (each has its own state)."""
    return [build_host_library(model_c_dir, tmp_path_factory.mktemp(f"lib{i}")) for i in range(2)]


@pytest.fixture(scope="module")
def recording(sample_edf):
    return read_recording(sample_edf)


class LibraryDevice:
    """A link whose device is the host library: STREAMR built from ebci_stream_* and ebci_stream_filtered."""

    def __init__(self, path: Path, n_classes: int, fail_at: int | None = None):
        self.stream = HostStream(path, n_classes)
        self.lib = ctypes.CDLL(str(path))
        self.lib.ebci_stream_filtered.restype = ctypes.c_void_p
        self.fail_at, self.n_chunks = fail_at, 0

    def stream_start(self, hop, mode=StreamMode.FROM_REST):
        self.stream.start(hop, mode)
        n_samp, n_ch = self.lib.ebci_decoder_n_samp(), self.lib.ebci_decoder_n_ch()
        return StreamStarted(hop, n_samp, n_ch, self.lib.ebci_decoder_in_shift(), 6 * n_samp * n_ch, mode)

    def stream_chunk(self, first, x):
        self.n_chunks += 1
        if self.n_chunks == self.fail_at:
            raise LinkError("STREAM request (seq 7) failed after 6 attempts; last: no reply within 5.00 s")
        decided, end, scores = self.stream.push(x)
        crc = 0
        for i in range(first, first + x.shape[0]):
            row = (ctypes.c_int32 * x.shape[1]).from_address(self.lib.ebci_stream_filtered(i))
            crc = zlib.crc32(bytes(row), crc)
        return StreamResult(first, x.shape[0], decided, crc, 0, end, int(np.argmax(scores)) if decided else 0, 100, 64,
                            tuple(float(s) for s in scores)), 1


def test_host_library_streams_like_the_reference(libs, recording, bundled_checkpoint):
    """The library's continuous filter equals the Python reference bit for bit on a whole recording, in
    chunks of 80; decisions come once per hop and every chunk is acked. The stand-in device is the same C
    as the host reference, so its score equality checks the harness's bookkeeping; device-vs-host score
    agreement on a real program is tests/test_stream_end_to_end.py's job."""
    fixed = quantize_frontend(bundled_checkpoint.frontend)
    host = HostStream(libs[0], 2)
    out = stream_recording(LibraryDevice(libs[1], 2), recording, fixed, host, 480, 80, 80, 80)
    n = recording.samples.shape[1]
    assert out.counts == {"chunks": -(-n // 80), "acked": -(-n // 80), "retried": 0, "failed": 0,
                          "samples_sent": n, "samples_acked": n}
    assert all(c.crc_match for c in out.chunks)
    assert [d.end_sample for d in out.decisions] == list(range(480, n + 1, 80))
    assert all(d.device_scores == d.host_scores for d in out.decisions)
    assert sum(d.label >= 0 for d in out.decisions) == len(recording.events)


def test_a_failed_chunk_is_accounted_and_the_rest_is_not_sent(libs, recording, bundled_checkpoint):
    fixed = quantize_frontend(bundled_checkpoint.frontend)
    out = stream_recording(LibraryDevice(libs[1], 2, fail_at=10), recording, fixed, HostStream(libs[0], 2),
                           480, 80, 80, 80)
    c = out.counts
    assert c["acked"] == 9 and c["failed"] == c["chunks"] - 9 and c["samples_acked"] == 9 * 80
    assert "no reply within" in out.chunks[9].error and out.chunks[10].error.startswith("not sent: the stream broke")
    assert [d.end_sample for d in out.decisions] == [480, 560, 640, 720]     # the 9 acked chunks end at 720
    assert out.host_only_decisions == len(range(480, recording.samples.shape[1] + 1, 80)) - 4
    run = StreamRun({}, [out], {}, ("left", "right"), 80, 480, 80, 80, "max")
    assert run.counts()["samples_lost"] == recording.samples.shape[1] - 720
    per_hop = run.decisions_per_hop()
    assert per_hop["received"] == 4 and per_hop["expected"] == 4 + out.host_only_decisions


def test_host_stream_refuses_bad_calls(libs):
    host = HostStream(libs[0], 2)
    with pytest.raises(ConfigError, match="hop_samples must be >= 1"):
        host.start(0)
    host.start(80)
    with pytest.raises(ConfigError, match="status -7"):            # SHAPE: more than one hop
        host.push(np.zeros((81, host.n_ch), np.int16))
    assert host.push(np.zeros((80, host.n_ch), np.int16))[0] is False


def test_filter_state_continuous_differs_from_rest_only_in_the_window_start(libs, recording, bundled_checkpoint):
    """Both modes run the same continuous filter; they differ in what the model sees."""
    x = np.ascontiguousarray(recording.samples[:, :640].T)
    got = {}
    for mode in StreamMode:
        host = HostStream(libs[0], 2)
        host.start(80, mode)
        got[mode] = [host.push(x[s:s + 80]) for s in range(0, 640, 80)]
    assert [g[0] for g in got[StreamMode.FROM_REST]] == [g[0] for g in got[StreamMode.CONTINUOUS]]
    assert not np.array_equal(got[StreamMode.FROM_REST][-1][2], got[StreamMode.CONTINUOUS][-1][2])


def test_plan_chunks_covers_the_recording_once():
    assert plan_chunks(250, 80) == [(0, 80), (80, 80), (160, 80), (240, 10)]
    with pytest.raises(ConfigError, match="chunk_samples must be > 0"):
        plan_chunks(10, 0)


def test_stream_recording_checks_its_chunk_size(recording, bundled_checkpoint):
    with pytest.raises(ConfigError, match=r"chunk_samples must be 1..80"):
        stream_recording(None, recording, quantize_frontend(bundled_checkpoint.frontend), None, 480, 80, 80, 81)


def _decision(end: int, cls: int = 0) -> Decision:
    return Decision("r.edf", end, cls, [0.0, 1.0], cls, [0.0, 1.0], 10, 64)


def test_align_labels_takes_the_nearest_window_within_half_a_hop():
    ds = [_decision(e) for e in range(480, 2000, 80)]            # windows start at 0, 80, 160, ...
    align_labels(ds, ((100, 1), (1000, 0), (5000, 1)), window=480, offset=80, hop=80)
    labelled = {d.end_sample - 480: (d.label, d.cue_onset) for d in ds if d.label >= 0}
    assert labelled == {160: (1, 100), 1040: (0, 1000)}           # 180 -> 160; 1080 is a tie: the earlier window
    assert sum(d.label >= 0 for d in ds) == 2                     # the cue past the end labels nothing


def test_report_budget_adds_group_delay_hop_and_compute(tmp_path):
    from edgebci.report.stream import render_stream_html, stream_latency_budget
    from edgebci.targets import Target
    rec = RecordingStream("r.edf", 1000, 160.0, 1, decisions=[_decision(480), _decision(560, 1)])
    run = StreamRun({"timer_src": 1, "timer_hz": 25_000_000}, [rec], {}, ("left", "right"), 80, 480, 80, 80, "max")
    target = Target.from_name("mps2-an386")
    manifest = {"frontend": design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag").to_dict(), "fs_hz": 160.0}
    lb = stream_latency_budget(run, manifest, target, emulated=True)
    assert lb["compute"]["metric"] == "qemu_insn_count"
    insn = 10 * 1e9 / (25_000_000 * 2 ** target.qemu_icount_shift)
    assert lb["compute"]["median"] == round(insn)
    assert lb["total_ms"] == pytest.approx(lb["filter_group_delay_ms"] + 500.0 + lb["compute_ms"])
    assert 25 < lb["filter_group_delay_ms"] < 35
    report = {"ok": False, "target": {"name": "mps2-an386", "description": "d"},
              "decoder": {"arch": "eegnet", "window_samples": 480, "hop_samples": 80, "frontend": {}},
              "stream": {"pace": "max", "chunk_samples": 80, "filter_state": "from-rest", **run.counts(),
                         "per_recording": []},
              "filter_bit_exact": run.filter_bit_exact(), "decisions": run.decisions_per_hop(),
              "agreement": run.agreement(), "accuracy": run.accuracy(), "latency_budget": lb,
              "memory": {k: {"bytes": 1, "budget_bytes": 2} for k in ("flash", "static_ram", "stack_peak")},
              "link": {}, "failures": [], "edgebci_version": "x"}
    html = render_stream_html(report, run)
    assert "FAIL" in html and "Latency budget" in html and "qemu_insn_count" in html and html.count("<svg") >= 2


def test_realtime_pace_sends_no_sample_before_its_time(libs, recording, bundled_checkpoint):
    import dataclasses
    import time
    short = dataclasses.replace(recording, samples=recording.samples[:, :400], events=())
    start = time.monotonic()
    out = stream_recording(LibraryDevice(libs[1], 2), short, quantize_frontend(bundled_checkpoint.frontend),
                           HostStream(libs[0], 2), 480, 80, 80, 80, pace="realtime")
    assert time.monotonic() - start >= 320 / 160.0     # the last chunk starts at sample 320: 2 s in
    assert out.counts["acked"] == 5 and not out.decisions


def test_a_device_streaming_another_geometry_is_refused(libs, recording, bundled_checkpoint):
    """A board flashed with another build answers STREAM_START with its own geometry: refused, naming both."""
    from edgebci.hil.stream import stream_recording
    fixed = quantize_frontend(bundled_checkpoint.frontend)
    device = LibraryDevice(libs[1], 2)
    device.stream_start = lambda hop, mode=StreamMode.FROM_REST: StreamStarted(hop, 320, 21, fixed.in_shift, 0, mode)
    with pytest.raises(ConfigError, match=r"\(hop, window, channels, in_shift, mode\) = \(80, 320.*expects \(80, 480"):
        stream_recording(device, recording, fixed, HostStream(libs[0], 2), 480, 80, 80, 80)


def test_a_decision_the_host_did_not_make_is_counted_and_fails_the_run(libs, recording, bundled_checkpoint):
    """A device that decides off the hop grid: the chunk is acked (its samples arrived) but the mismatch counts."""
    from dataclasses import replace as dc_replace
    fixed = quantize_frontend(bundled_checkpoint.frontend)
    device = LibraryDevice(libs[1], 2)
    chunk = device.stream_chunk

    def off_grid(first, x):
        result, attempts = chunk(first, x)
        return (dc_replace(result, end_sample=result.end_sample + 1) if first == 480 else result), attempts

    device.stream_chunk = off_grid
    out = stream_recording(device, recording, fixed, HostStream(libs[0], 2), 480, 80, 80, 80)
    run = StreamRun({}, [out], {}, ("left", "right"), 80, 480, 80, 80, "max")
    assert run.counts()["decision_mismatches"] == 1 and run.counts()["failed"] == 0
    assert "host decided=True at 560" in out.chunks[6].error
