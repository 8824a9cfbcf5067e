"""Stop-and-wait requests over the HIL serial link (stage: hil).

`Link` speaks the framed protocol of edgebci.hil.frames over any pyserial-like port: an object
with write(bytes), flush(), read(n), in_waiting and a timeout attribute (pyserial's Serial, its
socket:// URL handler, or edgebci.hil.launch.PipePort).

Each request gets a new seq and goes out as 0x00 + frame (the lone 0x00 ends whatever half
frame the device may hold). The device answers with the same seq. On silence or a framing
ERROR about our own frame, the same frame (same seq) is sent again, so a late reply to an
earlier copy still counts and a second reply is ignored as stale. A framing ERROR carries the
length of the bytes the device saw (raw_len): equal to our frame's length means our frame was
damaged (resend now), anything else was junk before it (keep waiting). Nothing is lost
silently: `request` returns the number of attempts, and the counters say what happened.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgebci.errors import ConfigError, LinkError
from edgebci.hil.frames import (DELIMITER, PROTO_VERSION, BodyError, DeviceError, DeviceInfo, DeviceStats,
                                ErrorCode, Frame, FrameError, MsgType, StreamMode, StreamResult, StreamStarted,
                                WindowResult, decode_frame, encode_frame, pack_chunk, pack_stream_start, pack_window,
                                reply_type)

POLL_S = 0.05          # port read timeout: how often a wait re-checks its deadline
TAIL_BYTES = 64        # received bytes kept for error messages


class LinkTimeout(LinkError):
    """No complete frame arrived in time."""


class DeviceRejectedError(LinkError):
    """The device answered our request with an ERROR (TYPE, SHAPE, MODEL, WORKSPACE): resending
    the same bytes cannot help."""

    def __init__(self, message: str, error: DeviceError):
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class LinkCounters:
    requests: int = 0
    retransmits: int = 0          # frames sent again (same seq)
    timeouts: int = 0             # waits that ended without a reply (the other resends follow a framing ERROR)
    bad_frames: int = 0           # frames from the device that failed COBS/length/crc checks
    stale_replies: int = 0        # replies to an earlier seq or copy, ignored
    junk_errors: int = 0          # framing ERRORs about bytes that were not our frame
    device_errors: dict[ErrorCode | int, int] = field(default_factory=dict)   # every ERROR, by code


class Link:
    """Request/response over a serial-like port.

    port      : pyserial-like object (see the module docstring); its timeout is set to POLL_S
    timeout_s : how long to wait for a reply before sending the frame again
    retries   : how many times a frame is sent again before LinkError
    log_path  : the device's log (QEMU or process stderr), named in error messages
    """

    def __init__(self, port, *, timeout_s: float = 5.0, retries: int = 5, log_path: Path | None = None):
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ConfigError(f"retries must be >= 0, got {retries}")
        self.port = port
        self.timeout_s = timeout_s
        self.retries = retries
        self.log_path = Path(log_path) if log_path is not None else None
        self.info: DeviceInfo | None = None   # set by hello()
        port.timeout = POLL_S
        self._seq = 0
        self._rx = bytearray()
        self._tail = b""
        self._requests = self._retransmits = self._timeouts = self._bad_frames = self._stale = self._junk = 0
        self._device_errors: Counter = Counter()

    # -- bytes ---------------------------------------------------------------------------------

    @property
    def last_bytes(self) -> bytes:
        """The last bytes received (up to 64), for diagnostics."""
        return self._tail

    @property
    def counters(self) -> LinkCounters:
        return LinkCounters(self._requests, self._retransmits, self._timeouts, self._bad_frames, self._stale,
                            self._junk, dict(self._device_errors))

    def describe_failure(self, what: str) -> str:
        """`what`, plus the last bytes received and the device log: the message of every LinkError."""
        tail = self._tail.hex(" ") if self._tail else "(none)"
        log = f"; device log: {self.log_path}" if self.log_path else ""
        return f"{what}; last {len(self._tail)} bytes received: {tail}{log}"

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests use it to inject damaged frames)."""
        try:
            self.port.write(data)
            self.port.flush()
        except OSError as e:
            raise LinkError(self.describe_failure(f"writing to the device failed: {e}")) from None

    def _fill(self) -> None:
        try:
            data = self.port.read(max(1, self.port.in_waiting))
        except OSError as e:
            raise LinkError(self.describe_failure(f"reading from the device failed: {e}")) from None
        if data:
            self._rx += data
            self._tail = (self._tail + bytes(data))[-TAIL_BYTES:]

    def _buffered_frame(self) -> Frame | None:
        while (end := self._rx.find(DELIMITER)) >= 0:
            chunk = bytes(self._rx[:end])
            del self._rx[:end + 1]
            if not chunk:
                continue
            try:
                return decode_frame(chunk)
            except FrameError:
                self._bad_frames += 1
        return None

    def receive_frame(self, timeout_s: float) -> Frame:
        """The next frame that decodes (ERROR frames included); LinkTimeout after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while (frame := self._buffered_frame()) is None:
            if time.monotonic() >= deadline:
                raise LinkTimeout(self.describe_failure(f"no complete frame within {timeout_s:.2f} s"))
            self._fill()
        return frame

    # -- requests ------------------------------------------------------------------------------

    def request(self, msg_type: int, body: bytes = b"", *, expect: int | None = None,
                timeout_s: float | None = None, retries: int | None = None) -> tuple[Frame, int]:
        """Send one request and return (reply frame, attempts); attempts is 1 when the first copy
        was answered. Raises DeviceRejectedError when the device answers with ERROR for this
        request, LinkError when every attempt failed."""
        expect = reply_type(msg_type) if expect is None else expect
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        retries = self.retries if retries is None else retries
        self._seq = (self._seq + 1) % 0xFFFF   # never 0xFFFF, the seq of unreadable frames
        seq, wire = self._seq, encode_frame(msg_type, self._seq, body)
        name = _type_name(msg_type)
        self._requests += 1
        last = "nothing sent"
        for attempt in range(1, retries + 2):
            if attempt > 1:
                self._retransmits += 1
            self.send_raw(DELIMITER + wire)
            outcome = self._await_reply(seq, expect, len(wire) - 1, timeout_s, name)
            if isinstance(outcome, Frame):
                return outcome, attempt
            last = outcome
        raise LinkError(self.describe_failure(f"{name} request (seq {seq}) failed after {retries + 1} attempts; "
                                              f"last: {last}"))

    def _await_reply(self, seq: int, expect: int, our_raw_len: int, timeout_s: float, name: str) -> Frame | str:
        """The reply, or why the frame should be sent again."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                frame = self.receive_frame(max(0.0, deadline - time.monotonic()))
            except LinkTimeout:
                self._timeouts += 1
                return f"no reply within {timeout_s:.2f} s"
            if frame.type != MsgType.ERROR:
                if frame.seq == seq and frame.type == expect:
                    return frame
                self._stale += 1
                continue
            try:
                error = DeviceError.from_frame(frame)
            except BodyError:
                self._bad_frames += 1
                continue
            self._device_errors[error.code] += 1
            if error.fatal:
                raise LinkError(self.describe_failure(f"the device reported {error.describe()}"))
            if error.framing:
                if error.raw_len == our_raw_len:
                    return f"the device received our frame damaged: {error.describe()}"
                self._junk += 1
                continue
            if frame.seq == seq:
                raise DeviceRejectedError(self.describe_failure(f"the device rejected {name} (seq {seq}): "
                                                                f"{error.describe()}"), error)
            self._stale += 1

    def _parse(self, parser, frame: Frame):
        try:
            return parser(frame.body)
        except BodyError as e:
            raise LinkError(self.describe_failure(f"malformed {_type_name(frame.type)} reply ({e}); are host and "
                                                  f"firmware built from the same protocol version?")) from None

    # -- typed requests ------------------------------------------------------------------------

    def hello(self, *, timeout_s: float | None = None, retries: int | None = None) -> DeviceInfo:
        """Ask the device what it runs; the answer is kept as `self.info` to check windows against."""
        frame, _ = self.request(MsgType.HELLO, timeout_s=timeout_s, retries=retries)
        info = self._parse(DeviceInfo.from_body, frame)
        if info.proto_version != PROTO_VERSION:
            raise LinkError(self.describe_failure(
                f"the device speaks protocol v{info.proto_version} but this host speaks v{PROTO_VERSION}; "
                f"rebuild the firmware from this checkout (edgebci.firmware.build_firmware)"))
        self.info = info
        return info

    def decode_window(self, x: np.ndarray) -> tuple[WindowResult, int]:
        """Decode one window on the device.

        x : ndarray, shape (n_samp, n_ch), int16 microvolts, sample-major (as an amplifier
            delivers it). Returns (result, attempts): attempts == 1 decoded first time, > 1 retried.
        """
        body = pack_window(x)
        if self.info is not None:
            if x.shape != self.info.window_shape:
                raise ConfigError(f"window shape {x.shape} does not match the device model's (n_samp, n_ch) = "
                                  f"{self.info.window_shape}; cut windows of {self.info.n_samp} samples "
                                  f"x {self.info.n_ch} channels")
            wire_len = len(encode_frame(MsgType.WINDOW, 0, body)) - 1
            if wire_len > self.info.rx_max:
                raise ConfigError(f"a window frame of {wire_len} bytes exceeds the device's receive buffer "
                                  f"({self.info.rx_max} bytes); rebuild the firmware for this model")
        frame, attempts = self.request(MsgType.WINDOW, body)
        return self._parse(WindowResult.from_body, frame), attempts

    def stream_start(self, hop_samples: int, mode: StreamMode = StreamMode.FROM_REST) -> StreamStarted:
        """Start a new stream on the device (filter at rest, empty ring, sample 0): a decision every
        hop_samples samples once a whole window has arrived, on the window as `mode` says."""
        frame, _ = self.request(MsgType.STREAM_START, pack_stream_start(hop_samples, mode))
        return self._parse(StreamStarted.from_body, frame)

    def stream_chunk(self, first_sample: int, x: np.ndarray) -> tuple[StreamResult, int]:
        """Send the next samples of the stream.

        x : ndarray, shape (n_samp, n_ch), int16 microvolts, sample-major; first_sample is the
            stream index of x[0] and must be the next sample the device expects. A retransmitted
            chunk is answered from the device's copy of its reply, never filtered twice.
        Returns (result, attempts).
        """
        body = pack_chunk(first_sample, x)
        if self.info is not None and (x.shape[1] != self.info.n_ch or x.shape[0] > self.info.n_samp):
            raise ConfigError(f"a chunk of shape {x.shape} (n_samp, n_ch) does not fit the device model: "
                              f"{self.info.n_ch} channels and at most {self.info.n_samp} samples (one window) per chunk")
        frame, attempts = self.request(MsgType.STREAM, body)
        result = self._parse(StreamResult.from_body, frame)
        if (result.first_sample, result.n_samp) != (first_sample, x.shape[0]):
            raise LinkError(self.describe_failure(f"STREAMR answers samples {result.first_sample}+{result.n_samp}, "
                                                  f"not the chunk sent ({first_sample}+{x.shape[0]})"))
        return result, attempts

    def stats(self) -> DeviceStats:
        """Frames served, errors by code, and the stack high-water mark, since boot."""
        frame, _ = self.request(MsgType.STATS)
        return self._parse(DeviceStats.from_body, frame)


def _type_name(msg_type: int) -> str:
    try:
        return MsgType(msg_type).name
    except ValueError:
        return f"type 0x{msg_type:02x}"
