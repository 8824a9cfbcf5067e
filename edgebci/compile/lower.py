"""Lower a Relax module to plain-C kernels and a statically planned `main`, for devices with no TVM runtime.

Relax: decompose for inference, legalize to TIR, fuse; TIR: a schedule per fused kernel; Relax again:
explicit memory, static block planning. The result is what `cdriver` turns into C.

Two schedules (a target's `[tvm] schedule`):
  inline  element-wise blocks inlined into their consumers, reduction epilogues moved next to each
          output element. Without it the unscheduled default materialises every element-wise
          intermediate at full size (EEGNet workspace 209 KB -> 0). Least RAM: the microcontroller one.
  cpu     the same, except that producers of a reduction (padding) stay materialised and each
          reduction's innermost output axis is moved inside its reduction loops, so the inner loop
          is a unit-stride axpy that LLVM vectorises (AVX-512, NEON). EEGNet's 64-tap depthwise
          convolution drops from 330 us to 16 us on x86; the price is a padded copy in the workspace.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgebci.errors import ToolchainError, UnsupportedOpError

# Relax ops allowed to remain in `main` after lowering; everything else means an op was not legalized.
MAIN_OPS = {"relax.memory.alloc_storage", "relax.memory.alloc_tensor", "relax.builtin.alloc_tensor",
            "relax.reshape", "relax.memory.kill_storage", "relax.memory.kill_tensor", "relax.null_value"}
# libm functions the generated kernels may call; newlib provides them on Cortex-M.
LIBM = {"expf", "logf", "sqrtf", "tanhf", "powf", "erff", "fabsf", "floorf", "ceilf", "roundf", "fmaxf",
        "fminf", "sinf", "cosf", "exp", "log", "sqrt", "tanh", "pow", "erf", "fabs", "floor", "ceil",
        "round", "fmax", "fmin", "sin", "cos", "expm1f", "log1pf", "nearbyintf", "truncf", "fmodf"}
# What firmware_bridge/src/ebci_tvm_shim.c provides in place of the TVM runtime.
RUNTIME_SHIM = {"TVMBackendAllocWorkspace", "TVMBackendFreeWorkspace", "TVMFFIErrorSetRaisedFromCStr",
                "TVMFFIErrorSetRaisedFromCStrParts"}


@dataclass(frozen=True)
class LoweredModel:
    """TVM's lowered Relax module (static memory) and the C source of its kernels."""
    relax_mod: object
    kernels_c: str
    n_kernels: int


def _spatial(sch, block) -> bool:
    from tvm import tirx
    return all(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(block).iter_vars)


KEEP_PREFIX = "keep_"     # a block whose value its consumer reads more than once per element: inlining copies it


def _inline_elementwise(sch, keep_reduction_inputs: bool) -> None:
    """Inline element-wise blocks into their consumers (and epilogues into their producers) until
    nothing changes; with keep_reduction_inputs, a block a reduction reads stays a buffer. Blocks named
    keep_* stay buffers (an iteration whose every step reads the previous one twice, as the integer
    square root's digits do, would grow exponentially if inlined)."""
    root = sch.get_sblock("root")
    changed = True
    while changed:
        changed = False
        for inline in (sch.compute_inline, sch.reverse_compute_inline):
            for block in sch.get_child_blocks(root):
                if not _spatial(sch, block) or sch.get(block).name_hint.startswith(KEEP_PREFIX):
                    continue
                if (keep_reduction_inputs and inline == sch.compute_inline
                        and any(not _spatial(sch, c) for c in sch.get_consumers(block))):
                    continue   # padding inlined into a convolution puts a branch in its inner loop
                try:
                    inline(block)
                except Exception:   # not inlinable (e.g. the output block): leave it
                    continue
                changed = True
                break
            if changed:
                break


def _reductions(sch):
    """(block, spatial loops, reduction loops) of each reduction whose loops are spatial-then-reduce."""
    from tvm import tirx
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        ivs = sch.get(block).iter_vars
        kinds = [iv.iter_type == tirx.IterVar.DataPar for iv in ivs]
        n_spatial = sum(kinds)
        loops = sch.get_loops(block)
        if 0 < n_spatial < len(ivs) and len(loops) == len(ivs) and kinds == sorted(kinds, reverse=True):
            yield block, loops[:n_spatial], loops[n_spatial:]


def _attach_consumers(sch, block, loop) -> None:
    for consumer in sch.get_consumers(block):
        try:
            sch.reverse_compute_at(consumer, loop)
        except Exception:   # a consumer that also reads other outputs stays at the root
            pass


def _inline_schedule(func):
    """Inline element-wise blocks into their consumers and move reduction epilogues next to them."""
    from tvm import s_tir
    sch = s_tir.Schedule(func)
    from tvm import tirx
    _inline_elementwise(sch, keep_reduction_inputs=False)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        ivs = sch.get(block).iter_vars
        n_spatial = sum(iv.iter_type == tirx.IterVar.DataPar for iv in ivs)
        if 0 < n_spatial < len(ivs):
            _attach_consumers(sch, block, sch.get_loops(block)[n_spatial - 1])
    return sch.mod["main"]


VECTOR_MIN_EXTENT = 8   # shorter output rows gain nothing from the reordering


def _cpu_schedule(func):
    """The inline schedule, with each reduction's longest-stride-one output axis innermost."""
    from tvm import s_tir
    sch = s_tir.Schedule(func)
    _inline_elementwise(sch, keep_reduction_inputs=True)
    for block, spatial, reduce in list(_reductions(sch)):
        extents = [int(sch.get(loop).extent) for loop in spatial]
        inner = max((i for i, e in enumerate(extents) if e > 1), default=None)
        if inner is None or extents[inner] < VECTOR_MIN_EXTENT:
            _attach_consumers(sch, block, spatial[-1])
            continue
        outer = spatial[:inner] + spatial[inner + 1:]
        sch.reorder(*outer, *reduce, spatial[inner])
        loops = sch.get_loops(block)
        sch.decompose_reduction(block, loops[len(outer)])   # zero the whole row, then accumulate into it
        if outer:
            _attach_consumers(sch, block, sch.get_loops(block)[len(outer) - 1])
    return sch.mod["main"]


SCHEDULE_FUNCS = {"inline": _inline_schedule, "cpu": _cpu_schedule}


def _schedule_all(mod, schedule: str):
    import tvm
    from tvm import tirx
    out = tvm.IRModule(dict(mod.functions))
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            scheduled = SCHEDULE_FUNCS[schedule](func)
            out[gv] = scheduled.with_attrs(func.attrs) if func.attrs else scheduled
    return out


def _check_main(mod):
    import tvm
    from tvm import relax
    bad = set()
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name not in MAIN_OPS:
                bad.add(value.op.name)
            if isinstance(value, relax.Call) and isinstance(value.op, relax.ExternFunc):
                bad.add(str(value.op.global_symbol))
    if bad:
        raise UnsupportedOpError(f"operator(s) {', '.join(sorted(bad))} have no plain-C lowering in TVM; "
                                 f"the device would need a runtime for them. Change the decoder to avoid them")


def check_kernel_symbols(kernels_c: str, include_dirs: list[str]) -> None:
    """Compile the kernels for the host and refuse any undefined symbol a bare-metal device lacks."""
    with tempfile.TemporaryDirectory() as tmp:
        src, obj = Path(tmp) / "k.c", Path(tmp) / "k.o"
        src.write_text(kernels_c)
        cmd = ["gcc", "-c", "-O0", "-std=gnu11", *[f"-I{d}" for d in include_dirs], str(src), "-o", str(obj)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            raise ToolchainError(f"generated kernels do not compile with host gcc:\n{run.stderr[-2000:]}")
        nm = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in nm.splitlines() if line.strip()}
    missing = sorted(undefined - LIBM - RUNTIME_SHIM - {"memcpy", "memset", "memmove", "_GLOBAL_OFFSET_TABLE_"})
    if missing:
        raise UnsupportedOpError(f"generated kernels call {missing}, which a bare-metal device does not have; "
                                 f"allowed: libm {sorted(LIBM)} and the runtime shim {sorted(RUNTIME_SHIM)}")


def _fast_exp_legalization() -> dict:
    """relax.exp as TVM's polynomial exp (topi.fast_exp: range reduction + degree-7 polynomial, float32),
    which vectorises, instead of a libm expf call per element: EEGNet's and the Conformer's ELU
    kernel drops from 16.6 us to 2.0 us on x86. Softmax and GELU keep libm."""
    from tvm import topi

    def fast_exp(bb, call):
        if call.args[0].ty.dtype != "float32":
            return bb.call_te(topi.exp, call.args[0], primfunc_name_hint="tir_exp")
        return bb.call_te(topi.fast_exp, call.args[0], primfunc_name_hint="tir_exp")
    return {"relax.exp": fast_exp}


def lower_to_c(mod, schedule: str = "inline", fast_exp: bool = False) -> LoweredModel:
    """Lower a Relax module to C kernels and a static `main`; schedule: "inline" or "cpu" (see above);
    fast_exp: TVM's polynomial exp in place of libm's (see _fast_exp_legalization)."""
    if schedule not in SCHEDULE_FUNCS:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULE_FUNCS)}, got {schedule!r}")
    import tvm
    from tvm import relax, tirx
    legalize = relax.transform.LegalizeOps(_fast_exp_legalization() if fast_exp else None)
    before = [relax.transform.DecomposeOpsForInference(), legalize,
              relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
              relax.transform.FuseOps(), relax.transform.FuseTIR(), relax.transform.DeadCodeElimination()]
    after = [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
             relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
             relax.transform.StaticPlanBlockMemory(), relax.transform.AttachGlobalSymbol()]
    target = tvm.target.Target({"kind": "c"})
    with target:
        mod = tvm.transform.Sequential(before)(mod)
        mod = _schedule_all(mod, schedule)
        mod = tvm.transform.Sequential(after)(mod)
    _check_main(mod)
    kernels = tvm.IRModule({gv: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)})
    with tvm.transform.PassContext(config={"tirx.disable_assert": True}):
        lib = tvm.tirx.build(kernels, target=target)
    src = lib.inspect_source()
    # TVM's C printer writes float infinity as `inff` (not C); spell it portably.
    src = re.sub(r"(?<![\w.])inff\b", "INFINITY", src)
    if "INFINITY" in src and "#include <math.h>" not in src:
        src = "#include <math.h>\n" + src
    return LoweredModel(mod, src, len(kernels.functions))


def kernel_module(lowered: LoweredModel):
    """The lowered module's TIR kernels alone, for a backend other than C (edgebci.compile.llvm)."""
    import tvm
    from tvm import tirx
    return tvm.IRModule({gv: f for gv, f in lowered.relax_mod.functions.items() if isinstance(f, tirx.PrimFunc)})
