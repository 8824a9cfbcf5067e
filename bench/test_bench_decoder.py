"""Host latency of every bundled decoder: edgebci on x86 vs onnxruntime vs torch, one thread, batch 1.

Per decoder, four runners of the same model on the same float window (the model alone, no front end), in one
pytest-benchmark session on the same machine:

  edgebci_x86     target x86-64: TVM LLVM kernels for this CPU, "cpu" schedule (the shipped x86 path)
  edgebci_c       target host: the portable Cortex-M C (inline schedule) built for x86 with gcc -O2
  onnxruntime     the checkpoint exported to ONNX (opset 17), CPUExecutionProvider, 1 intra/inter thread
  torch           eager, torch.set_num_threads(1), no_grad

The last test prints the median per runner and the ratios edgebci_x86 / onnxruntime and / torch, and writes
them to build/bench/decoder_host.json. The two edgebci libraries are called through ctypes
(ebci_model_run), which adds about a microsecond per call.

    make bench
"""
from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest

from edgebci.defaults import CHECKPOINTS_DIR

ARCHS = tuple(sorted(p.stem for p in CHECKPOINTS_DIR.glob("*.pt")))
RUNNERS = ("edgebci_x86", "edgebci_c", "onnxruntime", "torch")
MEDIANS: dict[str, dict[str, float]] = {}
OUT = Path(__file__).resolve().parent.parent / "build" / "bench"


@pytest.fixture(scope="module", params=ARCHS)
def decoder(request, tmp_path_factory):
    import torch

    from edgebci.compile import compile_decoder
    from edgebci.compile.sources import checkpoint_module
    from edgebci.firmware.build import build_host_library
    from edgebci.targets import Target
    from edgebci.zoo import load_checkpoint
    torch.set_num_threads(1)
    arch = request.param
    ck = load_checkpoint(CHECKPOINTS_DIR / f"{arch}.pt")
    out = tmp_path_factory.mktemp(f"bench-{arch}")
    libs = {}
    for runner, target in (("edgebci_x86", "x86-64"), ("edgebci_c", "host")):
        compiled = compile_decoder(ck, Target.from_name(target), out / target)
        libs[runner] = ctypes.CDLL(str(build_host_library(compiled.c_dir, out / target / "host")))
    x = (np.random.default_rng(0).standard_normal((1, len(ck.channels), ck.window_samples)) * 15).astype(np.float32)
    return arch, checkpoint_module(ck).eval(), libs, x, out


def _record(benchmark, arch, runner):
    MEDIANS.setdefault(arch, {})[runner] = benchmark.stats.stats.median


def _run_lib(benchmark, decoder, runner):
    arch, model, libs, x, _ = decoder
    benchmark.group = arch
    y = np.zeros(16, np.float32)
    xp, yp = x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p)
    assert benchmark(libs[runner].ebci_model_run, xp, yp) == 0
    _record(benchmark, arch, runner)


def test_edgebci_x86(benchmark, decoder):
    _run_lib(benchmark, decoder, "edgebci_x86")


def test_edgebci_c(benchmark, decoder):
    _run_lib(benchmark, decoder, "edgebci_c")


def test_onnxruntime(benchmark, decoder):
    import onnxruntime as ort
    import torch
    arch, model, _, x, out = decoder
    benchmark.group = arch
    path = out / "model.onnx"
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    benchmark(sess.run, None, {name: x})
    _record(benchmark, arch, "onnxruntime")


def test_torch(benchmark, decoder):
    import torch
    arch, model, _, x, _ = decoder
    benchmark.group = arch
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return model(xt)
    benchmark(run)
    _record(benchmark, arch, "torch")


def test_ratios():
    complete = {a: m for a, m in MEDIANS.items() if set(m) == set(RUNNERS) and None not in m.values()}
    if not complete:
        pytest.skip("run the whole file with --benchmark-enable to get ratios")
    rows = {a: {"median_us": {k: v * 1e6 for k, v in m.items()},
                "edgebci_x86_vs_onnxruntime": m["edgebci_x86"] / m["onnxruntime"],
                "edgebci_x86_vs_torch": m["edgebci_x86"] / m["torch"],
                "edgebci_c_vs_onnxruntime": m["edgebci_c"] / m["onnxruntime"]} for a, m in complete.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "decoder_host.json").write_text(json.dumps(rows, indent=2))
    print("\n| arch | edgebci x86-64 us | portable C us | onnxruntime us | torch us | x86-64 / ORT | x86-64 / torch |")
    print("|---|---|---|---|---|---|---|")
    for a, r in rows.items():
        us = r["median_us"]
        print(f"| `{a}` | {us['edgebci_x86']:.1f} | {us['edgebci_c']:.1f} | {us['onnxruntime']:.1f} | "
              f"{us['torch']:.1f} | {r['edgebci_x86_vs_onnxruntime']:.2f}x | {r['edgebci_x86_vs_torch']:.2f}x |")
