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
