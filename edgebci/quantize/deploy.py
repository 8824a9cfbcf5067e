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

from edgebci.errors import ConfigError, missing_extra
from edgebci.frontend.fixed import filter_fixed, quantize_frontend
from edgebci.quantize.program import QProgram
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


def export_qcdq(twin, n_channels: int, n_samples: int) -> bytes:
    """Brevitas QCDQ ONNX of a twin (TorchScript exporter, opset 17), as bytes."""
    import torch
    x = torch.zeros(1, n_channels, n_samples)
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


def program_from_onnx(onnx_bytes: bytes, frontend) -> QProgram:
    import onnx

    from edgebci.quantize.qcdq import import_qcdq
    fixed = quantize_frontend(frontend)
    return import_qcdq(onnx.load(io.BytesIO(onnx_bytes)), 2.0 ** -fixed.in_shift)


def deploy_program(ckpt) -> tuple[QProgram, bytes]:
    """The quantised checkpoint for its user (alignment folded, raw input range) as (program, QCDQ ONNX bytes)."""
    twin = load_twin(ckpt, aligned=True)
    onnx_bytes = export_qcdq(twin, len(ckpt.channels), ckpt.window_samples)
    return program_from_onnx(onnx_bytes, ckpt.frontend), onnx_bytes


def _quant(ckpt) -> dict:
    if not ckpt.quantization:
        raise ConfigError(f"this {ckpt.arch} checkpoint is not quantised: run `edgebci quantize CHECKPOINT --recipe "
                          f"int8` first, or compile it with --recipe")
    return ckpt.quantization
