"""The whole pipeline on real programs: compile, build, boot (QEMU or a Linux process), stream, report."""
import json

import pytest

from edgebci.cli import main
from edgebci.data import SAMPLE_DIR
from edgebci.defaults import BUNDLED_CHECKPOINT
from edgebci.pipeline import compile_for_target, hil_and_report

from .conftest import needs_arm

pytestmark = pytest.mark.device


def _assert_clean_run(r: dict, sent: int):
    w = r["windows"]
    assert w["sent"] == sent and w["failed"] == 0 and w["decoded"] + w["retried"] == sent
    assert r["agreement"]["rate"] == 1.0 and r["agreement"]["scores_within_tolerance"]
    assert r["ok"]
    mem = r["memory"]
    assert mem["flash"]["within_budget"] and mem["static_ram"]["within_budget"]
    assert 0 < mem["stack_peak"]["bytes"] <= mem["stack_peak"]["budget_bytes"]


@needs_arm
def test_demo_command_writes_the_report(tmp_path, capsys):
    """`edgebci demo`: the main job on the default emulated board, every sample window."""
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    assert "PASS mps2-an386" in capsys.readouterr().out
    r = json.loads((tmp_path / "report.json").read_text())
    _assert_clean_run(r, 30)
    assert r["latency"]["metric"] == "qemu_insn_count" and r["latency"]["median"] > 10_000
    assert r["device"]["board"] == "mps2-an386" and r["device"]["cpu"] == "cortex-m4"
    assert 0.0 <= r["accuracy"]["device_balanced_accuracy"] <= 1.0
    assert r["accuracy"]["device_balanced_accuracy"] == r["accuracy"]["host_balanced_accuracy"]
    assert "qemu_insn_count" in (tmp_path / "report.html").read_text()


@needs_arm
def test_instruction_counts_are_repeatable(tmp_path):
    compile_for_target(BUNDLED_CHECKPOINT, "mps2-an386", tmp_path / "m4", progress=False)
    runs = [hil_and_report(tmp_path / "m4", [SAMPLE_DIR / "S015R08.edf"], tmp_path / f"r{i}", max_windows=2,
                           progress=False).report for i in range(2)]
    for r in runs:
        _assert_clean_run(r, 2)
    assert runs[0]["latency"]["per_window"] == runs[1]["latency"]["per_window"]


def test_host_process_target(tmp_path):
    compile_for_target(BUNDLED_CHECKPOINT, "host", tmp_path / "host", progress=False)
    r = hil_and_report(tmp_path / "host", [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", progress=False).report
    _assert_clean_run(r, 15)
    assert r["latency"]["metric"] == "process_latency_us"
