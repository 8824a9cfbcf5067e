"""Firmware stage: builds for mps2-an386 and the host, memory numbers, the FPU-less M3 build (mps2-an385),
and the errors a user sees when a model does not fit or a tool is missing (edgebci.firmware.build)."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from edgebci.errors import BudgetError, ConfigError, ToolchainError
from edgebci.firmware.build import FirmwareImage, build_firmware, build_host_library
from edgebci.targets import TARGETS_DIR, Target

from .conftest import needs_arm

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed (apt-get install gcc)")


def model_define(model_c_dir: Path, name: str) -> int:
    match = re.search(rf"#define\s+{name}\s+\(?(\d+)", (model_c_dir / "ebci_model.h").read_text())
    assert match, f"{name} missing from ebci_model.h"
    return int(match.group(1))


def variant_target(tmp_path: Path, name: str, **values) -> Target:
    """targets/mps2-an386.toml with some keys replaced, as a target file of its own."""
    text = (TARGETS_DIR / "mps2-an386.toml").read_text()
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, flags=re.M)
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return Target.from_name(path)


@pytest.mark.parametrize("target_name", [pytest.param("mps2-an386", marks=needs_arm),
                                         pytest.param("host", marks=needs_gcc)])
def test_build_reports_sane_memory(model_c_dir, tmp_path, target_name):
    target = Target.from_name(target_name)
    image = build_firmware(model_c_dir, target, tmp_path)
    assert image.target_name == target_name and image.build_log.is_file() and image.map_path.is_file()
    assert "ebci_model_run" in image.map_path.read_text()
    n_inputs = model_define(model_c_dir, "EBCI_MODEL_N_CH") * model_define(model_c_dir, "EBCI_MODEL_N_SAMP")
    # at least the model arena, the float input buffer and the int16 receive buffer
    assert image.ram_static_bytes >= model_define(model_c_dir, "EBCI_MODEL_ARENA_BYTES") + 6 * n_inputs
    assert image.stack_bytes == target.stack_bytes
    assert 0 < image.flash_bytes <= target.flash_bytes and image.ram_bytes <= target.ram_bytes
    elf_machine = int.from_bytes(image.path.read_bytes()[18:20], "little")
    assert elf_machine == (40 if target.kind == "cortex-m" else 62)   # EM_ARM, EM_X86_64


def vfp_instructions(elf: Path) -> list[str]:
    """Mnemonics of the VFP instructions in an Arm ELF's code (objdump shows data, marked by $d, as .word)."""
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"^\s*[0-9a-f]+:\t[0-9a-f ]+\t(v[a-z]\w*)", dis, re.M)


@needs_arm
@pytest.mark.parametrize("target_name", ["mps2-an385", "mps2-an386"])
def test_fpu_less_board_gets_float_in_software(model_c_dir, tmp_path, target_name):
    """The float decoder on the Cortex-M3 (fpu = "none"): no VFP instruction anywhere in the image, ours or
    newlib's (the M3 would take a UsageFault on the first one), float arithmetic through libgcc's
    __aeabi_f* routines from the nofp multilib. The M4F build of the same C is the control: it does have
    VFP code, so the check can see it."""
    target = Target.from_name(target_name)
    image = build_firmware(model_c_dir, target, tmp_path)
    vfp = vfp_instructions(image.path)
    symbols = subprocess.run(["arm-none-eabi-nm", str(image.path)], capture_output=True, text=True).stdout
    if target.fpu == "none":
        assert vfp == [], f"{len(vfp)} VFP instructions in the {target_name} image, e.g. {sorted(set(vfp))[:5]}"
        assert re.search(r" T __aeabi_fmul$", symbols, re.M) and re.search(r" T __aeabi_fadd$", symbols, re.M)
        assert "thumb/v7-m/nofp/libgcc.a" in image.map_path.read_text()
    else:
        assert len(vfp) > 100 and not re.search(r" T __aeabi_fmul$", symbols, re.M)
    assert 0 < image.flash_bytes <= target.flash_bytes and image.ram_bytes <= target.ram_bytes


@needs_arm
def test_model_over_ram_budget_names_the_numbers(model_c_dir, tmp_path):
    target = variant_target(tmp_path, "tiny-ram", ram_bytes=8192, stack_bytes=4096)
    with pytest.raises(BudgetError, match=r"model needs (\d+) bytes of RAM but tiny-ram has 8192") as err:
        build_firmware(model_c_dir, target, tmp_path / "fw")
    needed = int(re.search(r"needs (\d+) bytes", str(err.value)).group(1))
    assert needed > 8192 + model_define(model_c_dir, "EBCI_MODEL_ARENA_BYTES")
    assert "4096-byte stack" in str(err.value) and "int8" in str(err.value)


@needs_arm
def test_model_over_flash_budget_names_the_numbers(model_c_dir, tmp_path):
    target = variant_target(tmp_path, "tiny-flash", flash_bytes=2048)
    with pytest.raises(BudgetError, match=r"model needs \d+ bytes of flash but tiny-flash has 2048"):
        build_firmware(model_c_dir, target, tmp_path / "fw")


def test_missing_compiler_names_the_package(model_c_dir, tmp_path):
    target = variant_target(tmp_path, "no-cc", cc='"arm-none-eabi-gcc-not-installed"')
    with pytest.raises(ToolchainError, match="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        build_firmware(model_c_dir, target, tmp_path / "fw")


@needs_gcc
def test_compile_error_shows_the_log(model_c_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(model_c_dir, broken)
    with open(broken / "ebci_model.c", "a") as f:
        f.write("\nint this_does_not_compile(void) { return undeclared_symbol; }\n")
    with pytest.raises(ToolchainError, match=r"(?s)gcc failed building the host firmware.*error: .undeclared_symbol. undeclared"):
        build_firmware(broken, Target.from_name("host"), tmp_path / "fw")


def test_incomplete_model_dir_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="lacks ebci_model.h"):
        build_firmware(tmp_path, Target.from_name("host"), tmp_path / "fw")


def test_firmware_image_validates(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("")
    with pytest.raises(ConfigError, match="flash_bytes must be >= 0"):
        FirmwareImage(log, "host", -1, 0, 0, None, log)
    with pytest.raises(ConfigError, match="does not exist"):
        FirmwareImage(tmp_path / "nope.elf", "host", 0, 0, 0, None, log)


@needs_gcc
def test_host_library_front_end_matches_scipy(model_c_dir, tmp_path):
    lib = ctypes.CDLL(str(build_host_library(model_c_dir, tmp_path)))
    n_ch, n_samp, n_sections = lib.ebci_decoder_n_ch(), lib.ebci_decoder_n_samp(), lib.ebci_decoder_n_sections()
    sos = np.ctypeslib.as_array((ctypes.c_float * (6 * n_sections)).in_dll(lib, "ebci_frontend_sos"))
    sos = sos.reshape(n_sections, 6).astype(np.float64)
    x = np.random.default_rng(0).normal(0, 50, size=(n_samp, n_ch)).astype(np.int16)
    out = np.zeros((n_ch, n_samp), np.float32)
    lib.ebci_decoder_filter(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(out.ctypes.data))
    want = scipy.signal.sosfilt(sos, x.astype(np.float64), axis=0).T   # causal, from rest
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
