"""EDF reading and windowing on the bundled EEGMMIDB sample."""
import numpy as np
import pytest

from edgebci.data import MOTOR_MONTAGE, extract_cue_windows, read_recording
from edgebci.data.splits import Split, find_recordings, subject_of
from edgebci.errors import DataError


def _edf_digital(path, label: str) -> np.ndarray:
    """One signal's raw int16 samples, read straight from the EDF data records (not through MNE)."""
    data = path.read_bytes()
    n_header, n_records, n_signals = int(data[184:192]), int(data[236:244]), int(data[252:256])
    field = lambda offset, width: [data[256 + offset * n_signals + i * width:256 + offset * n_signals + (i + 1) * width]
                                   for i in range(n_signals)]
    labels = [f.decode().strip() for f in field(0, 16)]
    per_record = [int(f) for f in field(216, 8)]          # offset of "samples per record" in 16+80+8*8 chars
    assert n_header == 256 * (n_signals + 1)
    records = np.frombuffer(data[n_header:], "<i2").reshape(n_records, sum(per_record))
    start = sum(per_record[:labels.index(label)])
    return records[:, start:start + per_record[labels.index(label)]].reshape(-1)


def test_read_recording_keeps_exact_microvolts(sample_edf):
    rec = read_recording(sample_edf)
    assert rec.channels == MOTOR_MONTAGE and rec.fs_hz == 160.0
    assert rec.samples.dtype == np.int16 and rec.samples.shape == (21, 19680)
    # EEGMMIDB maps digital +/-8092 to +/-8092 uV: the int16 we stream must be the recorded digital value
    np.testing.assert_array_equal(rec.samples[MOTOR_MONTAGE.index("C3")], _edf_digital(sample_edf, "C3.."))


def test_events_are_imagery_cues_only(sample_edf):
    rec = read_recording(sample_edf)
    labels = [c for _, c in rec.events]
    assert len(labels) == 15 and set(labels) == {0, 1}   # T1/T2 only, T0 rest dropped
    onsets = [o for o, _ in rec.events]
    assert onsets == sorted(onsets) and np.min(np.diff(onsets)) > 160 * 4


def test_cue_windows_cut_at_offset(sample_edf):
    rec = read_recording(sample_edf)
    w = extract_cue_windows(rec, 480, 80)
    assert w.x.shape == (15, 21, 480) and w.x.dtype == np.int16
    onset, cls = rec.events[3]
    np.testing.assert_array_equal(w.x[3], rec.samples[:, onset + 80:onset + 560])
    assert w.y[3] == cls and w.source[3] == f"{sample_edf.name}@{onset + 80}"


def test_crops_skip_windows_past_the_end(sample_edf):
    rec = read_recording(sample_edf)
    last_onset = rec.events[-1][0]
    beyond = rec.samples.shape[1] - last_onset - 480 + 1     # pushes only the last cue's window past the end
    w = extract_cue_windows(rec, 480, 0, crop_offsets=(0, beyond))
    assert len(w) == 15 + 14


def test_missing_channel_names_what_the_file_has(sample_edf):
    with pytest.raises(DataError, match=r"lacks channels \['XX9'\].*'C3'"):
        read_recording(sample_edf, ("C3", "XX9"))


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_recording(tmp_path / "S001R04.edf")
    bad = tmp_path / "S001R04.edf"
    bad.write_bytes(b"not an edf at all" * 10)
    with pytest.raises(DataError, match="not a readable EDF"):
        read_recording(bad)


def test_split_refuses_overlap_and_finds_files(sample_edf):
    with pytest.raises(DataError, match="overlaps"):
        Split(train=(1, 2), validation=(2,), test=(3,))
    assert subject_of(sample_edf) == 15
    assert find_recordings(sample_edf.parent, (15,), (4, 8)) == [sample_edf.parent / "S015R04.edf",
                                                                 sample_edf.parent / "S015R08.edf"]
    with pytest.raises(DataError, match="no recordings of subjects"):
        find_recordings(sample_edf.parent, (99,))
