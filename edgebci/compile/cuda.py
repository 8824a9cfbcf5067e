"""Compile stage, NVIDIA GPUs (a target's `[tvm] cuda_arch`, e.g. the Jetson Orin's sm_87): the decoder
through TVM's CUDA pipeline (dlight GPU schedules), into `out_dir/cuda/`:

    ebci_model.cu                 TVM's CUDA C for the kernels (extern "C" __global__ functions)
    ebci_model.<arch>.cubin       the same, compiled ahead of time by nvcc when nvcc is on PATH, so the
                                  board loads machine code instead of compiling at start-up
    libebci_model_cuda.so         TVM's Relax executable for the GPU with the host side built for the
                                  target's triple (aarch64 on a Jetson); loaded on the board with
                                  libtvm_runtime (CUDA build) and relax.VirtualMachine
    cuda.json                     what was built, with which tools, and what was not (no nvcc)

    cuda = build_cuda(relax_mod, target, out_dir / "cuda")

Unlike the Cortex-M and CPU paths, this one needs the TVM runtime on the device: a GPU launch needs grid
and block sizes, streams and a CUDA context, which TVM's runtime provides.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebci.errors import ConfigError, ToolchainError, UnsupportedOpError
from edgebci.targets import Target

CUDA_SOURCE = "ebci_model.cu"
HOST_LIBRARY = "libebci_model_cuda.so"
INFO = "cuda.json"
NVCC = "nvcc"
# Orin: 1024 threads per block, 48 KiB static shared memory per block, warps of 32 (CUDA sm_87)
GPU_LIMITS = {"max_threads_per_block": 1024, "max_shared_memory_per_block": 49152, "thread_warp_size": 32}


@dataclass(frozen=True)
class CudaArtifact:
    out_dir: Path
    arch: str
    source: Path
    cubin: Path | None             # None where nvcc is absent
    host_library: Path
    host_triple: str
    n_kernels: int
    nvcc_version: str = ""

    def __post_init__(self):
        if not Path(self.source).is_file():
            raise ConfigError(f"CUDA source {self.source} does not exist")

    def to_dict(self) -> dict:
        return {"arch": self.arch, "source": Path(self.source).name,
                "cubin": Path(self.cubin).name if self.cubin else None,
                "cubin_note": (f"compiled ahead of time by {self.nvcc_version}" if self.cubin else
                               "nvcc not found: the board compiles the CUDA source when it loads the library"),
                "host_library": Path(self.host_library).name, "host_triple": self.host_triple,
                "n_kernels": self.n_kernels}


def cuda_target(target: Target):
    import tvm
    return tvm.target.Target({"kind": "cuda", "arch": target.cuda_arch, **GPU_LIMITS,
                              "host": {"kind": "llvm", "mtriple": target.llvm_mtriple, "mcpu": target.resolved_mcpu()}})


def _pipeline(tgt):
    """TVM's CUDA pipeline with dlight's Matmul/Reduction/GeneralReduction/Fallback rules. Its GEMV rule
    is left out: it fails on EEGNet's depthwise convolution in TVM 0.27."""
    import tvm
    from tvm.relax.backend.cuda import pipeline as cp
    from tvm.s_tir import dlight as dl

    @tvm.transform.module_pass(opt_level=0)
    def cuda_pipeline(mod, ctx):
        with tgt:
            schedule = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
                                               dl.gpu.Fallback())
            passes = (cp.library_dispatch_passes(tgt) + cp.legalize_passes(tgt)[:-1] + [schedule]
                      + cp.dataflow_lower_passes(tgt) + cp.finalize_passes(tgt))
            return tvm.transform.Sequential(passes)(mod)
    return cuda_pipeline


def _device_module(module):
    """The CUDA module among the executable's imports (depth first)."""
    todo = [module]
    while todo:
        m = todo.pop()
        if getattr(m, "kind", "") == "cuda":
            return m
        todo += list(m.imports)
    return None


def _nvcc_cubin(source: Path, arch: str, log: Path) -> tuple[Path | None, str]:
    nvcc = shutil.which(NVCC)
    if nvcc is None:
        return None, ""
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    cubin = source.with_name(f"ebci_model.{arch}.cubin")
    cmd = [nvcc, f"-arch={arch}", "-cubin", "-O3", str(source), "-o", str(cubin)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n{run.stdout}{run.stderr}")
    if run.returncode:
        raise ToolchainError(f"nvcc could not compile TVM's CUDA source for {arch} (exit {run.returncode}); "
                             f"see {log}:\n{run.stderr[-1500:]}")
    return cubin, (version[-1] if version else "nvcc")


def build_cuda(relax_mod, target: Target, out_dir: Path) -> CudaArtifact:
    """Compile the (imported, not yet lowered) Relax module for target.cuda_arch into out_dir."""
    import tvm
    from tvm.support import cc

    if not target.cuda_arch or not target.llvm_mtriple:
        raise ConfigError(f"target {target.name}: a CUDA build needs tvm.cuda_arch and the host's tvm.mtriple/mcpu")
    host_cc = target.cc
    if shutil.which(host_cc) is None:
        raise ToolchainError(f"{host_cc} is not on PATH, needed to link the {target.name} host library; install it "
                             f"with: apt-get install gcc-aarch64-linux-gnu")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tgt = cuda_target(target)
    try:
        executable = tvm.compile(relax_mod, target=tgt, relax_pipeline=_pipeline(tgt))
    except Exception as e:   # TVM raises its own error types; name the stage and the first line
        raise UnsupportedOpError(f"TVM could not compile the decoder for CUDA {target.cuda_arch}: "
                                 f"{str(e).strip().splitlines()[-1][:400]}") from None
    device = _device_module(executable.mod)
    if device is None:
        raise UnsupportedOpError(f"TVM produced no CUDA kernels for {target.name}: nothing of the decoder runs "
                                 f"on the GPU")
    source = out_dir / CUDA_SOURCE
    source.write_text(str(device.inspect_source("cuda")))
    cubin, nvcc_version = _nvcc_cubin(source, target.cuda_arch, out_dir / "nvcc.log")
    library = out_dir / HOST_LIBRARY
    executable.export_library(str(library), fcompile=cc.cross_compiler(host_cc))
    n_kernels = len(set(re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(", source.read_text())))
    artifact = CudaArtifact(out_dir, target.cuda_arch, source, cubin, library, target.llvm_mtriple, n_kernels,
                            nvcc_version)
    (out_dir / INFO).write_text(json.dumps(artifact.to_dict(), indent=2) + "\n")
    return artifact
