"""Report of a streaming HIL run: samples accounted for, filter bit-exactness, decisions per hop,
accuracy against the cue labels, and the end-to-end latency budget (JSON + self-contained HTML).

The latency budget is the time from a brain event to the decision that can reflect it:
filter group delay (mean over the passband) + one hop (the longest wait for the next decision)
+ the compute latency of one hop (filtering the hop's samples and running the model). On an emulated
board compute is a `qemu_insn_count`; its milliseconds assume one instruction per clock (an estimate).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgebci import __version__
from edgebci.report.budget import latency_budget, latency_section, memory_section
from edgebci.report.html import STYLE, _bars_svg, _e, _series_svg, _table
from edgebci.targets import Target


def stream_latency_budget(run, manifest: dict, target: Target, emulated: bool) -> dict:
    """The latency budget with the compute of one hop: filtering its samples and running the model."""
    info = run.device_info
    compute = latency_section([d.ticks for d in run.decisions], info.get("timer_src", -1), info.get("timer_hz", 0),
                              target, emulated)
    return latency_budget(manifest, compute, run.hop_samples)


def build_stream_report(run, compiled, image, target: Target, manifest: dict, emulated: bool = True) -> dict:
    counts = run.counts()
    per_hop = run.decisions_per_hop()
    exact = run.filter_bit_exact()
    agreement = run.agreement()
    stack_peak = max((d.stack_used for d in run.decisions), default=None)
    ok = (counts["failed"] == 0 and counts["samples_lost"] == 0 and exact["bit_exact"]
          and per_hop["received"] == per_hop["expected"] and agreement["rate"] == 1.0
          and agreement["scores_within_tolerance"] and counts["decision_mismatches"] == 0)
    return {
        "edgebci_version": __version__, "mode": "stream",
        "target": {"name": target.name, "description": target.description, "cpu": target.cpu,
                   "clock_hz": target.clock_hz, "emulated": target.is_emulated},
        "device": run.device_info,
        "decoder": {"arch": manifest.get("arch"), "model_id": compiled.model_id, "channels": manifest["channels"],
                    "fs_hz": manifest["fs_hz"], "window_samples": run.window_samples, "hop_samples": run.hop_samples,
                    "classes": manifest["classes"],
                    "frontend": {k: v for k, v in manifest["frontend"].items() if k != "sos"}},
        "stream": {"pace": run.pace, "chunk_samples": run.chunk_samples, "filter_state": run.filter_state, **counts,
                   "per_recording": [{"source": r.source, "samples": r.n_samples, **r.counts,
                                      "decisions": len(r.decisions), "cues": r.n_cues} for r in run.recordings]},
        "filter_bit_exact": exact,
        "decisions": per_hop,
        "agreement": agreement,
        "accuracy": run.accuracy(),
        "latency_budget": stream_latency_budget(run, manifest, target, emulated),
        "memory": memory_section(image, compiled, target, stack_peak),
        "link": run.link_stats,
        "ok": ok,
        "failures": [{"source": r.source, "first_sample": c.first_sample, "error": c.error}
                     for r in run.recordings for c in r.chunks if c.status == "failed" or c.error][:50],
    }


def _timeline_svg(run) -> str:
    """Decisions over each recording: dots at the decision's end sample, coloured by class; labelled
    decisions ringed green when right, red when wrong."""
    if not run.recordings:
        return ""
    w, row_h, left = 760, 28, 120
    colors = ("#1565c0", "#ef6c00", "#6a1b9a", "#2e7d32")
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{row_h * len(run.recordings) + 10}'>"]
    for i, r in enumerate(run.recordings):
        y = 5 + i * row_h + row_h / 2
        parts.append(f"<text x='0' y='{y + 4}' font-size='11'>{_e(r.source)}</text>"
                     f"<line x1='{left}' x2='{w - 5}' y1='{y}' y2='{y}' stroke='#ccc'/>")
        for d in r.decisions:
            x = left + d.end_sample / max(1, r.n_samples) * (w - left - 10)
            parts.append(f"<circle cx='{x:.1f}' cy='{y}' r='2.5' fill='{colors[d.device_class % len(colors)]}'/>")
            if d.label >= 0:
                ring = "#2e7d32" if d.label == d.device_class else "#c62828"
                parts.append(f"<circle cx='{x:.1f}' cy='{y}' r='5.5' fill='none' stroke='{ring}'/>")
    return "".join(parts) + "</svg>"


def render_stream_html(r: dict, run) -> str:
    ok = "<span class='ok'>PASS</span>" if r["ok"] else "<span class='bad'>FAIL</span>"
    s, ex, dec, agr, acc, lb = r["stream"], r["filter_bit_exact"], r["decisions"], r["agreement"], r["accuracy"], \
        r["latency_budget"]
    classes = acc["classes"]
    cm = acc["device_confusion_matrix"]
    comp = lb["compute"]
    mem = r["memory"]
    mem_rows = [(k, mem[k]["bytes"], mem[k]["budget_bytes"]) for k in ("flash", "static_ram", "stack_peak")
                if mem[k].get("budget_bytes") and mem[k]["bytes"] is not None]
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgebci streaming report: "
           f"{_e(r['target']['name'])}</title><style>{STYLE}</style></head><body>",
           f"<h1>Streaming HIL: {_e(r['decoder']['arch'])} on {_e(r['target']['name'])} {ok}</h1>",
           f"<p>{_e(r['target']['description'])}. Window {r['decoder']['window_samples']} samples, a decision every "
           f"{r['decoder']['hop_samples']} samples, chunks of {s['chunk_samples']} samples, pace {_e(s['pace'])}; "
           f"each decision on the window filtered {_e(s['filter_state'])}.</p>",
           "<h2>Samples and chunks</h2>",
           _table(["recordings", "chunks", "acked", "retried", "failed", "samples sent", "samples acked", "lost"],
                  [[s["recordings"], s["chunks"], s["acked"], s["retried"], s["failed"], s["samples_sent"],
                    s["samples_acked"], s["samples_lost"]]]),
           _table(["recording", "samples", "chunks", "acked", "retried", "failed", "decisions", "cues"],
                  [[p["source"], p["samples"], p["chunks"], p["acked"], p["retried"], p["failed"], p["decisions"],
                    p["cues"]] for p in s["per_recording"]]),
           "<h2>Fixed-point filter on the device vs the Python reference</h2>",
           _table(["chunks checked", "equal (crc32)", "samples", "bit exact", "saturated outputs"],
                  [[ex["chunks_checked"], ex["chunks_equal"], ex["samples_checked"], ex["bit_exact"],
                    ex["saturated_outputs"]]]),
           "<h2>Decisions</h2>",
           _table(["expected (one per hop)", "received", "per hop", "host only"],
                  [[dec["expected"], dec["received"], dec["per_hop"], dec["host_only"]]]),
           _table(["compared with the host", "same class", "rate", "max relative score difference", "tolerance"],
                  [[agr["decisions_compared"], agr["same_class"], agr["rate"], agr["max_rel_score_diff"],
                    agr["tolerance"]]]),
           _timeline_svg(run),
           "<h2>Accuracy against the cue labels</h2>", f"<p class='note'>{_e(acc['alignment'])}</p>",
           _table(["cues", "labelled decisions", "device balanced accuracy", "chance"],
                  [[acc["cues"], acc["labelled_decisions"], acc["device_balanced_accuracy"], acc["chance"]]]),
           _table([""] + [f"predicted {c}" for c in classes],
                  [[f"true {classes[i]}"] + cm[i] for i in range(len(classes))]),
           "<h2>Latency budget: brain event to decision</h2>", f"<p class='note'>{_e(lb['note'])}</p>",
           _table(["filter group delay ms", "(range ms)", "hop ms", f"compute ({comp.get('metric')}) median",
                   "compute ms", "total ms"],
                  [[lb["filter_group_delay_ms"], " .. ".join(f"{v:.1f}" for v in lb["filter_group_delay_range_ms"]),
                    lb["hop_ms"], comp.get("median", float("nan")),
                    lb["compute_ms"] if lb["compute_ms"] is not None else "n/a",
                    lb["total_ms"] if lb["total_ms"] is not None else "n/a"]])]
    if run.decisions and "median" in comp:
        ticks = [d.ticks for d in run.decisions]
        scale = comp["median"] / float(np.median(ticks)) if np.median(ticks) else 1.0
        out.append(_series_svg([t * scale for t in ticks], f"{comp['metric']} per decision (filter + model)"))
    out += ["<h2>Memory against the board's budget</h2>", _bars_svg(mem_rows),
            _table(["", "bytes", "budget", "within"],
                   [[k, v["bytes"], v.get("budget_bytes", ""), v.get("within_budget", "")] for k, v in mem.items()]),
            "<h2>Link</h2>", _table(["counter", "value"], [[k, json.dumps(v)] for k, v in r["link"].items()])]
    if r["failures"]:
        out += ["<h2>Failed or inconsistent chunks</h2>",
                _table(["recording", "first sample", "error"],
                       [[f["source"], f["first_sample"], f["error"]] for f in r["failures"]])]
    out.append(f"<p class='note'>edgebci {_e(r['edgebci_version'])}; front end "
               f"{_e(json.dumps(r['decoder']['frontend']))}.</p></body></html>")
    return "\n".join(out)


def write_stream_report(report: dict, run, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j, h = out_dir / "report.json", out_dir / "report.html"
    j.write_text(json.dumps(report, indent=2, default=float) + "\n")
    h.write_text(render_stream_html(report, run))
    return j, h
