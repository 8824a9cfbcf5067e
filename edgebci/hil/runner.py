"""HIL stage: stream recorded windows to a device and hold every answer against the host reference.

Every window ends up in exactly one bucket: decoded (first try), retried (decoded after the link
retransmitted it) or failed (no valid answer after every retry). The host reference is the same
generated C built for this machine, so device and host must agree window for window.
"""
from __future__ import annotations

import ctypes
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgebci.data import Windows
from edgebci.errors import ConfigError, LinkError
from edgebci.metrics import balanced_accuracy, confusion_matrix

SCORE_RTOL = 1e-4   # device float32 vs host float32: same C, different compilers (FMA contraction)
MAX_CONSECUTIVE_FAILURES = 3   # then the device is down: the rest are recorded as failed, not sent


class HostReference:
    """The compiled decoder built as a host shared library, called through ctypes.

    The entry point takes one window of interleaved int16 samples, shape (n_samples, n_channels),
    and writes n_classes float32 scores; it returns 0 on success.
    """

    def __init__(self, library: Path, n_classes: int, entry: str):
        self._lib = ctypes.CDLL(str(library))
        self._fn = getattr(self._lib, entry)
        self._fn.restype = ctypes.c_int
        self.n_classes = n_classes

    def scores(self, window_interleaved: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(window_interleaved, dtype=np.int16)
        out = np.zeros(self.n_classes, np.float32)
        rc = self._fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
        if rc != 0:
            reason = {-8: "the model returned an error", -9: "the kernels' workspace overflowed"}.get(rc, "unknown")
            raise ConfigError(f"host reference failed with status {rc} ({reason}); the compiled folder may be "
                              f"stale or damaged: run `edgebci compile` again")
        return out


@dataclass
class WindowOutcome:
    index: int
    source: str
    label: int
    status: str                          # "decoded" | "retried" | "failed"
    device_class: int | None = None
    device_scores: list[float] | None = None
    host_class: int = -1
    host_scores: list[float] = field(default_factory=list)
    ticks: int | None = None
    stack_used: int | None = None
    attempts: int = 0
    error: str = ""


@dataclass
class HilRun:
    """Raw outcome of one HIL session; `edgebci.report` turns it into the report."""
    device_info: dict
    windows: list[WindowOutcome]
    link_stats: dict
    classes: tuple[str, ...]

    @property
    def counts(self) -> dict:
        c = {"sent": len(self.windows), "decoded": 0, "retried": 0, "failed": 0}
        for w in self.windows:
            c[w.status] += 1
        return c

    def agreement(self) -> dict:
        done = [w for w in self.windows if w.status != "failed"]
        same = sum(w.device_class == w.host_class for w in done)
        diffs = [float(np.max(np.abs(np.subtract(w.device_scores, w.host_scores)) /
                              np.maximum(1.0, np.abs(w.host_scores)))) for w in done]
        return {"windows_compared": len(done), "same_class": same,
                "rate": same / len(done) if done else float("nan"),
                "max_rel_score_diff": max(diffs) if diffs else float("nan"),
                "scores_within_tolerance": bool(diffs) and max(diffs) <= SCORE_RTOL, "tolerance": SCORE_RTOL}

    def accuracy(self) -> dict:
        n = len(self.classes)
        y = np.array([w.label for w in self.windows], np.int64)
        host = np.array([w.host_class for w in self.windows], np.int64)
        done = [w for w in self.windows if w.status != "failed"]
        yd = np.array([w.label for w in done], np.int64)
        pd = np.array([w.device_class for w in done], np.int64)
        return {"device_balanced_accuracy": balanced_accuracy(yd, pd, n) if done else float("nan"),
                "device_confusion_matrix": confusion_matrix(yd, pd, n).tolist(),
                "host_balanced_accuracy": balanced_accuracy(y, host, n), "chance": 1.0 / n,
                "classes": list(self.classes)}


def stream_windows(link, windows: Windows, reference: HostReference, progress: bool = True) -> list[WindowOutcome]:
    """Send every window; a window the link gives up on is recorded as failed and the run goes on.

    After MAX_CONSECUTIVE_FAILURES failures in a row the device is taken to be down (halted, unplugged):
    the windows left are recorded as failed without being sent, instead of timing out one by one.
    """
    from tqdm import tqdm
    outcomes = []
    failures_in_row = 0
    for i in tqdm(range(len(windows)), desc="hil", unit="window", disable=not progress):
        inter = np.ascontiguousarray(windows.x[i].T)          # (n_samples, n_channels), as the amplifier sends
        host = reference.scores(inter)
        out = WindowOutcome(i, windows.source[i], int(windows.y[i]), "failed", host_class=int(np.argmax(host)),
                            host_scores=host.tolist())
        outcomes.append(out)
        if failures_in_row >= MAX_CONSECUTIVE_FAILURES:
            out.error = f"not sent: the device failed {failures_in_row} windows in a row"
            continue
        try:
            result, attempts = link.decode_window(inter)
        except LinkError as e:
            out.error = str(e)
            failures_in_row += 1
        else:
            failures_in_row = 0
            out.status = "decoded" if attempts == 1 else "retried"
            out.attempts = attempts
            out.device_class = int(result.cls)
            out.device_scores = [float(s) for s in result.scores]
            out.ticks = int(result.ticks)
            out.stack_used = int(result.stack_used)
    return outcomes


def save_run(run: HilRun, path: Path) -> None:
    path.write_text(json.dumps({"device_info": run.device_info, "link_stats": run.link_stats,
                                "classes": list(run.classes), "windows": [asdict(w) for w in run.windows]},
                               indent=1, default=float))
