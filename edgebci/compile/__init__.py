"""Compile stage: decoder + front end + target -> plain C (and firmware) in an artifact folder.

    compiled = compile_decoder(load_checkpoint(path), Target.from_name("mps2-an386"), out_dir)
    compiled = compile_program(*load_decoder("model.onnx"), target, out_dir)     # .pt, .pt2 or .onnx

The folder holds `manifest.json`, `c/` (the decoder as C with no TVM runtime: ebci_model.[ch],
ebci_model_kernels.c, ebci_frontend.[ch] and the TVM-FFI/DLPack headers it includes), `relax.py`
(the lowered program, for reading) and, once built, `firmware/` and `host/`.

What the target's `[tvm]` table adds: `kernels = "llvm"` also writes c/ebci_model_kernels.o (+ kernels.json),
the same kernels compiled by TVM's LLVM backend for the target's triple and CPU, which the firmware stage
links in place of the C (edgebci.compile.llvm); `cuda_arch` adds `cuda/`, the decoder for an NVIDIA GPU
(edgebci.compile.cuda).
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path


from edgebci.artifacts import read_manifest, write_manifest
from edgebci.errors import BudgetError, ConfigError, ToolchainError
from edgebci.targets import Target
from edgebci.zoo.checkpoint import Checkpoint

# Device RAM besides the model: receive buffer for one COBS frame of a window, filter output, slack
# for the protocol's transmit buffers and statics. Kept in step with firmware_bridge/src.
PROTOCOL_STATIC_BYTES = 2048


@dataclass(frozen=True)
class CompiledModel:
    out_dir: Path
    target_name: str
    model_id: str
    n_channels: int
    n_samples: int
    n_classes: int
    arena_bytes: int
    workspace_bytes: int
    weight_bytes: int
    n_kernels: int
    descriptor_bytes: int = 0
    n_sections: int = 4             # front-end biquad sections (their state is per channel)

    def __post_init__(self):
        if min(self.n_channels, self.n_samples, self.n_classes) <= 0:
            raise ConfigError(f"compiled model has an empty shape: {self.n_channels} channels, "
                              f"{self.n_samples} samples, {self.n_classes} classes")

    @property
    def c_dir(self) -> Path:
        return self.out_dir / "c"

    @property
    def io_bytes(self) -> int:
        """Receive buffer (one COBS-framed WINDOW, or one STREAM chunk of a whole window), the float model input,
        the stream rings (int32 filtered + int16 raw last window) and two fixed-point filter states."""
        window = self.n_channels * self.n_samples
        frame = 2 * window + 8 + 10                 # STREAM chunk header (8 B) + frame header and CRC
        filter_states = 2 * 16 * self.n_channels * self.n_sections
        return frame + frame // 254 + 2 + 4 * window + 6 * window + filter_states

    def estimated_ram_bytes(self, target: Target) -> int:
        return (self.arena_bytes + self.workspace_bytes + self.descriptor_bytes + self.io_bytes
                + PROTOCOL_STATIC_BYTES + target.stack_bytes)

    @classmethod
    def load(cls, out_dir: Path) -> "CompiledModel":
        m = read_manifest(out_dir, "compiled-model")
        return cls(Path(out_dir), m["target"], m["model_id"], m["n_channels"], m["n_samples"], m["n_classes"],
                   m["arena_bytes"], m["workspace_bytes"], m["weight_bytes"], m["n_kernels"], m["descriptor_bytes"],
                   len(m["frontend"]["sos"]))


def tvm_include_dirs() -> list[Path]:
    import tvm
    import tvm_ffi
    return [Path(tvm.__file__).parent / "include", Path(tvm_ffi.__file__).parent / "include"]


def copy_tvm_headers(c_source: str, c_dir: Path) -> list[str]:
    """Copy the TVM/DLPack headers `c_source` includes, transitively, into `c_dir/include`.

    They declare types and the packed-call ABI only; shipping them makes the artifact build anywhere.
    """
    include_re = re.compile(r'^\s*#\s*include\s*[<"]((?:tvm|dlpack)/[^>"]+)[>"]', re.M)
    roots = tvm_include_dirs()
    todo, done = include_re.findall(c_source), []
    while todo:
        rel = todo.pop()
        if rel in done:
            continue
        src = next((r / rel for r in roots if (r / rel).exists()), None)
        if src is None:
            raise ToolchainError(f"generated C includes {rel}, which the installed TVM does not ship")
        dst = c_dir / "include" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        done.append(rel)
        todo += include_re.findall(src.read_text())
    return sorted(done)


def check_budget(compiled: CompiledModel, target: Target) -> None:
    """Refuse, before any build or flash, a model whose RAM or flash need exceeds the board's."""
    ram = compiled.estimated_ram_bytes(target)
    if ram > target.ram_bytes:
        raise BudgetError(
            f"model needs about {ram} bytes of RAM (arena {compiled.arena_bytes} + workspace "
            f"{compiled.workspace_bytes} + tensor descriptors {compiled.descriptor_bytes} + I/O buffers "
            f"{compiled.io_bytes} + protocol {PROTOCOL_STATIC_BYTES} + "
            f"stack {target.stack_bytes}) but {target.name} has {target.ram_bytes}: pick a shorter window, "
            f"fewer channels or a smaller decoder")
    if compiled.weight_bytes > target.flash_bytes:
        raise BudgetError(f"model weights take {compiled.weight_bytes} bytes but {target.name} has "
                          f"{target.flash_bytes} bytes of flash: use a smaller decoder")


def _write_integer_program(spec, out_dir: Path) -> dict:
    """Beside an integer decoder's C: the QCDQ ONNX it came from (qcdq.onnx, or qcdq_{encode,step,readout}.onnx)
    and its program, op by op (program.txt). Returns the manifest's `quantization` entry."""
    program = spec.program
    if isinstance(spec.qcdq_onnx, dict):        # a recurrent decoder: encode, step and readout graphs
        for part, blob in spec.qcdq_onnx.items():
            (out_dir / f"qcdq_{part}.onnx").write_bytes(blob)
    else:
        (out_dir / "qcdq.onnx").write_bytes(spec.qcdq_onnx)
    (out_dir / "program.txt").write_text("\n".join(program.summary()) + "\n")
    return {**spec.quantization, "integer_only": True, "input_scale": float(program.input_info.scale),
            "output_scale": float(program.output_info.scale), "output_dtype": program.output_info.dtype,
            "n_ops": len(program.ops), "macs": program.macs(), "program_weight_bytes": program.weight_bytes()}


def compile_decoder(ckpt: Checkpoint, target: Target, out_dir: Path, source_sha256: str = "") -> CompiledModel:
    """Lower a zoo checkpoint's decoder through TVM to plain C in `out_dir`, checked against the budget."""
    from edgebci.compile.sources import import_checkpoint
    relax_mod, spec = import_checkpoint(ckpt)
    return compile_program(relax_mod, spec, target, out_dir, source_sha256)


def compile_program(relax_mod, spec, target: Target, out_dir: Path, source_sha256: str = "") -> CompiledModel:
    """Lower an imported Relax module (any source) to plain C in `out_dir`, checked against the budget.

    spec : edgebci.compile.sources.DecoderSpec, what the device needs besides the graph
    """
    import tvm

    from edgebci.compile.cdriver import emit_model_c, emit_model_h, plan_driver, workspace_bytes
    from edgebci.frontend.cgen import emit_frontend
    from edgebci.compile.lower import check_kernel_symbols, lower_to_c

    out_dir = Path(out_dir)
    c_dir = out_dir / "c"
    c_dir.mkdir(parents=True, exist_ok=True)
    lowered = lower_to_c(relax_mod, target.schedule, target.fast_exp)
    if spec.integer:
        from edgebci.compile.integer import check_integer_only
        check_integer_only(lowered.kernels_c)
    copy_tvm_headers(lowered.kernels_c, c_dir)
    check_kernel_symbols(lowered.kernels_c, [str(c_dir / "include")])
    plan = plan_driver(lowered.relax_mod)
    if plan.input.shape[-2:] != (len(spec.channels), spec.window_samples):
        raise ConfigError(f"the graph takes input {plan.input.shape} but the decoder is described with "
                          f"{len(spec.channels)} channels x {spec.window_samples} samples")
    workspace = workspace_bytes(lowered.kernels_c)
    (c_dir / "ebci_model_kernels.c").write_text(lowered.kernels_c)
    (c_dir / "ebci_model.c").write_text(emit_model_c(plan, tvm.__version__))
    (c_dir / "ebci_model.h").write_text(emit_model_h(plan, spec.model_id, spec.fs_hz, workspace))
    front_c, front_h = emit_frontend(spec.frontend)
    (c_dir / "ebci_frontend.c").write_text(front_c)
    (c_dir / "ebci_frontend.h").write_text(front_h)
    (out_dir / "relax.py").write_text(lowered.relax_mod.script(show_meta=False))
    quant_info = _write_integer_program(spec, out_dir) if spec.integer else None
    for stale in (c_dir / "ebci_model_kernels.o", c_dir / "kernels.json"):
        stale.unlink(missing_ok=True)   # a recompile for another target must not link old objects
    kernels_info = {"backend": "c", "schedule": target.schedule, "fast_exp": target.fast_exp}
    if target.kernels == "llvm":
        from edgebci.compile.llvm import build_llvm_kernels
        kernels_info.update(backend="llvm", **build_llvm_kernels(lowered, target, c_dir).to_dict())
    cuda_info = None
    if target.cuda_arch:
        from edgebci.compile.cuda import build_cuda
        cuda_info = build_cuda(relax_mod, target, out_dir / "cuda").to_dict()
    compiled = CompiledModel(out_dir, target.name, spec.model_id, len(spec.channels), spec.window_samples,
                             len(spec.classes), max(plan.arena_bytes, 16), max(workspace, 16), plan.const_bytes,
                             lowered.n_kernels, plan.descriptor_bytes, len(spec.frontend.sos))
    write_manifest(out_dir, "compiled-model", {
        "target": target.name, "target_file": str(target.source) if target.source else "",
        "model_id": spec.model_id, "source_sha256": source_sha256, "arch": spec.arch,
        "tvm_version": tvm.__version__, "n_channels": compiled.n_channels, "n_samples": compiled.n_samples,
        "n_classes": compiled.n_classes, "arena_bytes": compiled.arena_bytes,
        "workspace_bytes": compiled.workspace_bytes, "weight_bytes": compiled.weight_bytes,
        "n_kernels": compiled.n_kernels, "descriptor_bytes": compiled.descriptor_bytes,
        "channels": list(spec.channels), "fs_hz": spec.fs_hz,
        "window_samples": spec.window_samples, "offset_samples": spec.offset_samples,
        "hop_samples": spec.hop_samples, "classes": list(spec.classes), "frontend": spec.frontend.to_dict(),
        "kernels": kernels_info, **({"cuda": cuda_info} if cuda_info else {}),
        **({"quantization": quant_info} if quant_info else {}),
    })
    check_budget(compiled, target)
    return compiled
