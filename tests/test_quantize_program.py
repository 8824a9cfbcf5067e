"""QCDQ ONNX -> integer program: the patterns become integer ops, the numpy reference agrees with
onnxruntime's float QDQ execution to the rounding step, and what would stay float is refused by name."""
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from edgebci.errors import UnsupportedOpError  # noqa: E402
from edgebci.quantize import program as P  # noqa: E402
from edgebci.quantize.deploy import export_qcdq  # noqa: E402
from edgebci.quantize.qcdq import import_qcdq  # noqa: E402
from edgebci.quantize.recipe import Recipe  # noqa: E402
from edgebci.quantize.twins import Twin, _value  # noqa: E402

IN_SHIFT = 10          # the program's input: int32 = uV * 2^10
C, T = 4, 64


class Tiny(Twin):
    """Every pattern the reader knows, in one small graph: conv+bias, table (ELU), pooling, a residual add of two
    differently scaled tensors, x*x as a table, a mean, flatten and a linear head."""

    def __init__(self, recipe, island: str | None = None):
        super().__init__(recipe, 40.0)
        torch.manual_seed(0)
        self.island = island
        self.spatial = self._conv(C, 6, 1, bias=False)
        self.temporal = self._conv(6, 6, 5, bias=True, padding=2, groups=6)
        self.act = self._act()
        self.pooled = self._act()
        self.mix = self._conv(6, 6, 1, bias=True)
        self.summed = self._act()
        self.square = self._act()
        self.mean = self._act()
        self.head = self._linear(6 * 1, 3)
        self.raw = nn.Conv1d(6, 6, 1) if island == "acc" else None

    def forward(self, x):
        x = self.temporal(self.spatial(self.qin(x)))
        if self.island == "softmax":
            x = self.act(torch.softmax(_value(x), dim=-1))
        else:
            x = self.act(F.elu(_value(x)))
        p = self.pooled(F.avg_pool1d(_value(x), 4))
        s = self.summed(_value(p) + _value(self.mix(p)))
        s = self.square(_value(s) * _value(s))
        m = self.mean(_value(s).mean(-1, keepdim=True))
        return self.head(m.flatten(1))


def _calibrated(model, x):
    from brevitas.graph.calibrate import calibration_mode
    with torch.no_grad(), calibration_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(x)
    return model.eval()


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((8, C, T)) * 12 * 2 ** IN_SHIFT).astype(np.int32)


@pytest.fixture(scope="module", params=["int8", "int8-pow2", "w4a8"])
def exported(request, windows):
    model = _calibrated(Tiny(Recipe.from_name(request.param)), torch.from_numpy(windows * 2.0 ** -IN_SHIFT).float())
    onnx_bytes = export_qcdq(model, C, T)
    return request.param, onnx_bytes, import_qcdq(onnx.load(io.BytesIO(onnx_bytes)), 2.0 ** -IN_SHIFT)


def test_every_pattern_becomes_an_integer_op(exported):
    recipe, _, program = exported
    kinds = [type(op).__name__ for op in program.ops]
    for kind in ("Requantize", "Conv", "Table", "SumPool", "AddScaled", "ReduceSum", "Reshape", "Dense"):
        assert kind in kinds, f"{kind} missing from {kinds}"
    assert all(t.dtype in ("int8", "int32") for t in program.tensors.values())
    assert program.input_info.dtype == "int32" and program.output_info.shape == (1, 3)
    conv_weights = [op.weight for op in program.ops if isinstance(op, P.Conv)]
    bound = 7 if recipe == "w4a8" else 127
    assert all(np.abs(w).max() <= bound for w in conv_weights)
    if recipe == "int8-pow2":      # power-of-two scales: no multiplier anywhere, every requantisation a shift
        assert all(op.mult.is_shift for op in program.ops if isinstance(op, P.Requantize) and op.source != "output")


def test_reference_equals_onnxruntime_to_the_rounding_step(exported, windows):
    """Every int8 tensor of the program against onnxruntime's QuantizeLinear output for the same node."""
    recipe, onnx_bytes, program = exported
    env = P.run_reference(program, windows[:1], keep=True)
    model = onnx.load(io.BytesIO(onnx_bytes))
    pairs = []
    for op in program.ops:
        node = next((n for n in model.graph.node if n.name == op.source), None)
        if node is not None and node.op_type == "QuantizeLinear":
            pairs.append((op.output, node.output[0]))
            model.graph.output.append(onnx.ValueInfoProto(name=node.output[0]))
    assert len(pairs) >= 6
    sess = ort.InferenceSession(model.SerializeToString())
    got = sess.run([o for _, o in pairs], {sess.get_inputs()[0].name: (windows[:1] * 2.0 ** -IN_SHIFT).astype(np.float32)})
    for (name, _), want in zip(pairs, got):
        diff = np.abs(env[name] - want.astype(np.int64))
        # the same rounding (half to even) and tables in float32 as onnxruntime: power-of-two scales are exact,
        # float scales may move a code by one where the 31-bit multiplier differs from float32 division
        assert diff.max() <= (0 if recipe == "int8-pow2" else 1) and (diff > 0).mean() < 0.1, name
    logits = sess.run(None, {sess.get_inputs()[0].name: (windows[:1] * 2.0 ** -IN_SHIFT).astype(np.float32)})[0]
    assert env[program.output].argmax() == logits.argmax()


def test_reference_refuses_an_overflowing_accumulator(exported, windows):
    _, _, program = exported
    conv = next(op for op in program.ops if isinstance(op, P.Conv))
    huge = P.Conv(conv.inputs, conv.output, conv.source, weight=np.full_like(conv.weight, 127),
                  bias=np.full(conv.weight.shape[0], 2 ** 31 - 10, np.int32), stride=conv.stride, pads=conv.pads,
                  dilation=conv.dilation, groups=conv.groups)
    broken = P.QProgram(program.inputs, program.outputs, program.tensors,
                        [huge if op is conv else op for op in program.ops])
    with pytest.raises(UnsupportedOpError, match="outside int32"):
        P.run_reference(broken, windows)


def test_a_float_island_is_refused_naming_the_node(windows):
    model = _calibrated(Tiny(Recipe.from_name("int8"), island="softmax"), torch.from_numpy(windows * 1e-3).float())
    onnx_bytes = export_qcdq(model, C, T)
    with pytest.raises(UnsupportedOpError, match=r"Softmax.*would compute in float"):
        import_qcdq(onnx.load(io.BytesIO(onnx_bytes)), 2.0 ** -IN_SHIFT)


def test_non_zero_zero_points_are_refused(exported):
    _, onnx_bytes, _ = exported
    model = onnx.load(io.BytesIO(onnx_bytes))
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zp = next(i for i in model.graph.initializer if i.name == q.input[2])
    zp.CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.int8), zp.name))
    with pytest.raises(UnsupportedOpError, match="zero point .* != 0"):
        import_qcdq(model, 2.0 ** -IN_SHIFT)


# ------------------------------------------------------------------------ attention, LayerNorm, softmax

class TinyAttention(Twin):
    """What the Conformer and Mamba need beyond the above: tokens with learned positions (a constant added to an
    accumulator), LayerNorm, a product of two activations, softmax, a product with a constant tensor, a
    concatenation, in one small graph."""

    def __init__(self, recipe, affine_norm: bool = False):
        super().__init__(recipe, 40.0)
        from edgebci.quantize.twins_conformer import _prob_act
        torch.manual_seed(0)
        self.affine_norm = affine_norm
        self.spatial = self._conv(C, 8, 1, bias=False)
        self.temporal = self._conv(8, 8, 5, bias=True, padding=2, groups=8, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 16, 8) * 0.3)
        self.q_tok, self.q_ln, self.q_scores, self.q_ctx, self.q_scaled, self.q_cat = (self._act() for _ in range(6))
        self.qk = self._conv(8, 8, 1, bias=True)
        self.q_probs = _prob_act()
        self.head = self._linear(8 * 16 * 2, 3)
        self.norm_gain = nn.Parameter(torch.linspace(0.5, 1.5, 8))
        self.register_buffer("gain", torch.linspace(-1.5, 2.0, 8)[:, None])

    def forward(self, x):
        z = self.temporal(self.spatial(self.qin(x)))                                   # (B, 8, 16)
        tok = self.q_tok(_value(z).transpose(1, 2) + self.pos)                         # (B, 16, 8)
        gain = self.norm_gain if self.affine_norm else None
        h = self.q_ln(F.layer_norm(_value(tok), (8,), gain, None, 1e-5))
        q = self.qk(h.transpose(1, 2))                                                 # (B, 8, 16)
        qt = _value(q).transpose(1, 2)
        scores = self.q_scores(torch.matmul(qt, _value(q)) * 0.35)                     # (B, 16, 16)
        probs = self.q_probs(torch.softmax(_value(scores), -1))
        ctx = self.q_ctx(torch.matmul(_value(probs), qt))                              # (B, 16, 8)
        scaled = self.q_scaled(_value(ctx).transpose(1, 2) * self.gain).flatten(1)    # (B, 128)
        return self.head(self.q_cat(torch.cat([_value(scaled), _value(scaled)], 1)))


@pytest.fixture(scope="module", params=["int8", "int8-pow2"])
def attention(request, windows):
    model = _calibrated(TinyAttention(Recipe.from_name(request.param)),
                        torch.from_numpy(windows * 2.0 ** -IN_SHIFT).float())
    onnx_bytes = export_qcdq(model, C, T)
    return model, onnx_bytes, import_qcdq(onnx.load(io.BytesIO(onnx_bytes)), 2.0 ** -IN_SHIFT)


def test_attention_patterns_become_integer_ops(attention):
    _, _, program = attention
    kinds = {type(op).__name__ for op in program.ops}
    assert {"LayerNorm", "Softmax", "MatMul", "MulConst", "AddConst", "Concat", "Transpose"} <= kinds, kinds
    softmax = next(op for op in program.ops if isinstance(op, P.Softmax))
    assert softmax.shift == 8 and program.tensors[softmax.output].dtype == "int16"     # uint8 codes at 2^-8


def test_attention_reference_follows_the_fake_quantised_model(attention, windows):
    """The integer LayerNorm and softmax round differently from float ones by at most a code or two, so the
    program's logits stay within a few output steps of Brevitas' fake quantisation."""
    model, _, program = attention
    got = P.run_reference(program, windows) * float(program.output_info.scale)
    with torch.no_grad():
        want = _value(model(torch.from_numpy(windows * 2.0 ** -IN_SHIFT).float())).numpy()
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.75


def test_attention_host_build_equals_the_reference(attention, windows):
    """The Relax emission (TE LayerNorm with its digit-by-digit isqrt, TE softmax) built for the host by TVM
    gives the reference's integers exactly."""
    import tvm
    from tvm import relax

    from edgebci.compile.integer import emit_relax
    _, _, program = attention
    vm = relax.VirtualMachine(tvm.compile(emit_relax(program), target="llvm"), tvm.cpu())
    ref = P.run_reference(program, windows[:3])
    for i in range(3):
        assert np.array_equal(vm["main"](tvm.runtime.tensor(windows[i:i + 1])).numpy()[0], ref[i])


def test_a_layernorm_with_its_own_affine_is_refused(windows):
    model = _calibrated(TinyAttention(Recipe.from_name("int8"), affine_norm=True),
                        torch.from_numpy(windows * 2.0 ** -IN_SHIFT).float())
    with pytest.raises(UnsupportedOpError, match=r"LayerNormalization.*fold them into the product that follows"):
        import_qcdq(onnx.load(io.BytesIO(export_qcdq(model, C, T))), 2.0 ** -IN_SHIFT)


def test_isqrt_is_the_exact_floor_square_root():
    rng = np.random.default_rng(1)
    v = np.concatenate([np.arange(0, 300), rng.integers(0, 2 ** 62, 2000), [2 ** 62 - 1, (2 ** 31 - 1) ** 2]])
    r = P.isqrt(v)
    assert np.all(r * r <= v) and np.all((r + 1) * (r + 1) > v)


def test_integer_layernorm_and_softmax_against_float():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (200, 16)).astype(np.int64)
    s_in, s_out = 0.05, 4 / 128
    op = P.LayerNorm(("x",), "y", "test", **P.layer_norm_constants(16, s_in, s_out, 1e-5))
    xf = x * s_in
    want = (xf - xf.mean(1, keepdims=True)) / np.sqrt(xf.var(1, keepdims=True) + 1e-5) / s_out
    got = P.layer_norm_int(x, op)
    assert np.abs(got - np.clip(want, -128, 127)).max() <= 0.51      # round half up of the exact value
    sm = P.Softmax(("x",), "y", "test", table=P.softmax_table(0.1), shift=8)
    p = P.softmax_int(x, sm)
    e = np.exp(0.1 * (x - x.max(1, keepdims=True)))
    assert np.abs(p - np.clip(e / e.sum(1, keepdims=True) * 256, 0, 255)).max() <= 1.0


@pytest.mark.parametrize("shifts", [(0, 1), (-2, 0, 3)])
def test_per_channel_shifts_with_a_zero_shift_match_on_the_host(shifts):
    """A channel whose shift is 0 keeps its value (Mamba's int8-pow2 logits once came out one too low on
    even values: the emitter added 2^-1 - 1 = -1 as the rounding half)."""
    import tvm
    from tvm import relax

    from edgebci.compile.integer import emit_relax
    from edgebci.quantize.arith import Multiplier
    c = len(shifts)
    n = np.array(shifts, np.int64)
    prog = P.QProgram(["x"], ["y"])
    prog.tensors["x"] = P.TensorInfo("x", (1, c, 8), "int32", np.ones(()))
    prog.tensors["y"] = P.TensorInfo("y", (1, c, 8), "int32", np.ones(()))
    prog.ops.append(P.Requantize(("x",), "y", "test", mult=Multiplier(np.ones(c, np.int64), n), axis=1,
                                 qmin=-2 ** 31, qmax=2 ** 31 - 1))
    x = np.arange(-4 * c, 4 * c, dtype=np.int32).reshape(1, c, 8) * 3
    vm = relax.VirtualMachine(tvm.compile(emit_relax(prog), target="llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = P.run_reference(prog, x)
    assert np.array_equal(got, want)
    assert np.array_equal(want[0, list(shifts).index(0)], x[0, list(shifts).index(0)])
