"""The whole pipeline on real programs: compile, build, boot (QEMU or a Linux process), stream, report."""
import json
import subprocess

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
    """`edgebci demo`: the main job on the default emulated board: calibrated on S015R04 (labels unused),
    every window of S015R08 decoded."""
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    assert "PASS mps2-an386" in capsys.readouterr().out
    r = json.loads((tmp_path / "report.json").read_text())
    _assert_clean_run(r, 15)
    assert (tmp_path / "compiled" / "checkpoint.pt").exists()   # the calibrated decoder that was compiled
    assert r["latency"]["metric"] == "qemu_insn_count" and r["latency"]["median"] > 10_000
    assert r["device"]["board"] == "mps2-an386" and r["device"]["cpu"] == "cortex-m4"
    assert 0.0 <= r["accuracy"]["device_balanced_accuracy"] <= 1.0
    assert r["accuracy"]["device_balanced_accuracy"] == r["accuracy"]["host_balanced_accuracy"]
    assert "qemu_insn_count" in (tmp_path / "report.html").read_text()


@pytest.fixture(scope="module")
def m4_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m4")
    compile_for_target(BUNDLED_CHECKPOINT, "mps2-an386", out, progress=False)
    return out


@needs_arm
def test_instruction_counts_are_repeatable(tmp_path, m4_dir):
    runs = [hil_and_report(m4_dir, [SAMPLE_DIR / "S015R08.edf"], tmp_path / f"r{i}", max_windows=2,
                           progress=False).report for i in range(2)]
    for r in runs:
        _assert_clean_run(r, 2)
    assert runs[0]["latency"]["per_window"] == runs[1]["latency"]["per_window"]


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("host")
    compile_for_target(BUNDLED_CHECKPOINT, "host", out, progress=False)
    return out


def test_host_process_target(tmp_path, host_dir):
    r = hil_and_report(host_dir, [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", progress=False).report
    _assert_clean_run(r, 15)
    assert r["latency"]["metric"] == "process_latency_us"


def test_a_device_that_dies_mid_run_loses_no_window(tmp_path, host_dir):
    """The device process is killed after two windows: every window is still accounted for."""
    from edgebci.artifacts import read_manifest
    from edgebci.hil.launch import start_process
    from edgebci.hil.runner import MAX_CONSECUTIVE_FAILURES, HostReference, stream_windows
    from edgebci.pipeline import HOST_ENTRY, load_hil_windows
    windows = load_hil_windows([SAMPLE_DIR / "S015R04.edf"], read_manifest(host_dir, "compiled-model"), 9)
    reference = HostReference(next((host_dir / "host").glob("*.so")), 2, HOST_ENTRY)
    exe = json.loads((host_dir / "firmware" / "image.json").read_text())["path"]
    with start_process(exe, tmp_path / "device.log") as device:
        link = device.link

        class KillAfterTwo:      # the real link; the device process dies under it after two windows
            calls = 0

            def decode_window(self, x):
                KillAfterTwo.calls += 1
                if KillAfterTwo.calls == 3:
                    device.process.kill()
                    device.process.wait()
                return link.decode_window(x)
        outcomes = stream_windows(KillAfterTwo(), windows, reference, progress=False)
    assert [o.status for o in outcomes] == ["decoded"] * 2 + ["failed"] * 7
    assert all(o.error for o in outcomes[2:])
    assert sum(o.error.startswith("not sent") for o in outcomes) == 7 - MAX_CONSECUTIVE_FAILURES
    assert KillAfterTwo.calls == 2 + MAX_CONSECUTIVE_FAILURES


@needs_arm
def test_hil_over_a_serial_port(tmp_path, m4_dir, capsys):
    """--port: the path a physical board takes. Here the board's UART is QEMU's pty, a real tty device."""
    image = json.loads((m4_dir / "firmware" / "image.json").read_text())
    qemu = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                             "-icount", "shift=6,align=off,sleep=off", "-kernel", image["path"], "-serial", "pty"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = qemu.stdout.readline()
        assert "redirected to /dev/pts/" in line, line
        pty = line.split("redirected to ")[1].split()[0]
        rc = main(["hil", str(m4_dir), "--port", pty, "--data", str(SAMPLE_DIR / "S015R04.edf"),
                   "--max-windows", "3", "--out", str(tmp_path), "--quiet"])
    finally:
        qemu.kill()
        qemu.wait()
    assert rc == 0, capsys.readouterr().err
    _assert_clean_run(json.loads((tmp_path / "report.json").read_text()), 3)
