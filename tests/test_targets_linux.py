"""Linux-class targets beyond this host: the Jetson Orin artifact (aarch64 process and library, CUDA for
sm_87), its HIL under qemu-aarch64 through the same `edgebci hil` path, and the ssh launch for a real
board. No GPU runs here: the CUDA part is checked as far as compiling it for sm_87."""
from __future__ import annotations

import json
import os
import shutil
import stat
import struct

import pytest

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import CHECKPOINTS_DIR
from edgebci.errors import ConfigError
from edgebci.hil.launch import parse_ssh_url, process_command, ssh_command, start_ssh

EM_X86_64, EM_AARCH64, EM_CUDA = 62, 183, 190
needs_aarch64 = pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                                   reason="aarch64 cross gcc / qemu-user missing: apt-get install gcc-aarch64-linux-gnu "
                                          "qemu-user (make system-deps)")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")


def _elf(path) -> tuple[int, int]:
    raw = path.read_bytes()[:64]
    assert raw[:4] == b"\x7fELF", path
    return struct.unpack_from("<H", raw, 18)[0], struct.unpack_from("<I", raw, 48)[0]


@pytest.fixture(scope="module")
def orin(tmp_path_factory):
    from edgebci.pipeline import compile_for_target
    out = tmp_path_factory.mktemp("orin")
    compiled, image = compile_for_target(CHECKPOINTS_DIR / "mamba.pt", "jetson-orin", out, progress=False)
    return out, compiled, image


@needs_aarch64
def test_orin_artifact_holds_aarch64_builds_and_cuda(orin):
    out, _, image = orin
    assert _elf(image.path)[0] == EM_AARCH64                                     # the protocol process
    assert _elf(out / "firmware" / "libebci_decoder.so")[0] == EM_AARCH64       # the decoder library
    assert _elf(out / "c" / "ebci_model_kernels.o")[0] == EM_AARCH64            # LLVM kernels for the A78AE
    assert _elf(out / "host" / "libebci_decoder.so")[0] == EM_X86_64            # the host reference stays x86
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kernels"]["mcpu"] == "cortex-a78ae" and manifest["kernels"]["mtriple"] == "aarch64-linux-gnu"
    cuda = manifest["cuda"]
    assert cuda["arch"] == "sm_87" and cuda["n_kernels"] > 3
    source = (out / "cuda" / cuda["source"]).read_text()
    assert source.count('extern "C" __global__') >= cuda["n_kernels"]
    assert _elf(out / "cuda" / cuda["host_library"])[0] == EM_AARCH64


@needs_aarch64
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed: the CUDA source is compiled on the board")
def test_orin_cuda_is_compiled_ahead_of_time_for_sm_87(orin):
    out, _, _ = orin
    cuda = json.loads((out / "manifest.json").read_text())["cuda"]
    machine, flags = _elf(out / "cuda" / cuda["cubin"])
    assert machine == EM_CUDA and (flags >> 8) & 0xFF == 87      # cubin e_flags carry the SM version


@needs_aarch64
@pytest.mark.device
def test_orin_cpu_side_runs_under_qemu_aarch64_and_agrees(orin, tmp_path):
    from edgebci.pipeline import hil_and_report
    out, _, image = orin
    assert process_command(image.path)[0].endswith("qemu-aarch64")
    r = hil_and_report(out, [SAMPLE_DIR / "S015R08.edf"], tmp_path / "r", max_windows=3, progress=False).report
    assert r["windows"]["failed"] == 0 and r["agreement"]["rate"] == 1.0, r["failures"]
    assert "qemu-aarch64" in (tmp_path / "r" / "device.log").read_text()
    assert r["latency"]["metric"] == "emulated_process_us"      # qemu-user speed is not the board's latency


def test_ssh_url_to_command():
    assert ssh_command("ssh://nvidia@orin.local/home/nvidia/edgebci/ebci_device") == [
        "ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "nvidia@orin.local", "exec",
        "/home/nvidia/edgebci/ebci_device"]
    assert ssh_command("ssh://orin:2222/opt/my dir/ebci_device")[-4:] == ["2222", "orin", "exec",
                                                                          "'/opt/my dir/ebci_device'"]
    assert parse_ssh_url("ssh://10.0.0.7/ebci_device") == ("10.0.0.7", None, "/ebci_device")
    for bad in ("ssh://orin", "ssh://orin/", "ssh:///ebci_device", "ssh://orin:x/ebci_device"):
        with pytest.raises(ConfigError, match=r"ssh://user@host"):
            parse_ssh_url(bad)


@needs_gcc
@pytest.mark.device
def test_ssh_launch_speaks_the_protocol(tmp_path, model_c_dir, monkeypatch):
    """The whole ssh path with a stand-in `ssh` that runs the remote command here: the real client would
    only add the network hop."""
    from edgebci.firmware.build import build_firmware
    from edgebci.targets import Target
    image = build_firmware(model_c_dir, Target.from_name("host"), tmp_path / "fw")
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n# drop ssh options and the login, run "exec PATH" locally\n'
                    'echo "fake ssh $*" >&2\n'
                    'while [ "$1" != "exec" ]; do shift; done\nshift\neval exec "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with start_ssh(f"ssh://tester@board{image.path}", tmp_path / "ssh.log") as session:
        assert session.info.n_ch == 21 and "over ssh" in session.description
    log = (tmp_path / "ssh.log").read_text()
    assert "fake ssh -T -o BatchMode=yes" in log and "tester@board exec" in log
