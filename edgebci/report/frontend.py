"""Report of a front-end design: the float design against the fixed-point sections the device runs.

frontend.json (design, Q31 sections, numbers) and frontend.html with inline-SVG plots of magnitude,
phase and group delay (no plotting library, no scripts, no network), the passband shaded.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from edgebci import __version__
from edgebci.frontend import FixedFrontEnd, FrontEnd, FrontEndAnalysis
from edgebci.report.html import STYLE, _e, _table

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 700, 230, 60, 15, 22, 34


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    return [v for v in np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)]


def line_plot_svg(x: np.ndarray, series: list[tuple[str, np.ndarray, str, bool]], title: str, y_label: str,
                  shade: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None) -> str:
    """A line plot as inline SVG. series: (label, y, colour, dashed); x in Hz on a linear axis."""
    x = np.asarray(x, np.float64)
    ys = np.concatenate([np.asarray(s[1], np.float64) for s in series])
    lo, hi = y_range if y_range else (float(np.nanmin(ys)), float(np.nanmax(ys)))
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    x0, x1 = float(x.min()), float(x.max())
    px = lambda v: PAD_L + (v - x0) / (x1 - x0) * (W - PAD_L - PAD_R)          # noqa: E731
    py = lambda v: PAD_T + (hi - v) / (hi - lo) * (H - PAD_T - PAD_B)         # noqa: E731
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-size='11'>",
           f"<text x='{PAD_L}' y='14' font-weight='600'>{_e(title)}</text>"]
    if shade:
        out.append(f"<rect x='{px(shade[0]):.1f}' y='{PAD_T}' width='{px(shade[1]) - px(shade[0]):.1f}' "
                   f"height='{H - PAD_T - PAD_B}' fill='#e8f5e9'/>")
    for v in _ticks(lo, hi):
        out.append(f"<line x1='{PAD_L}' x2='{W - PAD_R}' y1='{py(v):.1f}' y2='{py(v):.1f}' stroke='#eee'/>"
                   f"<text x='{PAD_L - 4}' y='{py(v) + 4:.1f}' text-anchor='end'>{v:g}</text>")
    for v in _ticks(x0, x1, 8):
        out.append(f"<text x='{px(v):.1f}' y='{H - PAD_B + 14}' text-anchor='middle'>{v:g}</text>")
    out.append(f"<text x='{(PAD_L + W) / 2:.0f}' y='{H - 4}' text-anchor='middle'>frequency (Hz)</text>"
               f"<text x='12' y='{(PAD_T + H - PAD_B) / 2:.0f}' transform='rotate(-90 12 {(PAD_T + H - PAD_B) / 2:.0f})' "
               f"text-anchor='middle'>{_e(y_label)}</text>"
               f"<rect x='{PAD_L}' y='{PAD_T}' width='{W - PAD_L - PAD_R}' height='{H - PAD_T - PAD_B}' fill='none' "
               f"stroke='#999'/>")
    for i, (label, y, colour, dashed) in enumerate(series):
        y = np.clip(np.asarray(y, np.float64), lo, hi)
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y) if np.isfinite(b))
        dash = " stroke-dasharray='5,4'" if dashed else ""
        out.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='1.5'{dash}/>"
                   f"<text x='{W - PAD_R - 4}' y='{PAD_T + 14 + 13 * i}' text-anchor='end' fill='{colour}'>"
                   f"{_e(label)}</text>")
    return "".join(out) + "</svg>"


def frontend_report(frontend: FrontEnd, fixed: FixedFrontEnd, analysis: FrontEndAnalysis) -> dict:
    return {"edgebci_version": __version__, "design": frontend.to_dict(), "fixed_point": fixed.to_dict(),
            "analysis": analysis.to_dict()}


def render_frontend_html(report: dict, analysis: FrontEndAnalysis) -> str:
    d, fx, a = report["design"], report["fixed_point"], report["analysis"]
    f = analysis.freqs_hz
    band = tuple(a["passband_hz"])
    floor = max(-100.0, float(analysis.mag_db.max()) - 100.0)
    cut = "-".join(f"{c:g}" for c in d["cutoffs_hz"])
    notch = f" + {d['notch_hz']:g} Hz notch" if d.get("notch_hz") else ""
    gd = a["group_delay_ms"]
    rows = [[k, fx["post_shift"][k]] + list(r) for k, r in enumerate(fx["coeffs_b0_b1_b2_a1_a2"])]
    return "\n".join([
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgebci front end: {_e(cut)} Hz {_e(d['btype'])}"
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>Front end: order-{d['order']} Bessel {_e(d['btype'])} {_e(cut)} Hz (norm {_e(d['norm'])}){_e(notch)} "
        f"at {d['fs_hz']:g} Hz</h1>",
        f"<p>Device arithmetic: {_e(fx['format'])}; data carries {fx['in_shift']} fractional bits "
        f"(1 LSB = 2^-{fx['in_shift']} uV).</p>",
        _table(["passband (Hz)", "gain error, fixed vs float (dB)", "float32 training path (dB)", "limit (dB)",
                "group delay min / mean / max (ms)", "rounding noise (uV RMS)", "largest pole radius"],
               [[f"{band[0]:.2f} .. {band[1]:.2f}", a["gain_error_db"], a["float32_gain_error_db"],
                 a["gain_error_db_limit"], f"{gd['min']:.1f} / {gd['mean']:.1f} / {gd['max']:.1f}",
                 a["rounding_noise_uv_rms"], a["max_pole_radius"]]]),
        line_plot_svg(f, [("scipy float64", analysis.mag_db, "#1565c0", False),
                          ("device Q31", analysis.mag_db_fixed, "#ef6c00", True)],
                      "Magnitude", "dB", shade=band, y_range=(floor, float(analysis.mag_db.max()) + 3.0)),
        line_plot_svg(f, [("device Q31 minus scipy float64", np.where(analysis.mag_db > floor,
                                                                      analysis.mag_db_fixed - analysis.mag_db, np.nan),
                           "#c62828", False)], "Gain error from coefficient quantisation", "dB", shade=band),
        line_plot_svg(f, [("scipy float64", analysis.phase_deg, "#1565c0", False),
                          ("device Q31", analysis.phase_deg_fixed, "#ef6c00", True)], "Phase (unwrapped)", "degrees",
                      shade=band),
        line_plot_svg(f, [("device Q31", analysis.group_delay_ms_curve, "#2e7d32", False)], "Group delay", "ms",
                      shade=band, y_range=(min(0.0, float(np.min(analysis.group_delay_ms_curve))),
                                           float(max(gd["max"] * 1.5, 1.0)))),
        "<h2>Sections as the device runs them</h2>",
        _table(["section", "post_shift", "b0", "b1", "b2", "a1", "a2"], rows),
        f"<p class='note'>edgebci {_e(report['edgebci_version'])}; coefficients are int32 scaled by "
        f"2^(31 - post_shift); the passband is where the float design is within 3 dB of its peak (shaded).</p>"
        "</body></html>"])


def write_frontend_report(frontend: FrontEnd, fixed: FixedFrontEnd, analysis: FrontEndAnalysis,
                          out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = frontend_report(frontend, fixed, analysis)
    j, h = out_dir / "frontend.json", out_dir / "frontend.html"
    j.write_text(json.dumps(report, indent=2) + "\n")
    h.write_text(render_frontend_html(report, analysis))
    return j, h
