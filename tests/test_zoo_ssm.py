"""State-space decoders (S4D, Mamba): shapes, config refusals, export forms, and generated C against torch."""
import ctypes

import numpy as np
import pytest
import torch

from edgebci.compile import compile_decoder
from edgebci.data import CLASSES, MOTOR_MONTAGE
from edgebci.errors import ConfigError
from edgebci.frontend import design_bessel
from edgebci.targets import Target
from edgebci.zoo import registry
from edgebci.zoo.checkpoint import Checkpoint
from edgebci.zoo.ssm import Mamba, MambaConfig, S4D, S4DConfig

FAMILIES = {"s4d": S4D, "mamba": Mamba}
MAX_PARAMS = 30_000
MAX_ARENA_BYTES = 150 * 1024


def _model(arch: str, seed: int = 0, **config):
    torch.manual_seed(seed)
    cls = FAMILIES[arch]
    return cls(cls.config_class(**config)).eval()


def _windows(batch: int, n_channels: int = 21, n_samples: int = 480, seed: int = 0) -> np.ndarray:
    """Random 'filtered microvolts', amplitude ~20."""
    return (np.random.default_rng(seed).standard_normal((batch, n_channels, n_samples)) * 20).astype(np.float32)


@pytest.mark.parametrize("arch", FAMILIES)
def test_shapes_parameter_budget_and_config_round_trip(arch):
    model = _model(arch)
    with torch.no_grad():
        logits = model(torch.from_numpy(_windows(4)))
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    assert sum(p.numel() for p in model.parameters()) < MAX_PARAMS
    cfg = model.config
    assert type(cfg)(**cfg.to_dict()) == cfg
    other = _model(arch, n_channels=8, n_samples=320, n_classes=3)
    with torch.no_grad():
        assert other(torch.from_numpy(_windows(2, 8, 320))).shape == (2, 3)


@pytest.mark.parametrize(("config", "match"), [
    (lambda: S4DConfig(d_state=7), r"d_state must be even .*got 7"),
    (lambda: S4DConfig(init="legs"), r"init must be 'lin' or 'inv', got 'legs'"),
    (lambda: S4DConfig(d_model=0), r"S4DConfig.d_model must be a positive integer, got 0"),
    (lambda: S4DConfig(dt_min=0.2, dt_max=0.1), r"0 < dt_min <= dt_max, got dt_min=0.2, dt_max=0.1"),
    (lambda: S4DConfig(pool=300), r"sequence has 237 samples, fewer than pool \(300\); lower pool"),
    (lambda: S4DConfig(stem_kernel=500), r"stem_kernel \(500\) is longer than the window"),
    (lambda: S4DConfig(input_scale=0.0), r"input_scale must be > 0, got 0.0"),
    (lambda: MambaConfig(pool_stride=4), r"scan would run 113 steps, more than 64 .* raise pool_stride to at least 8"),
    (lambda: MambaConfig(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (lambda: MambaConfig(d_state=2.5), r"MambaConfig.d_state must be a positive integer, got 2.5"),
])
def test_bad_configs_name_value_and_fix(config, match):
    with pytest.raises(ConfigError, match=match):
        config()


def test_s4d_kernel_is_the_zoh_recurrence():
    """The real-arithmetic kernel equals the complex diagonal recurrence it stands for, step by step."""
    layer = _model("s4d", n_layers=1).blocks[0].ssm
    k, length = layer.kernel, 64
    k.length = length
    dt = torch.exp(k.log_dt.double())[:, None]
    a = torch.complex(-torch.exp(k.log_a_re.double()), k.a_im.double())
    a_bar, b_bar = torch.exp(dt * a), (torch.exp(dt * a) - 1) / a
    c = torch.complex(k.c_re.double(), k.c_im.double())
    u = torch.randn(k.log_dt.shape[0], length, dtype=torch.float64)
    s, want = torch.zeros_like(a), []
    for t in range(length):
        s = a_bar * s + b_bar * u[:, t:t + 1]
        want.append(2 * (c * s).sum(-1).real)
    with torch.no_grad():
        got = layer(u[None].float())[0] - layer.d[:, None] * u.float()
    torch.testing.assert_close(got.double(), torch.stack(want, -1), rtol=1e-4, atol=1e-4)


def test_s4d_for_export_is_a_fixed_convolution_equal_to_forward():
    model = _model("s4d", n_layers=2)
    x = torch.from_numpy(_windows(3))
    frozen = model.for_export()
    assert not frozen.training and model.blocks[0].ssm is not frozen.blocks[0].ssm   # the original still trains
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), model(x), rtol=1e-4, atol=1e-4)
    ops = {str(n.target) for n in torch.export.export(frozen, (x[:1],)).graph.nodes if n.op == "call_function"}
    assert not {op for op in ops if any(f in op for f in ("exp", "sin", "cos", "fft"))}, ops


def test_mamba_step_by_step_equals_forward():
    model = _model("mamba", n_layers=2)
    x = torch.from_numpy(_windows(3))
    with torch.no_grad():
        want = model(x)
        feats = model.embed(x)
        assert feats.shape == (3, model.config.n_steps, model.config.d_model)
        ys, state = [], model.init_state(3)
        for t in range(feats.shape[1]):
            y_t, state = model.step(feats[:, t], state)
            ys.append(y_t)
        got = model.classify(torch.stack(ys, 1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def compiled_family(request, tmp_path_factory):
    """(model, compiled, host library) for one untrained family member lowered to C for mps2-an386."""
    from edgebci.firmware.build import build_host_library
    arch = request.param
    model = _model(arch)
    frontend = design_bessel(4, (7.0, 30.0), 160.0, "bandpass", "mag")
    ckpt = Checkpoint(arch, model.config.to_dict(), MOTOR_MONTAGE, 160.0, 480, 80, 80, CLASSES, frontend,
                      model.state_dict())
    out = tmp_path_factory.mktemp(arch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.ARCHITECTURES, arch, FAMILIES[arch])
        compiled = compile_decoder(ckpt, Target.from_name("mps2-an386"), out / "compiled")
    library = ctypes.CDLL(str(build_host_library(compiled.c_dir, out / "host")))
    return model, compiled, library


def test_generated_c_matches_torch_within_budget(compiled_family):
    model, compiled, library = compiled_family
    assert 0 < compiled.arena_bytes <= MAX_ARENA_BYTES
    x = _windows(3, seed=1)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for i in range(len(x)):
        got = np.zeros(compiled.n_classes, np.float32)
        window = np.ascontiguousarray(x[i])
        assert library.ebci_model_run(window.ctypes.data_as(ctypes.c_void_p), got.ctypes.data_as(ctypes.c_void_p)) == 0
        np.testing.assert_allclose(got, want[i], rtol=1e-3, atol=1e-4)
