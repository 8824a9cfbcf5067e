"""Cost per window of every bundled decoder on every emulated Cortex-M board, through `edgebci compile` +
`edgebci hil` (the user's path): `qemu_insn_count` (QEMU -icount, instructions, not cycles), flash, static
RAM, stack peak, and the device/host agreement.

Each case compiles the checkpoint for the board, streams the bundled sample (S015 runs 4 and 8, 30 windows)
and appends its row to build/bench/boards.json; the last test prints the README table. Not a
pytest-benchmark timing: QEMU counts are deterministic, one run is the measurement.

    make bench-boards          # or: .venv/bin/python -m pytest bench/test_bench_boards.py -p no:cacheprovider -s
"""
from __future__ import annotations

from pathlib import Path

import pytest
from rows import check_run, device_row, load_rows, store_row     # bench/rows.py (pytest puts this folder on the path)

from edgebci.defaults import CHECKPOINTS_DIR

BOARDS = ("mps2-an386", "mps2-an500", "mps3-an547")
ARCHS = tuple(sorted(p.stem for p in CHECKPOINTS_DIR.glob("*.pt")))
OUT = Path(__file__).resolve().parent.parent / "build" / "bench"
RESULTS = OUT / "boards.json"


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_board_cost(tmp_path, arch, board):
    from edgebci.pipeline import compile_for_target, hil_and_report, sample_recordings
    compiled, image = compile_for_target(CHECKPOINTS_DIR / f"{arch}.pt", board, tmp_path / "c", progress=False)
    r = hil_and_report(tmp_path / "c", sample_recordings(), tmp_path / "r", progress=False).report
    store_row(RESULTS, f"{arch}/{board}", {"arch": arch, "board": board, **device_row(r, compiled, image)})
    check_run(r)


def test_print_table():
    results = load_rows(RESULTS)
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
