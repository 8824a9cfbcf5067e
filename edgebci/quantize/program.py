"""An integer program: what a quantised decoder computes on the device, op by op, in integers only.

    program = import_qcdq(onnx_model, input_scale=2.0 ** -15)   # edgebci.quantize.qcdq
    logits_q = run_reference(program, x_int32)                  # numpy, bit-exact with the device
    relax_mod = emit_relax(program)                             # edgebci.compile.integer

The ops are few and each is exact integer arithmetic (edgebci.quantize.arith says how a scale becomes
integers). Tensors are int8 activations, int32 accumulators and the int32 front-end output; weights
are int8 (int4 values stored as int8), biases int32. Shapes are static and the batch is the first axis
(1 on the device; the reference runs any batch). `run_reference` is the Python integer reference
the device must equal window for window; it refuses any intermediate that leaves its C type, which on
the device would wrap silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgebci.errors import UnsupportedOpError
from edgebci.quantize.arith import INT_RANGES as _RANGES, Multiplier, requantize


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str                       # int8 | int16 | int32
    scale: np.ndarray                # real value = q * scale; () per tensor or (C,) along axis 1

    def __post_init__(self):
        if self.dtype not in _RANGES:
            raise UnsupportedOpError(f"tensor {self.name}: dtype {self.dtype} is not an integer type of the "
                                     f"program; allowed: {sorted(_RANGES)}")


@dataclass(frozen=True)
class Op:
    inputs: tuple[str, ...]
    output: str
    source: str                      # the ONNX node(s) it came from, for messages


@dataclass(frozen=True)
class Requantize(Op):
    mult: Multiplier = None
    axis: int | None = None          # where per-channel multipliers broadcast
    qmin: int = -128
    qmax: int = 127


@dataclass(frozen=True)
class Conv(Op):
    """1-D convolution, NCW x OIW -> int32 accumulators (+ int32 bias)."""
    weight: np.ndarray = None        # int8 (O, C/groups, K)
    bias: np.ndarray | None = None   # int32 (O,)
    stride: int = 1
    pads: tuple[int, int] = (0, 0)
    dilation: int = 1
    groups: int = 1


@dataclass(frozen=True)
class Dense(Op):
    """x (..., K) @ weight.T (+ bias) -> int32 (..., N)."""
    weight: np.ndarray = None        # int8 (N, K)
    bias: np.ndarray | None = None


@dataclass(frozen=True)
class MatMul(Op):
    """Two activations: (..., M, K) @ (..., K, N) -> int32."""


@dataclass(frozen=True)
class Table(Op):
    """An element-wise function of an int8 tensor as a 256-entry lookup: out = table[q + 128]."""
    table: np.ndarray = None         # int8 (256,)


@dataclass(frozen=True)
class SumPool(Op):
    """Sum over windows along the last axis (average pooling before its 1/k, which joins the scale)."""
    kernel: int = 1
    stride: int = 1
    pads: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class AddScaled(Op):
    """a * ma + b * mb (or a * ma - b * mb) at a common scale (each side requantised without clamping), int32."""
    mult_a: Multiplier = None
    mult_b: Multiplier = None
    axis_a: int | None = None
    axis_b: int | None = None
    subtract: bool = False


@dataclass(frozen=True)
class Compare(Op):
    """q > threshold (a spike: the membrane over its threshold), as int8 0 or 1."""
    threshold: int = 0


@dataclass(frozen=True)
class Slice(Op):
    """x[..., start:stop:step] along one axis (a time step of a sequence)."""
    axis: int = -1
    start: int = 0
    stop: int = 0
    step: int = 1


@dataclass(frozen=True)
class Mul(Op):
    """Element-wise product of two activations (broadcasting), int32."""


@dataclass(frozen=True)
class ReduceSum(Op):
    axes: tuple[int, ...] = ()
    keepdims: bool = True


@dataclass(frozen=True)
class Reshape(Op):
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class Transpose(Op):
    perm: tuple[int, ...] = ()


@dataclass(frozen=True)
class Pad(Op):
    pads: tuple[tuple[int, int], ...] = ()   # (before, after) per axis, zeros


@dataclass(frozen=True)
class Clamp(Op):
    lo: int = -2 ** 31
    hi: int = 2 ** 31 - 1


@dataclass(frozen=True)
class Concat(Op):
    """Tensors of one scale joined along a non-batch axis (a sliding window: old inputs and the new one)."""
    axis: int = 1


@dataclass(frozen=True)
class MulConst(Op):
    """x * c for a constant tensor c (int16, broadcasting against x; its scale joins x's), int32."""
    value: np.ndarray = None


@dataclass(frozen=True)
class AddConst(Op):
    """(x << shift) + c for a constant tensor c (int32, at the output's scale: x's, 2^shift finer), int32."""
    value: np.ndarray = None
    shift: int = 0


@dataclass(frozen=True)
class LayerNorm(Op):
    """Normalise the last axis of an int8 tensor (mean 0, variance 1; the affine joins the next product):

        s = sum(x);  c = d*x - s;  v = sum(c*c) + eps;  r = isqrt(v)
        y = clamp(floor((c * k + r * 2^(f-1)) / (r * 2^f)), qmin, qmax)

    c / r is (x - mean) / (sqrt(d) * std), so k = round(sqrt(d) / s_out * 2^f); eps = eps_real * d^3 / s_in^2.
    int64 from the squares on; isqrt is the floor square root (exact, bit by bit on the device)."""
    eps: int = 1
    k: int = 0
    f: int = 0
    qmin: int = -128
    qmax: int = 127


@dataclass(frozen=True)
class Softmax(Op):
    """Softmax along the last axis of an int8 tensor to probabilities at scale 2^-shift:

        e = table[x - max(x) + 255]    table[i] = round(2^14 * exp(s_in * (i - 255))), int16
        y = clamp(floor((e * 2^shift + sum(e) / 2) / sum(e)), qmin, qmax)"""
    table: np.ndarray = None
    shift: int = 8
    qmin: int = 0
    qmax: int = 255


SOFTMAX_ONE = 2 ** 14       # exp(0) in the softmax table


def softmax_table(s_in: float) -> np.ndarray:
    """Softmax's exp table for int8 inputs at scale s_in: entry i is round(2^14 * exp(s_in * (i - 255))), int16."""
    codes = np.arange(256, dtype=np.float64) - 255
    return np.round(SOFTMAX_ONE * np.exp(s_in * codes)).astype(np.int16)


def layer_norm_constants(d: int, s_in: float, s_out: float, eps: float) -> dict:
    """LayerNorm's integer constants {eps, k, f} for width d, input and output scales and the real epsilon.
    f (fractional bits of k) keeps k below 2^30; f < 1 means s_out is too fine for this width."""
    gain = np.sqrt(d) / s_out
    f = int(min(24, 30 - np.ceil(np.log2(gain + 1))))
    return {"eps": max(1, int(round(eps * d ** 3 / s_in ** 2))), "k": int(round(gain * 2 ** f)), "f": f}


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of non-negative int64 values below 2^62, exactly."""
    v = np.asarray(v, np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    return np.where((r + 1) * (r + 1) <= v, r + 1, r)


def layer_norm_int(x: np.ndarray, op: "LayerNorm") -> np.ndarray:
    d = x.shape[-1]
    s = x.sum(-1, keepdims=True)
    c = d * x - s
    v = (c * c).sum(-1, keepdims=True) + op.eps
    if v.size and v.max() >= 2 ** 62:
        raise UnsupportedOpError(f"LayerNorm ({op.source}): the variance sum {int(v.max())} overflows int64")
    r = isqrt(v)
    y = (c * op.k + (r << (op.f - 1))) // (r << op.f)
    return np.clip(y, op.qmin, op.qmax)


def softmax_int(x: np.ndarray, op: "Softmax") -> np.ndarray:
    e = op.table.astype(np.int64)[x - x.max(-1, keepdims=True) + 255]
    total = e.sum(-1, keepdims=True)
    return np.clip(((e << op.shift) + total // 2) // total, op.qmin, op.qmax)


@dataclass
class QProgram:
    """Ops in execution order over named tensors. A decoder's program takes the front end's int32 output
    and returns the logits; the step of a recurrent decoder takes and returns several tensors."""
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)

    @property
    def input(self) -> str:
        if len(self.inputs) != 1:
            raise UnsupportedOpError(f"this program takes {len(self.inputs)} inputs, not one")
        return self.inputs[0]

    @property
    def output(self) -> str:
        if len(self.outputs) != 1:
            raise UnsupportedOpError(f"this program returns {len(self.outputs)} tensors, not one")
        return self.outputs[0]

    @property
    def input_info(self) -> TensorInfo:
        return self.tensors[self.input]

    @property
    def output_info(self) -> TensorInfo:
        return self.tensors[self.output]

    def weight_bytes(self) -> int:
        n = 0
        for op in self.ops:
            for a in (getattr(op, "weight", None), getattr(op, "bias", None), getattr(op, "table", None),
                      getattr(op, "value", None)):
                if a is not None:
                    n += a.nbytes
        return n

    def macs(self) -> int:
        """Multiply-accumulates of convolutions and products per window (batch 1)."""
        total = 0
        for op in self.ops:
            out = int(np.prod(self.tensors[op.output].shape[1:]))
            if isinstance(op, Conv):
                total += out * op.weight.shape[1] * op.weight.shape[2]
            elif isinstance(op, Dense):
                total += out * op.weight.shape[1]
            elif isinstance(op, MatMul):
                total += out * self.tensors[op.inputs[0]].shape[-1]
            elif isinstance(op, (Mul, MulConst)):
                total += out
        return total

    def summary(self) -> list[str]:
        lines = []
        for op in self.ops:
            t = self.tensors[op.output]
            lines.append(f"{type(op).__name__:<11} {','.join(op.inputs):<28} -> {op.output} {t.dtype}{list(t.shape)}"
                         f"  [{op.source}]")
        return lines


# ------------------------------------------------------------------------------------------ reference

def conv1d_int(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int], dilation: int,
               groups: int) -> np.ndarray:
    """Exact integer 1-D convolution. x (N, C, T) int64, w (O, C/g, K) -> (N, O, T') int64."""
    n, c, _ = x.shape
    o, cg, k = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), pads))
    span = (k - 1) * dilation + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=2)[:, :, ::stride, ::dilation]   # N,C,T',K
    win = win.reshape(n, groups, cg, win.shape[2], k)
    wg = w.astype(np.int64).reshape(groups, o // groups, cg, k)
    return np.einsum("ngctk,gock->ngot", win, wg, optimize=True).reshape(n, o, -1)


def _axis_vec(v: np.ndarray, ndim: int, axis: int = 1) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(v, np.int64).reshape(shape)


def _run_op(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    if isinstance(op, Requantize):
        return requantize(x, op.mult, op.axis, op.qmin, op.qmax)
    if isinstance(op, Conv):
        y = conv1d_int(x, op.weight, op.stride, op.pads, op.dilation, op.groups)
        return y if op.bias is None else y + _axis_vec(op.bias, 3)
    if isinstance(op, Dense):
        y = x @ op.weight.astype(np.int64).T
        return y if op.bias is None else y + np.asarray(op.bias, np.int64)
    if isinstance(op, MatMul):
        return np.matmul(x, args[1])
    if isinstance(op, Table):
        return op.table.astype(np.int64)[x + 128]
    if isinstance(op, SumPool):
        xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [op.pads])
        win = np.lib.stride_tricks.sliding_window_view(xp, op.kernel, axis=-1)[..., ::op.stride, :]
        return win.sum(-1)
    if isinstance(op, AddScaled):
        a = requantize(x, op.mult_a, op.axis_a, -2 ** 62, 2 ** 62)
        b = requantize(args[1], op.mult_b, op.axis_b, -2 ** 62, 2 ** 62)
        return a - b if op.subtract else a + b
    if isinstance(op, Compare):
        return (x > op.threshold).astype(np.int64)
    if isinstance(op, Slice):
        index = [slice(None)] * x.ndim
        index[op.axis] = slice(op.start, op.stop, op.step)
        return x[tuple(index)]
    if isinstance(op, Mul):
        return x * args[1]
    if isinstance(op, ReduceSum):
        return x.sum(axis=op.axes, keepdims=op.keepdims)
    if isinstance(op, Reshape):
        return x.reshape((x.shape[0], *op.shape[1:]))
    if isinstance(op, Transpose):
        return x.transpose(op.perm)
    if isinstance(op, Pad):
        return np.pad(x, op.pads)
    if isinstance(op, Clamp):
        return np.clip(x, op.lo, op.hi)
    if isinstance(op, Concat):
        return np.concatenate(args, axis=op.axis)
    if isinstance(op, MulConst):
        return x * op.value.astype(np.int64)
    if isinstance(op, AddConst):
        return (x << op.shift) + op.value.astype(np.int64)
    if isinstance(op, LayerNorm):
        return layer_norm_int(x, op)
    if isinstance(op, Softmax):
        return softmax_int(x, op)
    raise UnsupportedOpError(f"no reference for {type(op).__name__}")


def run_program(program: QProgram, *inputs: np.ndarray, keep: bool = False):
    """Run a program on integer inputs with a leading batch axis; returns its outputs (a list, int64 values),
    or with keep=True every tensor {name: array}. Raises UnsupportedOpError naming the op whose result
    leaves its C type (on the device it would wrap)."""
    if len(inputs) != len(program.inputs):
        raise UnsupportedOpError(f"the program takes {len(program.inputs)} inputs, got {len(inputs)}")
    env = {}
    for name, x in zip(program.inputs, inputs):
        x = np.asarray(x)
        if x.shape[1:] != program.tensors[name].shape[1:]:
            raise UnsupportedOpError(f"program input {name} has shape {program.tensors[name].shape[1:]} per "
                                     f"window, got {x.shape[1:]}")
        env[name] = x.astype(np.int64)
    _execute(program, env)
    return env if keep else [env[o] for o in program.outputs]


def run_reference(program, x: np.ndarray, keep: bool = False):
    """The integer reference of a decoder. x : int32 (N, C, T), the front end's output (or (C, T) for one window).

    program : QProgram, or SteppedProgram (a recurrent decoder: encode, the time loop, readout).
    Returns the logits as int64 values (N, n_classes), or with keep=True (a QProgram) every tensor.
    """
    if isinstance(program, SteppedProgram):
        return run_stepped(program, x)
    x = np.asarray(x)
    if x.ndim == len(program.input_info.shape) - 1:
        x = x[None]
    return run_program(program, x, keep=keep) if keep else run_program(program, x)[0]


def _execute(program: QProgram, env: dict) -> None:
    for op in program.ops:
        y = _run_op(op, [env[i] for i in op.inputs])
        info = program.tensors[op.output]
        lo, hi = _RANGES[info.dtype]
        if y.size and (y.min() < lo or y.max() > hi):
            raise UnsupportedOpError(f"{type(op).__name__} ({op.source}) produces values in [{y.min()}, {y.max()}], "
                                     f"outside {info.dtype}: on the device they would wrap")
        env[op.output] = y


@dataclass
class SteppedProgram:
    """A recurrent decoder as three programs and the time loop the device runs between them:

        seq = encode(window)                    (1, n_steps, width), int8
        state = zeros; total = 0                int32 total
        for t: y, *state = step(seq[:, t], *state); total += y
        logits = readout(total)                 the readout's scales hold the 1/n_steps of the mean
    """
    encode: QProgram
    step: QProgram
    readout: QProgram
    n_steps: int

    @property
    def input_info(self) -> TensorInfo:
        return self.encode.input_info

    @property
    def output_info(self) -> TensorInfo:
        return self.readout.output_info

    @property
    def ops(self) -> list[Op]:
        return [*self.encode.ops, *self.step.ops, *self.readout.ops]

    def weight_bytes(self) -> int:
        return self.encode.weight_bytes() + self.step.weight_bytes() + self.readout.weight_bytes()

    def macs(self) -> int:
        return self.encode.macs() + self.n_steps * self.step.macs() + self.readout.macs()

    def summary(self) -> list[str]:
        return [f"# encode", *self.encode.summary(), f"# step (x {self.n_steps})", *self.step.summary(),
                "# readout (of the int32 sum of the step outputs)", *self.readout.summary()]


def run_stepped(sp: SteppedProgram, x: np.ndarray) -> np.ndarray:
    """The device's loop in numpy. x : int32 (N, C, T) -> logits int64 (N, n_classes)."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    (seq,) = run_program(sp.encode, x)
    if seq.shape[1] != sp.n_steps:
        raise UnsupportedOpError(f"encode returned {seq.shape[1]} steps, the loop runs {sp.n_steps}")
    state = [np.zeros((len(x), *sp.step.tensors[n].shape[1:]), np.int64) for n in sp.step.inputs[1:]]
    total = np.zeros((len(x), *sp.step.tensors[sp.step.outputs[0]].shape[1:]), np.int64)
    for t in range(sp.n_steps):
        y, *state = run_program(sp.step, seq[:, t].reshape(len(x), *sp.step.tensors[sp.step.inputs[0]].shape[1:]),
                                *state)
        total = total + y
    if np.abs(total).max(initial=0) >= 2 ** 31:
        raise UnsupportedOpError("the sum of the step outputs leaves int32")
    return run_program(sp.readout, total)[0]
