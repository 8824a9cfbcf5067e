"""Report stage: accuracy, latency and memory against the board's budget, as JSON and HTML."""
from edgebci.report.budget import build_report, latency_section
from edgebci.report.html import write_report

__all__ = ["build_report", "latency_section", "write_report"]
