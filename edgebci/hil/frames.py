"""Wire format of the HIL link (stage: hil): COBS frames, message types and typed bodies.

PROTOCOL FILE: the wire protocol has two owners, this module and the C in firmware_bridge/
(include/ebci/ebci_frame.h, ebci_protocol.h, ebci_status.h). Change both, then regenerate
tests/data/golden_frames.txt with tests/data/make_golden_frames.py: the golden frames are
decoded by both test suites (tests/test_frames.py and tests/test_frames_c.py).

A frame on the wire is ``COBS(header | body | crc32) + b"\\x00"``:

    header  6 bytes LE: u8 type, u8 flags, u16 seq, u16 len (body bytes)
    crc32   u32 LE, zlib.crc32(header + body)

The host asks and the device answers with ``type | 0x80`` (or ERROR) and the same seq; the
device never speaks first except for a FAULT report before it halts. Body layouts are in the
dataclasses below (and in firmware_bridge/include/ebci/ebci_protocol.h).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from edgebci.errors import ConfigError, EdgebciError

PROTO_VERSION = 2   # 2: STREAM_START / STREAM (streaming decode), ERROR STREAM
DELIMITER = b"\x00"
SEQ_NONE = 0xFFFF
FLAG_FRAMING = 0x01   # ERROR: the frame was unreadable; seq is SEQ_NONE
FLAG_FATAL = 0x02     # ERROR: the device halted (FAULT)
REPLY_BIT = 0x80

_HEADER = struct.Struct("<BBHH")
_CRC = struct.Struct("<I")
_INFO = struct.Struct("<BBBBHHIIIIIII")
_WINDOW = struct.Struct("<BBH")
_RESULT = struct.Struct("<BBHIII")
_STATS = struct.Struct("<IIB3x")
_ERROR = struct.Struct("<BxII")
_STREAM_START = struct.Struct("<IB3x")
_STARTED = struct.Struct("<IHBBIB3x")
_CHUNK = struct.Struct("<IBxH")
_STREAMR = struct.Struct("<IHBBIIIB3xIII")
FRAME_OVERHEAD_BYTES = _HEADER.size + _CRC.size
_INFO_STRINGS = ("board", "cpu", "build", "model_id")


class MsgType(IntEnum):
    HELLO = 0x01
    WINDOW = 0x02
    STREAM_START = 0x03
    STREAM = 0x04
    STATS = 0x05
    ERROR = 0x7F
    INFO = 0x81
    RESULT = 0x82
    STARTED = 0x83
    STREAMR = 0x84
    STATSR = 0x85


class ErrorCode(IntEnum):
    """ERROR codes; the C side spells them -ebci_status_t (EBCI_ERR_CRC = -4 is code 4)."""
    COBS = 1
    SHORT = 2
    LEN = 3
    CRC = 4
    OVERSIZE = 5
    TYPE = 6
    SHAPE = 7
    MODEL = 8
    WORKSPACE = 9
    FAULT = 10
    STREAM = 11   # STREAM before STREAM_START, or a chunk that does not continue the stream


class StreamMode(IntEnum):
    """What a stream decision feeds the model (STREAM_START)."""
    FROM_REST = 0    # the window's raw samples filtered from rest: what the decoders were trained on
    CONTINUOUS = 1   # the continuously filtered samples: no start-up transient in the window


class TimerSource(IntEnum):
    DWT = 0       # hardware cycle counter: cycles
    SYSTICK = 1   # under QEMU -icount a deterministic count proportional to instructions
    OS_NS = 2     # a Linux process: nanoseconds of CLOCK_MONOTONIC


class FrameError(EdgebciError, ValueError):
    """Bytes that are not a valid frame or body; `code` is the ERROR code the device would send."""
    code: ErrorCode = ErrorCode.COBS


class CobsError(FrameError):
    code = ErrorCode.COBS


class ShortFrameError(FrameError):
    code = ErrorCode.SHORT


class LengthError(FrameError):
    code = ErrorCode.LEN


class CrcError(FrameError):
    code = ErrorCode.CRC


class BodyError(FrameError):
    """A valid frame whose body does not have the layout of its message type."""
    code = ErrorCode.SHAPE


def _code_or_int(value: int) -> ErrorCode | int:
    try:
        return ErrorCode(value)
    except ValueError:
        return value   # a newer device's code: keep the number rather than fail


def reply_type(msg_type: int) -> int:
    """The reply type for a request type: HELLO -> INFO, WINDOW -> RESULT, STREAM -> STREAMR, ..."""
    return msg_type | REPLY_BIT


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Standard COBS (Cheshire and Baker) without the delimiter, byte for byte what the C
    encoder emits: a run of 254 non-zero bytes is one 0xFF block, and data that ends right
    after such a run gets no trailing empty block."""
    out = bytearray()
    blocks = bytes(data).split(b"\x00")
    for i, block in enumerate(blocks):
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
            if not block and i == len(blocks) - 1:
                return bytes(out)
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode (delimiter excluded); raises CobsError naming the bad offset."""
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError(f"COBS: zero byte at offset {i} inside a frame of {n} bytes")
        if i + code > n:
            raise CobsError(f"COBS: block at offset {i} claims {code - 1} bytes but only {n - i - 1} remain "
                            f"(truncated frame)")
        block = data[i + 1:i + code]
        if 0 in block:
            raise CobsError(f"COBS: zero byte at offset {i + 1 + block.index(0)} inside a frame of {n} bytes")
        out += block
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    body: bytes = b""
    flags: int = 0

    def __post_init__(self):
        for name, value, top in (("type", self.type, 0xFF), ("flags", self.flags, 0xFF), ("seq", self.seq, 0xFFFF),
                                 ("len(body)", len(self.body), 0xFFFF)):
            if not 0 <= value <= top:
                raise ConfigError(f"frame {name} must be in 0..{top}, got {value}")

    def encode(self) -> bytes:
        """COBS bytes plus the 0x00 delimiter, ready for the wire."""
        raw = _HEADER.pack(self.type, self.flags, self.seq, len(self.body)) + bytes(self.body)
        return cobs_encode(raw + _CRC.pack(crc32(raw))) + DELIMITER


def encode_frame(type: int, seq: int, body: bytes = b"", flags: int = 0) -> bytes:
    """One frame for the wire: COBS(header | body | crc32) + b"\\x00"."""
    return Frame(int(type), int(seq), bytes(body), int(flags)).encode()


def decode_frame(raw: bytes) -> Frame:
    """Decode the COBS bytes of one frame (one trailing 0x00 delimiter is allowed).

    Raises CobsError, ShortFrameError, LengthError or CrcError, checked in that order, the
    same order as the device (ebci_frame_decode), which answers with the matching ERROR code.
    """
    raw = bytes(raw)
    if raw.endswith(DELIMITER):
        raw = raw[:-1]
    data = cobs_decode(raw)
    if len(data) < FRAME_OVERHEAD_BYTES:
        raise ShortFrameError(f"frame of {len(data)} bytes is shorter than header + crc "
                              f"({FRAME_OVERHEAD_BYTES} bytes)")
    msg_type, flags, seq, length = _HEADER.unpack_from(data)
    if len(data) != FRAME_OVERHEAD_BYTES + length:
        raise LengthError(f"frame header says {length} body bytes but the frame holds "
                          f"{len(data) - FRAME_OVERHEAD_BYTES} (truncated or merged)")
    (sent,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    actual = crc32(data[:-_CRC.size])
    if sent != actual:
        raise CrcError(f"frame crc32 is 0x{sent:08x} but its bytes give 0x{actual:08x} (corrupted)")
    return Frame(msg_type, seq, data[_HEADER.size:-_CRC.size], flags)


def _check_size(body: bytes, size: int, what: str, exact: bool = True) -> None:
    if len(body) < size or (exact and len(body) != size):
        raise BodyError(f"{what} body must be {'' if exact else 'at least '}{size} bytes, got {len(body)}")


@dataclass(frozen=True)
class DeviceInfo:
    """INFO: what the device runs and how to read its numbers."""
    proto_version: int
    timer_src: TimerSource | int
    n_ch: int
    n_classes: int
    n_samp: int
    fs_hz: int
    rx_max: int            # receive buffer, COBS bytes before the delimiter
    cpu_hz: int
    timer_hz: int          # rate of WindowResult.ticks
    stack_size: int
    stack_used: int        # painted high-water mark, bytes
    arena_bytes: int
    workspace_bytes: int
    board: str
    cpu: str
    build: str
    model_id: str

    @property
    def window_shape(self) -> tuple[int, int]:
        """(n_samp, n_ch): the shape decode_window expects."""
        return (self.n_samp, self.n_ch)

    def to_body(self) -> bytes:
        fixed = _INFO.pack(self.proto_version, int(self.timer_src), self.n_ch, self.n_classes, self.n_samp,
                           self.fs_hz, self.rx_max, self.cpu_hz, self.timer_hz, self.stack_size, self.stack_used,
                           self.arena_bytes, self.workspace_bytes)
        return fixed + b"".join(getattr(self, k).encode() + b"\x00" for k in _INFO_STRINGS)

    @classmethod
    def from_body(cls, body: bytes) -> DeviceInfo:
        _check_size(body, _INFO.size, "INFO", exact=False)
        fields = list(_INFO.unpack_from(body))
        strings = bytes(body[_INFO.size:]).split(b"\x00")
        if len(strings) < len(_INFO_STRINGS) + 1:
            raise BodyError(f"INFO body must end with {len(_INFO_STRINGS)} NUL-terminated strings "
                            f"({', '.join(_INFO_STRINGS)}), found {len(strings) - 1}")
        try:
            fields[1] = TimerSource(fields[1])
        except ValueError:
            pass
        # later protocol versions may append strings: read ours, ignore the rest
        return cls(*fields, *(s.decode("utf-8", "replace") for s in strings[:len(_INFO_STRINGS)]))


@dataclass(frozen=True)
class WindowResult:
    """RESULT: the decoded class, the model's scores, and what the decode cost."""
    cls: int
    scores: tuple[float, ...]
    ticks: int         # timer ticks spent in filter + model; a QEMU SysTick count is not cycles
    stack_used: int    # painted high-water mark, bytes

    def to_body(self) -> bytes:
        n = len(self.scores)
        return (_RESULT.pack(self.cls, n, 0, self.ticks & 0xFFFFFFFF, self.ticks >> 32, self.stack_used)
                + struct.pack(f"<{n}f", *self.scores))

    @classmethod
    def from_body(cls, body: bytes) -> WindowResult:
        _check_size(body, _RESULT.size, "RESULT", exact=False)
        klass, n, _, lo, hi, stack_used = _RESULT.unpack_from(body)
        _check_size(body, _RESULT.size + 4 * n, f"RESULT with {n} classes")
        return cls(klass, struct.unpack_from(f"<{n}f", body, _RESULT.size), lo | hi << 32, stack_used)


@dataclass(frozen=True)
class DeviceStats:
    """STATSR: what the device has served and rejected since boot."""
    frames_ok: int
    stack_used: int
    counters: tuple[int, ...]   # counters[i] counts ERROR code i + 1

    @property
    def errors(self) -> dict[ErrorCode | int, int]:
        """Non-zero error counters by code."""
        return {_code_or_int(i + 1): n for i, n in enumerate(self.counters) if n}

    def to_body(self) -> bytes:
        n = len(self.counters)
        return _STATS.pack(self.frames_ok, self.stack_used, n) + struct.pack(f"<{n}I", *self.counters)

    @classmethod
    def from_body(cls, body: bytes) -> DeviceStats:
        _check_size(body, _STATS.size, "STATSR", exact=False)
        frames_ok, stack_used, n = _STATS.unpack_from(body)
        _check_size(body, _STATS.size + 4 * n, f"STATSR with {n} counters")
        return cls(frames_ok, stack_used, struct.unpack_from(f"<{n}I", body, _STATS.size))


@dataclass(frozen=True)
class DeviceError:
    """ERROR: what the device rejected. raw_len is the COBS length it saw before the
    delimiter, so a host can tell whether a framing error is about its own frame."""
    code: ErrorCode | int
    detail: int
    raw_len: int
    flags: int = 0
    seq: int = SEQ_NONE

    @property
    def framing(self) -> bool:
        return bool(self.flags & FLAG_FRAMING)

    @property
    def fatal(self) -> bool:
        return bool(self.flags & FLAG_FATAL)

    def describe(self) -> str:
        name = self.code.name if isinstance(self.code, ErrorCode) else f"code {self.code}"
        if self.code == ErrorCode.FAULT:
            return f"FAULT at pc 0x{self.detail:08x} (device halted)"
        if self.code == ErrorCode.SHAPE:
            return f"SHAPE (got n_ch {self.detail & 0xFF}, n_samp {self.detail >> 8})"
        if self.code == ErrorCode.MODEL:
            return f"MODEL (ebci_model_run returned {self.detail - (1 << 32) if self.detail >> 31 else self.detail})"
        if self.code == ErrorCode.STREAM:
            if self.detail == 0xFFFFFFFF:
                return "STREAM (no stream started: send STREAM_START first)"
            return f"STREAM (the chunk does not continue the stream: the device expects sample {self.detail} next)"
        if self.code == ErrorCode.WORKSPACE:
            if self.detail == 0:
                return "WORKSPACE (a kernel freed workspace out of LIFO order)"
            return f"WORKSPACE (a kernel asked for {self.detail} bytes, more than the workspace had left)"
        return f"{name} (detail {self.detail}, {self.raw_len} bytes seen)"

    def to_body(self) -> bytes:
        return _ERROR.pack(int(self.code), self.detail, self.raw_len)

    @classmethod
    def from_frame(cls, frame: Frame) -> DeviceError:
        _check_size(frame.body, _ERROR.size, "ERROR")
        code, detail, raw_len = _ERROR.unpack(frame.body)
        return cls(_code_or_int(code), detail, raw_len, frame.flags, frame.seq)


def pack_window(x: np.ndarray) -> bytes:
    """WINDOW body for x : ndarray, shape (n_samp, n_ch), int16 microvolts, sample-major."""
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ConfigError(f"a window must be a 2-D ndarray of shape (n_samp, n_ch), got "
                          f"{type(x).__name__} with shape {getattr(x, 'shape', None)}")
    if x.dtype != np.int16:
        raise ConfigError(f"a window must be int16 microvolts, got dtype {x.dtype}; "
                          f"clip to the int16 range and cast with x.astype(np.int16)")
    n_samp, n_ch = x.shape
    if not (1 <= n_ch <= 0xFF and 1 <= n_samp <= 0xFFFF):
        raise ConfigError(f"a window holds 1..255 channels and 1..65535 samples, got shape {x.shape} "
                          f"(n_samp, n_ch); pass it sample-major, not channel-major")
    return _WINDOW.pack(n_ch, 0, n_samp) + np.ascontiguousarray(x, dtype="<i2").tobytes()


def unpack_window(body: bytes) -> np.ndarray:
    """Inverse of pack_window: int16 ndarray, shape (n_samp, n_ch)."""
    _check_size(body, _WINDOW.size, "WINDOW", exact=False)
    n_ch, _, n_samp = _WINDOW.unpack_from(body)
    _check_size(body, _WINDOW.size + 2 * n_ch * n_samp, f"WINDOW of {n_ch} x {n_samp} samples")
    return np.frombuffer(body, dtype="<i2", offset=_WINDOW.size).reshape(n_samp, n_ch).astype(np.int16)


@dataclass(frozen=True)
class StreamStarted:
    """STARTED: the device's stream geometry (filter at rest, ring empty, sample counter 0)."""
    hop_samples: int
    n_samp: int          # window
    n_ch: int
    in_shift: int        # fractional bits of the filter output (uV * 2^in_shift)
    ring_bytes: int
    mode: StreamMode | int

    def to_body(self) -> bytes:
        return _STARTED.pack(self.hop_samples, self.n_samp, self.n_ch, self.in_shift, self.ring_bytes, int(self.mode))

    @classmethod
    def from_body(cls, body: bytes) -> StreamStarted:
        _check_size(body, _STARTED.size, "STARTED")
        fields = list(_STARTED.unpack(body))
        try:
            fields[-1] = StreamMode(fields[-1])
        except ValueError:
            pass
        return cls(*fields)


@dataclass(frozen=True)
class StreamResult:
    """STREAMR: one chunk filtered, and the decision when a window closed in it.

    filter_crc : zlib.crc32 of the chunk's filter output, int32 LE [n_samp][n_ch]
    end_sample : the decided window is stream samples [end_sample - window, end_sample)
    ticks      : timer ticks spent filtering the chunk (and running the model when decided)
    """
    first_sample: int
    n_samp: int
    decided: bool
    filter_crc: int
    n_saturated: int
    end_sample: int
    cls: int
    ticks: int
    stack_used: int
    scores: tuple[float, ...]

    def to_body(self) -> bytes:
        n = len(self.scores)
        return (_STREAMR.pack(self.first_sample, self.n_samp, int(self.decided), n, self.filter_crc,
                              self.n_saturated, self.end_sample, self.cls, self.ticks & 0xFFFFFFFF, self.ticks >> 32,
                              self.stack_used) + struct.pack(f"<{n}f", *self.scores))

    @classmethod
    def from_body(cls, body: bytes) -> StreamResult:
        _check_size(body, _STREAMR.size, "STREAMR", exact=False)
        first, n_samp, decided, n, crc, sat, end, klass, lo, hi, stack_used = _STREAMR.unpack_from(body)
        _check_size(body, _STREAMR.size + 4 * n, f"STREAMR with {n} classes")
        return cls(first, n_samp, bool(decided), crc, sat, end, klass, lo | hi << 32, stack_used,
                   struct.unpack_from(f"<{n}f", body, _STREAMR.size))


def pack_stream_start(hop_samples: int, mode: StreamMode | int = StreamMode.FROM_REST) -> bytes:
    """STREAM_START body: a decision every hop_samples samples, on the window as `mode` says."""
    if not 1 <= int(hop_samples) <= 0xFFFFFFFF:
        raise ConfigError(f"hop_samples must be 1..{0xFFFFFFFF}, got {hop_samples}")
    if not 0 <= int(mode) <= 0xFF:
        raise ConfigError(f"stream mode must fit a byte ({', '.join(f'{m.name}={m.value}' for m in StreamMode)}), "
                          f"got {mode}")
    return _STREAM_START.pack(int(hop_samples), int(mode))


def unpack_stream_start(body: bytes) -> tuple[int, int]:
    """(hop_samples, mode) of a STREAM_START body."""
    _check_size(body, _STREAM_START.size, "STREAM_START")
    return _STREAM_START.unpack(body)


def pack_chunk(first_sample: int, x: np.ndarray) -> bytes:
    """STREAM body: x : ndarray, shape (n_samp, n_ch), int16 uV, sample-major; first_sample is the
    stream index of its first row (the device refuses a chunk that does not continue the stream)."""
    window = pack_window(x)   # same checks and sample layout as a WINDOW
    if not 0 <= int(first_sample) <= 0xFFFFFFFF:
        raise ConfigError(f"first_sample must be 0..{0xFFFFFFFF}, got {first_sample}")
    n_samp, n_ch = x.shape
    return _CHUNK.pack(int(first_sample), n_ch, n_samp) + window[_WINDOW.size:]


def unpack_chunk(body: bytes) -> tuple[int, np.ndarray]:
    """Inverse of pack_chunk: (first_sample, int16 ndarray of shape (n_samp, n_ch))."""
    _check_size(body, _CHUNK.size, "STREAM", exact=False)
    first, n_ch, n_samp = _CHUNK.unpack_from(body)
    _check_size(body, _CHUNK.size + 2 * n_ch * n_samp, f"STREAM chunk of {n_ch} x {n_samp} samples")
    x = np.frombuffer(body, dtype="<i2", offset=_CHUNK.size).reshape(n_samp, n_ch).astype(np.int16)
    return first, x


def decode_body(frame: Frame):
    """The typed body of a frame; the raw bytes for types without a body layout (HELLO, STATS).

    WINDOW gives an int16 ndarray, STREAM (first_sample, ndarray), STREAM_START (hop_samples, mode).
    """
    if frame.type == MsgType.ERROR:
        return DeviceError.from_frame(frame)
    if frame.type == MsgType.WINDOW:
        return unpack_window(frame.body)
    if frame.type == MsgType.STREAM:
        return unpack_chunk(frame.body)
    if frame.type == MsgType.STREAM_START:
        return unpack_stream_start(frame.body)
    parser = {MsgType.INFO: DeviceInfo, MsgType.RESULT: WindowResult, MsgType.STATSR: DeviceStats,
              MsgType.STARTED: StreamStarted, MsgType.STREAMR: StreamResult}.get(frame.type)
    return parser.from_body(frame.body) if parser else frame.body
