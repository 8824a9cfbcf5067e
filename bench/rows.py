"""What the board benches record per run: one row of the HIL report, and the JSON file the rows accumulate in."""
from __future__ import annotations

import json
from pathlib import Path


def device_row(report: dict, compiled, image) -> dict:
    """The cost of one compiled decoder on one board, from its `edgebci hil` report."""
    lat = report["latency"]
    return {"windows": report["windows"], "agreement": report["agreement"]["same_class"],
            "compared": report["agreement"]["windows_compared"], "metric": lat["metric"],
            "median": lat.get("median"), "min": lat.get("min"), "max": lat.get("max"),
            "flash_bytes": image.flash_bytes, "ram_static_bytes": image.ram_static_bytes,
            "weight_bytes": compiled.weight_bytes, "arena_bytes": compiled.arena_bytes,
            "stack_peak_bytes": report["memory"]["stack_peak"]["bytes"]}


def check_run(report: dict) -> None:
    """A bench row counts only if every window decoded, agreed with the host and was timed by QEMU's counter."""
    assert report["windows"]["failed"] == 0 and report["agreement"]["rate"] == 1.0, json.dumps(report["failures"])
    assert report["latency"]["metric"] == "qemu_insn_count" and report["latency"]["median"] > 0


def load_rows(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def store_row(path: Path, key: str, row: dict) -> None:
    """Add (or replace) one row: a bench run in pieces fills the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = load_rows(path)
    rows[key] = row
    path.write_text(json.dumps(rows, indent=2, sort_keys=True))
