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
class StagePlan:
    """One Relax function of the program: its parameters, outputs and kernel calls, in order.

    Its intermediates live in the arena from offset 0: stages run one after another, so they share it.
    """
    name: str
    params: list[_Tensor] = field(default_factory=list)
    outputs: list[_Tensor] = field(default_factory=list)
    calls: list[tuple[str, list[_Tensor]]] = field(default_factory=list)
    arena_bytes: int = 0


@dataclass(frozen=True)
class LoopPlan:
    """The device-side time loop of a stepped program (see edgebci.zoo.stepped): its buffers' geometry.

    A float program carries float32 throughout and hands the readout the mean of the step outputs; an
    integer program (edgebci.quantize.program.SteppedProgram) carries its own types (int8 sequence and
    state) and hands the readout the int32 sum, whose 1/n_steps the readout's scales hold."""
    n_steps: int
    seq_width: int
    out_width: int
    state_sizes: tuple[int, ...]      # elements per state tensor
    seq_dtype: str = "float32"
    state_dtypes: tuple[str, ...] = ()
    out_dtype: str = "float32"
    total_dtype: str = "float32"

    @property
    def integer(self) -> bool:
        return self.total_dtype != "float32"

    def buffer_bytes(self) -> int:
        """seq + two buffers per state (ping-pong) + the step output + the running total, each in its type."""
        if not self.integer:     # all float32: packed one after another
            return 4 * (self.n_steps * self.seq_width + 2 * sum(self.state_sizes) + 2 * self.out_width)
        sizes = [self.n_steps * self.seq_width * _bytes(self.seq_dtype), self.out_width * _bytes(self.out_dtype),
                 self.out_width * _bytes(self.total_dtype)]
        sizes += [n * _bytes(d) for n, d in zip(self.state_sizes, self.state_dtypes) for _ in range(2)]
        return sum(_align(b) for b in sizes)    # mixed widths: each buffer aligned


def _bytes(dtype: str) -> int:
    return int(np.dtype(dtype).itemsize)


@dataclass
class DriverPlan:
    """What the driver does: tensors, constants, the stages' kernel calls, and the arena it needs.

    A plain decoder is one stage, `main`: window -> logits. A stepped decoder has three, `main` (window ->
    sequence), `step` (x_t, *state -> y_t, *state) and `readout` (mean of y_t -> logits), and a `loop`.
    """
    tensors: list[_Tensor] = field(default_factory=list)
    consts: list[tuple[str, np.ndarray]] = field(default_factory=list)
    stages: dict[str, StagePlan] = field(default_factory=dict)
    loop: LoopPlan | None = None

    @property
    def input(self) -> _Tensor:
        return self.stages["main"].params[0]

    @property
    def output(self) -> _Tensor:
        return self.stages["readout" if self.loop else "main"].outputs[0]

    @property
    def calls(self) -> list[tuple[str, list[_Tensor]]]:
        return [c for s in self.stages.values() for c in s.calls]

    @property
    def scratch_bytes(self) -> int:
        """Arena bytes the stages' intermediates need (they share it)."""
        return max(s.arena_bytes for s in self.stages.values())

    @property
    def arena_bytes(self) -> int:
        """The whole arena: scratch, then the loop's buffers for a stepped program."""
        return self.scratch_bytes + (_align(self.loop.buffer_bytes()) if self.loop else 0)

    @property
    def const_bytes(self) -> int:
        return sum(a.nbytes for _, a in self.consts)

    @property
    def descriptor_bytes(self) -> int:
        """RAM for the static DLTensor descriptors and shape arrays (64-bit layout: an upper bound)."""
        return sum(48 + 8 * max(len(t.shape), 1) for t in self.tensors) + 16 * max(
            [len(a) for _, a in self.calls] + [1])


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


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


STEPPED_STAGES = ("main", "step", "readout")


def _stage_names(relax_mod) -> tuple[str, ...]:
    from tvm import relax
    names = {gv.name_hint for gv, f in relax_mod.functions.items() if isinstance(f, relax.Function)}
    if names == {"main"}:
        return ("main",)
    if names == set(STEPPED_STAGES):
        return STEPPED_STAGES
    raise UnsupportedOpError(f"the program has Relax functions {sorted(names)}; the static driver runs either "
                             f"`main` alone or the stepped trio {list(STEPPED_STAGES)}")


def plan_driver(relax_mod) -> DriverPlan:
    """Walk the lowered Relax functions (static memory planned) into a DriverPlan."""
    plan = DriverPlan()
    const_cache: dict = {}
    for name in _stage_names(relax_mod):
        plan.stages[name] = _plan_stage(plan, const_cache, name, relax_mod[name])
    main = plan.stages["main"]
    if len(main.params) != 1:
        raise UnsupportedOpError(f"decoders take one input tensor (the window), this graph takes "
                                 f"{len(main.params)}; export the model with a single (1, channels, samples) input")
    if len(plan.stages) > 1:
        plan.loop = _plan_loop(plan)
    elif len(main.outputs) != 1:
        raise UnsupportedOpError(f"the decoder returns {len(main.outputs)} tensors; return one logits tensor")
    return plan


def _plan_loop(plan: DriverPlan) -> LoopPlan:
    """Check that main, step and readout chain as the stepped loop expects; return its geometry."""
    main, step, readout = (plan.stages[n] for n in STEPPED_STAGES)
    integer = main.params[0].dtype == "int32"
    for t in [*main.outputs, *step.params, *step.outputs, *readout.params, *readout.outputs]:
        if integer and t.dtype not in ("int8", "int16", "int32") or not integer and t.dtype != "float32":
            raise UnsupportedOpError(f"the stepped driver carries float32 between the stages of a float decoder and "
                                     f"integers between those of an integer one; got {t.dtype} for {t.name}")
    if integer and readout.params[0].dtype != "int32":
        raise UnsupportedOpError(f"an integer readout takes the int32 sum of the step outputs, got "
                                 f"{readout.params[0].dtype}")
    if len(main.outputs) != 1 or len(main.outputs[0].shape) != 3 or main.outputs[0].shape[0] != 1:
        raise UnsupportedOpError(f"a stepped decoder's encoder must return one (1, n_steps, width) sequence, "
                                 f"got {[t.shape for t in main.outputs]}")
    _, n_steps, seq_width = main.outputs[0].shape
    states_in, states_out = step.params[1:], step.outputs[1:]
    if not states_in or [t.shape for t in states_in] != [t.shape for t in states_out]:
        raise UnsupportedOpError(f"the step must take (x_t, *state) and return (y_t, *state) with the same state "
                                 f"shapes; takes {[t.shape for t in step.params]}, returns "
                                 f"{[t.shape for t in step.outputs]}")
    if int(np.prod(step.params[0].shape)) != seq_width:
        raise UnsupportedOpError(f"the step takes x_t of shape {step.params[0].shape} but the encoder's steps "
                                 f"are {seq_width} wide")
    out_width = int(np.prod(step.outputs[0].shape))
    if len(readout.params) != 1 or int(np.prod(readout.params[0].shape)) != out_width or len(readout.outputs) != 1:
        raise UnsupportedOpError(f"the readout must take the step output's mean ({out_width} values) and return "
                                 f"the logits; takes {[t.shape for t in readout.params]}")
    return LoopPlan(int(n_steps), int(seq_width), out_width, tuple(int(np.prod(t.shape)) for t in states_in),
                    main.outputs[0].dtype, tuple(t.dtype for t in states_in), step.outputs[0].dtype,
                    "int32" if integer else "float32")


def _plan_stage(plan: DriverPlan, const_cache: dict, name: str, func) -> StagePlan:
    import tvm
    from tvm import relax
    from tvm.ir.expr import GenericConst

    stage = StagePlan(name)
    by_var: dict = {}
    storage_offset: dict = {}

    def add(var, data, shape, dtype, alias_of=None) -> _Tensor:
        label = re.sub(r"\W", "_", var.name if var is not None else "const")
        t = _Tensor(f"ebci_t{len(plan.tensors)}_{name}_{label}", data, tuple(int(s) for s in shape), str(dtype),
                    alias_of)
        plan.tensors.append(t)
        if var is not None:
            by_var[var] = t
        return t

    for param in func.params:
        if not isinstance(param.ty, relax.TensorType) or param.ty.shape is None:
            raise UnsupportedOpError(f"{name}: parameter {param.name} is not a tensor of static shape")
        stage.params.append(add(param, "NULL", param.ty.shape.values, param.ty.dtype))
    for block in func.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                op = value.op.name
                if op == "relax.memory.alloc_storage":
                    storage_offset[var] = stage.arena_bytes
                    stage.arena_bytes += _align(int(value.args[0].values[0]))
                elif op == "relax.memory.alloc_tensor":
                    offset = storage_offset[value.args[0]] + int(value.args[1].value)
                    add(var, f"&ebci_model_arena[{offset}]", value.args[2].values, value.args[3].value)
                elif op == "relax.builtin.alloc_tensor":     # an output: the caller's buffer
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
                stage.calls.append((value.op.name_hint, args))
            elif isinstance(value, relax.Var) and value in by_var:
                by_var[var] = by_var[value]
            elif isinstance(value, relax.Tuple) and all(f in by_var for f in value.fields):
                by_var[var] = [by_var[f] for f in value.fields]
            else:
                raise UnsupportedOpError(f"{name}: the lowered program has a {type(value).__name__} binding the "
                                         f"static C driver cannot run")
    ret = func.body.body
    if isinstance(ret, relax.Tuple):
        outputs = [by_var[f] for f in ret.fields]
    else:
        outputs = by_var[ret]
    stage.outputs = outputs if isinstance(outputs, list) else [outputs]
    for t in stage.outputs:
        root = t.root()
        if any(root is p for p in stage.params) or root.data != "NULL":
            raise UnsupportedOpError(f"{name}: output {t.name} is not computed into its own buffer (it is an input, "
                                     f"a weight or a view of the arena); the static driver cannot return it")
    return stage


def workspace_bytes(kernels_c: str) -> int:
    """Upper bound of the LIFO workspace: the largest sum of TVMBackendAllocWorkspace sizes in one kernel."""
    best = 0
    for body in re.split(r"\n(?=TVM_DLL int32_t|int32_t __tvm_ffi_)", kernels_c):
        sizes = re.findall(r"TVMBackendAllocWorkspace\([^,]+,[^,]+, \(uint64_t\)(\d+)ULL", body)
        best = max(best, sum((int(n) + ALIGN - 1) // ALIGN * ALIGN for n in sizes))
    return best


def _emit_stage(stage: StagePlan, tensors: list[_Tensor]) -> list[str]:
    """`static int ebci_stage_<name>(void *const *in, void *const *out)`: bind the buffers, call the kernels."""
    src = [f"static int ebci_stage_{stage.name}(void *const *in, void *const *out)", "{",
           "    TVMFFIAny ret;", "    int32_t rc;"]
    for t in tensors:   # parameters, outputs and views of them point at the caller's buffers
        root = t.root()
        for i, p in enumerate(stage.params):
            if root is p:
                src.append(f"    {t.name}.data = in[{i}];")
        for i, o in enumerate(stage.outputs):
            if root is o.root():
                src.append(f"    {t.name}.data = out[{i}];")
    for kernel, args in stage.calls:
        for i, t in enumerate(args):
            src.append(f"    ebci_args[{i}].type_index = kTVMFFIDLTensorPtr; ebci_args[{i}].zero_padding = 0; "
                       f"ebci_args[{i}].v_ptr = &{t.name};")
        src.append(f"    rc = __tvm_ffi_{kernel}(NULL, ebci_args, {len(args)}, &ret);")
        src.append("    if (rc != 0) return rc;")
    src += ["    return 0;", "}", ""]
    return src


def _emit_loop(plan: DriverPlan, in_ctype: str, out_ctype: str) -> list[str]:
    """ebci_model_run for a stepped program: encode, the time loop over `step` with ping-pong state, the mean
    (float) or the int32 sum (integer), the readout. The loop's buffers sit in the arena after the stages'
    shared scratch, each aligned."""
    loop = plan.loop
    n_states = len(loop.state_sizes)
    state_dtypes = loop.state_dtypes or ("float32",) * n_states
    base = plan.scratch_bytes
    src = []
    off = 0

    def buffer(name: str, n: int, dtype: str) -> None:
        nonlocal off
        src.append(f"#define {name} (({_CTYPES[dtype]} *)&ebci_model_arena[{base} + {off}])")
        off += _align(n * _bytes(dtype)) if loop.integer else n * _bytes(dtype)

    buffer("EBCI_LOOP_SEQ", loop.n_steps * loop.seq_width, loop.seq_dtype)
    buffer("EBCI_LOOP_Y", loop.out_width, loop.out_dtype)
    buffer("EBCI_LOOP_TOTAL", loop.out_width, loop.total_dtype)
    for i, (n, d) in enumerate(zip(loop.state_sizes, state_dtypes)):
        buffer(f"EBCI_LOOP_STATE{i}_A", n, d)
        buffer(f"EBCI_LOOP_STATE{i}_B", n, d)
    cur = ", ".join(f"EBCI_LOOP_STATE{i}_A" for i in range(n_states))
    nxt = ", ".join(f"EBCI_LOOP_STATE{i}_B" for i in range(n_states))
    src += ["", f"int ebci_model_run(const {in_ctype} *input, {out_ctype} *output)", "{",
            "    void *enc_in[1] = {(void *)input};", "    void *enc_out[1] = {EBCI_LOOP_SEQ};",
            f"    void *cur[{n_states}] = {{{cur}}};", f"    void *nxt[{n_states}] = {{{nxt}}};",
            f"    void *step_in[{n_states + 1}];", f"    void *step_out[{n_states + 1}];",
            "    void *ro_in[1] = {EBCI_LOOP_TOTAL};", "    void *ro_out[1] = {output};",
            "    int rc = ebci_stage_main(enc_in, enc_out);", "    if (rc != 0) return rc;"]
    for i, (n, d) in enumerate(zip(loop.state_sizes, state_dtypes)):
        src.append(f"    memset(cur[{i}], 0, {n * _bytes(d)});   /* every window starts from the resting state */")
    src += [f"    memset(EBCI_LOOP_TOTAL, 0, {loop.out_width * _bytes(loop.total_dtype)});",
            f"    for (int t = 0; t < {loop.n_steps}; t++) {{",
            f"        step_in[0] = EBCI_LOOP_SEQ + t * {loop.seq_width};",
            "        step_out[0] = EBCI_LOOP_Y;",
            f"        for (int i = 0; i < {n_states}; i++) {{",
            "            step_in[i + 1] = cur[i];", "            step_out[i + 1] = nxt[i];", "        }",
            "        rc = ebci_stage_step(step_in, step_out);", "        if (rc != 0) return rc;",
            f"        for (int k = 0; k < {loop.out_width}; k++) EBCI_LOOP_TOTAL[k] += EBCI_LOOP_Y[k];",
            f"        for (int i = 0; i < {n_states}; i++) {{",
            "            void *swap = cur[i]; cur[i] = nxt[i]; nxt[i] = swap;", "        }", "    }"]
    if not loop.integer:
        inv = _c_literal("float32", 1.0 / loop.n_steps)
        src.append(f"    for (int k = 0; k < {loop.out_width}; k++) EBCI_LOOP_TOTAL[k] *= {inv};   /* the mean over steps */")
    src += ["    return ebci_stage_readout(ro_in, ro_out);", "}", ""]
    return src


def emit_model_c(plan: DriverPlan, tvm_version: str) -> str:
    """The source of ebci_model.c."""
    src = [f"/* Generated by edgebci (TVM {tvm_version}): the model driver. No TVM runtime needed. */",
           "#include <stdint.h>", "#include <stddef.h>", "#include <string.h>", "#include <math.h>",
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
    n_args = max([len(a) for _, a in plan.calls] + [1])
    src += [f"static TVMFFIAny ebci_args[{n_args}];", "",
            "uint32_t ebci_model_arena_size(void) { return (uint32_t)sizeof ebci_model_arena; }", ""]
    for stage in plan.stages.values():
        src += _emit_stage(stage, plan.tensors)
    in_ctype, out_ctype = _CTYPES[plan.input.dtype], _CTYPES[plan.output.dtype]
    if plan.loop is None:
        src += [f"int ebci_model_run(const {in_ctype} *input, {out_ctype} *output)", "{",
                "    void *in[1] = {(void *)input};", "    void *out[1] = {output};",
                "    return ebci_stage_main(in, out);", "}", ""]
    else:
        src += _emit_loop(plan, in_ctype, out_ctype)
    return "\n".join(src)


def _io_convention(plan: DriverPlan) -> str:
    """The model's input and output types; how the front end's fixed-point output y (microvolts * 2^in_shift)
    becomes the input (EBCI_MODEL_FROM_FILTER) and back to microvolts (EBCI_MODEL_TO_UV); how an output
    becomes a float score for the protocol's RESULT (EBCI_MODEL_SCORE)."""
    if plan.input.dtype == "float32" and plan.output.dtype == "float32":
        return """typedef float ebci_model_input_t;
typedef float ebci_model_output_t;
#define EBCI_MODEL_INTEGER 0
#define EBCI_MODEL_FROM_FILTER(y, in_shift) ((float)(y) * (1.0f / (float)(1L << (in_shift))))
#define EBCI_MODEL_TO_UV(v, in_shift) (v)
#define EBCI_MODEL_SCORE(q) (q)

/* input: float32 [EBCI_MODEL_N_CH][EBCI_MODEL_N_SAMP], filtered microvolts, channel-major;
 * output: float32 [EBCI_MODEL_N_CLASSES] logits. Returns 0 on success. Not re-entrant. */"""
    if plan.input.dtype != "int32" or plan.output.dtype not in ("int32", "int8"):
        raise UnsupportedOpError(f"the driver runs float32 -> float32 decoders or integer programs (int32 -> int32 or "
                                 f"int8), got {plan.input.dtype} -> {plan.output.dtype}")
    return f"""typedef int32_t ebci_model_input_t;
typedef {_CTYPES[plan.output.dtype]} ebci_model_output_t;
#define EBCI_MODEL_INTEGER 1     /* integer-only decoder: no floating point from input to logits */
#define EBCI_MODEL_FROM_FILTER(y, in_shift) ((int32_t)(y))
#define EBCI_MODEL_TO_UV(v, in_shift) ((float)(v) * (1.0f / (float)(1L << (in_shift))))
#define EBCI_MODEL_SCORE(q) ((float)(q))   /* exact: |q| < 2^24 (edgebci.quantize.qcdq) */

/* input: int32 [EBCI_MODEL_N_CH][EBCI_MODEL_N_SAMP], the front end's fixed-point output (microvolts *
 * 2^in_shift), channel-major; output: [EBCI_MODEL_N_CLASSES] integer logits. Returns 0 on success.
 * Not re-entrant. The caller turns logits into float scores (EBCI_MODEL_SCORE) for the protocol. */"""


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

{_io_convention(plan)}
int ebci_model_run(const ebci_model_input_t *input, ebci_model_output_t *output);
uint32_t ebci_model_arena_size(void);

#endif
"""
