"""Every bundled decoder family: self-describing, compiled for the Cortex-M4, and the emulated board agrees
with the host reference window for window."""
import json

import pytest
import torch

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import CHECKPOINTS_DIR
from edgebci.pipeline import compile_for_target, hil_and_report
from edgebci.zoo import load_checkpoint

from .conftest import needs_arm

BUNDLED = sorted(CHECKPOINTS_DIR.glob("*.pt"))


def test_every_family_has_a_bundled_checkpoint():
    from edgebci.defaults import ARCH_NAMES
    assert sorted(p.stem for p in BUNDLED) == sorted(ARCH_NAMES)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_checkpoint_describes_its_training(path):
    ck = load_checkpoint(path)
    assert ck.arch == path.stem and ck.summary["protocol"] == "leave-subjects-out"
    assert 15 in ck.summary["test_subjects"]          # the shipped sample subject was never trained on
    test = ck.summary["test"]
    # aligned: each held-out subject calibrated on run 4 (labels unused), scored on runs 8 and 12
    assert ck.alignment == "euclidean" and ck.alignment_source == "population" and test["scored_runs"] == [8, 12]
    assert test["n_windows"] == 90 and 0.0 <= test["balanced_accuracy"] <= 1.0
    n_params = sum(v.numel() for k, v in ck.state_dict.items() if "running" not in k and "num_batches" not in k)
    assert n_params < 50_000
    x = torch.zeros(2, len(ck.channels), ck.window_samples)
    assert ck.build_model()(x).shape == (2, len(ck.classes))


@needs_arm
@pytest.mark.device
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_family_runs_on_the_m4_and_agrees_with_host(tmp_path, path):
    compiled, image = compile_for_target(path, "mps2-an386", tmp_path / "m4", progress=False)
    r = hil_and_report(tmp_path / "m4", [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", max_windows=3,
                       progress=False).report
    assert r["windows"]["failed"] == 0 and r["agreement"]["rate"] == 1.0, json.dumps(r["failures"])
    assert r["agreement"]["scores_within_tolerance"]
    assert r["memory"]["static_ram"]["within_budget"] and r["memory"]["stack_peak"]["within_budget"]
    assert r["latency"]["metric"] == "qemu_insn_count" and r["latency"]["median"] > 0
