"""Turn a HIL run into the report's numbers, each labelled with what it is.

A QEMU SysTick count under `-icount shift=N` measures instructions (every instruction advances
virtual time by 2^N ns), so it is reported as `qemu_insn_count`, never as cycles. Cycles come only
from a physical board's counters; a Linux process reports wall time in microseconds.
"""
from __future__ import annotations

import numpy as np

from edgebci import __version__
from edgebci.targets import Target

TIMER_DWT, TIMER_SYSTICK, TIMER_OS_NS = 0, 1, 2


def latency_section(ticks: list[int], timer_src: int, timer_hz: int, target: Target, emulated: bool = True) -> dict:
    """Per-window decode cost (front end + model) in the unit the timer really measures.

    emulated : the device was QEMU started by edgebci (with -icount); False for a board on --port
    """
    t = np.asarray(ticks, np.float64)
    if len(t) == 0:
        return {"metric": "none", "note": "no window was decoded"}
    if timer_hz <= 0 and timer_src != TIMER_OS_NS:
        return {"metric": "none", "note": f"the device reported timer_hz={timer_hz}: its ticks cannot be converted"}
    if emulated and target.is_emulated and timer_src == TIMER_SYSTICK:
        shift = target.qemu_icount_shift
        values = np.round(t * 1e9 / (timer_hz * 2 ** shift))   # one tick = 0.625 instructions at shift 6
        metric = "qemu_insn_count"
        note = (f"instructions executed in QEMU ({target.qemu_machine}, -icount shift={shift}), from SysTick "
                f"virtual time: count = ticks * 1e9 / ({timer_hz} Hz * 2^{shift}); deterministic, not cycles")
    elif timer_src == TIMER_OS_NS and emulated and _foreign(target):
        values, metric = t / 1e3, "emulated_process_us"
        note = (f"wall-clock time of the decode in the {target.name} process run under qemu-user on this machine "
                f"(CLOCK_MONOTONIC), microseconds: emulation speed, not the board's decoder latency")
    elif timer_src == TIMER_OS_NS:
        values, metric = t / 1e3, "process_latency_us"
        note = "wall-clock time of the decode in the Linux process (CLOCK_MONOTONIC), microseconds"
    elif timer_src in (TIMER_DWT, TIMER_SYSTICK) and not target.is_emulated:
        values, metric = t, "cycles"
        note = f"core clock cycles counted by the board's {'DWT' if timer_src == TIMER_DWT else 'SysTick'} timer"
    elif timer_src in (TIMER_DWT, TIMER_SYSTICK):
        values, metric = t, "systick_ticks"
        note = (f"SysTick ticks of {target.name}, an emulated board reached through --port: QEMU was not started by "
                f"edgebci, so its -icount setting is unknown and the ticks are neither cycles nor instructions")
    else:
        return {"metric": "none", "note": f"the device reported an unknown timer source {timer_src}: its ticks "
                                          f"cannot be labelled"}
    out = {"metric": metric, "note": note, "median": float(np.median(values)), "max": float(values.max()),
           "min": float(values.min()), "per_window": [round(float(v), 1) for v in values]}
    if metric in ("qemu_insn_count", "cycles") and target.clock_hz:
        out["median_ms_at_clock"] = float(np.median(values) / target.clock_hz * 1e3)
        out["clock_note"] = (f"milliseconds at {target.clock_hz / 1e6:g} MHz assuming one "
                             f"{'instruction' if metric == 'qemu_insn_count' else 'cycle'} per clock: an estimate")
    return out


def _foreign(target: Target) -> bool:
    """A Linux target of another architecture than this machine's: its process runs under qemu-user here."""
    import platform
    triple = (target.llvm_mtriple or "").split("-")[0]
    return target.kind == "linux" and bool(triple) and triple != platform.machine()


def _compute_ms(lat: dict) -> float | None:
    if "median_ms_at_clock" in lat:
        return float(lat["median_ms_at_clock"])
    if lat.get("metric") == "process_latency_us":
        return float(lat["median"]) / 1e3
    return None


def latency_budget(manifest: dict, compute: dict, hop_samples: int) -> dict:
    """Brain event to decision: the front end's group delay (mean over its passband) + one hop (the
    longest wait for the next decision) + the compute of one decision (`compute`, a latency_section)."""
    from edgebci.frontend import FrontEnd, analyze_frontend
    gd_min, gd_mean, gd_max = analyze_frontend(FrontEnd.from_dict(manifest["frontend"])).group_delay_ms
    hop_ms = hop_samples / float(manifest["fs_hz"]) * 1e3
    compute = {k: v for k, v in compute.items() if k != "per_window"}
    compute_ms = _compute_ms(compute)
    return {
        "filter_group_delay_ms": gd_mean, "filter_group_delay_range_ms": [gd_min, gd_max],
        "hop_ms": hop_ms, "compute": compute, "compute_ms": compute_ms,
        "total_ms": gd_mean + hop_ms + compute_ms if compute_ms is not None else None,
        "note": ("event to decision = filter group delay (mean over the passband; the range is its spread) + one "
                 "hop (the longest wait for the next decision, half of it on average) + the compute of one decision"
                 + ("; compute ms from a QEMU instruction count at one instruction per clock: an estimate, not "
                    "cycles" if compute.get("metric") == "qemu_insn_count" else "")),
    }


def _budget_row(used: int, budget: int) -> dict:
    return {"bytes": int(used), "budget_bytes": int(budget), "fraction": used / budget if budget else None,
            "within_budget": used <= budget}


def memory_section(image, compiled, target: Target, stack_peak: int | None) -> dict:
    return {
        "flash": _budget_row(image.flash_bytes, target.flash_bytes),
        "static_ram": _budget_row(image.ram_static_bytes, target.ram_bytes - target.stack_bytes),
        "arena": {**_budget_row(compiled.arena_bytes, target.ram_bytes - target.stack_bytes),
                  "note": "part of static RAM: the model's activations"},
        "workspace": {**_budget_row(compiled.workspace_bytes, target.ram_bytes - target.stack_bytes),
                      "note": "part of static RAM: kernel scratch"},
        "weights": {"bytes": compiled.weight_bytes, "note": "part of flash: const model parameters"},
        "stack_peak": (_budget_row(stack_peak, target.stack_bytes) if stack_peak is not None
                       else {"bytes": None, "note": "not reported by the device"}),
    }


def build_report(run, compiled, image, target: Target, manifest: dict, emulated: bool = True) -> dict:
    decoded = [w for w in run.windows if w.status != "failed"]
    info = run.device_info
    stack_peak = max((w.stack_used for w in decoded if w.stack_used is not None), default=None)
    counts = run.counts
    agreement = run.agreement()
    latency = latency_section([w.ticks for w in decoded], info.get("timer_src", -1), info.get("timer_hz", 0), target,
                              emulated)
    has_design = {"order", "norm", "cutoffs_hz"} <= set(manifest.get("frontend", {}))
    budget = (latency_budget(manifest, latency, manifest["hop_samples"])
              if has_design and "hop_samples" in manifest and "median" in latency else None)
    return {
        "edgebci_version": __version__,
        "target": {"name": target.name, "description": target.description, "cpu": target.cpu,
                   "clock_hz": target.clock_hz, "emulated": target.is_emulated},
        "device": info,
        "decoder": {"arch": manifest.get("arch"), "model_id": compiled.model_id, "channels": manifest["channels"],
                    "fs_hz": manifest["fs_hz"], "window_samples": compiled.n_samples,
                    "classes": manifest["classes"], "frontend": {k: v for k, v in manifest["frontend"].items()
                                                                 if k != "sos"}},
        "windows": counts,
        "agreement": agreement,
        "accuracy": run.accuracy(),
        "latency": latency,
        "latency_budget": budget,
        "memory": memory_section(image, compiled, target, stack_peak),
        "link": run.link_stats,
        "ok": counts["failed"] == 0 and agreement["rate"] == 1.0,
        "failures": [{"window": w.index, "source": w.source, "error": w.error} for w in run.windows
                     if w.status == "failed"],
    }
