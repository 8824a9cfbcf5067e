"""Host test: firmware_bridge's frame and message C decodes the golden frames exactly as
Python does, and encodes them byte for byte (tests/c/test_frames.c, built with the host gcc,
under AddressSanitizer and UBSan where the toolchain has them)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgebci.firmware.build import FIRMWARE_DIR

TESTS = Path(__file__).parent
GOLDEN_PATH = TESTS / "data" / "golden_frames.txt"
SOURCES = [TESTS / "c" / "test_frames.c", FIRMWARE_DIR / "src" / "ebci_frame.c", FIRMWARE_DIR / "src" / "ebci_protocol.c"]
STRICT = ["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", str(FIRMWARE_DIR / "include")]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed (apt-get install gcc)")


@pytest.fixture(scope="module")
def frames_checker(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("frames_c") / "test_frames"
    base = ["gcc", *STRICT, *map(str, SOURCES), "-o", str(exe)]
    built = subprocess.run(base[:1] + SANITIZE + base[1:], capture_output=True, text=True)
    if built.returncode != 0:   # no libasan/libubsan: the checks still run, unsanitised
        built = subprocess.run(base, capture_output=True, text=True)
    assert built.returncode == 0, f"building tests/c/test_frames.c failed:\n{built.stderr}"
    return exe


def test_c_decodes_and_encodes_golden_frames(frames_checker):
    run = subprocess.run([str(frames_checker), str(GOLDEN_PATH)], capture_output=True, text=True, timeout=60)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, "\n".join([*lines, run.stderr])
    names = [line.split("name=")[1].split()[0] for line in GOLDEN_PATH.read_text().splitlines() if "name=" in line]
    assert [line.split()[1] for line in lines if line.startswith("ok ")] == names
    assert lines[-1] == f"summary {len(names)} 0"
