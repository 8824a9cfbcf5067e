"""Firmware stage: firmware_bridge/ C + the compiler's model C + a board port -> ELF or Linux binary.

    image = build_firmware(compiled.c_dir, Target.from_name("mps2-an386"), out_dir)
    lib = build_host_library(compiled.c_dir, out_dir)       # the host reference, for ctypes

The model folder (MODEL_C_DIR) is the compiler's contract: ebci_model.h/.c,
ebci_model_kernels.c, ebci_frontend.h/.c and include/ (tvm/ffi/c_api.h, dlpack/dlpack.h).
Every .c at its top level is compiled.

When the model folder carries object kernels (ebci_model_kernels.o + kernels.json, written by
edgebci.compile.llvm for a target with `[tvm] kernels = "llvm"`), a build whose compiler targets the
object's architecture links the object in place of ebci_model_kernels.c; any other build (the x86
host reference of a Jetson artifact, say) compiles the portable C.

Cortex-M targets link with newlib (libm for the kernels' expf/tanhf/..., libc for memcpy) and
the board's memory from its TOML, with an explicit stack section, so a model that does not fit
fails the link and raises BudgetError with the numbers. The link repeats the target's cflags, because
gcc picks the newlib/libgcc multilib from -mcpu/-mfloat-abi/-mfpu: thumb/v7e-m+fp/hard for the M4F,
thumb/v7-m/nofp for the FPU-less M3 (float through libgcc's __aeabi_f* routines, no VFP instruction).
Linux targets build a process speaking the protocol on stdin/stdout (hal/host); a Linux target
cross-compiled for another architecture (aarch64 for a Jetson) also gets that architecture's
libebci_decoder.so beside the process.
Cortex-M builds also write firmware.bin (the flash image from the ELF's load addresses) for
flashing tools that take raw binaries.

The host library libebci_decoder.so holds the decoder alone (front end + model + TVM shim, no
protocol, no HAL) and exports, from firmware_bridge/include/ebci/ebci_decoder.h:

    int ebci_decoder_run(const int16_t *x_interleaved, float *scores);
        x_interleaved : int16 [n_samp][n_ch], sample-major microvolts (C-contiguous)
        scores        : float32 [n_classes], the model's logits (written)
        returns 0 (EBCI_OK), -8 (EBCI_ERR_MODEL) or -9 (EBCI_ERR_WORKSPACE)
    void ebci_decoder_filter(const int16_t *x_interleaved, float *out);   out: float32 [n_ch][n_samp]
    int ebci_scores_argmax(const float *scores, int n_classes);
    int ebci_decoder_n_ch(void), ebci_decoder_n_samp(void), ebci_decoder_n_classes(void),
        ebci_decoder_fs_hz(void), ebci_decoder_n_sections(void);
    uint32_t ebci_decoder_error_detail(void);  const char *ebci_tvm_error_message(void);
    size_t ebci_workspace_peak_bytes(void);
    const float ebci_frontend_sos[n_sections][6];
    streaming: ebci_stream_start/push/n_samples/hop/saturated/filtered, ebci_decoder_in_shift;
    the fixed-point filter: ebci_filter_*; its coefficients: ebci_frontend_design/coeffs/post_shift.

    lib = ctypes.CDLL(str(path))
    lib.ebci_decoder_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    x = np.ascontiguousarray(window, dtype=np.int16)          # (n_samp, n_ch)
    scores = np.zeros(lib.ebci_decoder_n_classes(), np.float32)
    assert lib.ebci_decoder_run(x.ctypes.data, scores.ctypes.data) == 0
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebci.errors import BudgetError, ConfigError, ToolchainError
from edgebci.targets import Target

FIRMWARE_DIR = Path(__file__).resolve().parent.parent.parent / "firmware_bridge"
MODEL_FILES = ("ebci_model.h", "ebci_model.c", "ebci_model_kernels.c", "ebci_frontend.h", "ebci_frontend.c")
DECODER_SOURCES = ("ebci_decoder.c", "ebci_filter.c", "ebci_tvm_shim.c")
DEVICE_SOURCES = ("ebci_frame.c", "ebci_protocol.c", "ebci_device.c", *DECODER_SOURCES)
CORTEX_M_SOURCES = ("ebci_cortex_m.c",)   # the runtime every bare-metal port shares (RAM set-up, stack, faults)
BASE_CFLAGS = ("-O2", "-g", "-std=gnu11", "-ffunction-sections", "-fdata-sections")
# Warnings for our C only: TVM's generated kernels trip -Wall by the hundred (unused shape and
# stride variables), which would bury a real error in the log.
OWN_WARNINGS = ("-Wall", "-Wextra")
CORTEX_M_CFLAGS = ("--specs=nano.specs",)
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
HOST_PACKAGES = "gcc binutils"
HOST_LIBRARY_NAME = "libebci_decoder.so"
LOG_TAIL_LINES = 25
# size -A sections that occupy no memory on the device, and those with no flash image
_NOT_LOADED = (".debug", ".comment", ".ARM.attributes", ".stab", ".symtab", ".strtab", ".shstrtab", ".gnu_debug")
_NO_IMAGE = (".bss", ".tbss", ".noinit", ".stack", ".heap")
_RAM = (".data", ".tdata", ".bss", ".tbss", ".noinit")


@dataclass(frozen=True)
class FirmwareImage:
    """A built firmware: the ELF (Cortex-M) or executable (Linux) and what it occupies.

    flash_bytes      : code + constants + .data load image
    ram_static_bytes : .data + .bss, the reserved stack excluded
    stack_bytes      : stack reserved by the link (Cortex-M) or painted (Linux)
    """
    path: Path
    target_name: str
    flash_bytes: int
    ram_static_bytes: int
    stack_bytes: int
    map_path: Path | None
    build_log: Path

    def __post_init__(self):
        if not self.target_name:
            raise ConfigError("FirmwareImage.target_name must name a target, got ''")
        if not Path(self.path).is_file():
            raise ConfigError(f"firmware image {self.path} does not exist")
        for name in ("flash_bytes", "ram_static_bytes", "stack_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"FirmwareImage.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def ram_bytes(self) -> int:
        """Static RAM plus the reserved stack: what the board's RAM must hold."""
        return self.ram_static_bytes + self.stack_bytes


AARCH64_PACKAGES = "gcc-aarch64-linux-gnu qemu-user"


def _install_hint(tool: str) -> str:
    if "arm-none-eabi" in tool:
        return ARM_PACKAGES
    return AARCH64_PACKAGES if "aarch64" in tool else HOST_PACKAGES


def _sources(names) -> list[Path]:
    return [FIRMWARE_DIR / "src" / n for n in names if (FIRMWARE_DIR / "src" / n).is_file()]


def _machine_arch(cc: str) -> str:
    """First field of `cc -dumpmachine`: x86_64, aarch64, arm."""
    out = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True)
    if out.returncode != 0:
        raise ToolchainError(f"{cc} -dumpmachine failed: {out.stderr.strip()}")
    return out.stdout.strip().split("-")[0]


def _object_kernel_defines(prebuilt: list[Path]) -> list[str]:
    from edgebci.compile.llvm import WORKSPACE_ALIGN_BYTES
    return [f"-DEBCI_WORKSPACE_ALIGN={WORKSPACE_ALIGN_BYTES}u"] if prebuilt else []


def _model_units(model_c_dir: Path, cc: str) -> tuple[list[Path], list[Path]]:
    """(C sources, objects) of the model for a build with cc: the LLVM kernel object replaces
    ebci_model_kernels.c when it was compiled for cc's architecture."""
    from edgebci.compile.llvm import read_llvm_kernels
    sources = sorted(model_c_dir.glob("*.c"))
    kernels = read_llvm_kernels(model_c_dir)
    if kernels is None or kernels.mtriple.split("-")[0] != _machine_arch(cc):
        return sources, []
    return [s for s in sources if s.name != "ebci_model_kernels.c"], [kernels.object_path]


def _require_tool(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(f"{tool} is not on PATH, needed to {purpose}; install it with: "
                             f"apt-get install {_install_hint(tool)}")
    return path


def _check_model_dir(model_c_dir: Path) -> Path:
    model_c_dir = Path(model_c_dir)
    missing = [f for f in MODEL_FILES if not (model_c_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{model_c_dir} is not a compiled model folder: it lacks {', '.join(missing)}; "
                          f"produce it with the compile stage (edgebci.compile)")
    return model_c_dir.resolve()


def _include_flags(model_c_dir: Path) -> list[str]:
    return ["-I", str(FIRMWARE_DIR / "include"), "-I", str(model_c_dir), "-I", str(model_c_dir / "include")]


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _board_defines(target: Target, cc: str) -> list[str]:
    """-D flags: the port reads board facts from these, never from per-board #ifdefs."""
    version = subprocess.run([cc, "-dumpversion"], capture_output=True, text=True).stdout.strip()
    build = " ".join([Path(cc).name, version, *BASE_CFLAGS[:1], *target.cflags])
    defines = {"EBCI_BOARD_NAME": _c_string(target.name), "EBCI_CPU_NAME": _c_string(target.cpu),
               "EBCI_CPU_HZ": f"{target.clock_hz}u", "EBCI_STACK_BYTES": str(target.stack_bytes),
               "EBCI_BUILD": _c_string(build)}
    for key, value in target.hal_config:
        defines[f"EBCI_{key.upper()}"] = f"0x{value:x}u" if "base" in key or "addr" in key else f"{value}u"
    return [f"-D{k}={v}" for k, v in defines.items()]


def _write_memory_script(target: Target, out_dir: Path) -> Path:
    if target.stack_bytes % 8:
        raise ConfigError(f"target {target.name}: stack_bytes must be a multiple of 8 (AAPCS stack alignment), "
                          f"got {target.stack_bytes}")
    path = out_dir / "memory.ld"
    path.write_text(f"/* Generated by edgebci.firmware.build for target {target.name} ({target.source}). */\n"
                    f"MEMORY\n{{\n"
                    f"  FLASH (rx)  : ORIGIN = 0x{target.flash_origin:08x}, LENGTH = {target.flash_bytes}\n"
                    f"  RAM   (rwx) : ORIGIN = 0x{target.ram_origin:08x}, LENGTH = {target.ram_bytes}\n"
                    f"}}\nEBCI_STACK_BYTES = {target.stack_bytes};\nINCLUDE cortex_m.ld\n")
    return path


def _log_summary(log: Path) -> str:
    """The compiler's error lines (with their context lines), else the log's last lines."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [i for i, line in enumerate(lines)
              if re.search(r"\berror\b|undefined reference|overflowed|will not fit", line, re.I)]
    if not errors:
        return "\n".join(lines[-LOG_TAIL_LINES:])
    keep = sorted({j for i in errors for j in range(i, min(i + 3, len(lines)))})
    return "\n".join(lines[j] for j in keep[:LOG_TAIL_LINES])


def _raise_if_over_budget(log_text: str, target: Target) -> None:
    ram = re.search(r"region [`']RAM' overflowed by (\d+) bytes", log_text)
    if ram:
        over = int(ram.group(1))
        raise BudgetError(
            f"model needs {target.ram_bytes + over} bytes of RAM but {target.name} has {target.ram_bytes}: "
            f"static data and bss plus the {target.stack_bytes}-byte stack overflow it by {over} bytes; pick a "
            f"smaller model or window, the int8 recipe, or a board with more RAM (or lower memory.stack_bytes "
            f"in {target.source or target.name} if the measured stack high-water mark allows)")
    flash = re.search(r"region [`']FLASH' overflowed by (\d+) bytes", log_text)
    if flash:
        over = int(flash.group(1))
        raise BudgetError(
            f"model needs {target.flash_bytes + over} bytes of flash but {target.name} has {target.flash_bytes}: "
            f"code, constants and weights overflow it by {over} bytes; pick a smaller model, the int8 recipe "
            f"(4x smaller weights), or a board with more flash")


def _run_logged(cmd: list[str], log: Path, what: str, target: Target | None = None) -> None:
    """Run a compiler with its output in log; a failure names the tool and shows the log's tail."""
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        if target is not None:
            _raise_if_over_budget(log.read_text(errors="replace"), target)
        raise ToolchainError(f"{Path(cmd[0]).name} failed building {what} (exit code {rc}); "
                             f"from {log}:\n{_log_summary(log)}")


def _compile_and_link(cc: str, own: list[Path], generated: list[Path], cflags: list[str], ldflags: list[str],
                      output: Path, log: Path, what: str, target: Target | None = None,
                      prebuilt: list[Path] = ()) -> None:
    """Compile each source to an object (warnings on for our C only), then link them with `prebuilt`."""
    obj_dir = output.parent / f"obj-{output.stem}"
    obj_dir.mkdir(exist_ok=True)
    objects = list(prebuilt)
    units = [(src, OWN_WARNINGS) for src in own] + [(src, ()) for src in generated]
    for i, (src, warnings) in enumerate(units):
        objects.append(obj_dir / f"{i:02d}-{src.stem}.o")
        _run_logged([cc, *cflags, *warnings, "-c", str(src), "-o", str(objects[-1])], log, what, target)
    # cflags again at the link: they choose newlib's and libgcc's multilib (without -mcpu gcc takes the default,
    # Arm-state libraries no Cortex-M executes; -mfloat-abi picks the hard-float or the nofp ones)
    _run_logged([cc, *cflags, *map(str, objects), *ldflags, "-o", str(output)], log, what, target)


def _section_sizes(size_tool: str, elf: Path, log: Path) -> dict[str, int]:
    out = subprocess.run([size_tool, "-A", "-d", str(elf)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ToolchainError(f"{size_tool} -A {elf} failed: {out.stderr.strip()}")
    with open(log, "a") as f:
        f.write(f"$ {size_tool} -A -d {elf}\n{out.stdout}")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+\s*$", out.stdout, re.M)}


def _binutil(cc: str, tool: str) -> str:
    """The binutils program matching a gcc: (arm-none-eabi-gcc, size) -> arm-none-eabi-size."""
    name = Path(cc).name
    return name[:-3] + tool if name.endswith("gcc") else tool


def _size_tool(cc: str) -> str:
    return _binutil(cc, "size")


def _build_decoder_library(cc: str, model_c_dir: Path, cflags, out_dir: Path, log: Path, what: str) -> Path:
    """libebci_decoder.so (front end + model + shim, no protocol) built with cc."""
    library = out_dir / HOST_LIBRARY_NAME
    generated, prebuilt = _model_units(model_c_dir, cc)
    _compile_and_link(cc, _sources(DECODER_SOURCES), generated,
                      [*BASE_CFLAGS, *cflags, "-fPIC", *_include_flags(model_c_dir), *_object_kernel_defines(prebuilt)],
                      ["-shared", "-lm"], library, log, what, prebuilt=prebuilt)
    return library


def build_firmware(model_c_dir: Path, target: Target, out_dir: Path) -> FirmwareImage:
    """Build the device firmware for one target into out_dir.

    Raises ToolchainError (a missing or failing compiler, with the log's tail), BudgetError
    (the model does not fit the board's flash or RAM) or ConfigError (bad inputs).
    """
    model_c_dir = _check_model_dir(model_c_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hal_dir = FIRMWARE_DIR / "hal" / target.hal
    if not hal_dir.is_dir():
        known = ", ".join(sorted(p.name for p in (FIRMWARE_DIR / "hal").iterdir()))
        raise ConfigError(f"target {target.name}: hal {target.hal!r} has no port in {hal_dir.parent}; known: {known}")
    cc = _require_tool(target.cc, f"build firmware for {target.name}")
    size_tool = _require_tool(_size_tool(target.cc), f"measure firmware for {target.name}")
    log = out_dir / "build.log"
    log.write_text(f"# edgebci firmware build for {target.name}, model {model_c_dir}\n")
    own = (_sources(DEVICE_SOURCES) + (_sources(CORTEX_M_SOURCES) if target.kind == "cortex-m" else [])
           + sorted(hal_dir.glob("*.c")))
    generated, prebuilt = _model_units(model_c_dir, cc)
    cflags = [*BASE_CFLAGS, *target.cflags, *_include_flags(model_c_dir), *_board_defines(target, cc),
              *_object_kernel_defines(prebuilt)]
    if target.kind == "cortex-m":
        image, map_path = out_dir / "firmware.elf", out_dir / "firmware.map"
        cflags += CORTEX_M_CFLAGS
        ldflags = ["-nostartfiles", "-Wl,--gc-sections", f"-Wl,-Map={map_path}", "-Wl,--print-memory-usage",
                   "-L", str(FIRMWARE_DIR / "ld"), "-T", str(_write_memory_script(target, out_dir)),
                   "-Wl,--start-group", "-lc", "-lm", "-lgcc", "-Wl,--end-group"]
    else:
        image, map_path = out_dir / "ebci_device", out_dir / "ebci_device.map"
        ldflags = ["-Wl,--gc-sections", f"-Wl,-Map={map_path}", "-lm"]
    _compile_and_link(cc, own, generated, cflags, ldflags, image, log, f"the {target.name} firmware", target, prebuilt)
    if target.kind == "cortex-m":
        objcopy = _require_tool(_binutil(target.cc, "objcopy"), f"write the {target.name} flash image")
        _run_logged([objcopy, "-O", "binary", str(image), str(out_dir / "firmware.bin")], log, "the flash image")
    elif _machine_arch(cc) != _machine_arch(_require_tool("gcc", "identify this machine")):
        _build_decoder_library(cc, model_c_dir, target.cflags, out_dir, log, f"the {target.name} decoder library")

    sections = _section_sizes(size_tool, image, log)
    loaded = {k: v for k, v in sections.items() if not k.startswith(_NOT_LOADED)}
    flash = sum(v for k, v in loaded.items() if not k.startswith(_NO_IMAGE))
    ram_static = sum(v for k, v in loaded.items() if k.startswith(_RAM))
    stack = sections.get(".stack", 0) if target.kind == "cortex-m" else target.stack_bytes
    return FirmwareImage(image, target.name, flash, ram_static, stack, map_path, log)


def build_host_library(model_c_dir: Path, out_dir: Path) -> Path:
    """Build libebci_decoder.so (the decoder C alone, see the module docstring) into out_dir."""
    model_c_dir = _check_model_dir(model_c_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cc = _require_tool("gcc", "build the host decoder library")
    log = out_dir / "host_library.log"
    log.write_text(f"# edgebci host decoder library, model {model_c_dir}\n")
    return _build_decoder_library(cc, model_c_dir, (), out_dir, log, "the host decoder library")
