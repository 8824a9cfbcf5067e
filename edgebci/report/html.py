"""Write report.json and a self-contained report.html (inline SVG, no scripts, no network)."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.ok{color:#176b2c;font-weight:600}.bad{color:#a31515;font-weight:600}
.note{color:#666;font-size:.9em}"""


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "<span class='bad'>no</span>"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return _e(v)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th class='l'>{_e(h)}</th>" if i == 0 else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='l'>{_fmt(c)}</td>" if i == 0 else f"<td>{_fmt(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars_svg(rows: list[tuple[str, int, int]]) -> str:
    """Horizontal bars: used bytes against the budget, one row per memory kind."""
    w, h, left = 640, 26, 110
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h * len(rows) + 10}'>"]
    for i, (label, used, budget) in enumerate(rows):
        y = 5 + i * h
        frac = min(used / budget, 1.0) if budget else 0
        color = "#2e7d32" if used <= budget else "#c62828"
        parts.append(f"<text x='0' y='{y + 15}' font-size='12'>{_e(label)}</text>"
                     f"<rect x='{left}' y='{y}' width='{w - left - 10}' height='18' fill='#eee'/>"
                     f"<rect x='{left}' y='{y}' width='{max(1, frac * (w - left - 10)):.1f}' height='18' fill='{color}'/>"
                     f"<text x='{left + 4}' y='{y + 13}' font-size='11' fill='#000'>{used:,} / {budget:,} B "
                     f"({100 * used / budget:.2f}%)</text>")
    return "".join(parts) + "</svg>"


def _series_svg(values: list[float], label: str) -> str:
    """Per-window cost as a dot series (flat is good: the decode does the same work every window)."""
    if not values:
        return ""
    w, h, pad = 640, 160, 40
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi), 1.0) * 0.01
    pts = "".join(f"<circle cx='{pad + i * (w - 2 * pad) / max(1, len(values) - 1):.1f}' "
                  f"cy='{h - pad / 2 - (v - lo) / span * (h - pad):.1f}' r='2.5' fill='#1565c0'/>"
                  for i, v in enumerate(values))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}'>"
            f"<text x='0' y='12' font-size='11'>{_e(label)}: {lo:,.0f} .. {hi:,.0f}</text>{pts}"
            f"<text x='{pad}' y='{h - 2}' font-size='11'>window 0</text>"
            f"<text x='{w - pad - 60}' y='{h - 2}' font-size='11'>window {len(values) - 1}</text></svg>")


def render_html(r: dict) -> str:
    ok = "<span class='ok'>PASS</span>" if r["ok"] else "<span class='bad'>FAIL</span>"
    win, agr, acc, lat, mem = r["windows"], r["agreement"], r["accuracy"], r["latency"], r["memory"]
    classes = acc["classes"]
    cm = acc["device_confusion_matrix"]
    cm_rows = [[f"true {classes[i]}"] + cm[i] for i in range(len(classes))]
    mem_rows = [(k, mem[k]["bytes"], mem[k]["budget_bytes"]) for k in ("flash", "static_ram", "stack_peak")
                if mem[k].get("budget_bytes") and mem[k]["bytes"] is not None]
    dec = r["decoder"]
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgebci HIL report: {_e(r['target']['name'])}"
           f"</title><style>{STYLE}</style></head><body>",
           f"<h1>HIL report: {_e(dec['arch'])} on {_e(r['target']['name'])} {ok}</h1>",
           f"<p>{_e(r['target']['description'])}. Device says: board {_e(r['device'].get('board'))}, cpu "
           f"{_e(r['device'].get('cpu'))}, build {_e(r['device'].get('build'))}, model {_e(dec['model_id'])}.</p>",
           "<h2>Windows</h2>", _table(["sent", "decoded", "retried", "failed"],
                                      [[win["sent"], win["decoded"], win["retried"], win["failed"]]]),
           "<h2>Agreement with the host reference</h2>",
           _table(["compared", "same class", "rate", "max relative score difference", "tolerance"],
                  [[agr["windows_compared"], agr["same_class"], agr["rate"], agr["max_rel_score_diff"],
                    agr["tolerance"]]]),
           "<h2>Accuracy against the labels</h2>",
           _table(["windows", "device balanced accuracy", "host balanced accuracy", "chance"],
                  [[win["sent"], acc["device_balanced_accuracy"], acc["host_balanced_accuracy"], acc["chance"]]]),
           _table([""] + [f"predicted {c}" for c in classes], cm_rows),
           f"<h2>Latency per window: {_e(lat['metric'])}</h2><p class='note'>{_e(lat.get('note', ''))}</p>"]
    if "median" in lat:
        out.append(_table(["", "median", "min", "max"], [[lat["metric"], lat["median"], lat["min"], lat["max"]]]))
        if "median_ms_at_clock" in lat:
            out.append(f"<p class='note'>~{lat['median_ms_at_clock']:.1f} ms: {_e(lat['clock_note'])}</p>")
        out.append(_series_svg(lat["per_window"], lat["metric"]))
    lb = r.get("latency_budget")
    if lb:
        out += ["<h2>Latency budget: brain event to decision</h2>", f"<p class='note'>{_e(lb['note'])}</p>",
                _table(["filter group delay ms", "(range ms)", "hop ms", "compute ms", "total ms"],
                       [[lb["filter_group_delay_ms"], " .. ".join(f"{v:.1f}" for v in lb["filter_group_delay_range_ms"]),
                         lb["hop_ms"], lb["compute_ms"] if lb["compute_ms"] is not None else "n/a",
                         lb["total_ms"] if lb["total_ms"] is not None else "n/a"]])]
    out += ["<h2>Memory against the board's budget</h2>", _bars_svg(mem_rows),
            _table(["", "bytes", "budget", "within"],
                   [[k, v["bytes"], v.get("budget_bytes", ""), v.get("within_budget", "")] for k, v in mem.items()]),
            "<h2>Link</h2>", _table(["counter", "value"], [[k, json.dumps(v)] for k, v in r["link"].items()])]
    if r["failures"]:
        out += ["<h2>Failed windows</h2>", _table(["window", "source", "error"],
                                                   [[f["window"], f["source"], f["error"]] for f in r["failures"]])]
    out.append(f"<p class='note'>edgebci {_e(r['edgebci_version'])}; front end: {_e(json.dumps(dec['frontend']))}; "
               f"channels {_e(', '.join(dec['channels']))} at {dec['fs_hz']} Hz.</p></body></html>")
    return "\n".join(out)


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j, h = out_dir / "report.json", out_dir / "report.html"
    j.write_text(json.dumps(report, indent=2, default=float) + "\n")
    h.write_text(render_html(report))
    return j, h
