"""Data stage: EEGMMIDB EDF recordings -> int16 microvolt windows with left/right imagery labels."""
from edgebci.data.edf import (CLASSES, MOTOR_MONTAGE, Recording, Windows, extract_cue_windows,
                              read_recording)
from edgebci.data.splits import SAMPLE_DIR, Split, default_data_dir, find_recordings, subject_of

__all__ = ["CLASSES", "MOTOR_MONTAGE", "Recording", "Windows", "extract_cue_windows", "read_recording",
           "SAMPLE_DIR", "Split", "default_data_dir", "find_recordings", "subject_of"]
