"""Defaults shared by the CLI and the pipeline (kept import-light for a fast `edgebci --help`)."""
from pathlib import Path

BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "convattn.pt"
DEFAULT_TARGET = "mps2-an386"
# The zoo's families, by the names `edgebci train --arch` takes (edgebci.zoo.registry maps them to classes).
ARCH_NAMES = ("conformer", "convattn", "eegnet")
