"""Emit the device-side C for a lowered model: a static driver that replaces the TVM runtime.

`ebci_model_run` walks TVM's statically planned `main`: every intermediate tensor lives at a fixed
offset of one arena whose size is known now, weights are `const` arrays (exact hex floats, so the
device computes with bit-identical parameters), and each kernel is called through TVM's packed ABI
with static DLTensor descriptors. Nothing is allocated at run time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from edgebci.errors import UnsupportedOpError

ALIGN = 16
_CTYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t",
           "int32": "int32_t", "int64": "int64_t", "bool": "uint8_t"}
_DLCODES = {"int": 0, "uint": 1, "float": 2, "bool": 1}


@dataclass
class _Tensor:
    name: str
    data: str                 # C expression of the data pointer
    shape: tuple[int, ...]
    dtype: str
    alias_of: "_Tensor | None" = None

    def root(self) -> "_Tensor":
        return self.alias_of.root() if self.alias_of else self


@dataclass
class DriverPlan:
    """What the driver does: tensors, constants, kernel calls, and the arena it needs."""
    tensors: list[_Tensor] = field(default_factory=list)
    consts: list[tuple[str, np.ndarray]] = field(default_factory=list)
    calls: list[tuple[str, list[_Tensor]]] = field(default_factory=list)
    arena_bytes: int = 0
    input: _Tensor | None = None
    output: _Tensor | None = None

    @property
    def const_bytes(self) -> int:
        return sum(a.nbytes for _, a in self.consts)

    @property
    def descriptor_bytes(self) -> int:
        """RAM for the static DLTensor descriptors and shape arrays (64-bit layout: an upper bound)."""
        return sum(48 + 8 * max(len(t.shape), 1) for t in self.tensors) + 16 * max(
            [len(a) for _, a in self.calls] + [1])


def _c_literal(dtype: str, v) -> str:
    if dtype == "float32":
        f = float(np.float32(v))
        if np.isnan(f):
            return "NAN"
        if np.isinf(f):
            return "INFINITY" if f > 0 else "-INFINITY"
        return f.hex() + "f"
    if dtype == "float64":
        return float(v).hex()
    return str(int(v))


def _dl_dtype(dtype: str) -> tuple[int, int]:
    m = re.fullmatch(r"([a-z]+)(\d*)", dtype)
    return _DLCODES[m.group(1)], int(m.group(2) or 8)


def plan_driver(relax_mod) -> DriverPlan:
    """Walk the lowered Relax `main` (static memory planned) into a DriverPlan."""
    import tvm
    from tvm import relax
    from tvm.ir.expr import GenericConst

    main = relax_mod["main"]
    if len(main.params) != 1:
        raise UnsupportedOpError(f"decoders take one input tensor (the window), this graph takes "
                                 f"{len(main.params)}; export the model with a single (1, channels, samples) input")
    plan = DriverPlan()
    by_var: dict = {}
    storage_offset: dict = {}
    const_cache: dict = {}

    def add(var, data, shape, dtype, alias_of=None) -> _Tensor:
        label = re.sub(r"\W", "_", var.name if var is not None else "const")
        t = _Tensor(f"ebci_t{len(plan.tensors)}_{label}", data, tuple(int(s) for s in shape), str(dtype), alias_of)
        plan.tensors.append(t)
        if var is not None:
            by_var[var] = t
        return t

    param = main.params[0]
    plan.input = add(param, "NULL", param.ty.shape.values, param.ty.dtype)
    for block in main.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                op = value.op.name
                if op == "relax.memory.alloc_storage":
                    nbytes = int(value.args[0].values[0])
                    storage_offset[var] = plan.arena_bytes
                    plan.arena_bytes += (nbytes + ALIGN - 1) // ALIGN * ALIGN
                elif op == "relax.memory.alloc_tensor":
                    offset = storage_offset[value.args[0]] + int(value.args[1].value)
                    add(var, f"&ebci_model_arena[{offset}]", value.args[2].values, value.args[3].value)
                elif op == "relax.builtin.alloc_tensor":     # the output: the caller's buffer
                    add(var, "NULL", value.args[0].values, value.args[1].value)
                elif op == "relax.reshape":                  # a view: same data, new shape
                    src = by_var[value.args[0]]
                    add(var, src.data, value.args[1].values, src.dtype, alias_of=src)
                elif op in ("relax.memory.kill_storage", "relax.memory.kill_tensor", "relax.null_value"):
                    continue
                else:
                    raise UnsupportedOpError(f"the lowered program calls {op}, which the static C driver cannot "
                                             f"run without a TVM runtime; change the decoder to avoid it")
            elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
                args = []
                for a in value.args:
                    if isinstance(a, GenericConst):
                        arr = np.ascontiguousarray(a.value.numpy())
                        key = (arr.dtype.str, arr.shape, arr.tobytes())
                        if key not in const_cache:   # identical constants share one array
                            cname = f"ebci_w{len(plan.consts)}"
                            plan.consts.append((cname, arr))
                            const_cache[key] = add(None, f"(void *){cname}", arr.shape, arr.dtype)
                        args.append(const_cache[key])
                    else:
                        args.append(by_var[a])
                plan.calls.append((value.op.name_hint, args))
            elif isinstance(value, relax.Var) and value in by_var:
                by_var[var] = by_var[value]
            else:
                raise UnsupportedOpError(f"the lowered program has a {type(value).__name__} binding the static "
                                         f"C driver cannot run (e.g. a tuple output); return one logits tensor")
    plan.output = by_var[main.body.body]
    return plan


def workspace_bytes(kernels_c: str) -> int:
    """Upper bound of the LIFO workspace: the largest sum of TVMBackendAllocWorkspace sizes in one kernel."""
    best = 0
    for body in re.split(r"\n(?=TVM_DLL int32_t|int32_t __tvm_ffi_)", kernels_c):
        sizes = re.findall(r"TVMBackendAllocWorkspace\([^,]+,[^,]+, \(uint64_t\)(\d+)ULL", body)
        best = max(best, sum((int(n) + ALIGN - 1) // ALIGN * ALIGN for n in sizes))
    return best


def emit_model_c(plan: DriverPlan, tvm_version: str) -> str:
    """The source of ebci_model.c."""
    src = [f"/* Generated by edgebci (TVM {tvm_version}): the model driver. No TVM runtime needed. */",
           "#include <stdint.h>", "#include <stddef.h>", "#include <math.h>",
           "#include <dlpack/dlpack.h>", '#include "tvm/ffi/c_api.h"', '#include "ebci_model.h"', "",
           f"static uint8_t ebci_model_arena[{max(plan.arena_bytes, ALIGN)}] __attribute__((aligned({ALIGN})));"]
    for cname, arr in plan.consts:
        dtype = str(arr.dtype)
        values = ",".join(_c_literal(dtype, v) for v in arr.reshape(-1))
        src.append(f"static const {_CTYPES[dtype]} {cname}[{max(arr.size, 1)}] "
                   f"__attribute__((aligned({ALIGN}))) = {{{values}}};")
    for kernel in sorted({k for k, _ in plan.calls}):
        src.append(f"int32_t __tvm_ffi_{kernel}(void *self, void *args, int32_t num_args, void *result);")
    for t in plan.tensors:
        code, bits = _dl_dtype(t.dtype)
        dims = ",".join(map(str, t.shape)) or "1"
        src.append(f"static int64_t {t.name}_shape[{max(len(t.shape), 1)}] = {{{dims}}};")
        src.append(f"static DLTensor {t.name} = {{ {t.data}, {{kDLCPU, 0}}, {len(t.shape)}, "
                   f"{{{code}, {bits}, 1}}, {t.name}_shape, NULL, 0 }};")
    in_ctype, out_ctype = _CTYPES[plan.input.dtype], _CTYPES[plan.output.dtype]
    n_args = max([len(a) for _, a in plan.calls] + [1])
    src += ["", "uint32_t ebci_model_arena_size(void) { return (uint32_t)sizeof ebci_model_arena; }", "",
            f"int ebci_model_run(const {in_ctype} *input, {out_ctype} *output)", "{",
            f"    static TVMFFIAny args[{n_args}];", "    TVMFFIAny ret;", "    int32_t rc;"]
    for t in plan.tensors:   # the input, the output and views of them point at the caller's buffers
        if t.root() is plan.input:
            src.append(f"    {t.name}.data = (void *)input;")
        if t.root() is plan.output.root():
            src.append(f"    {t.name}.data = (void *)output;")
    for kernel, args in plan.calls:
        for i, t in enumerate(args):
            src.append(f"    args[{i}].type_index = kTVMFFIDLTensorPtr; args[{i}].zero_padding = 0; "
                       f"args[{i}].v_ptr = &{t.name};")
        src.append(f"    rc = __tvm_ffi_{kernel}(NULL, args, {len(args)}, &ret);")
        src.append("    if (rc != 0) return rc;")
    src += ["    return 0;", "}", ""]
    return "\n".join(src)


def emit_model_h(plan: DriverPlan, model_id: str, fs_hz: float, workspace: int) -> str:
    n_ch, n_samp = plan.input.shape[-2:]
    n_classes = int(np.prod(plan.output.shape))
    return f"""/* Generated by edgebci: the model's C API. */
#ifndef EBCI_MODEL_H
#define EBCI_MODEL_H
#include <stdint.h>

#define EBCI_MODEL_N_CH {n_ch}
#define EBCI_MODEL_N_SAMP {n_samp}
#define EBCI_MODEL_N_CLASSES {n_classes}
#define EBCI_MODEL_FS_HZ {int(round(fs_hz))}
#define EBCI_MODEL_ARENA_BYTES {max(plan.arena_bytes, ALIGN)}
#define EBCI_MODEL_WORKSPACE_BYTES {max(workspace, ALIGN)}
#define EBCI_MODEL_WEIGHT_BYTES {plan.const_bytes}
#define EBCI_MODEL_ID "{model_id}"

/* input: float32 [EBCI_MODEL_N_CH][EBCI_MODEL_N_SAMP], filtered microvolts, channel-major;
 * output: float32 [EBCI_MODEL_N_CLASSES] logits. Returns 0 on success. Not re-entrant. */
int ebci_model_run(const {_CTYPES[plan.input.dtype]} *input, {_CTYPES[plan.output.dtype]} *output);
uint32_t ebci_model_arena_size(void);

#endif
"""
