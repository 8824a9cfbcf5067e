"""The training loop runs end to end on real EEG and evaluates on a held-out subject."""
import json
import shutil

from edgebci.data import SAMPLE_DIR, Split
from edgebci.train import TrainConfig, evaluate_held_out, train_decoder


def test_train_smoke_leave_subject_out(tmp_path):
    # Two real recordings, filed as two different "subjects": one trains, one validates; the test subject
    # is a third file. Real data, tiny scale: this checks the loop, not the accuracy.
    shutil.copy(SAMPLE_DIR / "S015R04.edf", tmp_path / "S001R04.edf")
    shutil.copy(SAMPLE_DIR / "S015R08.edf", tmp_path / "S002R04.edf")
    shutil.copy(SAMPLE_DIR / "S015R08.edf", tmp_path / "S003R04.edf")
    cfg = TrainConfig(epochs=2, crop_s=(0.0,), alignment="none", split=Split(train=(1,), validation=(2,), test=(3,)))
    ck = train_decoder(cfg, tmp_path, progress=False)
    assert ck.summary["train_subjects"] == [1] and len(ck.summary["history"]) == 2
    assert ck.window_samples == 480 and ck.state_dict
    report = evaluate_held_out(ck, tmp_path)
    assert report["n_windows"] == 15 and 0.0 <= report["balanced_accuracy"] <= 1.0
    assert sum(map(sum, report["confusion_matrix"])) == 15


def test_within_subject_protocol_keeps_runs_apart(tmp_path):
    from edgebci.train import train_within_subject
    for run, src in ((4, "S015R04.edf"), (8, "S015R08.edf"), (12, "S015R04.edf")):
        shutil.copy(SAMPLE_DIR / src, tmp_path / f"S015R{run:02d}.edf")
    ck, report = train_within_subject(TrainConfig(epochs=2, crop_s=(0.0,)), tmp_path, 15, progress=False)
    assert ck.summary["protocol"] == "within-subject" and ck.summary["train_runs"] == [4]
    assert ck.summary["test_runs"] == [12] and report["n_windows"] == 15


def test_cross_validation_tests_every_subject_once(tmp_path):
    from edgebci.train import cross_validate
    for s in range(1, 7):
        shutil.copy(SAMPLE_DIR / ("S015R04.edf" if s % 2 else "S015R08.edf"), tmp_path / f"S{s:03d}R04.edf")
    result = cross_validate(TrainConfig(epochs=1, crop_s=(0.0,), alignment="none"), tmp_path, tuple(range(1, 7)), folds=2,
                            progress=False)
    assert sorted(result["per_subject"]) == [f"S{s:03d}" for s in range(1, 7)]
    assert [f["test"] for f in result["folds"]] == [[1, 2, 3], [4, 5, 6]]
    assert [f["validation"] for f in result["folds"]] == [[5, 6], [2, 3]]
    assert json.loads(json.dumps(result)) == result      # the CLI writes it as JSON
