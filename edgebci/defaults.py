"""Defaults shared by the CLI and the pipeline (kept import-light for a fast `edgebci --help`)."""
from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"
QUANTIZED_DIR = CHECKPOINTS_DIR / "quantized"        # <arch>-<recipe>.pt: QAT twins of the bundled decoders
BUNDLED_CHECKPOINT = CHECKPOINTS_DIR / "eegnet.pt"   # the best family on the validation subjects
DEFAULT_TARGET = "mps2-an386"
# The zoo's families, by the names `edgebci train --arch` takes (edgebci.zoo.registry maps them to classes).
ARCH_NAMES = ("conformer", "eegnet", "mamba", "s4d", "spiking")
