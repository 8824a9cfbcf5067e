"""Recurrent families compile to encode / step / readout with the time loop in the generated driver.

The state (LIF membranes, the Mamba scan state) is explicit input and output of the step graph, the device
loops it, and the generated C equals the torch loop (`run_stepped`) and the family's own forward.
"""
import ctypes
import re

import numpy as np
import pytest
import torch
from torch import nn

from edgebci.errors import ConfigError, UnsupportedOpError
from edgebci.zoo.spiking import SpikingLIF, SpikingLIFConfig
from edgebci.zoo.ssm import Mamba, MambaConfig
from edgebci.zoo.stepped import Method, SteppedExport, run_stepped

pytest.importorskip("snntorch")
tvm = pytest.importorskip("tvm")


def _window(n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 20, (n, 21, 480)).astype(np.float32))


def _calibrated(model: nn.Module) -> nn.Module:
    """BatchNorm statistics from EEG-sized input, so an untrained model's neurons spike as a trained one's do."""
    torch.manual_seed(0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for m in norms:
        m.momentum = None
    with torch.no_grad():
        model.train()
        for _ in range(2):
            model(_window(16, seed=7))
    return model.eval()


MODELS = {
    "spiking": lambda **kw: SpikingLIF(SpikingLIFConfig(**kw)),
    "mamba": lambda **kw: Mamba(MambaConfig(**kw)),
}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_the_device_loop_in_torch_equals_forward(arch):
    torch.manual_seed(1)
    model = _calibrated(MODELS[arch]())
    x = _window(4, seed=2)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(run_stepped(model.for_device(), x), want, rtol=1e-5, atol=1e-5)


def _lower(export: SteppedExport):
    from edgebci.compile.cdriver import plan_driver
    from edgebci.compile.lower import lower_to_c
    from edgebci.compile.sources import import_stepped
    lowered = lower_to_c(import_stepped(export, torch.zeros(1, 21, 480)))
    return lowered, plan_driver(lowered.relax_mod)


def test_spiking_step_graph_takes_and_returns_the_membranes():
    torch.manual_seed(0)
    model = _calibrated(MODELS["spiking"](n_layers=2, n_hidden=16))
    _, plan = _lower(model.for_device())
    step = plan.stages["step"]
    assert [t.shape for t in step.params] == [(1, 16), (1, 16), (1, 16)]      # x_t, membrane 1, membrane 2
    assert [t.shape for t in step.outputs] == [(1, 16), (1, 16), (1, 16)]     # spikes, next membranes
    assert plan.loop.n_steps == model.config.n_steps and plan.loop.state_sizes == (16, 16)
    assert plan.input.shape == (1, 21, 480) and plan.output.shape == (1, 2)


def test_the_graph_does_not_grow_with_the_number_of_steps():
    """The loop runs on the device: twice the time steps, the same kernels and the same step stage."""
    counts = []
    for step_samples in (16, 8):
        torch.manual_seed(0)
        model = _calibrated(MODELS["spiking"](step_samples=step_samples))
        lowered, plan = _lower(model.for_device())
        counts.append((lowered.n_kernels, len(plan.stages["step"].calls), plan.loop.n_steps))
    assert counts[0][:2] == counts[1][:2]
    assert counts[1][2] > 1.9 * counts[0][2]


class _BadCell(nn.Module):
    """Returns a state of another shape than it takes: the loop could not carry it."""

    def forward(self, x_t, mem):
        return x_t * 2, torch.cat([mem, mem], -1)


def test_a_step_whose_state_changes_shape_is_refused_naming_the_shapes():
    export = SteppedExport(Method(lambda x: x[:, :4, :40].transpose(1, 2)), _BadCell(), nn.Linear(4, 2),
                           ((1, 4),), 40, 4, 4)
    with pytest.raises(UnsupportedOpError, match=r"same state shapes.*\(1, 4\).*\(1, 8\)"):
        _lower(export)


def test_a_stepped_export_needs_a_state():
    with pytest.raises(ConfigError, match="at least one state"):
        SteppedExport(nn.Identity(), nn.Identity(), nn.Identity(), (), 4, 4, 4)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_generated_loop_equals_torch(arch, tmp_path):
    """C from the driver (loop, ping-pong state, mean) against the family's forward, on several windows."""
    from edgebci.compile.cdriver import emit_model_c, emit_model_h, workspace_bytes
    from edgebci.compile import copy_tvm_headers
    from edgebci.firmware.build import build_host_library
    from edgebci.frontend import design_bessel
    from edgebci.frontend.cgen import emit_frontend
    torch.manual_seed(3)
    model = _calibrated(MODELS[arch]())
    lowered, plan = _lower(model.for_device())
    c_dir = tmp_path / "c"
    c_dir.mkdir()
    copy_tvm_headers(lowered.kernels_c, c_dir)
    (c_dir / "ebci_model_kernels.c").write_text(lowered.kernels_c)
    model_c = emit_model_c(plan, tvm.__version__)
    assert re.search(r"for \(int t = 0; t < \d+; t\+\+\)", model_c) and "malloc" not in model_c
    (c_dir / "ebci_model.c").write_text(model_c)
    (c_dir / "ebci_model.h").write_text(emit_model_h(plan, "0" * 16, 160.0, workspace_bytes(lowered.kernels_c)))
    front_c, front_h = emit_frontend(design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag"))
    (c_dir / "ebci_frontend.c").write_text(front_c)
    (c_dir / "ebci_frontend.h").write_text(front_h)
    run = ctypes.CDLL(str(build_host_library(c_dir, tmp_path / "host"))).ebci_model_run
    x = _window(3, seed=4)
    with torch.no_grad():
        want = model(x).numpy()
    for i in range(len(x)):
        got = np.zeros(2, np.float32)
        window = np.ascontiguousarray(x[i].numpy())
        assert run(window.ctypes.data_as(ctypes.c_void_p), got.ctypes.data_as(ctypes.c_void_p)) == 0
        np.testing.assert_allclose(got, want[i], rtol=1e-3, atol=1e-4)
