"""The spiking family: snntorch training form, plain-torch step, unrolled export and generated C agree."""
import ctypes

import numpy as np
import pytest
import torch

from edgebci.errors import ConfigError
from edgebci.zoo.spiking import SpikingLIF, SpikingLIFConfig, lif_update

snn = pytest.importorskip("snntorch")


def _calibrated(config: SpikingLIFConfig, seed: int = 0) -> SpikingLIF:
    """A model whose BatchNorm statistics come from EEG-sized input, so its neurons spike as a trained one's do."""
    torch.manual_seed(seed)
    model = SpikingLIF(config)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for m in norms:
        m.momentum = None          # a cumulative average: two batches give the statistics
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(16, config.n_channels, config.n_samples) * 20)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def _spike_rasters(model: SpikingLIF, x: torch.Tensor, use_step: bool) -> torch.Tensor:
    """Last-layer spikes, shape (batch, n_steps, n_hidden), from `step` or from snntorch's neurons."""
    current = model.encode(x)
    mem = list(model.initial_state(current))
    out = []
    for t in range(current.shape[1]):
        if use_step:
            spikes, mem = model.step(current[:, t], tuple(mem))
        else:
            spikes = current[:, t]
            for i, lif in enumerate(model.lifs):
                spikes = model.synapses[i - 1](spikes) if i else spikes
                spikes, mem[i] = lif(spikes, mem[i])
        out.append(spikes)
    return torch.stack(out, 1)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_shapes_and_size(n_layers):
    c = SpikingLIFConfig(n_layers=n_layers)
    model = SpikingLIF(c).eval()
    x = torch.randn(3, c.n_channels, c.n_samples) * 20
    assert model(x).shape == (3, c.n_classes)
    current = model.encode(x)
    assert current.shape == (3, c.n_steps, c.n_hidden) and 30 <= c.n_steps <= 60
    spikes, mem = model.step(current[:, 0], model.initial_state(current))
    assert spikes.shape == (3, c.n_hidden) and len(mem) == n_layers and mem[-1].shape == (3, c.n_hidden)
    assert sum(p.numel() for p in model.parameters()) < 30_000
    again = SpikingLIF(SpikingLIFConfig(**c.to_dict()))
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.eval()(x), model(x))


@pytest.mark.parametrize("bad, match", [
    ({"n_layers": 3}, r"n_layers must be 1 or 2, got 3"),
    ({"beta": 1.5}, r"beta must be in \(0, 1\].*got 1.5"),
    ({"reset": "none"}, r"reset must be one of \('subtract', 'zero'\), got 'none'"),
    ({"n_hidden": 0}, r"n_hidden must be > 0, got 0"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ({"segment": 600}, r"n_samples \(480\) must be >= segment \(600\)"),
    ({"step_samples": 2}, r"give 233 time steps.*at most 120: raise step_samples to at least 4"),
])
def test_bad_config_is_refused_naming_value_and_fix(bad, match):
    with pytest.raises(ConfigError, match=match):
        SpikingLIFConfig(**bad)


def test_registry_builds_the_family_and_refuses_unknown_keys(monkeypatch):
    from edgebci.zoo import registry
    monkeypatch.setitem(registry.ARCHITECTURES, "spiking", SpikingLIF)
    model = registry.build_model("spiking", {"n_channels": 21, "n_samples": 480, "n_classes": 2})
    assert isinstance(model, SpikingLIF) and model.config == SpikingLIFConfig()
    with pytest.raises(ConfigError, match=r"unknown keys \['tau'\]"):
        registry.build_model("spiking", {"tau": 3.0})


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("beta", [0.9, 0.75])
def test_step_update_equals_snntorch_leaky_bit_for_bit(reset, beta):
    torch.manual_seed(1)
    lif = snn.Leaky(beta=beta, threshold=1.0, reset_mechanism=reset)
    mem_ref = mem = torch.zeros(64, 32)
    n_spikes = 0
    for _ in range(50):
        current = torch.randn(64, 32) * 0.6 + 0.2
        spk_ref, mem_ref = lif(current, mem_ref)
        spk, mem = lif_update(current, mem, beta, 1.0, reset)
        assert torch.equal(spk, spk_ref) and torch.equal(mem, mem_ref)
        n_spikes += int(spk.sum())
    assert 0.05 < n_spikes / (50 * 64 * 32) < 0.95     # the threshold and both reset branches were exercised


@pytest.mark.parametrize("config", [SpikingLIFConfig(), SpikingLIFConfig(n_layers=1, reset="zero", beta=0.8)])
def test_step_and_unrolled_export_equal_the_snntorch_forward(config):
    model = _calibrated(config)
    x = torch.randn(8, config.n_channels, config.n_samples) * 20
    with torch.no_grad():
        rasters = _spike_rasters(model, x, use_step=False)
        assert torch.equal(_spike_rasters(model, x, use_step=True), rasters)
        exported = model.for_export()
        assert not exported.training
        assert torch.equal(exported(x), model(x))
    rate = rasters.mean().item()
    assert 0.01 < rate < 0.9, f"spike rate {rate}: too quiet or saturated to test anything"


@pytest.fixture(scope="module")
def compiled_spiking(tmp_path_factory):
    from edgebci.compile import compile_decoder
    from edgebci.data.edf import MOTOR_MONTAGE
    from edgebci.frontend import design_bessel
    from edgebci.targets import Target
    from edgebci.zoo import Checkpoint, registry

    config = SpikingLIFConfig()
    model = _calibrated(config)
    ckpt = Checkpoint("spiking", config.to_dict(), MOTOR_MONTAGE, 160.0, config.n_samples, 80, 80,
                      ("left", "right"), design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag"), model.state_dict())
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.ARCHITECTURES, "spiking", SpikingLIF)
        compiled = compile_decoder(ckpt, Target.from_name("mps2-an386"), tmp_path_factory.mktemp("spiking"))
    return compiled, model


def test_family_compiles_within_the_budget(compiled_spiking):
    compiled, _ = compiled_spiking
    assert compiled.n_classes == 2 and compiled.n_samples == 480
    assert 0 < compiled.arena_bytes < 150 * 1024
    assert compiled.weight_bytes < 30_000 * 4
    assert "malloc" not in (compiled.c_dir / "ebci_model.c").read_text()


def test_generated_c_matches_torch_spikes_included(compiled_spiking, tmp_path):
    """A spike is a hard threshold: a membrane within float rounding of it may fire in one build and not the
    other. Each such flip moves one spike count by one, so a logit by |w| / n_steps; count the windows
    that show one and require the rest to agree to float precision."""
    from edgebci.firmware.build import build_host_library
    compiled, model = compiled_spiking
    run = ctypes.CDLL(str(build_host_library(compiled.c_dir, tmp_path))).ebci_model_run
    shape = (40, compiled.n_channels, compiled.n_samples)
    x = (np.random.default_rng(0).standard_normal(shape) * 20).astype(np.float32)   # EEG-sized, ~20 uV
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = np.zeros_like(want)
    for i in range(len(x)):
        assert run(x[i].ctypes.data_as(ctypes.c_void_p), got[i].ctypes.data_as(ctypes.c_void_p)) == 0
    flipped = np.abs(got - want).max(1) > 1e-4
    assert flipped.sum() <= 2, f"{flipped.sum()} of {len(x)} windows differ by a spike: {np.abs(got - want).max(1)}"
    np.testing.assert_allclose(got[~flipped], want[~flipped], rtol=1e-4, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
