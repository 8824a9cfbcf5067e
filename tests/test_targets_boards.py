"""More Cortex-M targets: the M3 (no FPU), M7 and M55 emulated boards through `compile` + `hil` (the same code
path as mps2-an386), the per-target compiler flags reaching the code (M55 Helium), the physical STM32F746
board's build, and the target file's validation."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import CHECKPOINTS_DIR
from edgebci.errors import ConfigError
from edgebci.targets import TARGETS_DIR, Target, list_target_names

from .conftest import needs_arm

SMALL_DECODER = CHECKPOINTS_DIR / "mamba.pt"   # the fewest instructions per window of the zoo


def test_new_targets_are_listed_with_their_budgets():
    names = list_target_names()
    for name in ("mps2-an385", "mps2-an500", "mps3-an547", "nucleo-f746zg", "x86-64"):
        assert name in names
    m3, m4 = Target.from_name("mps2-an385"), Target.from_name("mps2-an386")
    assert (m3.cpu, m3.fpu, m3.qemu_machine, m3.qemu_icount_shift) == ("cortex-m3", "none", "mps2-an385", 6)
    assert "-mfloat-abi=soft" in m3.cflags and not any(f.startswith("-mfpu") for f in m3.cflags)
    # the same MPS2 memory map, UART and clock as the M4F board: only the core differs
    same = ("flash_origin", "flash_bytes", "ram_origin", "ram_bytes", "stack_bytes", "clock_hz", "hal", "hal_config")
    assert [getattr(m3, k) for k in same] == [getattr(m4, k) for k in same]
    m55 = Target.from_name("mps3-an547")
    assert (m55.cpu, m55.flash_origin, m55.flash_bytes, m55.ram_origin, m55.ram_bytes) == (
        "cortex-m55", 0, 512 * 1024, 0x20000000, 512 * 1024)
    assert "-mcpu=cortex-m55" in m55.cflags and dict(m55.hal_config)["uart_base"] == 0x59303000
    m7 = Target.from_name("mps2-an500")
    assert m7.qemu_machine == "mps2-an500" and "-mfpu=fpv5-d16" in m7.cflags
    board = Target.from_name("nucleo-f746zg")
    assert not board.is_emulated and board.serial_port == "/dev/ttyACM0"
    assert (board.flash_origin, board.flash_bytes, board.ram_bytes, board.clock_hz) == (
        0x08000000, 1024 * 1024, 320 * 1024, 16_000_000)


def test_targets_command_lists_them():
    from edgebci.cli import main
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["targets"]) == 0
    text = out.getvalue()
    assert re.search(r"mps3-an547\s+cortex-m55\s+\S+\s+512\s+512", text), text
    assert re.search(r"mps2-an385\s+cortex-m3\s+none\s+4096\s+4096\s+16384\s+qemu mps2-an385", text), text
    assert re.search(r"nucleo-f746zg\s+cortex-m7\s+fpv5-sp-d16\s+1024\s+320\s+16384\s+/dev/ttyACM0", text), text


def _variant(tmp_path, base: str, replace: dict[str, str], append: str = "") -> Target:
    text = (TARGETS_DIR / f"{base}.toml").read_text()
    for key, value in replace.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    path = tmp_path / "variant.toml"
    path.write_text(text + append)
    return Target.from_name(path)


def test_bad_tvm_section_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"tvm.kernels must be one of \('c', 'llvm'\), got 'asm'"):
        _variant(tmp_path, "x86-64", {"kernels": '"asm"'})
    with pytest.raises(ConfigError, match=r"tvm.schedule must be one of .*got 'fast'"):
        _variant(tmp_path, "x86-64", {"schedule": '"fast"'})
    with pytest.raises(ConfigError, match=r"needs tvm.mtriple and tvm.mcpu .*x86_64-linux-gnu"):
        _variant(tmp_path, "x86-64", {"mtriple": '""'})
    with pytest.raises(ConfigError, match=r"kernels = \"llvm\" is for Linux targets"):
        _variant(tmp_path, "mps2-an386", {}, '\n[tvm]\nkernels = "llvm"\nmtriple = "thumbv7em-none-eabi"\nmcpu = "cortex-m4"\n')
    with pytest.raises(ConfigError, match=r"cuda_arch must look like \"sm_87\", got 'orin'"):
        _variant(tmp_path, "x86-64", {"mcpu": '"host"\ncuda_arch = "orin"'})


def test_fpu_none_refuses_float_abis_that_emit_vfp_code(tmp_path):
    with pytest.raises(ConfigError, match=r'fpu = "none" but compiler.cflags has -mfloat-abi=hard, which emits VFP '
                                          r'instructions .* use -mfloat-abi=soft'):
        _variant(tmp_path, "mps2-an386", {"fpu": '"none"'})
    with pytest.raises(ConfigError, match=r"has -mfloat-abi=softfp"):
        _variant(tmp_path, "mps2-an385", {"cflags": '["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=softfp"]'})
    with pytest.raises(ConfigError, match=r'fpu must name the FPU .* or be "none", got \'\''):
        _variant(tmp_path, "mps2-an385", {"fpu": '""'})


@needs_arm
@pytest.mark.device
@pytest.mark.parametrize("board", ["mps2-an385", "mps2-an500", "mps3-an547"])
def test_emulated_board_compiles_runs_and_agrees(tmp_path, board):
    from edgebci.pipeline import compile_for_target, hil_and_report
    compiled, image = compile_for_target(SMALL_DECODER, board, tmp_path / "c", progress=False)
    target = Target.from_name(board)
    assert image.flash_bytes <= target.flash_bytes and image.ram_bytes <= target.ram_bytes
    r = hil_and_report(tmp_path / "c", [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", max_windows=3,
                       progress=False).report
    assert r["device"]["board"] == board and r["device"]["cpu"] == target.cpu
    assert r["windows"]["failed"] == 0 and r["agreement"]["rate"] == 1.0, r["failures"]
    assert r["latency"]["metric"] == "qemu_insn_count" and r["latency"]["median"] > 100_000
    assert r["memory"]["stack_peak"]["within_budget"]


@needs_arm
def test_m55_flags_from_the_toml_give_helium_code(model_c_dir, tmp_path):
    """-mcpu=cortex-m55 -O3 from targets/mps3-an547.toml reach gcc: the same C gets Helium (MVE q-register)
    instructions, which the M4 build of it cannot have."""
    from edgebci.firmware.build import build_firmware

    def q_instructions(elf) -> int:
        dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True).stdout
        return len(re.findall(r"\tv\w+(?:\.\w+)*\s+q\d", dis))

    m55 = build_firmware(model_c_dir, Target.from_name("mps3-an547"), tmp_path / "m55")
    m4 = build_firmware(model_c_dir, Target.from_name("mps2-an386"), tmp_path / "m4")
    assert q_instructions(m55.path) > 0 and q_instructions(m4.path) == 0
    assert re.search(r"-mcpu=cortex-m55 -mthumb -mfloat-abi=hard -O3 ", m55.build_log.read_text())


@needs_arm
def test_physical_m7_board_builds_a_flashable_image(model_c_dir, tmp_path):
    """Built here, not run: no STM32F746 is attached. The image must boot from 0x08000000."""
    from edgebci.firmware.build import build_firmware
    target = Target.from_name("nucleo-f746zg")
    image = build_firmware(model_c_dir, target, tmp_path)
    raw = (tmp_path / "firmware.bin").read_bytes()
    initial_sp, reset = int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[4:8], "little")
    assert target.ram_origin < initial_sp <= target.ram_origin + target.ram_bytes
    assert target.flash_origin <= reset < target.flash_origin + image.flash_bytes and reset & 1   # Thumb
    assert len(raw) == image.flash_bytes
    log = image.build_log.read_text()
    assert "-DEBCI_UART_BASE=0x40004800u" in log and "-mfpu=fpv5-sp-d16" in log and "hal/stm32f7" in log


@needs_arm
def test_physical_board_without_port_is_refused(model_c_dir, tmp_path):
    from edgebci.pipeline import open_device
    from edgebci.firmware.build import build_firmware
    target = Target.from_name("nucleo-f746zg")
    image = build_firmware(model_c_dir, target, tmp_path)
    with pytest.raises(ConfigError, match=r"nucleo-f746zg is a physical board: pass its serial port, e.g. --port"):
        open_device(target, image, tmp_path, None)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm missing")
def test_emulated_boards_exist_in_this_qemu():
    machines = subprocess.run(["qemu-system-arm", "-M", "help"], capture_output=True, text=True).stdout
    for name in ("mps2-an385", "mps2-an500", "mps3-an547"):
        assert Target.from_name(name).qemu_machine in machines


@needs_arm
@pytest.mark.device
def test_m55_count_is_instructions_like_the_m4(tmp_path):
    """qemu_insn_count on mps3-an547 (32 MHz SysTick) and mps2-an386 (25 MHz) converts ticks to instructions:
    the same Thumb-2 code (M4 flags, inline schedule) run on both boards gives the same count."""
    from edgebci.pipeline import compile_for_target, hil_and_report
    m4_code = _variant(tmp_path, "mps3-an547", {"name": '"an547-m4-code"', "schedule": '"inline"',
                                               "cflags": '["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", '
                                                         '"-mfpu=fpv4-sp-d16"]'})
    counts = {}
    for name, target in (("m55", m4_code.source), ("m4", "mps2-an386")):
        compile_for_target(SMALL_DECODER, target, tmp_path / name, progress=False)
        r = hil_and_report(tmp_path / name, [SAMPLE_DIR / "S015R08.edf"], tmp_path / f"{name}-r", max_windows=1,
                           progress=False).report
        assert r["latency"]["metric"] == "qemu_insn_count"
        counts[name] = r["latency"]["median"]
    assert abs(counts["m55"] - counts["m4"]) <= 0.001 * counts["m4"], counts
