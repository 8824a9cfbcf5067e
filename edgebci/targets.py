"""Board descriptions: `targets/<name>.toml` read into a frozen `Target`.

Board specifics live in two places only: data here (CPU, clock, memory, compiler flags, how to reach
the board) and C in `firmware_bridge/hal/<hal>/`.

Two kinds, and the stages dispatch on them: "cortex-m" (a bare-metal ELF, reached through QEMU or a
serial port) and "linux" (the same C as a process on stdio: this host, or another architecture run
under qemu-user here and over ssh on the board). An optional `[tvm]` table says how TVM compiles for
it: `kernels` ("c" or "llvm" with `mtriple`/`mcpu`), `schedule` ("inline" or "cpu"), `fast_exp`
(TVM's polynomial exp) and `cuda_arch` (also build the decoder for that NVIDIA GPU). A Jetson is a "linux" target with a `cuda_arch`.

`fpu = "none"` (the default) is a core without floating-point hardware (mps2-an385, a Cortex-M3): its
cflags must say -mfloat-abi=soft or nothing, so float runs in libgcc and no VFP instruction is emitted.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgebci.errors import ConfigError

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"
KINDS = ("cortex-m", "linux")
# How the kernels become machine code: "c" = TVM's C codegen built by the target's cc (portable, the
# Cortex-M path); "llvm" = TVM's LLVM backend for [tvm] mtriple/mcpu, an object linked in place of the C.
KERNEL_BACKENDS = ("c", "llvm")
# Per-kernel TIR schedules (edgebci.compile.lower): "inline" fuses element-wise work into its
# consumers (least RAM, the microcontroller default); "cpu" also keeps padding materialised and
# puts the innermost output axis innermost so LLVM vectorises it (more RAM, several times faster).
SCHEDULES = ("inline", "cpu")
HOST_MCPU = "host"   # [tvm] mcpu = "host": the CPU this machine reports to LLVM, resolved at compile time
NO_FPU = "none"      # fpu = "none" (or no fpu key): a core without floating-point hardware, e.g. the Cortex-M3
# Float ABIs that emit VFP instructions: on a core without an FPU the first one takes a UsageFault (NOCP).
# -mfloat-abi=soft is the one way to run float there: libgcc's __aeabi_f* routines, newlib's nofp multilib.
_FPU_FLOAT_ABIS = ("-mfloat-abi=hard", "-mfloat-abi=softfp")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    kind: str                      # "cortex-m" (bare-metal ELF) or "linux" (a process, any architecture)
    cpu: str
    fpu: str                       # e.g. "fpv4-sp-d16"; "none" (NO_FPU) for a core without one
    clock_hz: int
    hal: str                       # folder under firmware_bridge/hal/
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    cc: str
    cflags: tuple[str, ...]
    flash_origin: int = 0
    ram_origin: int = 0
    hal_config: tuple[tuple[str, int], ...] = ()
    qemu_machine: str | None = None
    qemu_icount_shift: int | None = None
    serial_port: str | None = None
    kernels: str = "c"
    schedule: str = "inline"
    llvm_mtriple: str | None = None
    llvm_mcpu: str | None = None
    cuda_arch: str | None = None        # e.g. "sm_87": also compile the decoder for this NVIDIA GPU
    fast_exp: bool = False              # TVM's polynomial exp instead of libm's expf (vectorises)
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"target {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        for key in ("flash_bytes", "ram_bytes", "stack_bytes"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"target {self.name}: memory.{key} must be > 0, got {getattr(self, key)}")
        if self.stack_bytes >= self.ram_bytes:
            raise ConfigError(f"target {self.name}: stack_bytes ({self.stack_bytes}) must be smaller than "
                              f"ram_bytes ({self.ram_bytes})")
        if self.qemu_machine is not None and not (isinstance(self.qemu_icount_shift, int)
                                                  and 0 <= self.qemu_icount_shift <= 10):
            raise ConfigError(f"target {self.name}: connect.qemu_icount_shift must be an integer 0..10 for an "
                              f"emulated board, got {self.qemu_icount_shift!r}; add e.g. `qemu_icount_shift = 6` "
                              f"(instruction counts need QEMU's -icount)")
        if not self.fpu:
            raise ConfigError(f"target {self.name}: fpu must name the FPU (e.g. \"fpv4-sp-d16\") or be "
                              f"\"{NO_FPU}\", got {self.fpu!r}")
        fpu_abi = [f for f in self.cflags if f in _FPU_FLOAT_ABIS]
        if self.fpu == NO_FPU and fpu_abi:
            raise ConfigError(f"target {self.name}: fpu = \"{NO_FPU}\" but compiler.cflags has {fpu_abi[0]}, which "
                              f"emits VFP instructions that fault on a core without an FPU; use -mfloat-abi=soft "
                              f"(float in software) or name the board's FPU in fpu")
        if self.kernels not in KERNEL_BACKENDS:
            raise ConfigError(f"target {self.name}: tvm.kernels must be one of {KERNEL_BACKENDS}, got {self.kernels!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"target {self.name}: tvm.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.kernels == "llvm" and not (self.llvm_mtriple and self.llvm_mcpu):
            raise ConfigError(f"target {self.name}: tvm.kernels = \"llvm\" needs tvm.mtriple and tvm.mcpu (e.g. "
                              f"mtriple = \"x86_64-linux-gnu\", mcpu = \"{HOST_MCPU}\"): without an explicit triple "
                              f"TVM ignores the CPU and emits generic code")
        if self.kernels == "llvm" and self.kind != "linux":
            raise ConfigError(f"target {self.name}: tvm.kernels = \"llvm\" is for Linux targets; a {self.kind} "
                              f"board takes the portable C kernels (kernels = \"c\")")
        if self.cuda_arch is not None and not re.fullmatch(r"sm_\d{2,3}[a-z]?", self.cuda_arch):
            raise ConfigError(f"target {self.name}: tvm.cuda_arch must look like \"sm_87\", got {self.cuda_arch!r}")
        if self.kind == "cortex-m" and self.qemu_machine is None and self.serial_port is None:
            raise ConfigError(f"target {self.name}: a cortex-m board needs connect.qemu_machine or "
                              f"connect.serial_port to be reachable")

    @property
    def is_emulated(self) -> bool:
        return self.qemu_machine is not None

    def resolved_mcpu(self) -> str | None:
        """[tvm] mcpu with "host" replaced by the CPU LLVM detects on this machine (e.g. "znver4")."""
        if self.llvm_mcpu != HOST_MCPU:
            return self.llvm_mcpu
        from tvm.target import codegen
        return str(codegen.llvm_get_system_cpu())

    @classmethod
    def from_toml(cls, path: Path) -> "Target":
        try:
            raw = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"target file {path} is not valid TOML: {e}") from None
        try:
            mem, comp, conn, tvm = raw["memory"], raw["compiler"], raw.get("connect", {}), raw.get("tvm", {})
            return cls(
                name=raw["name"], description=raw["description"], kind=raw["kind"], cpu=raw["cpu"],
                fpu=raw.get("fpu", NO_FPU), clock_hz=int(raw["clock_hz"]), hal=raw["hal"],
                flash_bytes=int(mem["flash_bytes"]), ram_bytes=int(mem["ram_bytes"]),
                stack_bytes=int(mem["stack_bytes"]), flash_origin=int(mem.get("flash_origin", 0)),
                ram_origin=int(mem.get("ram_origin", 0)), cc=comp["cc"], cflags=tuple(comp.get("cflags", ())),
                hal_config=tuple(sorted((k, int(v)) for k, v in raw.get("hal_config", {}).items())),
                qemu_machine=conn.get("qemu_machine"), qemu_icount_shift=conn.get("qemu_icount_shift"),
                serial_port=conn.get("serial_port"), kernels=tvm.get("kernels", "c"),
                schedule=tvm.get("schedule", "inline"), llvm_mtriple=tvm.get("mtriple"), llvm_mcpu=tvm.get("mcpu"),
                cuda_arch=tvm.get("cuda_arch"), fast_exp=bool(tvm.get("fast_exp", False)), source=Path(path),
            )
        except KeyError as e:
            raise ConfigError(f"target file {path} lacks the key {e.args[0]!r}; "
                              f"see targets/mps2-an386.toml for a complete example") from None

    @classmethod
    def from_name(cls, name: str | Path) -> "Target":
        """A name from `targets/` ("mps2-an386") or a path to a TOML file of the same shape."""
        p = Path(name)
        if p.suffix == ".toml" and p.exists():
            return cls.from_toml(p)
        path = TARGETS_DIR / f"{name}.toml"
        if not path.exists():
            raise ConfigError(f"unknown target {str(name)!r}; known targets: {', '.join(list_target_names())} "
                              f"(or pass the path of a target .toml file)")
        return cls.from_toml(path)


def list_target_names() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def list_targets() -> list[Target]:
    return [Target.from_name(n) for n in list_target_names()]
