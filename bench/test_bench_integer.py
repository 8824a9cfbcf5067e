"""Float vs integer-only decoders on the Cortex-M4F (mps2-an386) and the FPU-less Cortex-M3 (mps2-an385):
`qemu_insn_count` per window (QEMU -icount: instructions, not cycles), flash, static RAM, model weights and
arena, for every family with a bundled quantised checkpoint (edgebci/checkpoints/quantized/<arch>-<recipe>.pt).

Each case runs the user's path (`edgebci compile --calibrate S015R04 [--recipe ...]`, then `edgebci hil` on the
first WINDOWS windows of S015R08; the whole recording's bit-exactness is tests/test_quantize_device.py's) and
appends its row to build/bench/integer.json; the last test prints the README table. QEMU counts are
deterministic: one run is the measurement, the median over windows differs by the input's few branches.

    make bench-integer      # or: .venv/bin/python -m pytest bench/test_bench_integer.py -p no:cacheprovider -s
"""
from __future__ import annotations

from pathlib import Path

import pytest
from rows import check_run, device_row, load_rows, store_row     # bench/rows.py (pytest puts this folder on the path)

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import CHECKPOINTS_DIR, QUANTIZED_DIR

BOARDS = ("mps2-an386", "mps2-an385")
RECIPES = ("float", "int8", "int8-pow2", "w4a8")
ARCHS = tuple(sorted({p.stem.split("-")[0] for p in QUANTIZED_DIR.glob("*.pt")}))
OUT = Path(__file__).resolve().parent.parent / "build" / "bench"
RESULTS = OUT / "integer.json"
WINDOWS = 5          # a float window on the M3 costs ~86 M emulated instructions: keep the run to minutes


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("arch", ARCHS)
def test_integer_cost(tmp_path, arch, recipe, board):
    from edgebci.pipeline import compile_for_target, hil_and_report
    if recipe != "float" and not (QUANTIZED_DIR / f"{arch}-{recipe}.pt").exists():
        pytest.skip(f"no bundled {arch}-{recipe}.pt")
    compiled, image = compile_for_target(CHECKPOINTS_DIR / f"{arch}.pt", board, tmp_path / "c", progress=False,
                                         calibration=[SAMPLE_DIR / "S015R04.edf"],
                                         recipe=None if recipe == "float" else recipe)
    r = hil_and_report(tmp_path / "c", [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", max_windows=WINDOWS,
                       progress=False).report
    store_row(RESULTS, f"{arch}/{recipe}/{board}", {
        "arch": arch, "recipe": recipe, "board": board, **device_row(r, compiled, image),
        "balanced_accuracy": r["accuracy"]["device_balanced_accuracy"]})
    check_run(r)


def test_print_table():
    results = load_rows(RESULTS)
    if not results:
        pytest.skip("no results yet: run the whole file")
    print("\n| arch | recipe | qemu_insn_count / window M4F (an386) | M3 (an385) | ratio to float M4F / M3 "
          "| flash B M4F / M3 | static RAM B | weights B | arena B |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arch in ARCHS:
        base = [results.get(f"{arch}/float/{b}") for b in BOARDS]
        for recipe in RECIPES:
            rows = [results.get(f"{arch}/{recipe}/{b}") for b in BOARDS]
            if not any(rows):
                continue
            ref = next(r for r in rows if r)
            counts = [f"{r['median']:,.0f}" if r else "-" for r in rows]
            ratios = [f"{r['median'] / f['median']:.2f}x" if r and f else "-" for r, f in zip(rows, base)]
            flash = " / ".join(f"{r['flash_bytes']:,}" if r else "-" for r in rows)
            print(f"| `{arch}` | {recipe} | {counts[0]} | {counts[1]} | {' / '.join(ratios)} | {flash} | "
                  f"{ref['ram_static_bytes']:,} | {ref['weight_bytes']:,} | {ref['arena_bytes']:,} |")
