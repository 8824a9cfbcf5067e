"""Compile stage, integer path: an integer program (edgebci.quantize.program) as a Relax module.

Each op becomes integer Relax ops that TVM lowers like any other (legalize, fuse, schedule, C):

    Conv        nn.conv1d(int8, int8, out_dtype=int32) + int32 bias
    Dense       matmul(int8, int8^T, out_dtype=int32) + int32 bias
    Requantize  int64 multiply by m0, add 2^(n-1), shift right by n, clip, cast (per channel: a TE kernel reading
                m0 as int32 and n as int8); a shift alone (int32 Relax ops) when m0 = 1
    Table       a 256-entry int8 lookup (one TE gather reading the int8 input)
    SumPool     a depthwise conv1d with int8 ones (sum over each window)
    AddScaled   both sides requantised to the common scale, added in int32
    LayerNorm   integer sum, sum of squares (int64), digit-by-digit isqrt, one division per element (TE)
    Softmax     row maximum, exp by int16 table, integer sum, one division per element (TE)
    Concat, MulConst, AddConst, Mul, MatMul, ReduceSum, views: the Relax ops of the same name

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


def _requantize(bb, x, shape, mult: Multiplier, axis, qmin: int, qmax: int, out_dtype: str, src_dtype: str):
    """The arithmetic of edgebci.quantize.arith.requantize: shifts as Relax ops (int32), a multiplier as a TE kernel."""
    from tvm import relax
    op = relax.op
    ndim = len(shape)
    # per channel, a TE kernel keeps the constants small; per tensor they are scalars either way, and Relax ops
    # fuse into any consumer (a TE kernel on the far side of an addition is not fused: S4D's arena +15 KB)
    if mult.size > 1 and not mult.is_shift and np.all(np.asarray(mult.n) >= 1) and np.all(np.asarray(mult.m0) < 2 ** 31):
        return _requantize_multiplier(bb, x, shape, mult, axis, qmin, qmax, out_dtype)
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


def _requantize_multiplier(bb, x, shape, mult: Multiplier, axis, qmin: int, qmax: int, out_dtype: str):
    """clamp(rshift_even(x * m0, n)) in int64 for per-channel multipliers along `axis`, with m0 stored as int32
    and n as int8 (5 bytes a channel; the rounding half 2^(n-1) - 1 is computed, not stored)."""
    from tvm import te, tirx
    ax = axis if axis is not None else 1
    i64 = lambda e: tirx.Cast("int64", e)

    def kernel(data, m0, n):
        def f(*i):
            m, sh = i64(m0[i[ax]]), i64(n[i[ax]])
            p = i64(data(*i)) * m
            half = (tirx.const(1, "int64") << (sh - 1)) - 1
            y = (p + half + ((p >> sh) & 1)) >> sh
            return _clip_expr(y, qmin, qmax, "int64", out_dtype)
        return te.compute(tuple(shape), f, name="requantize")
    return bb.emit_te(kernel, x, _const(np.ravel(mult.m0), "int32"), _const(np.ravel(mult.n), "int8"),
                      primfunc_name_hint="requantize")


def _rshift_even(y, n: np.ndarray, ndim: int, axis, dtype: str):
    """(y + 2^(n-1) - 1 + ((y >> n) & 1)) >> n: y / 2^n rounded half to even (edgebci.quantize.arith)."""
    from tvm import relax
    op = relax.op
    n = np.asarray(n, np.int64)
    shift = _channel(n, ndim, axis, dtype)
    # a channel with n == 0 is y itself: no half, no odd bit (np.left_shift(1, -1) - 1 would be -1)
    one = _const(1, dtype) if np.all(n > 0) else _channel((n > 0).astype(np.int64), ndim, axis, dtype)
    odd = op.bitwise_and(op.right_shift(y, shift), one)
    half = _channel(np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)) - 1, 0), ndim, axis, dtype)
    return op.right_shift(op.add(op.add(y, half), odd), shift)


def _table(bb, x, table: np.ndarray, shape):
    from tvm import te, tirx

    def lookup(data, tab):
        return te.compute(tuple(shape), lambda *i: tab[tirx.Cast("int32", data(*i)) + 128], name="table_lookup")
    return bb.emit_te(lookup, x, _const(table, table.dtype.name), primfunc_name_hint="table_lookup")


def _isqrt(v, shape: tuple[int, ...], bits: int):
    """floor(sqrt(v)) for an int64 tensor 0 <= v < 2^(2*bits): the digit-by-digit square root, one stage (two
    small tensors: remainder and root) per digit. Named keep_*: the C lowering must not inline them
    (edgebci.compile.lower.KEEP_PREFIX)."""
    from tvm import te, tirx
    rem, res = v, te.compute(shape, lambda *i: tirx.const(0, "int64"), name="keep_isqrt_root")

    def digit(rem, res, bit):
        def f(*i):
            take = rem(*i) >= res(*i) + bit
            return [tirx.Select(take, rem(*i) - (res(*i) + bit), rem(*i)),
                    tirx.Select(take, (res(*i) >> 1) + bit, res(*i) >> 1)]
        return f
    for b in reversed(range(bits)):
        rem, res = te.compute(shape, digit(rem, res, tirx.const(1 << (2 * b), "int64")), name=f"keep_isqrt_{b}")
    return res


def _clip_expr(y, lo: int, hi: int, src_dtype: str, dtype: str):
    from tvm import tirx
    return tirx.Cast(dtype, tirx.max(tirx.min(y, tirx.const(hi, src_dtype)), tirx.const(lo, src_dtype)))


def _layer_norm(bb, x, o: P.LayerNorm, shape, out_dtype: str):
    """edgebci.quantize.program.LayerNorm: integer mean and variance over the last axis, integer sqrt, division."""
    from tvm import te, tirx
    d, lead = shape[-1], tuple(shape[:-1])
    i64 = lambda e: tirx.Cast("int64", e)
    bound = d * (d * 256) ** 2 + o.eps           # sum of c^2 with |c| <= d * 255, plus eps
    bits = (int(bound).bit_length() + 1) // 2 + 1

    def norm(data):
        k1, k2 = te.reduce_axis((0, d), "k1"), te.reduce_axis((0, d), "k2")
        total = te.compute(lead, lambda *i: te.sum(i64(data(*i, k1)), axis=k1), name="ln_sum")
        centred = lambda *i: i64(data(*i)) * d - total(*i[:-1])
        var = te.compute(lead, lambda *i: te.sum(centred(*i, k2) * centred(*i, k2), axis=k2), name="ln_var")
        padded = te.compute(lead, lambda *i: var(*i) + tirx.const(o.eps, "int64"), name="ln_var_eps")
        root = _isqrt(padded, lead, bits)

        def out(*i):
            r = root(*i[:-1])
            num = centred(*i) * tirx.const(o.k, "int64") + (r << (o.f - 1))
            return _clip_expr(tirx.floordiv(num, r << o.f), o.qmin, o.qmax, "int64", out_dtype)
        return te.compute(tuple(shape), out, name="layer_norm")
    return bb.emit_te(norm, x, primfunc_name_hint="layer_norm")


def _softmax(bb, x, o: P.Softmax, shape, out_dtype: str):
    """edgebci.quantize.program.Softmax: exp by table from the row's maximum, one integer division per output."""
    from tvm import te, tirx
    n, lead = shape[-1], tuple(shape[:-1])
    i32 = lambda e: tirx.Cast("int32", e)

    def softmax(data, tab):
        k1, k2 = te.reduce_axis((0, n), "k1"), te.reduce_axis((0, n), "k2")
        peak = te.compute(lead, lambda *i: te.max(i32(data(*i, k1)), axis=k1), name="sm_max")
        e = lambda *i: i32(tab[i32(data(*i)) - peak(*i[:-1]) + 255])
        total = te.compute(lead, lambda *i: te.sum(e(*i, k2), axis=k2), name="sm_sum")

        def out(*i):
            s = total(*i[:-1])
            return _clip_expr(tirx.floordiv((e(*i) << o.shift) + (s >> 1), s), o.qmin, o.qmax, "int32", out_dtype)
        return te.compute(tuple(shape), out, name="softmax")
    return bb.emit_te(softmax, x, _const(o.table, "int16"), primfunc_name_hint="softmax")


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
                    y = _requantize(bb, src[0], t.shape, o.mult, o.axis, o.qmin, o.qmax, t.dtype, src_info[0].dtype)
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
                    a, b = src
                    if src_info[0].dtype != src_info[1].dtype:     # int16 probabilities x int8 values
                        a, b = op.astype(a, "int32"), op.astype(b, "int32")
                    y = op.matmul(a, b, out_dtype="int32")
                elif isinstance(o, P.Table):
                    y = _table(bb, src[0], o.table, t.shape)
                elif isinstance(o, P.SumPool):
                    c = src_info[0].shape[1]
                    ones = np.ones((c, 1, o.kernel), np.int8)
                    y = op.nn.conv1d(src[0], _const(ones, "int8"), strides=o.stride, padding=o.pads, groups=c,
                                     out_dtype="int32")
                elif isinstance(o, P.AddScaled):
                    a = _requantize(bb, src[0], t.shape, o.mult_a, o.axis_a, -2 ** 31, 2 ** 31 - 1, "int32",
                                    src_info[0].dtype)
                    b = _requantize(bb, src[1], t.shape, o.mult_b, o.axis_b, -2 ** 31, 2 ** 31 - 1, "int32",
                                    src_info[1].dtype)
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
                elif isinstance(o, P.Concat):
                    y = op.concat(src, axis=o.axis)
                elif isinstance(o, P.MulConst):
                    y = op.multiply(op.astype(src[0], "int32"), _const(o.value, "int32"))
                elif isinstance(o, P.AddConst):
                    y = op.astype(src[0], "int32")
                    if o.shift:
                        y = op.left_shift(bb.emit(y), _const(o.shift, "int32"))
                    y = op.add(bb.emit(y), _const(o.value, "int32"))
                elif isinstance(o, P.LayerNorm):
                    y = _layer_norm(bb, src[0], o, t.shape, t.dtype)
                elif isinstance(o, P.Softmax):
                    y = _softmax(bb, src[0], o, t.shape, t.dtype)
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
