"""The x86-64 target: TVM's LLVM backend for this machine's CPU with the "cpu" schedule, linked as a shared
library (the host reference) and as the protocol process that `edgebci hil` drives, through the same code
paths as every other target. Speed is measured in bench/, not here."""
from __future__ import annotations

import ctypes
import json
import os
import shutil

import numpy as np
import pytest

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import CHECKPOINTS_DIR

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed (apt-get install gcc)")


@pytest.fixture(scope="module")
def x86_eegnet(tmp_path_factory):
    from edgebci.pipeline import compile_for_target
    out = tmp_path_factory.mktemp("x86")
    compiled, image = compile_for_target(CHECKPOINTS_DIR / "eegnet.pt", "x86-64", out, progress=False)
    return out, compiled, image


@needs_gcc
def test_kernels_are_llvm_code_for_this_cpu(x86_eegnet):
    from tvm.target import codegen

    from edgebci.compile.llvm import elf_machine
    out, compiled, _ = x86_eegnet
    manifest = json.loads((out / "manifest.json").read_text())
    kernels = manifest["kernels"]
    assert kernels["backend"] == "llvm" and kernels["schedule"] == "cpu"
    assert kernels["mtriple"] == "x86_64-linux-gnu" and kernels["mcpu"] == str(codegen.llvm_get_system_cpu())
    assert kernels["mcpu"] not in ("generic", "x86-64", "native")
    assert elf_machine(out / "c" / "ebci_model_kernels.o") == 62
    # the object, not the portable C, went into both builds
    for log in (out / "host" / "host_library.log", out / "firmware" / "build.log"):
        text = log.read_text()
        assert "ebci_model_kernels.o" in text and "-c " + str(out / "c" / "ebci_model_kernels.c") not in text


@needs_gcc
def test_shared_library_matches_torch(x86_eegnet):
    import torch

    from edgebci.compile.sources import checkpoint_module
    from edgebci.zoo import load_checkpoint
    out, compiled, _ = x86_eegnet
    lib = ctypes.CDLL(str(out / "host" / "libebci_decoder.so"))
    ck = load_checkpoint(CHECKPOINTS_DIR / "eegnet.pt")
    x = (np.random.default_rng(1).standard_normal((1, compiled.n_channels, compiled.n_samples)) * 15).astype(np.float32)
    # caller buffers 4 bytes off any vector alignment: LLVM code that assumed TVM's 64-byte default would fault
    n_in = x.size
    raw_in, raw_out = np.zeros(n_in + 32, np.float32), np.zeros(compiled.n_classes + 32, np.float32)
    skew_in = (16 - raw_in.ctypes.data % 64 // 4) % 16 + 1
    skew_out = (16 - raw_out.ctypes.data % 64 // 4) % 16 + 1
    x_buf, y = raw_in[skew_in:skew_in + n_in], raw_out[skew_out:skew_out + compiled.n_classes]
    assert x_buf.ctypes.data % 64 == 4 and y.ctypes.data % 64 == 4
    x_buf[:] = x.reshape(-1)
    assert lib.ebci_model_run(ctypes.c_void_p(x_buf.ctypes.data), ctypes.c_void_p(y.ctypes.data)) == 0
    with torch.no_grad():
        want = checkpoint_module(ck).eval()(torch.from_numpy(x)).numpy().reshape(-1)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@needs_gcc
@pytest.mark.device
def test_linux_process_hil_agrees(x86_eegnet, tmp_path):
    from edgebci.pipeline import hil_and_report
    out, _, image = x86_eegnet
    assert int.from_bytes(image.path.read_bytes()[18:20], "little") == 62
    r = hil_and_report(out, [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", max_windows=5, progress=False).report
    assert r["windows"]["sent"] == 5 and r["windows"]["failed"] == 0 and r["agreement"]["rate"] == 1.0
    assert r["latency"]["metric"] == "process_latency_us"


def test_cpu_schedule_changes_only_loop_order(bundled_checkpoint):
    """Same program, both schedules: identical kernel names and driver calls, and the cpu schedule's
    materialised padding is the only extra workspace."""
    from edgebci.compile.cdriver import plan_driver, workspace_bytes
    from edgebci.compile.lower import lower_to_c
    from edgebci.compile.sources import import_checkpoint
    mod, _ = import_checkpoint(bundled_checkpoint)
    inline, cpu = lower_to_c(mod, "inline"), lower_to_c(mod, "cpu")
    assert [k for k, _ in plan_driver(inline.relax_mod).calls] == [k for k, _ in plan_driver(cpu.relax_mod).calls]
    assert workspace_bytes(cpu.kernels_c) > workspace_bytes(inline.kernels_c)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lower_to_c(mod, "fastest")


# By default one stepped family (its loop and state buffers in the generated driver) besides the EEGNet
# fixture above; EDGEBCI_SLOW=1 checks every zoo decoder.
X86_ARCHS = sorted(p.stem for p in CHECKPOINTS_DIR.glob("*.pt")) if os.environ.get("EDGEBCI_SLOW") == "1" else ["mamba"]


@needs_gcc
@pytest.mark.slow
@pytest.mark.parametrize("arch", X86_ARCHS)
def test_every_decoder_matches_torch_on_x86(tmp_path, arch):
    """The whole x86 path (cpu schedule, fast exp, LLVM for this CPU) against torch, per zoo decoder."""
    import torch

    from edgebci.compile import compile_decoder
    from edgebci.compile.sources import checkpoint_module
    from edgebci.firmware.build import build_host_library
    from edgebci.targets import Target
    from edgebci.zoo import load_checkpoint
    ck = load_checkpoint(CHECKPOINTS_DIR / f"{arch}.pt")
    compiled = compile_decoder(ck, Target.from_name("x86-64"), tmp_path)
    lib = ctypes.CDLL(str(build_host_library(compiled.c_dir, tmp_path / "host")))
    rng = np.random.default_rng(2)
    model = checkpoint_module(ck).eval()
    for _ in range(3):
        x = (rng.standard_normal((1, compiled.n_channels, compiled.n_samples)) * 15).astype(np.float32)
        y = np.zeros(compiled.n_classes, np.float32)
        assert lib.ebci_model_run(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data)) == 0
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy().reshape(-1)
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_kernels_built_for_another_cpu_are_refused_before_loading(x86_eegnet):
    """An x86-64 folder copied to a machine with another CPU would die of an illegal instruction: refused."""
    from edgebci.errors import ConfigError
    from edgebci.pipeline import check_host_cpu
    manifest = json.loads((x86_eegnet[0] / "manifest.json").read_text())
    check_host_cpu(manifest)                                   # built here: accepted
    manifest["kernels"]["mcpu"] = "some-other-cpu"
    with pytest.raises(ConfigError, match=r"compiled for the CPU 'some-other-cpu' but this machine is"):
        check_host_cpu(manifest)
