"""Compile stage, integer path: an integer program (edgebci.quantize.program) as a Relax module.

Each op becomes integer Relax ops that TVM lowers like any other (legalize, fuse, schedule, C):

    Conv        nn.conv1d(int8, int8, out_dtype=int32) + int32 bias
    Dense       matmul(int8, int8^T, out_dtype=int32) + int32 bias
    Requantize  int64 multiply by m0, add 2^(n-1), shift right by n, clip, cast   (a shift alone when m0 = 1)
    Table       a 256-entry int8 lookup (one TE gather reading the int8 input)
    SumPool     a depthwise conv1d with int8 ones (sum over each window)
    AddScaled   both sides requantised to the common scale, added in int32

FuseOps puts each requantisation in its convolution's epilogue, so no int32 tensor the size of a
layer's output is ever stored. The module takes the front end's int32 output (1, C, T) and returns
the program's output (int32 logits). `check_integer_only` refuses any float tensor left in the
lowered kernels, naming the kernel: an integer target never gets a silent float island.
"""
from __future__ import annotations

import re

import numpy as np

from edgebci.errors import UnsupportedOpError
from edgebci.quantize import program as P
from edgebci.quantize.arith import Multiplier


def _const(value, dtype: str):
    from tvm import relax
    return relax.const(np.asarray(value).astype(dtype), dtype)


def _channel(v: np.ndarray, ndim: int, axis: int | None, dtype: str):
    """A per-tensor or per-channel constant shaped to broadcast along `axis`."""
    v = np.asarray(v)
    if v.size == 1:
        return _const(v.reshape(()), dtype)
    shape = [1] * ndim
    shape[axis if axis is not None else 1] = -1
    return _const(v.reshape(shape), dtype)


def _requantize(x, ndim: int, mult: Multiplier, axis, qmin: int, qmax: int, out_dtype: str, src_dtype: str):
    """The arithmetic of edgebci.quantize.arith.requantize, as Relax ops."""
    from tvm import relax
    op = relax.op
    if mult.is_shift:
        n = np.asarray(mult.n)
        y = x if src_dtype == "int32" else op.astype(x, "int32")
        if np.all(n <= 0):
            if np.any(n < 0):
                y = op.left_shift(y, _channel(-n, ndim, axis, "int32"))
        elif np.all(n > 0):
            y = _rshift_even(y, n, ndim, axis, "int32")
        else:      # per-channel shifts both ways: all left by the largest, then each right (exact for the left ones)
            left = int(-n.min())
            y = op.left_shift(op.astype(y, "int64"), _const(left, "int64"))
            y = _clip(_rshift_even(y, n + left, ndim, axis, "int64"), qmin, qmax, "int64")
            return op.astype(y, out_dtype)
        y = _clip(y, qmin, qmax, "int32") if qmin > -2 ** 31 or qmax < 2 ** 31 - 1 else y
        return op.astype(y, out_dtype)
    y = op.multiply(op.astype(x, "int64"), _channel(mult.m0, ndim, axis, "int64"))
    y = _clip(_rshift_even(y, np.asarray(mult.n), ndim, axis, "int64"), qmin, qmax, "int64")
    return op.astype(y, out_dtype)


def _rshift_even(y, n: np.ndarray, ndim: int, axis, dtype: str):
    """(y + 2^(n-1) - 1 + ((y >> n) & 1)) >> n: y / 2^n rounded half to even (edgebci.quantize.arith)."""
    from tvm import relax
    op = relax.op
    shift = _channel(n, ndim, axis, dtype)
    odd = op.bitwise_and(op.right_shift(y, shift), _const(1, dtype))
    half = _channel(np.left_shift(np.int64(1), n - 1) - 1, ndim, axis, dtype)
    return op.right_shift(op.add(op.add(y, half), odd), shift)


def _table(bb, x, table: np.ndarray, shape):
    from tvm import te, tirx

    def lookup(data, tab):
        return te.compute(tuple(shape), lambda *i: tab[tirx.Cast("int32", data(*i)) + 128], name="table_lookup")
    return bb.emit_te(lookup, x, _const(table, "int8"), primfunc_name_hint="table_lookup")


def _clip(x, lo: int, hi: int, dtype: str):
    from tvm import relax
    return relax.op.minimum(relax.op.maximum(x, _const(lo, dtype)), _const(hi, dtype))


def emit_relax(program):
    """The integer program as an IRModule: a QProgram as `main` (int32 (1, C, T) -> logits), a SteppedProgram
    as `main` (encode), `step` and `readout`, whose loop edgebci.compile.cdriver writes in C."""
    from tvm import relax
    bb = relax.BlockBuilder()
    if isinstance(program, P.SteppedProgram):
        for name, part in (("main", program.encode), ("step", program.step), ("readout", program.readout)):
            _emit_function(bb, name, part)
    else:
        _emit_function(bb, "main", program)
    return bb.get()


def _emit_function(bb, fname: str, program: P.QProgram) -> None:
    from tvm import relax
    op = relax.op
    params = [relax.Var(f"x{k}", relax.TensorType(program.tensors[n].shape, program.tensors[n].dtype))
              for k, n in enumerate(program.inputs)]
    env = dict(zip(program.inputs, params))
    with bb.function(fname, params):
        with bb.dataflow():
            for o in program.ops:
                t = program.tensors[o.output]
                src = [env[i] for i in o.inputs]
                src_info = [program.tensors[i] for i in o.inputs]
                nd = len(t.shape)
                if isinstance(o, P.Requantize):
                    y = _requantize(src[0], nd, o.mult, o.axis, o.qmin, o.qmax, t.dtype, src_info[0].dtype)
                elif isinstance(o, P.Conv):
                    y = op.nn.conv1d(src[0], _const(o.weight, "int8"), strides=o.stride, padding=o.pads,
                                     dilation=o.dilation, groups=o.groups, out_dtype="int32")
                    if o.bias is not None:
                        y = op.add(bb.emit(y), _channel(o.bias, 3, 1, "int32"))
                elif isinstance(o, P.Dense):
                    y = op.matmul(src[0], _const(np.ascontiguousarray(o.weight.T), "int8"), out_dtype="int32")
                    if o.bias is not None:
                        y = op.add(bb.emit(y), _const(o.bias, "int32"))
                elif isinstance(o, P.MatMul):
                    y = op.matmul(src[0], src[1], out_dtype="int32")
                elif isinstance(o, P.Table):
                    y = _table(bb, src[0], o.table, t.shape)
                elif isinstance(o, P.SumPool):
                    c = src_info[0].shape[1]
                    ones = np.ones((c, 1, o.kernel), np.int8)
                    y = op.nn.conv1d(src[0], _const(ones, "int8"), strides=o.stride, padding=o.pads, groups=c,
                                     out_dtype="int32")
                elif isinstance(o, P.AddScaled):
                    a = _requantize(src[0], nd, o.mult_a, o.axis_a, -2 ** 31, 2 ** 31 - 1, "int32", src_info[0].dtype)
                    b = _requantize(src[1], nd, o.mult_b, o.axis_b, -2 ** 31, 2 ** 31 - 1, "int32", src_info[1].dtype)
                    y = (op.subtract if o.subtract else op.add)(bb.emit(a), bb.emit(b))
                elif isinstance(o, P.Compare):
                    y = op.astype(op.greater(src[0], _const(o.threshold, src_info[0].dtype)), "int8")
                elif isinstance(o, P.Slice):
                    y = op.strided_slice(src[0], axes=[o.axis], begin=[o.start], end=[o.stop], strides=[o.step])
                elif isinstance(o, P.Mul):
                    y = op.multiply(op.astype(src[0], "int32"), op.astype(src[1], "int32"))
                elif isinstance(o, P.ReduceSum):
                    y = op.sum(op.astype(src[0], "int32"), axis=list(o.axes), keepdims=o.keepdims)
                elif isinstance(o, P.Reshape):
                    y = op.reshape(src[0], t.shape)
                elif isinstance(o, P.Transpose):
                    y = op.permute_dims(src[0], list(o.perm))
                elif isinstance(o, P.Pad):
                    y = op.nn.pad(src[0], [v for pair in o.pads for v in pair], pad_value=0.0)
                elif isinstance(o, P.Clamp):
                    y = _clip(src[0], o.lo, o.hi, src_info[0].dtype)
                else:
                    raise UnsupportedOpError(f"no Relax lowering for {type(o).__name__} ({o.source})")
                y = bb.emit(y) if not isinstance(y, relax.Var) else y
                if y.ty.dtype != t.dtype:
                    y = bb.emit(op.astype(y, t.dtype))
                env[o.output] = y
            outs = [env[o] for o in program.outputs]
            out = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(out)


_FLOAT_DECL = re.compile(r"\b(float|double)\b")


def check_integer_only(kernels_c: str) -> None:
    """Refuse generated kernels that compute in floating point, naming each kernel that does."""
    bad = []
    for body in re.split(r"\n(?=TVM_DLL int32_t|int32_t __tvm_ffi_)", kernels_c):
        m = re.search(r"__tvm_ffi_(\w+)\(", body)
        code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith(("//", "#", "/*", "*")))
        if m and _FLOAT_DECL.search(code):
            bad.append(m.group(1))
    if bad:
        raise UnsupportedOpError(f"kernel(s) {', '.join(sorted(set(bad)))} compute in floating point, but this is an "
                                 f"integer-only build: the quantised graph left a float op there (a float island); "
                                 f"quantise around it")
