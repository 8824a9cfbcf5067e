"""From a quantised checkpoint to the integer program a device runs, for one user.

    program, onnx_bytes = deploy_program(qckpt)        # the user's alignment folded, input range set
    y_q = run_reference(program, fixed_windows(qckpt.frontend, x_int16))

A quantised checkpoint is a zoo checkpoint with a `quantization` entry: the recipe, the twin's
trained state (unaligned, as QAT left it) and the input range measured on raw filtered EEG (the
training subjects' pooled, or the user's once calibrated). Deploying rebuilds the twin, folds the
user's alignment into its first spatial weights (weights are quantised per channel from the folded
values), sets the input quantiser's range, exports QCDQ ONNX with Brevitas and reads it back as an
integer program (edgebci.quantize.qcdq) whose input is the front end's int32 output.
"""
from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgebci.errors import ConfigError, UnsupportedOpError, missing_extra
from edgebci.frontend.fixed import filter_fixed, quantize_frontend
from edgebci.quantize.program import QProgram, SteppedProgram
from edgebci.quantize.recipe import Recipe

OPSET = 17


def fixed_windows(frontend, x: np.ndarray) -> np.ndarray:
    """The device's front end from rest per window: int16 (N, C, T) -> int32 (N, C, T), uV * 2^in_shift."""
    fixed = quantize_frontend(frontend)
    x = np.asarray(x)
    y, _ = filter_fixed(fixed, x.reshape(-1, x.shape[-1]))
    return y.reshape(x.shape)


def input_threshold(filtered_uv: np.ndarray, percentile: float) -> float:
    """The input quantiser's range: the percentile of |x| over calibration windows, in microvolts."""
    t = float(np.percentile(np.abs(np.asarray(filtered_uv, np.float64)), percentile))
    if not t > 0:
        raise ConfigError(f"the calibration windows are flat (|x| percentile {percentile} is {t} uV): calibrate the "
                          f"quantiser on real recordings")
    return t


def load_twin(ckpt, aligned: bool = False):
    """The checkpoint's twin with its trained state; aligned=True folds the checkpoint's alignment and sets the
    input range for raw EEG (the deploy form), else the unaligned training form."""
    from edgebci.quantize.twins import make_twin
    q = _quant(ckpt)
    recipe = Recipe.from_dict(q["recipe"])
    twin = make_twin(ckpt.arch, ckpt.build_model(), recipe, q["aligned_input_threshold"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin.load_state_dict(q["twin_state"], strict=True)
    if aligned:
        if ckpt.alignment == "euclidean":
            if ckpt.align_matrix is None:
                raise ConfigError(f"this quantised {ckpt.arch} decoder needs its user's alignment: calibrate it first "
                                  f"(`edgebci calibrate` or `edgebci compile --calibrate USER_RUN.edf`)")
            twin.fold_alignment(ckpt.align_matrix)
        twin.set_input_range(q["raw_input_threshold"])
    return twin.eval()


def export_qcdq(twin, *shape) -> bytes:
    """Brevitas QCDQ ONNX of a twin (TorchScript exporter, opset 17), as bytes.

    shape : the input's (n_channels, n_samples), or one (1, ...) shape per input of a part of a stepped twin."""
    import torch
    x = torch.zeros(1, *shape) if all(isinstance(d, int) for d in shape) else tuple(torch.zeros(s) for s in shape)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # brevitas' import-time notices and the TorchScript exporter's deprecation
        try:
            from brevitas.export import export_onnx_qcdq
        except ImportError:
            raise missing_extra("brevitas", "quantize") from None
        path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            export_onnx_qcdq(twin, args=x, export_path=str(path), dynamo=False, opset_version=OPSET,
                             keep_initializers_as_inputs=False)
        return path.read_bytes()


def program_from_onnx(onnx_bytes: bytes, frontend, logits: bool = True) -> QProgram:
    """A QCDQ graph whose input is the front end's int32 output (2^-in_shift uV) as an integer program."""
    import onnx

    from edgebci.quantize.qcdq import import_qcdq
    fixed = quantize_frontend(frontend)
    return import_qcdq(onnx.load(io.BytesIO(onnx_bytes)), 2.0 ** -fixed.in_shift, logits=logits)


def deploy_program(ckpt):
    """The quantised checkpoint for its user (alignment folded, raw input range) as (program, QCDQ ONNX):
    a QProgram and its bytes, or for a recurrent family a SteppedProgram and {part: bytes}."""
    twin = load_twin(ckpt, aligned=True)
    if hasattr(twin, "stepped_parts"):
        import torch
        for m in twin.modules():     # one whole pass with caching on: each int32 bias quantiser keeps its input
            if hasattr(m, "cache_inference_quant_bias"):          # scale, which a part exported alone may not see
                m.cache_inference_quant_bias = True
        with torch.no_grad():
            twin(torch.zeros(1, len(ckpt.channels), ckpt.window_samples))
        return _deploy_stepped(twin.stepped_parts(), ckpt)
    onnx_bytes = export_qcdq(twin, len(ckpt.channels), ckpt.window_samples)
    return program_from_onnx(onnx_bytes, ckpt.frontend), onnx_bytes


def _deploy_stepped(parts, ckpt) -> tuple[SteppedProgram, dict]:
    """Export and read the three parts; each part's inputs carry the scales the loop hands it."""
    import onnx

    from edgebci.quantize.qcdq import InputSpec, import_qcdq
    blobs = {"encode": export_qcdq(parts.encode, len(ckpt.channels), ckpt.window_samples)}
    encode = program_from_onnx(blobs["encode"], ckpt.frontend, logits=False)
    seq = encode.output_info
    blobs["step"] = export_qcdq(parts.step, (1, parts.seq_width), *((1, w) for w in parts.state_widths))
    int8 = dict(dtype="int8", qmin=-128, qmax=127)
    specs = [InputSpec(float(seq.scale), **int8), *(InputSpec(s, **int8) for s in parts.state_scales)]
    step = import_qcdq(onnx.load(io.BytesIO(blobs["step"])), specs, logits=False)
    for name_in, name_out in zip(step.inputs[1:], step.outputs[1:]):
        s_in, s_out = float(step.tensors[name_in].scale), float(step.tensors[name_out].scale)
        if s_in != s_out or step.tensors[name_out].dtype != "int8":
            raise UnsupportedOpError(f"the step returns its state at scale {s_out:.6g} ({step.tensors[name_out].dtype}) "
                                     f"but takes it at {s_in:.6g} (int8): quantise the state with one quantiser")
    y = step.tensors[step.outputs[0]]
    if abs(float(y.scale) - parts.out_scale) > 1e-12 * parts.out_scale:
        raise UnsupportedOpError(f"the step output's scale is {float(y.scale):.6g}, the readout expects "
                                 f"{parts.out_scale:.6g}")
    blobs["readout"] = export_qcdq(parts.readout, (1, parts.out_width))
    readout = import_qcdq(onnx.load(io.BytesIO(blobs["readout"])), [InputSpec(parts.out_scale)], logits=True)
    return SteppedProgram(encode, step, readout, parts.n_steps), blobs


def _quant(ckpt) -> dict:
    if not ckpt.quantization:
        raise ConfigError(f"this {ckpt.arch} checkpoint is not quantised: run `edgebci quantize CHECKPOINT --recipe "
                          f"int8` first, or compile it with --recipe")
    return ckpt.quantization
