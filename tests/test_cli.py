"""The command line: help, targets, and clear errors on bad input."""
import json
import subprocess
import sys

import pytest

from edgebci.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edgebci", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["", "train", "compile", "hil", "targets", "demo", "frontend design"])
def test_help_is_useful_on_its_own(command):
    r = _run(*command.split(), "--help")
    assert r.returncode == 0 and "usage: edgebci" in r.stdout
    wanted = {"compile": ("--out", "--target", ".onnx"), "hil": ("--out", "--port", "--data", "--stream", "--pace"),
              "frontend design": ("--btype", "--norm", "--notch", "--cutoffs", "--fs-hz"),
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


def test_frontend_design_writes_numbers_and_plots(tmp_path, capsys):
    assert main(["frontend", "design", "--btype", "bandpass", "--order", "4", "--cutoffs", "7", "30", "--fs-hz", "160",
                 "--norm", "mag", "--notch", "60", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "frontend.json").read_text())
    a = report["analysis"]
    assert a["gain_error_db"] < 0.1 and len(report["fixed_point"]["coeffs_b0_b1_b2_a1_a2"]) == 5   # 4 + notch
    assert f"group delay across the passband {a['group_delay_ms']['min']:.1f}" in printed
    html = (tmp_path / "frontend.html").read_text()
    assert html.count("<svg") == 4 and "Group delay" in html and "Phase" in html and "Magnitude" in html


@pytest.mark.parametrize("args, message", [
    (["--btype", "highpass", "--order", "2", "--cutoffs", "0.05"], "badly conditioned in fixed point"),
    (["--cutoffs", "7", "90"], "must lie between 0 and fs_hz/2 = 80.0"),
    (["--btype", "lowpass", "--cutoffs", "7", "30"], "a lowpass needs 1 cutoff"),
])
def test_frontend_design_refuses_with_a_reason(tmp_path, capsys, args, message):
    assert main(["frontend", "design", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "frontend.json").exists()


def test_stream_options_need_stream(tmp_path, capsys):
    assert main(["hil", str(tmp_path), "--out", str(tmp_path / "r"), "--pace", "realtime"]) == 2
    assert "apply to --stream only" in capsys.readouterr().err
    assert main(["hil", str(tmp_path), "--out", str(tmp_path / "r"), "--max-windows", "2", "--filter-state",
                 "continuous"]) == 2
    assert "apply to --stream only" in capsys.readouterr().err
    assert main(["hil", str(tmp_path), "--out", str(tmp_path / "r"), "--stream"]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err
    assert main(["hil", str(tmp_path), "--out", str(tmp_path / "r"), "--stream", "--max-windows", "3"]) == 2
    assert "--max-windows applies to window mode" in capsys.readouterr().err


def test_evaluate_compares_float_and_fixed_front_ends(tmp_path, capsys):
    from edgebci.data import SAMPLE_DIR
    from edgebci.defaults import BUNDLED_CHECKPOINT
    out = tmp_path / "twin.json"
    assert main(["evaluate", str(BUNDLED_CHECKPOINT), "--data", str(SAMPLE_DIR / "S015R04.edf"), "--frontend",
                 "compare", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n_windows"] == 15
    assert r["fixed"]["max_abs_input_diff_uv"] < 0.01 and r["fixed"]["predictions_equal_to_float"] == 15
    assert r["continuous"]["max_abs_input_diff_uv"] > 1.0      # no start-up transient: a different input
    assert "device Q31 from rest" in capsys.readouterr().out
