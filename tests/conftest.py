"""Shared fixtures: the bundled checkpoint compiled once per session, and tool probes for the device tier."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import BUNDLED_CHECKPOINT

REPO = Path(__file__).resolve().parent.parent


def have_arm_toolchain() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None


needs_arm = pytest.mark.skipif(not have_arm_toolchain(),
                               reason="arm-none-eabi-gcc / qemu-system-arm missing: run `make setup`")


@pytest.fixture(scope="session")
def sample_edf() -> Path:
    return SAMPLE_DIR / "S015R04.edf"


@pytest.fixture(scope="session")
def bundled_checkpoint():
    from edgebci.zoo import load_checkpoint
    return load_checkpoint(BUNDLED_CHECKPOINT)


@pytest.fixture(scope="session")
def compiled_model(tmp_path_factory, bundled_checkpoint):
    """The bundled decoder lowered to C for mps2-an386 (C only: no firmware build)."""
    from edgebci.compile import compile_decoder
    from edgebci.targets import Target
    out = tmp_path_factory.mktemp("compiled")
    return compile_decoder(bundled_checkpoint, Target.from_name("mps2-an386"), out)


@pytest.fixture(scope="session")
def model_c_dir(compiled_model) -> Path:
    return compiled_model.c_dir


@pytest.fixture(scope="session")
def host_reference(tmp_path_factory, compiled_model):
    """The generated decoder C built as a host shared library (front end + model)."""
    from edgebci.firmware.build import build_host_library
    from edgebci.hil.runner import HostReference
    from edgebci.pipeline import HOST_ENTRY
    lib = build_host_library(compiled_model.c_dir, tmp_path_factory.mktemp("hostlib"))
    return HostReference(lib, compiled_model.n_classes, HOST_ENTRY)
