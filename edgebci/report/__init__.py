"""Report stage: accuracy, latency and memory against the board's budget, as JSON and HTML.

budget/html: a window-mode HIL run; stream: a streaming run (samples accounted for, filter bit-exactness,
decisions per hop, latency budget); frontend: a front-end design (magnitude, phase, group delay plots).
"""
from edgebci.report.budget import build_report, latency_section
from edgebci.report.html import write_report

__all__ = ["build_report", "latency_section", "write_report"]
