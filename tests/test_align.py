"""Euclidean alignment: the matrix whitens, bad calibration data is refused, checkpoints carry the user's
matrix, an aligned decoder trains, is scored on runs it was not calibrated on, and compiles after calibration."""
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgebci.data import SAMPLE_DIR, Split
from edgebci.errors import ConfigError, DataError
from edgebci.zoo import load_checkpoint, save_checkpoint
from edgebci.zoo.align import ALIGN_RMS_UV, align_windows, alignment_matrix

CHANNELS = tuple(f"C{i}" for i in range(6))


def _correlated(n=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(6, 6)) + 3 * np.eye(6)
    return np.einsum("cd,ndt->nct", mix, rng.normal(0, 10, (n, 6, 200))).astype(np.float32)


def test_aligned_windows_have_the_same_mean_covariance_for_everyone():
    for seed in (0, 1):          # two "people" with different mixing
        x = _correlated(seed=seed)
        a = align_windows(x, alignment_matrix(x, CHANNELS)).astype(np.float64)
        r = np.einsum("nct,ndt->cd", a, a) / (a.shape[0] * a.shape[2])
        np.testing.assert_allclose(r, ALIGN_RMS_UV ** 2 * np.eye(6), atol=1e-2 * ALIGN_RMS_UV ** 2)


def test_a_duplicated_channel_is_refused_naming_it():
    x = _correlated()
    x[:, 4] = x[:, 3]            # bridged electrodes: identical signals
    with pytest.raises(DataError, match=r"ill-conditioned.*check for flat, bridged or duplicated"):
        alignment_matrix(x, CHANNELS)


def test_too_few_calibration_windows_are_refused():
    with pytest.raises(DataError, match="at least 10 windows"):
        alignment_matrix(_correlated(n=3), CHANNELS)


def _aligned_checkpoint():
    ck = load_checkpoint(SAMPLE_DIR.parent / "checkpoints" / "eegnet.pt")
    return replace(ck, alignment="euclidean", align_matrix=None)


def test_an_uncalibrated_aligned_decoder_cannot_deploy_and_says_how_to_fix_it():
    with pytest.raises(ConfigError, match=r"edgebci calibrate CHECKPOINT --data"):
        _aligned_checkpoint().deploy_model()


def test_calibration_puts_the_users_matrix_first_in_the_deployed_model(tmp_path):
    from edgebci.train import calibrate_checkpoint
    ck = calibrate_checkpoint(_aligned_checkpoint(), [SAMPLE_DIR / "S015R04.edf"])
    m = np.asarray(ck.align_matrix)
    assert m.shape == (21, 21) and ck.summary["calibration"]["n_windows"] == 15 and ck.alignment_source == "user"
    x = torch.randn(2, 21, 480) * 20
    with torch.no_grad():
        torch.testing.assert_close(ck.deploy_model()(x), ck.build_model()(torch.from_numpy(m) @ x))
    path = save_checkpoint(ck, tmp_path / "user.pt")
    back = load_checkpoint(path)
    assert back.alignment == "euclidean" and np.array_equal(back.align_matrix, m)
    assert back.content_hash() == ck.content_hash() != replace(ck, align_matrix=m * 2).content_hash()


def test_calibrating_an_unaligned_decoder_is_refused():
    from edgebci.train import calibrate_checkpoint
    ck = load_checkpoint(SAMPLE_DIR.parent / "checkpoints" / "eegnet.pt")
    with pytest.raises(ConfigError, match="needs no calibration"):
        calibrate_checkpoint(replace(ck, alignment="none", align_matrix=None), [SAMPLE_DIR / "S015R04.edf"])


def test_aligned_training_scores_unseen_subjects_on_runs_they_were_not_calibrated_on(tmp_path):
    from edgebci.train import TrainConfig, evaluate_held_out, train_decoder
    for s in (1, 2, 3):
        for run in (4, 8):
            shutil.copy(SAMPLE_DIR / f"S015R{run:02d}.edf", tmp_path / f"S{s:03d}R{run:02d}.edf")
    cfg = TrainConfig(epochs=2, crop_s=(0.0,), split=Split(train=(1,), validation=(2,), test=(3,)))
    ck = train_decoder(cfg, tmp_path, progress=False)
    assert ck.alignment == "euclidean" and ck.alignment_source == "population"   # pooled over the training subjects
    assert np.asarray(ck.align_matrix).shape == (21, 21)
    assert ck.summary["calibration_run"] == 4 and ck.summary["scored_runs"] == [8, 12]
    report = evaluate_held_out(ck, tmp_path)
    assert report["n_windows"] == 15 and report["scored_runs"] == [8, 12]     # run 8 only: run 4 calibrates


@pytest.mark.parametrize("arch", ["conformer", "eegnet", "mamba", "s4d", "spiking"])
def test_every_family_folds_the_alignment_into_its_first_weights(arch):
    """The device form computes model(matrix @ x) with no matrix product of its own: same outputs."""
    from edgebci.zoo.stepped import run_stepped
    ck = load_checkpoint(SAMPLE_DIR.parent / "checkpoints" / f"{arch}.pt")
    deployed = ck.deploy_model()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 20, (3, 21, 480)).astype(np.float32))
    with torch.no_grad():
        want = deployed(x)
        export = deployed.for_export()
        torch.testing.assert_close(export(x), want, rtol=1e-4, atol=1e-4)
        if hasattr(ck.build_model(), "for_device"):
            torch.testing.assert_close(run_stepped(deployed.for_device(), x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["eegnet", "spiking"])
def test_a_calibrated_decoder_compiles_with_the_alignment_folded_in(arch):
    from edgebci.compile.cdriver import plan_driver
    from edgebci.compile.lower import lower_to_c
    from edgebci.compile.sources import import_checkpoint
    from edgebci.train import calibrate_checkpoint
    ck = load_checkpoint(SAMPLE_DIR.parent / "checkpoints" / f"{arch}.pt")
    ck = calibrate_checkpoint(ck, [SAMPLE_DIR / "S015R04.edf"])
    mod, spec = import_checkpoint(ck)
    plan = plan_driver(lower_to_c(mod).relax_mod)
    weights = [a for _, a in plan.consts]
    assert not any(a.size == 21 * 21 for a in weights)                       # no separate 21 x 21 product
    assert spec.model_id == ck.content_hash()
    if arch == "spiking":                                                    # W_spatial @ M, computed once
        w = ck.build_model().spatial.weight.detach()[:, :, 0].numpy() @ np.asarray(ck.align_matrix)
        assert any(a.size == w.size and np.allclose(a.reshape(w.shape), w, rtol=1e-5, atol=1e-6) for a in weights)
        assert plan.loop is not None


def test_calibrate_command_writes_a_user_checkpoint(tmp_path, capsys):
    from edgebci.cli import main
    src = tmp_path / "aligned.pt"
    save_checkpoint(_aligned_checkpoint(), src)
    assert main(["calibrate", str(src), "--data", str(SAMPLE_DIR / "S015R04.edf"), "--out", str(tmp_path / "u.pt")]) == 0
    assert load_checkpoint(tmp_path / "u.pt").alignment_source == "user" and "edgebci compile" in capsys.readouterr().out
    assert main(["calibrate", str(src), "--data", str(tmp_path / "missing.edf"), "--out", str(tmp_path / "v.pt")]) == 2
