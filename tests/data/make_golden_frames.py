"""Generate tests/data/golden_frames.txt: frames both owners of the wire protocol must agree on.

The protocol has two owners, edgebci/hil/frames.py and the C in firmware_bridge/: change both,
then run `python tests/data/make_golden_frames.py`. tests/test_frames.py decodes every line with
Python (and checks this file is up to date), tests/test_frames_c.py with the C.

One frame per line, space-separated key=value tokens:
    name=...  wire=<COBS bytes + 00 delimiter, hex>
    valid frames:   type=0x.. flags=0x.. seq=N body=<hex or -> and the body's fields
    damaged frames: expect=<ERROR code both decoders must report>
Fields: integers in decimal; lists comma-separated; float scores as IEEE-754 bit patterns
(scores_bits=0x3f000000,...); strings as they are (golden strings contain no spaces).
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edgebci.hil.frames import (FLAG_FATAL, FLAG_FRAMING, PROTO_VERSION, SEQ_NONE, DeviceError,  # noqa: E402
                                DeviceInfo, DeviceStats, ErrorCode, Frame, MsgType, StreamMode, StreamResult,
                                StreamStarted,
                                TimerSource, WindowResult, cobs_decode, cobs_encode, decode_body, pack_chunk,
                                pack_stream_start, pack_window)

GOLDEN_PATH = Path(__file__).with_name("golden_frames.txt")


def _small_window() -> np.ndarray:
    # zero bytes (0, the high byte of 1 and 300) and the int16 extremes
    return np.array([[1, -2], [300, -32768], [32767, 0]], dtype=np.int16)


def _long_run_window() -> np.ndarray:
    # 150 samples of 0x0101: a 300-byte run without zeros (more than one 254-byte COBS block),
    # then zeros and negative values
    return np.concatenate([np.full(150, 0x0101), np.zeros(3), np.arange(-5, 5)]).astype(np.int16)[:, None]


def _info() -> DeviceInfo:
    return DeviceInfo(PROTO_VERSION, TimerSource.SYSTICK, 8, 2, 320, 160, 5155, 25_000_000, 25_000_000, 16384, 720,
                      4096, 64, "mps2-an386", "cortex-m4", "arm-none-eabi-gcc_12.2.1_-O2", "0123456789abcdef")


def valid_frames() -> list[tuple[str, Frame]]:
    body = {
        "info": _info().to_body(),
        "result": WindowResult(1, (0.5, -1.25, 3.0e-8), (1 << 32) + 5, 720).to_body(),
        "statsr": DeviceStats(7, 720, (1, 0, 2, 0, 3, 0, 0, 0, 0, 4, 5)).to_body(),
        "started": StreamStarted(80, 480, 21, 15, 60480, StreamMode.CONTINUOUS).to_body(),
        "streamr": StreamResult(400, 80, True, 0xCAFEF00D, 3, 480, 1, (2 << 32) + 7, 724, (0.25, -2.5)).to_body(),
        "streamr_none": StreamResult(0x01020304, 40, False, 0x00000001, 0, 0, 0, 1234, 700, (0.0, 0.0)).to_body(),
    }
    return [
        ("hello", Frame(MsgType.HELLO, 1)),
        ("stats", Frame(MsgType.STATS, 0xFFFE)),
        ("window_small", Frame(MsgType.WINDOW, 3, pack_window(_small_window()))),
        ("window_long_run", Frame(MsgType.WINDOW, 0x1234, pack_window(_long_run_window()))),
        ("stream_start", Frame(MsgType.STREAM_START, 5, pack_stream_start(80, StreamMode.CONTINUOUS))),
        ("stream_chunk", Frame(MsgType.STREAM, 6, pack_chunk(0x00010203, _small_window()))),
        ("info", Frame(MsgType.INFO, 1, body["info"])),
        ("result", Frame(MsgType.RESULT, 3, body["result"])),
        ("statsr", Frame(MsgType.STATSR, 0xFFFE, body["statsr"])),
        ("started", Frame(MsgType.STARTED, 5, body["started"])),
        ("streamr", Frame(MsgType.STREAMR, 6, body["streamr"])),
        ("streamr_none", Frame(MsgType.STREAMR, 7, body["streamr_none"])),
        ("error_stream", Frame(MsgType.ERROR, 6, DeviceError(ErrorCode.STREAM, 480, 33).to_body())),
        ("error_crc", Frame(MsgType.ERROR, SEQ_NONE, DeviceError(ErrorCode.CRC, 0xDEADBEEF, 17).to_body(),
                            FLAG_FRAMING)),
        ("error_shape", Frame(MsgType.ERROR, 3, DeviceError(ErrorCode.SHAPE, 8 | 300 << 8, 5155).to_body())),
        ("error_fault", Frame(MsgType.ERROR, SEQ_NONE, DeviceError(ErrorCode.FAULT, 0x000012AB, 0).to_body(),
                              FLAG_FATAL)),
    ]


def reencode(wire: bytes, edit) -> bytes:
    """A damaged frame that is still valid COBS, so a decoder sees exactly the damage made:
    edit(bytearray of the decoded frame) -> bytes, encoded again with its delimiter."""
    return cobs_encode(edit(bytearray(cobs_decode(wire[:-1])))) + b"\x00"


def flip(raw: bytearray, at: int, mask: int = 0x40) -> bytearray:
    raw[at] ^= mask
    return raw


def damaged_frames() -> list[tuple[str, bytes, ErrorCode]]:
    hello, window = valid_frames()[0][1].encode(), valid_frames()[2][1].encode()
    return [
        ("bad_crc_in_body", reencode(window, lambda r: flip(r, 8)), ErrorCode.CRC),
        ("bad_crc_in_crc", reencode(hello, lambda r: flip(r, len(r) - 1)), ErrorCode.CRC),
        ("bad_len_truncated", reencode(window, lambda r: r[:-3]), ErrorCode.LEN),
        ("bad_len_header", reencode(hello, lambda r: flip(r, 4)), ErrorCode.LEN),
        ("bad_short", cobs_encode(b"\x01\x02\x03") + b"\x00", ErrorCode.SHORT),
        ("bad_cobs_block_past_end", b"\x05\x01\x02\x00", ErrorCode.COBS),
    ]


def body_fields(frame: Frame) -> dict[str, str]:
    """The decoded body as golden tokens (what the C test packs or unpacks and compares)."""
    obj = decode_body(frame)
    ints = lambda values: ",".join(str(int(v)) for v in values)  # noqa: E731
    bits = lambda values: ",".join(f"0x{struct.unpack('<I', struct.pack('<f', s))[0]:08x}" for s in values)  # noqa: E731
    if frame.type == MsgType.STREAM_START:
        return {"hop_samples": str(obj[0]), "mode": str(obj[1])}
    if frame.type == MsgType.STREAM:
        first, x = obj
        return {"first_sample": str(first), "n_ch": str(x.shape[1]), "n_samp": str(x.shape[0]),
                "samples": ints(x.ravel())}
    if isinstance(obj, StreamStarted):
        return {k: str(int(v)) for k, v in vars(obj).items()}
    if isinstance(obj, StreamResult):
        return {"first_sample": str(obj.first_sample), "n_samp": str(obj.n_samp), "decided": str(int(obj.decided)),
                "n_classes": str(len(obj.scores)), "filter_crc": str(obj.filter_crc),
                "n_saturated": str(obj.n_saturated), "end_sample": str(obj.end_sample), "cls": str(obj.cls),
                "ticks": str(obj.ticks), "stack_used": str(obj.stack_used), "scores_bits": bits(obj.scores)}
    if isinstance(obj, np.ndarray):
        return {"n_ch": str(obj.shape[1]), "n_samp": str(obj.shape[0]), "samples": ints(obj.ravel())}
    if isinstance(obj, DeviceInfo):
        return {k: str(int(v)) if not isinstance(v, str) else v for k, v in vars(obj).items()}
    if isinstance(obj, WindowResult):
        return {"cls": str(obj.cls), "n_classes": str(len(obj.scores)), "ticks": str(obj.ticks),
                "stack_used": str(obj.stack_used), "scores_bits": bits(obj.scores)}
    if isinstance(obj, DeviceStats):
        return {"frames_ok": str(obj.frames_ok), "stack_used": str(obj.stack_used),
                "n_counters": str(len(obj.counters)), "counters": ints(obj.counters)}
    if isinstance(obj, DeviceError):
        return {"code": str(int(obj.code)), "detail": str(obj.detail), "raw_len": str(obj.raw_len)}
    return {}


def _line(tokens: dict[str, str]) -> str:
    for key, value in tokens.items():
        if not value or " " in value or "=" in value:
            raise ValueError(f"golden token {key}={value!r} must be non-empty, without spaces or '='")
    return " ".join(f"{k}={v}" for k, v in tokens.items())


def render() -> str:
    lines = [f"Generated by tests/data/make_golden_frames.py (edgebci protocol v{PROTO_VERSION}, fixed inputs, "
             f"no randomness); do not edit, regenerate.",
             "# Decoded by tests/test_frames.py (Python) and tests/test_frames_c.py (firmware_bridge C).",
             "# ERROR codes: " + ", ".join(f"{c.name}={int(c)}" for c in ErrorCode)]
    for name, frame in valid_frames():
        lines.append(_line({"name": name, "wire": frame.encode().hex(), "type": f"0x{frame.type:02x}",
                            "flags": f"0x{frame.flags:02x}", "seq": str(frame.seq),
                            "body": frame.body.hex() or "-", **body_fields(frame)}))
    for name, wire, code in damaged_frames():
        lines.append(_line({"name": name, "wire": wire.hex(), "expect": str(int(code))}))
    return "\n".join(lines) + "\n"


def parse_golden(text: str) -> list[dict[str, str]]:
    """The token dicts of a golden file (its first line and # comments skipped)."""
    return [dict(tok.split("=", 1) for tok in line.split())
            for line in text.splitlines()[1:] if line.strip() and not line.startswith("#")]


if __name__ == "__main__":
    GOLDEN_PATH.write_text(render())
    print(f"wrote {GOLDEN_PATH}")
