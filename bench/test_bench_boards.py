"""Cost per window of every bundled decoder on every emulated Cortex-M board, through `edgebci compile` +
`edgebci hil` (the user's path): `qemu_insn_count` (QEMU -icount, instructions, not cycles), flash, static
RAM, stack peak, and the device/host agreement.

Each case compiles the checkpoint for the board, streams the bundled sample (S015 runs 4 and 8, 30 windows)
and appends its row to build/bench/boards.json; the last test prints the README table. Not a
pytest-benchmark timing: QEMU counts are deterministic, one run is the measurement.

    make bench-boards          # or: .venv/bin/python -m pytest bench/test_bench_boards.py -p no:cacheprovider -s
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebci.defaults import CHECKPOINTS_DIR

BOARDS = ("mps2-an386", "mps2-an500", "mps3-an547")
ARCHS = tuple(sorted(p.stem for p in CHECKPOINTS_DIR.glob("*.pt")))
OUT = Path(__file__).resolve().parent.parent / "build" / "bench"
RESULTS = OUT / "boards.json"


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_board_cost(tmp_path, arch, board):
    from edgebci.pipeline import compile_for_target, hil_and_report, sample_recordings
    compiled, image = compile_for_target(CHECKPOINTS_DIR / f"{arch}.pt", board, tmp_path / "c", progress=False)
    r = hil_and_report(tmp_path / "c", sample_recordings(), tmp_path / "r", progress=False).report
    lat = r["latency"]
    row = {"arch": arch, "board": board, "windows": r["windows"], "agreement": r["agreement"]["same_class"],
           "compared": r["agreement"]["windows_compared"], "metric": lat["metric"],
           "median": lat.get("median"), "min": lat.get("min"), "max": lat.get("max"),
           "flash_bytes": image.flash_bytes, "ram_static_bytes": image.ram_static_bytes,
           "arena_bytes": compiled.arena_bytes, "stack_peak_bytes": r["memory"]["stack_peak"]["bytes"]}
    OUT.mkdir(parents=True, exist_ok=True)
    results = _load()
    results[f"{arch}/{board}"] = row
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True))
    assert r["windows"]["failed"] == 0 and r["agreement"]["rate"] == 1.0, json.dumps(r["failures"])
    assert lat["metric"] == "qemu_insn_count" and lat["median"] > 0


def test_print_table():
    results = _load()
    if not results:
        pytest.skip("no board results yet: run the whole file")
    print("\n| arch | " + " | ".join(f"`{b}` qemu_insn_count / window" for b in BOARDS) + " | flash B (M4 / M7 / M55) "
          "| static RAM B (M4 / M7 / M55) | agreement |")
    print("|---|" + "---|" * (len(BOARDS) + 3))
    for arch in ARCHS:
        rows = [results.get(f"{arch}/{b}") for b in BOARDS]
        cells = [f"{r['median']:,.0f}" if r else "-" for r in rows]
        flash = " / ".join(f"{r['flash_bytes']:,}" if r else "-" for r in rows)
        ram = " / ".join(f"{r['ram_static_bytes']:,}" if r else "-" for r in rows)
        agree = ", ".join(f"{r['agreement']}/{r['compared']}" if r else "-" for r in rows)
        print(f"| `{arch}` | " + " | ".join(cells) + f" | {flash} | {ram} | {agree} |")
