"""Compile stage, Linux-class CPUs: the lowered kernels through TVM's LLVM backend for an explicit
triple and CPU, as one object file that replaces the portable C kernels at link time.

    kernels = build_llvm_kernels(lowered, target, c_dir)   # c_dir/ebci_model_kernels.o + kernels.json

The object exports the same `__tvm_ffi_<kernel>` packed functions as ebci_model_kernels.c, so the
static driver (ebci_model.c), the TVM shim and the firmware C link against either unchanged. The
triple must be explicit: with the wheel's default triple (x86_64-conda-linux-gnu) TVM ignores
`-mcpu=native` and emits baseline x86-64 code. `kernels.json` records triple and CPU so that the
firmware stage links the object only into builds for that machine (edgebci.firmware.build).
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebci.errors import ConfigError, ToolchainError, UnsupportedOpError
from edgebci.targets import Target

KERNELS_OBJECT = "ebci_model_kernels.o"
KERNELS_INFO = "kernels.json"
# What a Linux process may resolve besides the runtime shim: libc/libm, and the half-float helpers
# LLVM defines weakly in the object itself.
LIBC = {"memcpy", "memset", "memmove", "expf", "logf", "sqrtf", "tanhf", "powf", "erff", "fabsf", "floorf",
        "ceilf", "roundf", "fmaxf", "fminf", "sinf", "cosf", "exp", "log", "sqrt", "tanh", "pow", "erf",
        "expm1f", "log1pf", "nearbyintf", "truncf", "fmodf", "_GLOBAL_OFFSET_TABLE_"}


@dataclass(frozen=True)
class LlvmKernels:
    """The kernels as one relocatable object for `mtriple`/`mcpu` (its ELF e_machine: `elf_machine`)."""
    object_path: Path
    mtriple: str
    mcpu: str
    elf_machine: int

    def __post_init__(self):
        if not Path(self.object_path).is_file():
            raise ConfigError(f"kernel object {self.object_path} does not exist")

    def to_dict(self) -> dict:
        return {"object": Path(self.object_path).name, "mtriple": self.mtriple, "mcpu": self.mcpu,
                "elf_machine": self.elf_machine}


def elf_machine(path: Path) -> int:
    """e_machine of an ELF file: 62 x86-64, 183 AArch64, 40 Arm."""
    head = Path(path).read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise ConfigError(f"{path} is not an ELF file")
    return int.from_bytes(head[18:20], "little")


# What the callers' buffers are guaranteed: element alignment. The driver's arena offsets and constants
# are 16-byte aligned, but the input and output are whatever the caller passes (numpy, a static array).
PARAM_ALIGN_BYTES = 4
# TVM's LLVM code assumes its workspace allocations are 64-byte aligned (aligned AVX-512 stores);
# the shim's pool is built with this alignment for object kernels (edgebci.firmware.build).
WORKSPACE_ALIGN_BYTES = 64
_PARAM_BUFFER = re.compile(r'T\.Buffer\((\(.*?\)), "(\w+)"\)')


def _unaligned_params(func):
    """`func` with its parameter buffers declared PARAM_ALIGN_BYTES-aligned instead of TVM's default 64.

    TVM turns a buffer's alignment into `llvm.assume(align 64)` on the pointer, and LLVM then emits
    aligned vector loads and stores (vmovaps) that fault on a 16-byte aligned arena slot. The
    parameters are only reachable through the printed TIR in TVM 0.27 (PrimFunc has no buffer_map
    setter), so the signature is rewritten there and parsed back."""
    import tvm
    text = func.script()
    head, sep, body = text.partition("):\n")
    new_head, n = _PARAM_BUFFER.subn(rf'T.Buffer(\1, "\2", align={PARAM_ALIGN_BYTES})', head)
    if not sep or n != len(func.params):
        raise UnsupportedOpError(f"cannot relax the alignment of a kernel's {len(func.params)} parameters "
                                 f"(found {n} buffers in its signature); use kernels = \"c\" for this target")
    return tvm.script.from_source(new_head + sep + body)


def llvm_target(target: Target):
    import tvm
    return tvm.target.Target({"kind": "llvm", "mtriple": target.llvm_mtriple, "mcpu": target.resolved_mcpu()})


# Function pointers the LLVM kernels call through (weak, zero until someone sets them): the TVM
# runtime fills them at load time; firmware_bridge/src/ebci_tvm_shim.c defines these two.
SHIM_POINTERS = {"__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace"}


def _check_undefined(obj: Path) -> None:
    from edgebci.compile.lower import RUNTIME_SHIM
    nm = subprocess.run(["nm", str(obj)], capture_output=True, text=True)
    if nm.returncode:
        raise ToolchainError(f"nm {obj} failed: {nm.stderr.strip()} (apt-get install binutils)")
    symbols = [line.split() for line in nm.stdout.splitlines() if line.strip()]
    undefined = {s[-1] for s in symbols if s[-2] == "U"}
    # a weak object (V) is a runtime-filled pointer: left NULL it would crash the first call
    undefined |= {s[-1] for s in symbols if s[-2] in ("V", "v") and s[-1].startswith("__TVM")} - SHIM_POINTERS
    missing = sorted(undefined - LIBC - RUNTIME_SHIM)
    if missing:
        raise UnsupportedOpError(f"the LLVM kernels call {missing}, which the static driver does not provide "
                                 f"(allowed: libc/libm and the runtime shim {sorted(RUNTIME_SHIM)})")


def build_llvm_kernels(lowered, target: Target, c_dir: Path) -> LlvmKernels:
    """Build `lowered`'s kernels for target.llvm_mtriple / mcpu into c_dir; returns what was written."""
    import tvm

    from edgebci.compile.lower import kernel_module
    tgt = llvm_target(target)
    kernels = kernel_module(lowered)
    kernels = tvm.IRModule({gv: _unaligned_params(f).with_attrs(f.attrs) for gv, f in kernels.functions.items()})
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": True}):
        lib = tvm.tirx.build(kernels, target=tgt)
    obj = Path(c_dir) / KERNELS_OBJECT
    lib.write_to_file(str(obj))
    _check_undefined(obj)
    kernels = LlvmKernels(obj, target.llvm_mtriple, target.resolved_mcpu(), elf_machine(obj))
    (Path(c_dir) / KERNELS_INFO).write_text(json.dumps(kernels.to_dict(), indent=2) + "\n")
    return kernels


def read_llvm_kernels(c_dir: Path) -> LlvmKernels | None:
    """The object kernels a compiled model folder carries, or None (portable C only)."""
    info = Path(c_dir) / KERNELS_INFO
    if not info.is_file():
        return None
    raw = json.loads(info.read_text())
    return LlvmKernels(Path(c_dir) / raw["object"], raw["mtriple"], raw["mcpu"], int(raw["elf_machine"]))
