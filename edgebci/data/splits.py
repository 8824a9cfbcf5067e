"""Where recordings live and how subjects are split, so no test subject ever reaches training.

The bundled checkpoints train on subjects S001-S010, select epochs on S011-S012 and are judged on
S013-S015, which they never saw (leave-subjects-out). S015's runs 4 and 8 ship with the package as
the sample for the demo and the tests.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgebci.errors import DataError

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
IMAGERY_RUNS = (4, 8, 12)   # left/right fist imagery


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...] = tuple(range(1, 11))
    validation: tuple[int, ...] = (11, 12)
    test: tuple[int, ...] = (13, 14, 15)

    def __post_init__(self):
        sets = [set(self.train), set(self.validation), set(self.test)]
        if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
            raise DataError(f"subject split overlaps: train {self.train}, validation {self.validation}, "
                            f"test {self.test}")


def default_data_dir() -> Path:
    """$EDGEBCI_DATA, else the shared EEGMMIDB folder beside the repository, else the bundled sample."""
    env = os.environ.get("EDGEBCI_DATA")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[3] / "shared" / "eeg" / "eegmmidb"
    return shared if shared.is_dir() else SAMPLE_DIR


def subject_of(path: Path) -> int:
    m = re.match(r"S(\d{3})R(\d{2})\.edf$", Path(path).name, re.IGNORECASE)
    if not m:
        raise DataError(f"{Path(path).name} is not an EEGMMIDB file name (SxxxRyy.edf)")
    return int(m.group(1))


def find_recordings(data_dir: Path, subjects: tuple[int, ...], runs: tuple[int, ...] = IMAGERY_RUNS) -> list[Path]:
    files = [Path(data_dir) / f"S{s:03d}R{r:02d}.edf" for s in subjects for r in runs]
    found = [f for f in files if f.exists()]
    if not found:
        raise DataError(f"no recordings of subjects {subjects} (runs {runs}) in {data_dir}; "
                        f"set EDGEBCI_DATA to a folder of EEGMMIDB .edf files")
    return found
