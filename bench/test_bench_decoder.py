"""Host latency of the bundled decoder: edgebci's generated C vs onnxruntime vs torch, one thread, batch 1.

All three run the same model on the same filtered window in one pytest-benchmark session; the last test
prints the median ratios and writes them to build/bench/decoder_host.json. The generated C here is the
portable Cortex-M C built for x86 (-O2), called through ctypes: no x86 schedule yet (issue: more targets).
"""
from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest

MEDIANS: dict[str, float] = {}
OUT = Path(__file__).resolve().parent.parent / "build" / "bench"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from edgebci.compile import compile_decoder
    from edgebci.defaults import BUNDLED_CHECKPOINT
    from edgebci.firmware.build import build_host_library
    from edgebci.targets import Target
    from edgebci.zoo import load_checkpoint
    torch.set_num_threads(1)
    ck = load_checkpoint(BUNDLED_CHECKPOINT)
    out = tmp_path_factory.mktemp("bench")
    compiled = compile_decoder(ck, Target.from_name("host"), out)
    lib = ctypes.CDLL(str(build_host_library(compiled.c_dir, out / "host")))
    x = (np.random.default_rng(0).standard_normal((1, len(ck.channels), ck.window_samples)) * 15).astype(np.float32)
    return ck, lib, x


def _record(benchmark, name):
    MEDIANS[name] = benchmark.stats.stats.median


def test_edgebci_c(benchmark, setup):
    _, lib, x = setup
    y = np.zeros(2, np.float32)
    xp, yp = x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p)
    benchmark(lib.ebci_model_run, xp, yp)
    _record(benchmark, "edgebci_c")


def test_onnxruntime(benchmark, setup, tmp_path):
    import onnxruntime as ort
    import torch
    ck, _, x = setup
    path = tmp_path / "model.onnx"
    torch.onnx.export(ck.build_model(), (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    benchmark(sess.run, None, {name: x})
    _record(benchmark, "onnxruntime")


def test_torch(benchmark, setup):
    import torch
    ck, _, x = setup
    model, xt = ck.build_model(), torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return model(xt)
    benchmark(run)
    _record(benchmark, "torch")


def test_ratios():
    if set(MEDIANS) != {"edgebci_c", "onnxruntime", "torch"} or any(v is None for v in MEDIANS.values()):
        pytest.skip("run the whole file with --benchmark-enable to get ratios")
    ratios = {"edgebci_c_vs_onnxruntime": MEDIANS["edgebci_c"] / MEDIANS["onnxruntime"],
              "edgebci_c_vs_torch": MEDIANS["edgebci_c"] / MEDIANS["torch"]}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "decoder_host.json").write_text(json.dumps({"median_s": MEDIANS, "ratios": ratios}, indent=2))
    print("\nmedians (s):", MEDIANS, "\nratios:", ratios)
