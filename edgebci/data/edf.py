"""Read EEGMMIDB EDF+ files with MNE and cut labelled windows, as raw int16 microvolts.

EEGMMIDB stores each channel with a digital range of +/-8092 mapped to +/-8092 uV, so one int16
step is exactly 1 uV: the windows below are the very samples a device on the amplifier would see.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebci.errors import DataError, missing_extra

# Left vs right fist imagery (runs 4, 8, 12): annotation T1 = left, T2 = right, T0 = rest.
CLASSES = ("left", "right")
ANNOTATION_CLASS = {"T1": 0, "T2": 1}
# The 21 electrodes of the 10-10 system over the sensorimotor cortex (rows FC, C, CP); C3/C4 carry the
# lateralised mu/beta rhythms of hand imagery. On the validation subjects 21 channels beat 12 and 8.
MOTOR_MONTAGE = ("FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6",
                 "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
                 "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6")


def _canonical(name: str) -> str:
    """EDF labels are padded with dots ('Fc3.', 'C3..'); compare them case-insensitively."""
    return re.sub(r"\.+$", "", name.strip()).upper()


@dataclass(frozen=True)
class Recording:
    """One EDF file: samples as int16 uV, shape (n_channels, n_samples), and its cues."""
    path: Path
    channels: tuple[str, ...]
    fs_hz: float
    samples: np.ndarray                               # int16 uV, (n_channels, n_samples)
    events: tuple[tuple[int, int], ...]               # (onset sample, class index), imagery cues only

    def __post_init__(self):
        if self.fs_hz <= 0:
            raise DataError(f"{self.path}: fs_hz must be > 0, got {self.fs_hz}")
        if self.samples.dtype != np.int16 or self.samples.ndim != 2:
            raise DataError(f"{self.path}: samples must be int16 (n_channels, n_samples), "
                            f"got {self.samples.dtype} {self.samples.shape}")
        if self.samples.shape[0] != len(self.channels):
            raise DataError(f"{self.path}: {self.samples.shape[0]} rows for {len(self.channels)} channels")


@dataclass(frozen=True)
class Windows:
    """Labelled windows cut from recordings.

    x : ndarray, shape (n_windows, n_channels, n_samples), int16 uV
    y : ndarray, shape (n_windows,), int64 class index into CLASSES
    source : per window, "<file name>@<onset sample>"
    """
    x: np.ndarray
    y: np.ndarray
    source: tuple[str, ...]
    fs_hz: float
    channels: tuple[str, ...]

    def __post_init__(self):
        if self.x.ndim != 3 or self.x.dtype != np.int16:
            raise DataError(f"windows must be int16 (n, channels, samples), got {self.x.dtype} {self.x.shape}")
        if not (len(self.x) == len(self.y) == len(self.source)):
            raise DataError(f"{len(self.x)} windows but {len(self.y)} labels and {len(self.source)} sources")

    def __len__(self) -> int:
        return len(self.x)

    @staticmethod
    def concat(parts: list["Windows"]) -> "Windows":
        if not parts:
            raise DataError("no windows to concatenate: every recording was empty")
        first = parts[0]
        return Windows(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                       tuple(s for p in parts for s in p.source), first.fs_hz, first.channels)


def read_recording(path: str | Path, channels: tuple[str, ...] = MOTOR_MONTAGE) -> Recording:
    """Read one EDF file, keeping `channels` in the given order.

    Raises DataError naming the file and, for a missing channel, the channels the file has.
    """
    try:
        import mne
    except ImportError:
        raise missing_extra("mne", "hil") from None
    path = Path(path)
    if not path.exists():
        raise DataError(f"recording {path} does not exist; pass an EEGMMIDB .edf file "
                        f"(e.g. S001R04.edf from PhysioNet's eegmmidb)")
    try:
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    except Exception as e:  # MNE raises several types for malformed files
        raise DataError(f"{path} is not a readable EDF file: {e}") from None
    index = {_canonical(n): i for i, n in enumerate(raw.ch_names)}
    missing = [c for c in channels if _canonical(c) not in index]
    if missing:
        raise DataError(f"{path.name} lacks channels {missing}; it has {sorted(index)}")
    picks = [index[_canonical(c)] for c in channels]
    uv = raw.get_data(picks=picks, units="uV")
    off_grid, peak = float(np.abs(uv - np.round(uv)).max()), float(np.abs(uv).max())
    if off_grid > 1e-3 or peak > 32767:
        raise DataError(f"{path.name}: samples must be whole microvolts within int16 (|x| <= 32767 uV), got a "
                        f"largest deviation of {off_grid:.3g} uV from whole microvolts and a peak of {peak:.0f} uV; "
                        f"edgebci streams EEGMMIDB-style recordings (1 digital step = 1 uV)")
    fs_hz = float(raw.info["sfreq"])
    events = tuple((int(round(onset * fs_hz)), ANNOTATION_CLASS[desc])
                   for onset, desc in zip(raw.annotations.onset, raw.annotations.description)
                   if desc in ANNOTATION_CLASS)
    return Recording(path, tuple(channels), fs_hz, np.round(uv).astype(np.int16), events)


def extract_cue_windows(rec: Recording, window_samples: int, offset_samples: int = 0,
                        crop_offsets: tuple[int, ...] = (0,)) -> Windows:
    """One window per imagery cue (per crop offset), starting `offset_samples` after the cue.

    crop_offsets shifts each window further by the given sample counts (training augmentation);
    a window running past the end of the recording is skipped.
    """
    if window_samples <= 0:
        raise DataError(f"window_samples must be > 0, got {window_samples}")
    xs, ys, src = [], [], []
    n = rec.samples.shape[1]
    for onset, cls in rec.events:
        for c in crop_offsets:
            start = onset + offset_samples + c
            if start < 0 or start + window_samples > n:
                continue
            xs.append(rec.samples[:, start:start + window_samples])
            ys.append(cls)
            src.append(f"{rec.path.name}@{start}")
    if not xs:
        return Windows(np.zeros((0, len(rec.channels), window_samples), np.int16), np.zeros(0, np.int64),
                       (), rec.fs_hz, rec.channels)
    return Windows(np.stack(xs), np.asarray(ys, np.int64), tuple(src), rec.fs_hz, rec.channels)
