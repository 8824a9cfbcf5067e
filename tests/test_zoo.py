"""Checkpoints are self-describing and load with torch.load(weights_only=True)."""
import pytest
import torch

from edgebci.defaults import BUNDLED_CHECKPOINT
from edgebci.errors import ConfigError
from edgebci.zoo import build_model, load_checkpoint, save_checkpoint


def test_bundled_checkpoint_is_self_describing(bundled_checkpoint):
    raw = torch.load(BUNDLED_CHECKPOINT, weights_only=True)
    for key in ("arch", "config", "channels", "fs_hz", "window_samples", "offset_samples", "hop_samples",
                "classes", "frontend", "state_dict", "summary"):
        assert key in raw, key
    ck = bundled_checkpoint
    assert ck.arch == "eegnet" and ck.fs_hz == 160.0 and ck.classes == ("left", "right")
    assert ck.config["n_samples"] == ck.window_samples and len(ck.channels) == ck.config["n_channels"]
    assert ck.summary["protocol"] == "leave-subjects-out"
    assert not set(ck.summary["test_subjects"]) & set(ck.summary["train_subjects"] + ck.summary["validation_subjects"])
    assert ck.frontend.btype == "bandpass" and ck.frontend.fs_hz == ck.fs_hz


def test_save_load_round_trip(tmp_path, bundled_checkpoint):
    path = save_checkpoint(bundled_checkpoint, tmp_path / "c.pt")
    again = load_checkpoint(path)
    assert again.content_hash() == bundled_checkpoint.content_hash()
    x = torch.randn(2, len(bundled_checkpoint.channels), bundled_checkpoint.window_samples) * 20
    with torch.no_grad():
        torch.testing.assert_close(again.build_model()(x), bundled_checkpoint.build_model()(x))


def test_bad_checkpoints_and_configs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"schema": 99}, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="unsupported checkpoint schema 99"):
        load_checkpoint(tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="unknown architecture 'lstm'"):
        build_model("lstm", {})
    with pytest.raises(ConfigError, match=r"unknown keys \['n_layers'\]"):
        build_model("eegnet", {"n_layers": 3})
    with pytest.raises(ConfigError, match="divisible by heads"):
        build_model("conformer", {"f1": 5, "depth": 3, "heads": 2})
