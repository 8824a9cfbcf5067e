"""Report numbers are labelled honestly and the HTML shows them."""
from types import SimpleNamespace

import pytest

from edgebci.hil.runner import HilRun, WindowOutcome
from edgebci.report import build_report, latency_section, write_report
from edgebci.targets import Target


def test_qemu_ticks_become_instruction_counts():
    m4 = Target.from_name("mps2-an386")
    # shift=6: 64 ns of virtual time per instruction; 25 MHz SysTick = 40 ns per tick -> 1.6 ticks/insn
    lat = latency_section([16_000, 32_000], timer_src=1, timer_hz=25_000_000, target=m4)
    assert lat["metric"] == "qemu_insn_count" and "not cycles" in lat["note"]
    assert lat["per_window"] == [10_000.0, 20_000.0] and lat["median"] == 15_000.0
    host = latency_section([2_500, 3_500], timer_src=2, timer_hz=1_000_000_000, target=Target.from_name("host"))
    assert host["metric"] == "process_latency_us" and host["max"] == pytest.approx(3.5)


def _run(statuses):
    windows = []
    for i, st in enumerate(statuses):
        w = WindowOutcome(i, f"S015R04.edf@{i}", i % 2, st, host_class=i % 2, host_scores=[0.1, 0.2])
        if st != "failed":
            w.device_class, w.device_scores, w.ticks, w.stack_used = i % 2, [0.1, 0.2], 16_000, 900
        else:
            w.error = "request 0x02 failed: timeout"
        windows.append(w)
    info = {"board": "mps2-an386", "cpu": "cortex-m4", "build": "gcc", "timer_src": 1, "timer_hz": 25_000_000}
    return HilRun(info, windows, {"host": {"retransmits": 1}}, ("left", "right"))


def test_report_accounts_for_every_window_and_renders(tmp_path):
    run = _run(["decoded", "retried", "failed", "decoded"])
    target = Target.from_name("mps2-an386")
    compiled = SimpleNamespace(model_id="abc", n_samples=480, arena_bytes=70_000, workspace_bytes=16,
                               weight_bytes=11_000)
    image = SimpleNamespace(flash_bytes=120_000, ram_static_bytes=90_000)
    manifest = {"arch": "eegnet", "channels": ["C3", "C4"], "fs_hz": 160.0, "classes": ["left", "right"],
                "frontend": {"btype": "bandpass", "sos": [[1, 0, 0, 1, 0, 0]]}}
    r = build_report(run, compiled, image, target, manifest)
    assert r["windows"] == {"sent": 4, "decoded": 2, "retried": 1, "failed": 1}
    assert not r["ok"] and r["failures"][0]["window"] == 2
    assert r["agreement"]["same_class"] == 3 and r["agreement"]["rate"] == 1.0
    assert r["memory"]["stack_peak"]["bytes"] == 900 and r["memory"]["flash"]["within_budget"]
    assert r["latency"]["median"] == 10_000.0
    j, h = write_report(r, tmp_path)
    page = h.read_text()
    assert "qemu_insn_count" in page and "Failed windows" in page and "<svg" in page
    assert j.read_text().startswith("{")


def test_window_report_carries_the_latency_budget(tmp_path):
    from edgebci.frontend import design_bessel
    run = _run(["decoded", "decoded"])
    compiled = SimpleNamespace(model_id="abc", n_samples=480, arena_bytes=70_000, workspace_bytes=16,
                               weight_bytes=11_000)
    image = SimpleNamespace(flash_bytes=120_000, ram_static_bytes=90_000)
    manifest = {"arch": "eegnet", "channels": ["C3", "C4"], "fs_hz": 160.0, "classes": ["left", "right"],
                "hop_samples": 80, "frontend": design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag").to_dict()}
    r = build_report(run, compiled, image, Target.from_name("mps2-an386"), manifest)
    lb = r["latency_budget"]
    assert lb["hop_ms"] == 500.0 and 25 < lb["filter_group_delay_ms"] < 35
    assert lb["compute"]["metric"] == "qemu_insn_count" and lb["compute_ms"] == pytest.approx(10_000 / 25e6 * 1e3)
    assert lb["total_ms"] == pytest.approx(lb["filter_group_delay_ms"] + 500.0 + lb["compute_ms"])
    _, h = write_report(r, tmp_path)
    assert "Latency budget" in h.read_text()


def test_latency_labels_say_what_was_measured():
    """Cycles only from a physical board's counter; QEMU reached through --port and foreign processes say so."""
    from edgebci.report.budget import latency_section
    from edgebci.targets import Target
    orin, m4, f746 = (Target.from_name(n) for n in ("jetson-orin", "mps2-an386", "nucleo-f746zg"))
    assert latency_section([1000], 2, 0, orin, emulated=True)["metric"] == "emulated_process_us"   # qemu-aarch64
    assert latency_section([1000], 2, 0, orin, emulated=False)["metric"] == "process_latency_us"   # a real Orin
    assert latency_section([1000], 1, 25_000_000, m4, emulated=True)["metric"] == "qemu_insn_count"
    assert latency_section([1000], 1, 25_000_000, m4, emulated=False)["metric"] == "systick_ticks"
    assert latency_section([1000], 0, 16_000_000, f746, emulated=False)["metric"] == "cycles"
    assert latency_section([1000], -1, 25_000_000, m4)["metric"] == "none"
