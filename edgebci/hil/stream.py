"""HIL stage, streaming: whole recordings sample by sample to the device, one decision per hop.

Each recording is one stream (STREAM_START resets the device's filter and ring). It goes out in
chunks of at most one hop, in order, each accounted for as acked (first try), retried (the link
resent it; the device answers a repeat from its copy, so no sample is filtered twice) or failed.
For every chunk the device returns the crc32 of its filter output, which is held against the
bit-exact Python reference (edgebci.frontend.fixed); every decision is held against the host
reference library running the same C on the same chunks, and aligned with the cue labels.
"""
from __future__ import annotations

import ctypes
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgebci.data import Recording
from edgebci.errors import ConfigError, LinkError
from edgebci.frontend import FixedFrontEnd, filter_fixed
from edgebci.hil.frames import StreamMode
from edgebci.metrics import balanced_accuracy, confusion_matrix

PACES = ("max", "realtime")
# --filter-state: what a decision feeds the model (see edgebci.frontend.twin for the accuracy of each)
FILTER_STATES = {"from-rest": StreamMode.FROM_REST, "continuous": StreamMode.CONTINUOUS}
SCORE_RTOL = 1e-4   # device float32 vs host float32: same C, different compilers (FMA contraction)


class HostStream:
    """The streaming decoder of the host reference library (ebci_stream_* in ebci_decoder.c)."""

    def __init__(self, library: Path, n_classes: int):
        self._lib = ctypes.CDLL(str(library))
        if not hasattr(self._lib, "ebci_stream_push"):
            raise ConfigError(f"{library} has no ebci_stream_push: it was built before streaming existed; run "
                              f"`edgebci compile` again")
        self.n_classes = n_classes
        self.n_ch = self._lib.ebci_decoder_n_ch()
        self.n_samp = self._lib.ebci_decoder_n_samp()

    def start(self, hop_samples: int, mode: StreamMode = StreamMode.FROM_REST) -> None:
        if self._lib.ebci_stream_start(ctypes.c_uint32(hop_samples), ctypes.c_int(int(mode))) != 0:
            raise ConfigError(f"hop_samples must be >= 1 and mode one of {[m.name for m in StreamMode]}, got "
                              f"{hop_samples} and {mode}")

    def push(self, x_interleaved: np.ndarray) -> tuple[bool, int, np.ndarray]:
        """(decided, end_sample, scores) for the next samples, shape (n, n_ch) int16."""
        x = np.ascontiguousarray(x_interleaved, np.int16)
        scores = np.zeros(self.n_classes, np.float32)
        decided, end = ctypes.c_int(0), ctypes.c_uint32(0)
        rc = self._lib.ebci_stream_push(ctypes.c_void_p(x.ctypes.data), ctypes.c_uint32(x.shape[0]),
                                        ctypes.c_void_p(scores.ctypes.data), ctypes.byref(decided), ctypes.byref(end))
        if rc != 0:
            raise ConfigError(f"host stream reference failed with status {rc} on a chunk of {x.shape[0]} samples")
        return bool(decided.value), int(end.value), scores


@dataclass
class ChunkOutcome:
    first_sample: int
    n_samp: int
    status: str                   # "acked" | "retried" | "failed"
    attempts: int = 0
    crc_match: bool | None = None  # device filter output == Python reference, bit for bit (crc32)
    ticks: int | None = None
    error: str = ""
    decision_mismatch: bool = False   # the device decided (or not) differently from the host on this chunk


@dataclass
class Decision:
    source: str
    end_sample: int               # the window is samples [end_sample - window, end_sample)
    device_class: int
    device_scores: list[float]
    host_class: int
    host_scores: list[float]
    ticks: int                    # filter of the chunk + the model
    stack_used: int
    label: int = -1               # class of the cue this window is aligned with, -1 if none
    cue_onset: int | None = None


@dataclass
class RecordingStream:
    source: str
    n_samples: int
    fs_hz: float
    n_cues: int
    chunks: list[ChunkOutcome] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    host_only_decisions: int = 0  # host decided where the device gave no decision (a failed chunk)
    n_saturated: int = 0

    @property
    def counts(self) -> dict:
        c = {"chunks": len(self.chunks), "acked": 0, "retried": 0, "failed": 0}
        for ch in self.chunks:
            c[ch.status] += 1
        c["samples_sent"] = self.n_samples
        c["samples_acked"] = sum(ch.n_samp for ch in self.chunks if ch.status != "failed")
        return c


def plan_chunks(n_samples: int, chunk_samples: int) -> list[tuple[int, int]]:
    """(first_sample, n_samp) covering [0, n_samples) without gaps or overlap."""
    if chunk_samples <= 0:
        raise ConfigError(f"chunk_samples must be > 0, got {chunk_samples}")
    return [(s, min(chunk_samples, n_samples - s)) for s in range(0, n_samples, chunk_samples)]


def align_labels(decisions: list[Decision], events: tuple[tuple[int, int], ...], window: int, offset: int,
                 hop: int) -> None:
    """Label the decision whose window starts nearest to cue onset + offset (the training window),
    within half a hop; each cue labels at most one decision."""
    starts = np.array([d.end_sample - window for d in decisions], np.int64)
    if len(starts) == 0:
        return
    for onset, cls in events:
        target = onset + offset
        i = int(np.argmin(np.abs(starts - target)))
        if abs(int(starts[i]) - target) * 2 <= hop and decisions[i].label < 0:
            decisions[i].label, decisions[i].cue_onset = int(cls), int(onset)


def stream_recording(link, rec: Recording, fixed: FixedFrontEnd, host: HostStream, window: int, offset: int,
                     hop: int, chunk_samples: int, pace: str = "max", progress=None,
                     mode: StreamMode = StreamMode.FROM_REST) -> RecordingStream:
    """Stream one whole recording; every chunk ends up acked, retried or failed."""
    if pace not in PACES:
        raise ConfigError(f"pace must be one of {PACES}, got {pace!r}")
    if not 1 <= chunk_samples <= min(hop, window):
        raise ConfigError(f"chunk_samples must be 1..{min(hop, window)} (at most one hop and one window), "
                          f"got {chunk_samples}")
    x = np.ascontiguousarray(rec.samples.T)                 # (n_samples, n_ch), as the amplifier delivers it
    reference, _ = filter_fixed(fixed, rec.samples)         # (n_ch, n_samples) int32, the bit-exact reference
    reference = np.ascontiguousarray(reference.T).astype("<i4")
    out = RecordingStream(rec.path.name, x.shape[0], rec.fs_hz, len(rec.events))
    host.start(hop, mode)
    broken = ""
    try:
        started = link.stream_start(hop, mode)
    except LinkError as e:
        broken = f"STREAM_START failed: {e}"
    else:
        got = (started.hop_samples, started.n_samp, started.n_ch, started.in_shift, int(started.mode))
        want = (hop, window, x.shape[1], fixed.in_shift, int(mode))
        if got != want:
            raise ConfigError(f"the device streams with (hop, window, channels, in_shift, mode) = {got} but this "
                              f"compiled decoder expects {want}: flash the firmware from this compile folder, or "
                              f"compile again")
    t0 = time.monotonic()
    for first, n in plan_chunks(x.shape[0], chunk_samples):
        chunk = x[first:first + n]
        decided, end, host_scores = host.push(chunk)
        outcome = ChunkOutcome(first, n, "failed")
        out.chunks.append(outcome)
        if progress is not None:
            progress.update(n)
        if broken:
            outcome.error = f"not sent: {broken}"
            out.host_only_decisions += int(decided)
            continue
        if pace == "realtime":
            time.sleep(max(0.0, t0 + first / rec.fs_hz - time.monotonic()))
        try:
            result, attempts = link.stream_chunk(first, chunk)
        except LinkError as e:
            outcome.error = str(e)
            broken = f"the stream broke at sample {first} ({str(e).splitlines()[0][:200]})"
            out.host_only_decisions += int(decided)
            continue
        outcome.status = "acked" if attempts == 1 else "retried"
        outcome.attempts = attempts
        outcome.ticks = int(result.ticks)
        outcome.crc_match = result.filter_crc == (zlib.crc32(reference[first:first + n].tobytes()) & 0xFFFFFFFF)
        out.n_saturated = int(result.n_saturated)
        if result.decided != decided or (decided and result.end_sample != end):
            outcome.decision_mismatch = True
            outcome.error = (f"device decided={result.decided} at {result.end_sample}, host decided={decided} at "
                             f"{end}")
        if result.decided:
            out.decisions.append(Decision(rec.path.name, int(result.end_sample), int(result.cls),
                                          [float(s) for s in result.scores], int(np.argmax(host_scores)),
                                          host_scores.tolist(), int(result.ticks), int(result.stack_used)))
        elif decided:
            out.host_only_decisions += 1
    align_labels(out.decisions, rec.events, window, offset, hop)
    return out


@dataclass
class StreamRun:
    """Raw outcome of a streaming HIL session; edgebci.report.stream turns it into the report."""
    device_info: dict
    recordings: list[RecordingStream]
    link_stats: dict
    classes: tuple[str, ...]
    hop_samples: int
    window_samples: int
    offset_samples: int
    chunk_samples: int
    pace: str
    filter_state: str = "from-rest"

    @property
    def decisions(self) -> list[Decision]:
        return [d for r in self.recordings for d in r.decisions]

    def counts(self) -> dict:
        total = {"recordings": len(self.recordings), "chunks": 0, "acked": 0, "retried": 0, "failed": 0,
                 "samples_sent": 0, "samples_acked": 0}
        for r in self.recordings:
            for k, v in r.counts.items():
                total[k] += v
        total["samples_lost"] = total["samples_sent"] - total["samples_acked"]
        total["decision_mismatches"] = sum(c.decision_mismatch for r in self.recordings for c in r.chunks)
        return total

    def decisions_per_hop(self) -> dict:
        """Decisions against the hops that closed a window: exactly one per hop when nothing is lost."""
        expected = sum(max(0, (r.n_samples - self.window_samples) // self.hop_samples + 1) for r in self.recordings)
        got = len(self.decisions)
        return {"expected": expected, "received": got, "per_hop": got / expected if expected else float("nan"),
                "host_only": sum(r.host_only_decisions for r in self.recordings)}

    def filter_bit_exact(self) -> dict:
        checked = [c for r in self.recordings for c in r.chunks if c.crc_match is not None]
        return {"chunks_checked": len(checked), "chunks_equal": sum(c.crc_match for c in checked),
                "samples_checked": sum(c.n_samp for c in checked),
                "bit_exact": bool(checked) and all(c.crc_match for c in checked),
                "saturated_outputs": sum(r.n_saturated for r in self.recordings)}

    def agreement(self) -> dict:
        ds = self.decisions
        same = sum(d.device_class == d.host_class for d in ds)
        diffs = [float(np.max(np.abs(np.subtract(d.device_scores, d.host_scores)) /
                              np.maximum(1.0, np.abs(d.host_scores)))) for d in ds]
        return {"decisions_compared": len(ds), "same_class": same, "rate": same / len(ds) if ds else float("nan"),
                "max_rel_score_diff": max(diffs) if diffs else float("nan"),
                "scores_within_tolerance": bool(diffs) and max(diffs) <= SCORE_RTOL, "tolerance": SCORE_RTOL}

    def accuracy(self) -> dict:
        n = len(self.classes)
        labelled = [d for d in self.decisions if d.label >= 0]
        y = np.array([d.label for d in labelled], np.int64)
        pd = np.array([d.device_class for d in labelled], np.int64)
        cues = sum(r.n_cues for r in self.recordings)
        return {"cues": cues, "labelled_decisions": len(labelled),
                "device_balanced_accuracy": balanced_accuracy(y, pd, n) if labelled else float("nan"),
                "device_confusion_matrix": confusion_matrix(y, pd, n).tolist(), "chance": 1.0 / n,
                "classes": list(self.classes),
                "alignment": (f"each cue labels the decision whose window starts nearest to onset + "
                              f"{self.offset_samples} samples (the training window), within half a hop "
                              f"({self.hop_samples // 2} samples)")}


def save_stream_run(run: StreamRun, path: Path) -> None:
    path.write_text(json.dumps({"device_info": run.device_info, "link_stats": run.link_stats,
                                "classes": list(run.classes), "hop_samples": run.hop_samples,
                                "window_samples": run.window_samples, "offset_samples": run.offset_samples,
                                "chunk_samples": run.chunk_samples,
                                "pace": run.pace, "filter_state": run.filter_state,
                                "recordings": [asdict(r) for r in run.recordings]},
                               indent=1, default=float))
