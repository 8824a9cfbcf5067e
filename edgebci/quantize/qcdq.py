"""Turn a QCDQ ONNX graph (Brevitas `export_onnx_qcdq`) into an integer program.

A QCDQ graph computes in float between QuantizeLinear/DequantizeLinear pairs: dequantize -> Conv ->
quantize. This pass reads it as integer arithmetic instead, the pattern rewrite that TVM's own ONNX
import does not do (it keeps the float op between the pair):

    DQ(x) -> Conv/Gemm/MatMul(DQ(w), DQ(b)) -> Q     integer convolution (int8 x int8 -> int32 + int32 bias),
                                                   then requantisation by multiplier and shift
    DQ(x) -> AveragePool/ReduceMean -> Q             integer sum, the 1/k joins the requantisation
    DQ(a) + DQ(b) -> Q                               both sides rescaled to a common scale, added
    DQ(x) -> f(x) -> Q, f element-wise               a 256-entry table (ELU, GELU, exp, log, x*x, ...)
    Reshape/Flatten/Transpose/Pad/Concat on DQ(x)    moved onto the integers
    Mul/Div of DQ(x) by a positive constant          joins x's scale: no arithmetic at all
    DQ(x) * C, DQ(x) + C for a constant tensor C     C as int16 (a product) or int32 (a sum) at a matching scale
    DQ(x) -> LayerNormalization -> Q                 integer mean, variance and square root (no affine: fold it
                                                   into the product that follows)
    DQ(x) -> Softmax -> Q (scale 2^-k)               exp by table from the row's maximum, one integer division

The graph's input is the front end's int32 output (scale 2^-in_shift microvolts), so its first
QuantizeLinear becomes the first requantisation. Whatever stays float between a DQ and a Q that
none of these patterns covers is a float island: it is refused here, naming the ONNX node, not left
to compute in float on an integer-only target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebci.errors import UnsupportedOpError
from edgebci.quantize.arith import ROUND_BITS, Multiplier, build_table, storage_dtype
from edgebci.quantize import program as P

# float functions an element-wise chain may contain (applied to float64 arrays when building a table)
_UNARY = {
    "Elu": lambda x, a: np.where(x > 0, x, np.float32(a.get("alpha", 1.0)) * np.expm1(np.minimum(x, 0))),
    "Sigmoid": lambda x, a: np.float32(1) / (np.float32(1) + np.exp(-x)),
    "Tanh": lambda x, a: np.tanh(x),
    "Exp": lambda x, a: np.exp(x),
    "Log": lambda x, a: np.log(x),
    "Sqrt": lambda x, a: np.sqrt(x),
    "Neg": lambda x, a: -x,
    "Abs": lambda x, a: np.abs(x),
    "Softplus": lambda x, a: np.logaddexp(np.float32(0), x),
    "Relu": lambda x, a: np.maximum(x, np.float32(0)),
    "Erf": lambda x, a: _erf(x).astype(np.float32),
    "Reciprocal": lambda x, a: np.float32(1) / x,
}
OUTPUT_LIMIT = 2 ** 23      # |logits| below this are exact in float32 (2^24), with a bit to spare
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
           "Max": np.maximum, "Min": np.minimum}


def _erf(x):
    from scipy.special import erf
    return erf(x)


@dataclass(frozen=True)
class _Int:
    """A tensor of the program: integers `name` with real value q * scale."""
    name: str
    scale: np.ndarray        # () or (C,) along axis 1
    qmin: int
    qmax: int

    @property
    def per_tensor(self) -> bool:
        return np.asarray(self.scale).size == 1

    @property
    def scalar_scale(self) -> float:
        return float(np.asarray(self.scale).ravel()[0])


@dataclass(frozen=True)
class _ConstQ:
    """A quantised constant: integer values and scale (a weight or bias after DequantizeLinear)."""
    q: np.ndarray
    scale: np.ndarray
    axis: int


@dataclass(frozen=True)
class _Elementwise:
    """A float function of one int8 tensor, pending its QuantizeLinear (then a Table)."""
    src: _Int
    fn: object
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class _Pending:
    """An op that needs its output quantiser's scale (LayerNorm, Softmax): emitted at that QuantizeLinear."""
    kind: str
    src: _Int
    node: object             # the ONNX node, for messages
    eps: float = 0.0


@dataclass(frozen=True)
class InputSpec:
    """How the device holds one graph input: integers of `dtype` in [qmin, qmax] at `scale`."""
    scale: float
    dtype: str = "int32"
    qmin: int = -2 ** 31
    qmax: int = 2 ** 31 - 1


class _Importer:
    def __init__(self, model, inputs: list[InputSpec], logits: bool):
        from onnx import numpy_helper
        self.model = model
        self.graph = model.graph
        self.logits = logits
        self.values: dict = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.prog = P.QProgram(inputs=[], outputs=[])
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.count = 0
        gin = [i for i in self.graph.input if i.name not in self.values]
        if len(gin) != len(inputs):
            raise UnsupportedOpError(f"the graph takes {len(gin)} inputs {[i.name for i in gin]}, but {len(inputs)} "
                                     f"are described")
        for k, (graph_input, spec) in enumerate(zip(gin, inputs)):
            name = "input" if len(gin) == 1 else f"in{k}"
            dims = tuple(d.dim_value or 1 for d in graph_input.type.tensor_type.shape.dim)
            self._add_tensor(name, dims, spec.dtype, np.asarray(spec.scale))
            self.prog.inputs.append(name)
            self.values[graph_input.name] = _Int(name, np.asarray(spec.scale, np.float64), spec.qmin, spec.qmax)

    # -------------------------------------------------------------------- helpers
    def _add_tensor(self, name, shape, dtype, scale):
        self.prog.tensors[name] = P.TensorInfo(name, tuple(int(s) for s in shape), dtype,
                                               np.asarray(scale, np.float64))
        self.shapes[name] = tuple(int(s) for s in shape)

    def _emit(self, cls, inputs, out_shape, dtype, scale, q_lo, q_hi, source, **kw) -> _Int:
        """Append op `cls` writing a new tensor whose integers lie in [q_lo, q_hi]."""
        name = f"t{self.count}"
        self.count += 1
        self._add_tensor(name, out_shape, dtype, scale)
        self.prog.ops.append(cls(tuple(inputs), name, source, **kw))
        return _Int(name, np.asarray(scale, np.float64), q_lo, q_hi)

    def _acc(self, cls, inputs, out_shape, scale, source, **kw) -> _Int:
        return self._emit(cls, inputs, out_shape, "int32", scale, -2 ** 31, 2 ** 31 - 1, source, **kw)

    def shape(self, v: _Int) -> tuple[int, ...]:
        return self.shapes[v.name]

    def _island(self, node, why: str):
        raise UnsupportedOpError(
            f"ONNX node {node.name or node.op_type} ({node.op_type}) would compute in float on the device: {why}. "
            f"Quantise its input and output (a Brevitas QuantIdentity around it) or use an op edgebci lowers to "
            f"integers (Conv, Gemm, MatMul, AveragePool, ReduceMean, Add, Mul, element-wise functions, reshapes)")

    # -------------------------------------------------------------------- driver
    def run(self) -> P.QProgram:
        for node in self.graph.node:
            attrs = {a.name: _attr(a) for a in node.attribute}
            ins = [self.values.get(i) if i else None for i in node.input]
            for i, name in zip(ins, node.input):
                if name and i is None and name not in self.values:
                    raise UnsupportedOpError(f"ONNX node {node.name}: input {name} is not defined before it")
            if node.op_type == "Constant":
                self.values[node.output[0]] = _constant(node)
                continue
            if all(isinstance(v, np.ndarray) for v in ins if v is not None) and node.op_type != "QuantizeLinear":
                self.values[node.output[0]] = _fold(node, ins, attrs)
                continue
            if node.op_type != "QuantizeLinear" and any(isinstance(v, _Pending) for v in ins):
                self._island(node, "it follows a LayerNorm or softmax directly: quantise their output first")
            handler = getattr(self, f"op_{node.op_type}", self._op_generic)
            self.values[node.output[0]] = handler(node, ins, attrs)
        for graph_output in self.graph.output:
            out = self.values[graph_output.name]
            if isinstance(out, _Elementwise):
                self._island(self._node_of(graph_output.name), "the graph ends in a float function")
            if not isinstance(out, _Int):
                raise UnsupportedOpError(f"the graph's output {graph_output.name} is a constant")
            if self.logits:
                out = self._logits(out)
            elif not out.per_tensor:
                raise UnsupportedOpError(f"the graph's output {graph_output.name} has per-channel scales; a state or "
                                         f"step output needs one scale (end it with a quantiser)")
            self.prog.outputs.append(out.name)
        return self.prog

    def _logits(self, out: _Int) -> _Int:
        # The logits leave as float32 scores (the protocol's RESULT), exact only below 2^24: one common scale
        # (per-class scales would make argmax compare different units) with that headroom.
        s = np.asarray(out.scale, np.float64)
        grow = max(1.0, self._bound(out) / OUTPUT_LIMIT)
        if not out.per_tensor or grow > 1.0:
            target = float(s.max()) * grow
            out = self._emit(P.Requantize, [out.name], self.shape(out), "int32", target, -OUTPUT_LIMIT,
                             OUTPUT_LIMIT, "output", mult=Multiplier.from_real(s / target, "output scale"),
                             axis=None if out.per_tensor else 1, qmin=-OUTPUT_LIMIT, qmax=OUTPUT_LIMIT)
        return out

    def _bound(self, v: _Int) -> float:
        """A bound on |values| of the output: from the last product's weights, else its integer range."""
        op = next((o for o in reversed(self.prog.ops) if o.output == v.name), None)
        if isinstance(op, (P.Dense, P.Conv)):
            w = np.abs(op.weight.astype(np.int64)).reshape(op.weight.shape[0], -1).sum(1) * 128
            return float((w + (np.abs(op.bias.astype(np.int64)) if op.bias is not None else 0)).max())
        return float(max(abs(v.qmin), abs(v.qmax)))

    def _node_of(self, output: str):
        return next(n for n in self.graph.node if output in n.output)

    # -------------------------------------------------------------------- quantise / dequantise
    def op_QuantizeLinear(self, node, ins, attrs):
        x, s = ins[0], np.asarray(ins[1], np.float64)
        zp = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros((), np.uint8)
        if np.any(np.asarray(zp) != 0):
            raise UnsupportedOpError(f"{node.name}: zero point {np.asarray(zp).ravel()[:4]} != 0; edgebci quantises "
                                     f"symmetrically: use signed quantisers with zero_point 0 (Brevitas Int8*)")
        info = np.iinfo(np.asarray(zp).dtype)
        if isinstance(x, np.ndarray):
            return _ConstQ(np.clip(np.round(x / _axis(s, x.ndim, attrs.get("axis", 1))), info.min, info.max)
                           .astype(np.asarray(zp).dtype), s, attrs.get("axis", 1))
        if s.size != 1:
            self._island(node, "per-channel activation quantisation is not supported (use per-tensor)")
        s = float(s.ravel()[0])
        if isinstance(x, _Pending):
            return self._finish(node, x, s, int(info.min), int(info.max))
        if isinstance(x, _Elementwise):
            if x.src.qmin < -128 or x.src.qmax > 127 or not x.src.per_tensor:
                self._island(node, "an element-wise function of a wide or per-channel tensor: quantise its input "
                                   "to int8 per tensor first")
            table = build_table(x.fn, x.src.scalar_scale, s, info.min, info.max, (x.src.qmin, x.src.qmax))
            return self._emit(P.Table, [x.src.name], self.shape(x.src), table.dtype.name, s, info.min, info.max,
                              "+".join(x.nodes), table=table)
        if not isinstance(x, _Int):
            self._island(node, f"quantising {type(x).__name__}")
        mult = Multiplier.from_real(np.asarray(x.scale, np.float64) / s, node.name)
        if x.per_tensor and mult.is_shift and int(mult.n) == 0 and x.qmin >= info.min and x.qmax <= info.max:
            return _Int(x.name, np.asarray(s), x.qmin, x.qmax)      # same scale, already in range: nothing to do
        axis = None if x.per_tensor else 1
        return self._emit(P.Requantize, [x.name], self.shape(x), storage_dtype(info.min, info.max), s, info.min,
                          info.max, node.name, mult=mult, axis=axis, qmin=int(info.min), qmax=int(info.max))

    def op_DequantizeLinear(self, node, ins, attrs):
        x = ins[0]
        if isinstance(x, _Int):          # activations stay integers; their scale travels with them
            return x
        raise UnsupportedOpError(f"{node.name}: DequantizeLinear of {type(x).__name__}")

    def op_Clip(self, node, ins, attrs):
        x = ins[0]
        lo_v = -np.inf if len(ins) < 2 or ins[1] is None else float(np.asarray(ins[1]))
        hi_v = np.inf if len(ins) < 3 or ins[2] is None else float(np.asarray(ins[2]))
        if isinstance(x, _Int) and x.per_tensor:
            lo, hi = lo_v / x.scalar_scale, hi_v / x.scalar_scale
            if all(np.isinf(b) or float(b).is_integer() for b in (lo, hi)):   # bounds on the integer grid: exact
                lo_i = int(max(lo, x.qmin)) if np.isfinite(lo) else x.qmin
                hi_i = int(min(hi, x.qmax)) if np.isfinite(hi) else x.qmax
                return self._emit(P.Clamp, [x.name], self.shape(x), self.prog.tensors[x.name].dtype, x.scale, lo_i,
                                  hi_i, node.name, lo=lo_i, hi=hi_i)
        if isinstance(x, (_Int, _Elementwise)):    # off the grid (log's floor): part of the element-wise function
            src, fn, nodes = _as_function(x)
            lo32, hi32 = np.float32(lo_v), np.float32(hi_v)
            return _Elementwise(src, lambda v: np.clip(fn(v), lo32, hi32), nodes + (node.name,))
        return self._op_generic(node, ins, attrs)

    def op_Identity(self, node, ins, attrs):
        return ins[0]

    # -------------------------------------------------------------------- products
    def _weight(self, node, w) -> _ConstQ:
        if isinstance(w, _ConstQ):
            return w
        self._island(node, "its weights are not quantised (no DequantizeLinear of integer weights)")

    def _bias(self, node, b, acc_scale: np.ndarray) -> np.ndarray | None:
        if b is None:
            return None
        if isinstance(b, _ConstQ):
            bs = np.broadcast_to(np.asarray(b.scale, np.float64), acc_scale.shape)
            if not np.allclose(bs, acc_scale, rtol=1e-5):
                self._island(node, "its bias scale is not input scale x weight scale (use Brevitas Int32Bias)")
            return np.asarray(b.q, np.int64).astype(np.int32)
        if isinstance(b, np.ndarray):     # a float bias: quantised at the accumulator's scale
            return np.round(b / acc_scale).astype(np.int32)
        self._island(node, "a computed bias")

    def op_Conv(self, node, ins, attrs):
        x, w = ins[0], self._weight(node, ins[1])
        if not isinstance(x, _Int) or not x.per_tensor:
            self._island(node, "its input is not a per-tensor quantised activation")
        if w.q.ndim != 3:
            self._island(node, f"a {w.q.ndim - 2}-D convolution (edgebci lowers 1-D convolutions)")
        if any(v != 1 for v in attrs.get("strides", [1])[1:]):
            self._island(node, "strides on more than one axis")
        stride, dilation = attrs.get("strides", [1])[0], attrs.get("dilations", [1])[0]
        pads = tuple(attrs.get("pads", [0, 0]))
        groups = attrs.get("group", 1)
        s_acc = x.scalar_scale * np.broadcast_to(np.asarray(w.scale, np.float64).ravel(), (w.q.shape[0],))
        bias = self._bias(node, ins[2] if len(ins) > 2 else None, s_acc)
        n, _, t = self.shape(x)
        k = w.q.shape[-1]
        t_out = (t + pads[0] + pads[1] - dilation * (k - 1) - 1) // stride + 1
        return self._acc(P.Conv, [x.name], (n, w.q.shape[0], t_out), _squeeze(s_acc), node.name,
                         weight=np.asarray(w.q, np.int8), bias=bias, stride=int(stride), pads=(int(pads[0]), int(pads[1])),
                         dilation=int(dilation), groups=int(groups))

    def _dense(self, node, x, wq: np.ndarray, w_scale, b):
        if not isinstance(x, _Int) or not x.per_tensor:
            self._island(node, "its input is not a per-tensor quantised activation")
        s_acc = x.scalar_scale * np.broadcast_to(np.asarray(w_scale, np.float64).ravel(), (wq.shape[0],))
        bias = self._bias(node, b, s_acc)
        shape = (*self.shape(x)[:-1], wq.shape[0])
        if s_acc.size > 1 and len(shape) != 2:
            self._island(node, "per-channel weights on a product whose output is not (batch, features)")
        return self._acc(P.Dense, [x.name], shape, _squeeze(s_acc), node.name, weight=np.asarray(wq, np.int8),
                         bias=bias)

    def op_Gemm(self, node, ins, attrs):
        w = self._weight(node, ins[1])
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            self._island(node, "Gemm with transA, alpha or beta")
        wq = w.q if attrs.get("transB", 0) else w.q.T
        return self._dense(node, ins[0], wq, w.scale, ins[2] if len(ins) > 2 else None)

    def op_MatMul(self, node, ins, attrs):
        a, b = ins
        if isinstance(b, _ConstQ):
            if b.q.ndim != 2:
                self._island(node, "a batched constant matrix")
            return self._dense(node, a, b.q.T, b.scale, None)
        if isinstance(a, _Int) and isinstance(b, _Int) and a.per_tensor and b.per_tensor:
            sa, sb = self.shape(a), self.shape(b)
            return self._acc(P.MatMul, [a.name, b.name], (*sa[:-1], sb[-1]), a.scalar_scale * b.scalar_scale,
                             node.name)
        self._island(node, "a product of a float value")

    # -------------------------------------------------------------------- normalisation
    def _int8_source(self, node, x, what: str) -> _Int:
        if not (isinstance(x, _Int) and x.per_tensor and x.qmin >= -128 and x.qmax <= 127):
            self._island(node, f"{what} of a value that is not one per-tensor int8 tensor (quantise its input)")
        return x

    def op_LayerNormalization(self, node, ins, attrs):
        x = self._int8_source(node, ins[0], "a LayerNorm")
        if attrs.get("axis", -1) % len(self.shape(x)) != len(self.shape(x)) - 1:
            self._island(node, "a LayerNorm over more than the last axis")
        scale, bias = (ins[1] if len(ins) > 1 else None), (ins[2] if len(ins) > 2 else None)
        if (scale is not None and not (isinstance(scale, np.ndarray) and np.all(scale == 1))) or \
                (bias is not None and not (isinstance(bias, np.ndarray) and np.all(bias == 0))):
            self._island(node, "a LayerNorm with its own scale and shift: fold them into the product that follows "
                               "(W diag(gamma), b + W beta) and normalise without an affine")
        return _Pending("layernorm", x, node, float(attrs.get("epsilon", 1e-5)))

    def op_Softmax(self, node, ins, attrs):
        x = self._int8_source(node, ins[0], "a softmax")
        if attrs.get("axis", -1) % len(self.shape(x)) != len(self.shape(x)) - 1:
            self._island(node, "a softmax over an axis other than the last")
        return _Pending("softmax", x, node)

    def _finish(self, qnode, p: _Pending, s_out: float, qmin: int, qmax: int) -> _Int:
        x, shape = p.src, self.shape(p.src)
        s_in, source = x.scalar_scale, f"{p.node.name}+{qnode.name}"
        if p.kind == "softmax":
            shift = -np.log2(s_out)
            if not float(shift).is_integer() or not 0 <= shift <= 16:
                self._island(p.node, f"its probabilities are quantised at scale {s_out:.6g}: the integer softmax "
                                    f"needs a power-of-two scale 2^-k, 0 <= k <= 16 (a constant quantiser)")
            return self._emit(P.Softmax, [x.name], shape, storage_dtype(qmin, qmax), s_out, qmin, qmax, source,
                              table=P.softmax_table(s_in), shift=int(shift), qmin=qmin, qmax=qmax)
        consts = P.layer_norm_constants(shape[-1], s_in, s_out, p.eps)
        if consts["f"] < 1:
            self._island(p.node, f"a LayerNorm output scale {s_out:.3g} too fine for its width {shape[-1]}")
        return self._emit(P.LayerNorm, [x.name], shape, storage_dtype(qmin, qmax), s_out, qmin, qmax, source,
                          **consts, qmin=qmin, qmax=qmax)

    def op_Concat(self, node, ins, attrs):
        if not all(isinstance(v, _Int) and v.per_tensor for v in ins) or \
                len({round(v.scalar_scale, 15) for v in ins}) != 1:
            self._island(node, "a concatenation of tensors without one common scale (quantise them with one "
                               "quantiser)")
        shapes = [self.shape(v) for v in ins]
        axis = attrs.get("axis", 0) % len(shapes[0])
        if axis == 0:
            self._island(node, "a concatenation along the batch axis")
        dtypes = {self.prog.tensors[v.name].dtype for v in ins}
        if len(dtypes) != 1:
            self._island(node, f"a concatenation of {sorted(dtypes)} tensors")
        out = list(shapes[0])
        out[axis] = sum(sh[axis] for sh in shapes)
        return self._emit(P.Concat, [v.name for v in ins], tuple(out), dtypes.pop(), ins[0].scale,
                          min(v.qmin for v in ins), max(v.qmax for v in ins), node.name, axis=axis)

    def _mul_const(self, node, x: _Int, c: np.ndarray) -> _Int:
        """x * c, c a constant tensor: c as int16 at a power-of-two scale (its largest |value| uses 15 bits)."""
        if not x.per_tensor:
            self._island(node, "a product of a per-channel tensor and a constant tensor")
        c = np.asarray(c, np.float64)
        peak = float(np.abs(c).max())
        if peak == 0:
            self._island(node, "a product with a constant that is all zeros")
        s_c = 2.0 ** np.ceil(np.log2(peak / 32767))
        cq = np.clip(np.round(c / s_c), -32767, 32767).astype(np.int16)
        shape = tuple(np.broadcast_shapes(self.shape(x), cq.shape))
        if cq.ndim == len(shape) and cq.shape[0] != 1:
            self._island(node, "a constant that varies along the batch axis")
        return self._acc(P.MulConst, [x.name], shape, x.scalar_scale * s_c, node.name, value=cq)

    def _add_const(self, node, x: _Int, c: np.ndarray, negate: bool) -> _Int:
        """x + c, c a constant tensor at x's scale (an accumulator's) or 2^ROUND_BITS finer (an int8's)."""
        if not x.per_tensor:
            self._island(node, "adding a constant tensor to a per-channel tensor")
        wide = x.qmax > 2 ** 15
        shift = 0 if wide else ROUND_BITS
        s = x.scalar_scale / 2 ** shift
        cq = np.round((-1 if negate else 1) * np.asarray(c, np.float64) / s)
        if np.abs(cq).max(initial=0) >= 2 ** 30:
            self._island(node, "a constant too large for the accumulator's scale")
        shape = tuple(np.broadcast_shapes(self.shape(x), cq.shape))
        return self._acc(P.AddConst, [x.name], shape, s, node.name, value=cq.astype(np.int32), shift=shift)

    # -------------------------------------------------------------------- pooling and reductions
    def op_AveragePool(self, node, ins, attrs):
        x = ins[0]
        if not isinstance(x, _Int):
            self._island(node, "pooling a float value")
        (k,), (stride,) = attrs["kernel_shape"], attrs.get("strides", [1])
        pads = tuple(attrs.get("pads", [0, 0]))
        if any(pads) and not attrs.get("count_include_pad", 0):
            self._island(node, "padded average pooling that excludes the padding from the count")
        if attrs.get("ceil_mode", 0):
            self._island(node, "ceil_mode pooling")
        shape = self.shape(x)
        t_out = (shape[-1] + pads[0] + pads[1] - k) // stride + 1
        return self._acc(P.SumPool, [x.name], (*shape[:-1], t_out), np.asarray(x.scale) / k, node.name,
                         kernel=int(k), stride=int(stride), pads=(int(pads[0]), int(pads[1])))

    def op_ReduceMean(self, node, ins, attrs):
        return self._reduce(node, ins, attrs, mean=True)

    def op_ReduceSum(self, node, ins, attrs):
        return self._reduce(node, ins, attrs, mean=False)

    def _reduce(self, node, ins, attrs, mean: bool):
        x = ins[0]
        if not isinstance(x, _Int):
            self._island(node, "reducing a float value")
        shape = self.shape(x)
        axes = attrs.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = [int(a) for a in np.asarray(ins[1]).ravel()]
        axes = tuple(sorted(a % len(shape) for a in (axes or range(len(shape)))))
        if 0 in axes or (1 in axes and not x.per_tensor):
            self._island(node, "a reduction over the batch or over per-channel scales")
        keep = bool(attrs.get("keepdims", 1))
        count = int(np.prod([shape[a] for a in axes]))
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)
        scale = np.asarray(x.scale) / (count if mean else 1)
        return self._acc(P.ReduceSum, [x.name], out_shape, scale, node.name, axes=axes, keepdims=keep)

    # -------------------------------------------------------------------- views
    def _view(self, node, x, cls, new_shape, **kw):
        if not isinstance(x, _Int):
            return self._op_generic(node, [x], {})
        if not x.per_tensor and new_shape[:2] != self.shape(x)[:2]:
            self._island(node, "reshaping a tensor with per-channel scales (requantise it first)")
        return self._emit(cls, [x.name], new_shape, self.prog.tensors[x.name].dtype, x.scale, x.qmin, x.qmax,
                          node.name, **kw)

    def op_Flatten(self, node, ins, attrs):
        shape = self.shape(ins[0]) if isinstance(ins[0], _Int) else ()
        axis = attrs.get("axis", 1)
        new = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
        return self._view(node, ins[0], P.Reshape, new, shape=new)

    def op_Reshape(self, node, ins, attrs):
        x = ins[0]
        if not isinstance(x, _Int):
            return self._op_generic(node, ins, attrs)
        old = self.shape(x)
        spec = [int(v) for v in np.asarray(ins[1]).ravel()]
        spec = [old[i] if v == 0 else v for i, v in enumerate(spec)]
        if -1 in spec:
            known = int(np.prod([v for v in spec if v != -1]))
            spec[spec.index(-1)] = int(np.prod(old)) // known
        return self._view(node, x, P.Reshape, tuple(spec), shape=tuple(spec))

    def op_Squeeze(self, node, ins, attrs):
        x = ins[0]
        axes = attrs.get("axes") or [int(a) for a in np.asarray(ins[1]).ravel()]
        old = self.shape(x)
        new = tuple(d for i, d in enumerate(old) if i not in [a % len(old) for a in axes])
        return self._view(node, x, P.Reshape, new, shape=new)

    def op_Unsqueeze(self, node, ins, attrs):
        x = ins[0]
        axes = attrs.get("axes") or [int(a) for a in np.asarray(ins[1]).ravel()]
        new = list(self.shape(x))
        for a in sorted(a % (len(new) + len(axes)) for a in axes):
            new.insert(a, 1)
        return self._view(node, x, P.Reshape, tuple(new), shape=tuple(new))

    def op_Transpose(self, node, ins, attrs):
        x = ins[0]
        if isinstance(x, _ConstQ):          # a bias-free QuantLinear's weight, transposed for its MatMul
            perm = attrs.get("perm", range(x.q.ndim)[::-1])
            return _ConstQ(x.q.transpose(perm), x.scale, list(perm).index(x.axis) if x.axis < x.q.ndim else x.axis)
        old = self.shape(x)
        perm = tuple(attrs.get("perm", range(len(old))[::-1]))
        if perm[0] != 0:
            self._island(node, "a transpose that moves the batch axis")
        if not x.per_tensor and perm[1] != 1:
            self._island(node, "transposing a tensor with per-channel scales (requantise it first)")
        return self._view(node, x, P.Transpose, tuple(old[p] for p in perm), perm=perm)

    def op_Pad(self, node, ins, attrs):
        x = ins[0]
        if not isinstance(x, _Int):
            return self._op_generic(node, ins, attrs)
        if attrs.get("mode", b"constant") not in (b"constant", "constant"):
            self._island(node, f"padding mode {attrs.get('mode')}")
        if len(ins) > 2 and ins[2] is not None and np.any(np.asarray(ins[2]) != 0):
            self._island(node, "padding with a non-zero value")
        pads = [int(v) for v in np.asarray(ins[1]).ravel()]
        nd = len(pads) // 2
        pairs = tuple((pads[i], pads[i + nd]) for i in range(nd))
        shape = tuple(d + a + b for d, (a, b) in zip(self.shape(x), pairs))
        return self._view(node, x, P.Pad, shape, pads=pairs)

    # -------------------------------------------------------------------- element-wise
    def _op_generic(self, node, ins, attrs):
        """Element-wise float ops: exact scale changes, integer adds and products, or a pending table."""
        op = node.op_type
        dyn = [v for v in ins if v is not None and not isinstance(v, np.ndarray)]
        if op in _UNARY and len(dyn) == 1:
            if op == "Relu" and isinstance(dyn[0], _Int):
                x = dyn[0]
                return self._emit(P.Clamp, [x.name], self.shape(x), self.prog.tensors[x.name].dtype, x.scale, 0,
                                  x.qmax, node.name, lo=0, hi=x.qmax)
            src, fn, nodes = _as_function(dyn[0])
            return _Elementwise(src, _compose(_UNARY[op], fn, attrs), nodes + (node.name,))
        if op in _BINARY and len(ins) == 2:
            a, b = ins
            if isinstance(a, _Int) and isinstance(b, np.ndarray) and op in ("Mul", "Div") and b.size == 1 and float(b) > 0:
                factor = float(b) if op == "Mul" else 1.0 / float(b)
                return _Int(a.name, np.asarray(a.scale) * factor, a.qmin, a.qmax)
            if isinstance(b, _Int) and isinstance(a, np.ndarray) and op == "Mul" and a.size == 1 and float(a) > 0:
                return _Int(b.name, np.asarray(b.scale) * float(a), b.qmin, b.qmax)
            if op == "Mul" and {type(a), type(b)} == {_Int, np.ndarray}:
                x, c = (a, b) if isinstance(a, _Int) else (b, a)
                return self._mul_const(node, x, c)
            if op in ("Add", "Sub") and isinstance(a, _Int) and isinstance(b, np.ndarray):
                return self._add_const(node, a, b, negate=op == "Sub")
            if op == "Add" and isinstance(b, _Int) and isinstance(a, np.ndarray):
                return self._add_const(node, b, a, negate=False)
            if isinstance(a, _Int) and isinstance(b, _Int) and a.name != b.name:
                if op in ("Add", "Sub"):
                    return self._add(node, a, b, negate=op == "Sub")
                if op == "Mul":
                    return self._mul(node, a, b)
            srcs = {_as_function(v)[0].name for v in (a, b) if not isinstance(v, np.ndarray)}
            if len(srcs) == 1:
                return _binary_function(op, a, b, node.name)
        self._island(node, "no integer pattern covers it")

    def _add(self, node, a: _Int, b: _Int, negate: bool) -> _Int:
        """a + b (or a - b) at a common scale: the finer input's when it is already a wide accumulator or
        both scales are equal, else 2^ROUND_BITS finer than the finer input, so neither side rounds much."""
        sa, sb = self.shape(a), self.shape(b)
        if sa != sb:
            self._island(node, f"an addition that broadcasts {sa} with {sb}")
        fine = a if np.min(a.scale) <= np.min(b.scale) else b
        s_min = float(np.min(fine.scale))
        same = a.per_tensor and b.per_tensor and a.scalar_scale == b.scalar_scale
        wide = fine.per_tensor and (fine.qmax > 2 ** 15)
        s_common = s_min if (same or wide) else s_min / 2 ** ROUND_BITS
        ma = Multiplier.from_real(np.asarray(a.scale, np.float64) / s_common, node.name)
        mb = Multiplier.from_real(np.asarray(b.scale, np.float64) / s_common, node.name)
        return self._acc(P.AddScaled, [a.name, b.name], sa, s_common, node.name, mult_a=ma, mult_b=mb,
                         axis_a=None if a.per_tensor else 1, axis_b=None if b.per_tensor else 1, subtract=negate)

    def op_Greater(self, node, ins, attrs):
        x, t = ins
        if not (isinstance(x, _Int) and x.per_tensor and isinstance(t, np.ndarray) and t.size == 1):
            self._island(node, "a comparison that is not a quantised tensor against a constant")
        code = int(np.floor(float(t) / x.scalar_scale))     # q * s > t  <=>  q > floor(t / s)
        return self._emit(P.Compare, [x.name], self.shape(x), "int8", 1.0, 0, 1, node.name, threshold=code)

    def op_Cast(self, node, ins, attrs):
        x = ins[0]
        if isinstance(x, _Int) and x.qmin >= 0 and x.qmax <= 1:    # a comparison's 0/1 as a number
            return x
        return self._op_generic(node, ins, attrs)

    def op_Slice(self, node, ins, attrs):
        x = ins[0]
        if not isinstance(x, _Int):
            return self._op_generic(node, ins, attrs)
        starts, ends = [int(v) for v in np.asarray(ins[1]).ravel()], [int(v) for v in np.asarray(ins[2]).ravel()]
        axes = [int(v) for v in np.asarray(ins[3]).ravel()] if len(ins) > 3 and ins[3] is not None else [0]
        steps = [int(v) for v in np.asarray(ins[4]).ravel()] if len(ins) > 4 and ins[4] is not None else [1]
        if len(starts) != 1:
            self._island(node, "a slice along more than one axis")
        shape = list(self.shape(x))
        axis = axes[0] % len(shape)
        if axis == 0 or (axis == 1 and not x.per_tensor):
            self._island(node, "a slice of the batch or of per-channel scales")
        start, stop, step = slice(starts[0], ends[0], steps[0]).indices(shape[axis])
        shape[axis] = len(range(start, stop, step))
        return self._emit(P.Slice, [x.name], tuple(shape), self.prog.tensors[x.name].dtype, x.scale, x.qmin, x.qmax,
                          node.name, axis=axis, start=start, stop=stop, step=step)

    def _mul(self, node, a: _Int, b: _Int) -> _Int:
        if not (a.per_tensor and b.per_tensor):
            self._island(node, "a product of tensors with per-channel scales")
        sa, sb = self.shape(a), self.shape(b)
        shape = tuple(np.broadcast_shapes(sa, sb))
        return self._acc(P.Mul, [a.name, b.name], shape, a.scalar_scale * b.scalar_scale, node.name)


def _as_function(v):
    if isinstance(v, _Elementwise):
        return v.src, v.fn, v.nodes
    return v, (lambda x: x), ()


def _compose(f, inner, attrs):
    return lambda x: f(inner(x), attrs)


def _binary_function(op, a, b, name):
    """Both operands are functions of the same int8 source (x * sigmoid(x), x * x, ...) or constants."""
    parts = []
    src, nodes = None, ()
    for v in (a, b):
        if isinstance(v, np.ndarray):
            c = np.asarray(v, np.float32)
            parts.append(lambda x, c=c: c)
        else:
            s, fn, n = _as_function(v)
            src, nodes = s, nodes + n
            parts.append(fn)
    if np.asarray(src.scale).size != 1:
        raise UnsupportedOpError(f"{name}: an element-wise function of a tensor with per-channel scales")
    f = _BINARY[op]
    return _Elementwise(src, lambda x: f(parts[0](x), parts[1](x)), nodes + (name,))


def _squeeze(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    return np.asarray(s.ravel()[0]) if s.size > 1 and np.all(s == s.ravel()[0]) else s


def _axis(s: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if s.size == 1:
        return s.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return s.reshape(shape)


def _attr(a):
    import onnx
    v = onnx.helper.get_attribute_value(a)
    return list(v) if isinstance(v, (list, tuple)) else v


def _constant(node) -> np.ndarray:
    from onnx import numpy_helper
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
    raise UnsupportedOpError(f"{node.name}: Constant without a tensor value")


def _fold(node, ins, attrs):
    """Constant folding of the weight path (Clip and DequantizeLinear of integer weights, reshapes)."""
    op = node.op_type
    if op == "DequantizeLinear":
        q, s = ins[0], np.asarray(ins[1], np.float64)
        zp = ins[2] if len(ins) > 2 and ins[2] is not None else None
        if zp is not None and np.any(np.asarray(zp) != 0):
            raise UnsupportedOpError(f"{node.name}: weights with a non-zero zero point; use symmetric weight quantisers")
        if q.dtype.kind in "iu":
            return _ConstQ(q, s, attrs.get("axis", 1))
        return q.astype(np.float32) * _axis(s, q.ndim, attrs.get("axis", 1))
    if op == "Clip":
        lo = ins[1] if len(ins) > 1 and ins[1] is not None else None
        hi = ins[2] if len(ins) > 2 and ins[2] is not None else None
        return np.clip(ins[0], lo, hi).astype(ins[0].dtype)
    if op == "Identity":
        return ins[0]
    if op in ("Reshape",):
        return ins[0].reshape([int(v) for v in ins[1]])
    if op == "Transpose":
        return ins[0].transpose(attrs.get("perm"))
    if op == "Cast":
        import onnx
        return ins[0].astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))
    if op in ("Unsqueeze", "Squeeze"):
        axes = attrs.get("axes") or [int(a) for a in ins[1]]
        return np.expand_dims(ins[0], axes) if op == "Unsqueeze" else np.squeeze(ins[0], tuple(axes))
    if op in _BINARY:
        return _BINARY[op](ins[0], ins[1])
    if op in _UNARY:
        return _UNARY[op](ins[0], attrs)
    raise UnsupportedOpError(f"{node.name}: cannot fold constant op {op}")


def import_qcdq(model, input_scale: float | list[InputSpec], logits: bool = True) -> P.QProgram:
    """model : onnx.ModelProto (QCDQ). A decoder takes one float (1, C, T) input in the units whose integer
    representation at `input_scale` the device delivers (the front end's int32 output: 2^-in_shift uV) and
    returns logits (logits=True: one scale, |q| < 2^24). The parts of a recurrent decoder describe each input
    (InputSpec) and return quantised tensors as they are (logits=False)."""
    specs = [InputSpec(float(input_scale))] if np.isscalar(input_scale) else list(input_scale)
    return _Importer(model, specs, logits).run()
