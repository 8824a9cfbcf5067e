"""The command line: help, targets, and clear errors on bad input."""
import json
import subprocess
import sys

import pytest

from edgebci.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edgebci", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["", "train", "compile", "hil", "targets", "demo"])
def test_help_is_useful_on_its_own(command):
    r = _run(*([command] if command else []), "--help")
    assert r.returncode == 0 and "usage: edgebci" in r.stdout
    wanted = {"compile": ("--out", "--target", ".onnx"), "hil": ("--out", "--port", "--data"),
              "train": ("--arch", "--protocol", "leave"), "demo": ("--out",)}.get(command, ())
    for flag in wanted:
        assert flag in r.stdout, f"{flag} missing from `edgebci {command} --help`"


def test_targets_lists_budgets(capsys):
    assert main(["targets", "--json"]) == 0
    rows = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert rows["mps2-an386"]["ram_kib"] == 4096 and rows["mps2-an386"]["reached_by"] == "qemu mps2-an386"
    assert rows["mps2-an386"]["cpu"] == "cortex-m4"


def test_unknown_target_is_a_clear_error(tmp_path, capsys):
    from edgebci.defaults import BUNDLED_CHECKPOINT
    assert main(["compile", str(BUNDLED_CHECKPOINT), "--target", "mps9-an999", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'mps9-an999'" in err and "mps2-an386" in err and "Traceback" not in err


def test_hil_on_a_folder_that_is_not_compiled(tmp_path, capsys):
    assert main(["hil", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err


def test_evaluate_prints_and_writes_json(tmp_path, capsys):
    from edgebci.data import SAMPLE_DIR
    from edgebci.defaults import BUNDLED_CHECKPOINT
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(BUNDLED_CHECKPOINT), "--data", str(SAMPLE_DIR / "S015R04.edf"),
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_windows"] == 15 and sum(map(sum, report["confusion_matrix"])) == 15
    printed = capsys.readouterr().out
    assert f"balanced accuracy {report['balanced_accuracy']:.3f}" in printed and "confusion matrix" in printed


def test_arch_names_match_the_registry():
    from edgebci.defaults import ARCH_NAMES
    from edgebci.zoo.registry import ARCHITECTURES
    assert set(ARCH_NAMES) == set(ARCHITECTURES)
