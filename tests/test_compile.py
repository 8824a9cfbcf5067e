"""Compile to plain C: numerics against torch and TVM's own build, op and budget refusals."""
import ctypes
import json

import numpy as np
import pytest
import torch

from edgebci.compile import compile_decoder
from edgebci.errors import BudgetError, UnsupportedOpError
from edgebci.frontend import apply_frontend
from edgebci.targets import Target


def _model_run(host_reference, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Call the generated `ebci_model_run` (exported by the host library) on one filtered window."""
    fn = host_reference._lib.ebci_model_run
    out = np.zeros(n_classes, np.float32)
    x = np.ascontiguousarray(x, np.float32)
    assert fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p)) == 0
    return out


def test_generated_c_matches_torch_and_tvm(compiled_model, bundled_checkpoint, host_reference):
    import tvm
    from tvm import relax

    from edgebci.compile.importer import import_torch_module
    model = bundled_checkpoint.deploy_model()
    x = (np.random.default_rng(0).standard_normal((3, compiled_model.n_channels, compiled_model.n_samples)) * 15).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    vm = relax.VirtualMachine(tvm.compile(import_torch_module(model, torch.zeros(1, *x.shape[1:])),
                                          target=tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    for i in range(len(x)):
        got = _model_run(host_reference, x[i], compiled_model.n_classes)
        tvm_out = vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy()[0]
        np.testing.assert_allclose(got, want[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got, tvm_out, rtol=1e-5, atol=1e-6)


def test_front_end_plus_model_matches_training_path(bundled_checkpoint, host_reference, sample_edf):
    """The device path (int16 in, C biquads, C model) equals what training computed, window by window."""
    from edgebci.data import extract_cue_windows, read_recording
    ck = bundled_checkpoint
    w = extract_cue_windows(read_recording(sample_edf, ck.channels), ck.window_samples, ck.offset_samples)
    with torch.no_grad():
        want = ck.deploy_model()(torch.from_numpy(apply_frontend(ck.frontend, w.x))).numpy()
    got = np.stack([host_reference.scores(np.ascontiguousarray(x.T)) for x in w.x])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_artifact_is_self_contained(compiled_model):
    c = compiled_model.c_dir
    for name in ("ebci_model.c", "ebci_model.h", "ebci_model_kernels.c", "ebci_frontend.c", "ebci_frontend.h",
                 "include/dlpack/dlpack.h", "include/tvm/ffi/c_api.h"):
        assert (c / name).is_file(), name
    header = (c / "ebci_model.h").read_text()
    assert f"#define EBCI_MODEL_ARENA_BYTES {compiled_model.arena_bytes}" in header
    assert f'#define EBCI_MODEL_ID "{compiled_model.model_id}"' in header
    manifest = json.loads((compiled_model.out_dir / "manifest.json").read_text())
    assert manifest["kind"] == "compiled-model" and manifest["target"] == "mps2-an386"
    assert manifest["tvm_version"].startswith("0.27")
    src = (c / "ebci_model.c").read_text()
    assert "malloc" not in src and "TVMBackendAllocWorkspace" not in src
    assert 0 < compiled_model.arena_bytes < 128 * 1024


class _FFTDecoder(torch.nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x, dim=-1).abs().mean(-1)


def test_unsupported_op_fails_at_compile_time_naming_it(tmp_path, bundled_checkpoint, monkeypatch):
    monkeypatch.setattr(type(bundled_checkpoint), "build_model", lambda self: _FFTDecoder().eval())
    with pytest.raises(UnsupportedOpError, match=r"fft_r2c"):
        compile_decoder(bundled_checkpoint, Target.from_name("mps2-an386"), tmp_path)
    assert not (tmp_path / "c" / "ebci_model.c").exists()


def test_budget_overflow_refused_with_numbers(tmp_path, bundled_checkpoint):
    toml = (Target.from_name("mps2-an386").source.read_text()
            .replace("ram_bytes = 4_194_304", "ram_bytes = 65_536").replace('name = "mps2-an386"', 'name = "tiny-m4"'))
    (tmp_path / "tiny-m4.toml").write_text(toml)
    target = Target.from_name(tmp_path / "tiny-m4.toml")
    with pytest.raises(BudgetError, match=r"model needs about \d+ bytes of RAM \(arena \d+ .* but tiny-m4 has 65536"):
        compile_decoder(bundled_checkpoint, target, tmp_path / "out")


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_graph_files_compile_with_the_same_numerics(tmp_path, bundled_checkpoint, kind):
    """`edgebci compile` takes a torch.export program or an ONNX file; the C computes what torch does."""
    from edgebci.compile import compile_program
    from edgebci.compile.sources import load_decoder
    from edgebci.firmware.build import build_host_library
    model = bundled_checkpoint.build_model()
    x = torch.zeros(1, len(bundled_checkpoint.channels), bundled_checkpoint.window_samples)
    path = tmp_path / f"decoder.{kind}"
    if kind == "pt2":
        torch.export.save(torch.export.export(model, (x,)), str(path))
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    mod, spec = load_decoder(path)
    assert spec.channels == bundled_checkpoint.channels and spec.window_samples == x.shape[-1]
    assert spec.arch == ("torch.export" if kind == "pt2" else "onnx") and len(spec.model_id) == 16
    compiled = compile_program(mod, spec, Target.from_name("host"), tmp_path / "out")
    lib = ctypes.CDLL(str(build_host_library(compiled.c_dir, tmp_path / "lib")))
    xs = (np.random.default_rng(1).standard_normal(x.shape[1:]) * 15).astype(np.float32)
    out = np.zeros(2, np.float32)
    assert lib.ebci_model_run(xs.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p)) == 0
    with torch.no_grad():
        np.testing.assert_allclose(out, model(torch.from_numpy(xs)[None]).numpy()[0], rtol=1e-4, atol=1e-5)


def test_graph_files_need_channel_names_when_they_cannot_be_guessed(tmp_path):
    from edgebci.compile.sources import load_decoder
    path = tmp_path / "tiny.pt2"
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 100, 2)).eval()
    torch.export.save(torch.export.export(lin, (torch.zeros(1, 3, 100),)), str(path))
    with pytest.raises(Exception, match=r"takes 3 channels; name them with --channels"):
        load_decoder(path)
    with pytest.raises(Exception, match=r"expected a zoo checkpoint \(.pt\), a torch.export program"):
        load_decoder(tmp_path / "model.h5")
