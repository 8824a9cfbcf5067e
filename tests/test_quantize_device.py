"""Integer-only decoders on the emulated boards: the Cortex-M4F and the FPU-less Cortex-M3 run the same
integer C, and every window's logits equal the numpy integer reference bit for bit."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from edgebci.data import SAMPLE_DIR
from edgebci.defaults import BUNDLED_CHECKPOINT, CHECKPOINTS_DIR, QUANTIZED_DIR
from edgebci.pipeline import compile_for_target, hil_and_report, load_hil_windows

from .conftest import needs_arm

pytestmark = pytest.mark.device

RECORDING = SAMPLE_DIR / "S015R08.edf"      # a full recording: all 15 of its cue windows
CALIBRATION = SAMPLE_DIR / "S015R04.edf"
# what the integer decoder's C may call: no soft-float helper (__aeabi_f*, __aeabi_d*, int<->float conversions)
FLOAT_HELPER = ("__aeabi_f", "__aeabi_d", "__aeabi_i2f", "__aeabi_ui2f", "__aeabi_l2f", "__aeabi_i2d",
                "__addsf3", "__mulsf3", "__divsf3", "__floatsisf", "expf", "logf", "sqrtf")


def _reference_logits(out_dir, recordings):
    """The numpy integer reference for the checkpoint that was compiled (calibrated for the user)."""
    from edgebci.artifacts import read_manifest
    from edgebci.quantize.fit import predict_integer
    from edgebci.zoo import load_checkpoint
    windows = load_hil_windows(recordings, read_manifest(out_dir, "compiled-model"))
    return predict_integer(load_checkpoint(out_dir / "checkpoint.pt"), windows.x)


@pytest.fixture(scope="module", params=["mps2-an386", "mps2-an385"])
def eegnet_int8(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"int8-{request.param}")
    compile_for_target(BUNDLED_CHECKPOINT, request.param, out, progress=False, calibration=[CALIBRATION],
                       recipe="int8")
    return request.param, out


@needs_arm
def test_int8_decoder_is_bit_exact_with_the_reference_on_a_whole_recording(tmp_path, eegnet_int8):
    board, out = eegnet_int8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["integer_only"] and manifest["quantization"]["recipe"] == "int8"
    r = hil_and_report(out, [RECORDING], tmp_path / "r", progress=False).report
    assert r["ok"] and r["windows"]["sent"] == 15 and r["windows"]["failed"] == 0
    assert r["device"]["board"] == board and r["latency"]["metric"] == "qemu_insn_count"
    device = np.array([w["device_scores"] for w in json.loads((tmp_path / "r" / "windows.json").read_text())["windows"]])
    reference = _reference_logits(out, [RECORDING])
    assert device.shape == reference.shape == (15, 2)
    assert np.array_equal(device, reference.astype(np.float64))     # integers, exact as float32 (|q| < 2^24)


@needs_arm
def test_the_integer_model_c_has_no_floating_point_for_a_cortex_m3(tmp_path, eegnet_int8):
    """The model's C compiled for the FPU-less core needs no soft-float routine and emits no VFP instruction."""
    _, out = eegnet_int8
    c_dir = out / "c"
    objs = []
    for src in ("ebci_model.c", "ebci_model_kernels.c"):
        obj = tmp_path / (src + ".o")
        subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft", "-O2", "-std=gnu11",
                        "-I", str(c_dir), "-I", str(c_dir / "include"), "-c", str(c_dir / src), "-o", str(obj)],
                       check=True, capture_output=True)
        objs.append(str(obj))
    undefined = subprocess.run(["arm-none-eabi-nm", "-u", *objs], capture_output=True, text=True, check=True).stdout
    calls = [line.split()[-1] for line in undefined.splitlines() if line.strip() and ":" not in line]
    assert calls, "nm listed nothing: the check would pass vacuously"
    assert not [c for c in calls if c.startswith(FLOAT_HELPER)], calls
    disasm = subprocess.run(["arm-none-eabi-objdump", "-d", *objs], capture_output=True, text=True, check=True).stdout
    assert " vmul" not in disasm and " vadd" not in disasm and " vldr" not in disasm


@needs_arm
def test_the_float_model_c_does_need_floating_point(tmp_path):
    """The control for the check above: the float decoder's C calls soft-float helpers on the same core."""
    from edgebci.compile import compile_decoder
    from edgebci.targets import Target
    from edgebci.zoo import load_checkpoint
    compiled = compile_decoder(load_checkpoint(CHECKPOINTS_DIR / "eegnet.pt"), Target.from_name("mps2-an385"),
                               tmp_path / "f")
    obj = tmp_path / "k.o"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft", "-O2", "-std=gnu11",
                    "-I", str(compiled.c_dir / "include"), "-c", str(compiled.c_dir / "ebci_model_kernels.c"),
                    "-o", str(obj)], check=True, capture_output=True)
    undefined = subprocess.run(["arm-none-eabi-nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout
    assert any(s.split()[-1].startswith(FLOAT_HELPER) for s in undefined.splitlines() if s.strip())


# every family on one board by default; with EDGEBCI_SLOW=1 every family's int8 on both boards and the
# power-of-two recipe of each on one (EEGNet's int8 runs on both boards above)
FAMILY_BOARDS = [("spiking", "int8", "mps2-an386"), ("s4d", "int8-pow2", "mps2-an385"),
                 ("conformer", "int8", "mps2-an385"), ("mamba", "int8", "mps2-an386")]
if os.environ.get("EDGEBCI_SLOW") == "1":
    FAMILY_BOARDS += [("spiking", "int8", "mps2-an385"), ("s4d", "int8", "mps2-an386"), ("s4d", "int8", "mps2-an385"),
                      ("conformer", "int8", "mps2-an386"), ("mamba", "int8", "mps2-an385"),
                      ("eegnet", "int8-pow2", "mps2-an386"), ("spiking", "int8-pow2", "mps2-an385"),
                      ("conformer", "int8-pow2", "mps2-an386"), ("mamba", "int8-pow2", "mps2-an385")]


@needs_arm
@pytest.mark.parametrize("arch, recipe, board", FAMILY_BOARDS)
def test_other_families_run_bit_exact_on_the_device(tmp_path, arch, recipe, board):
    """The spiking decoder (encode, 59 LIF steps with int8 membranes, readout of the int32 spike counts), S4D
    (a 237-tap SSM convolution, GELU/square/log tables, a residual add), the Conformer (integer LayerNorm,
    attention with an integer softmax) and Mamba (29 selective-scan steps, int8 SSM state) against the
    reference, 5 windows each."""
    out = tmp_path / arch
    compile_for_target(QUANTIZED_DIR / f"{arch}-{recipe}.pt", board, out, progress=False, calibration=[CALIBRATION])
    program = (out / "program.txt").read_text()
    if arch in ("spiking", "mamba"):
        steps = {"spiking": 59, "mamba": 29}[arch]
        assert (out / "qcdq_step.onnx").exists() and f"# step (x {steps})" in program
    if arch in ("conformer", "mamba"):
        assert "LayerNorm" in program and ("Softmax" in program) == (arch == "conformer")
    r = hil_and_report(out, [RECORDING], tmp_path / "r", max_windows=5, progress=False).report
    assert r["ok"] and r["windows"]["failed"] == 0
    device = np.array([w["device_scores"] for w in json.loads((tmp_path / "r" / "windows.json").read_text())["windows"]])
    assert np.array_equal(device, _reference_logits(out, [RECORDING])[:5].astype(np.float64))


def test_compile_recipe_refuses_a_mismatched_quantised_checkpoint(tmp_path):
    from edgebci.errors import ConfigError
    with pytest.raises(ConfigError, match="already quantised with recipe 'int8', not 'w4a8'"):
        compile_for_target(QUANTIZED_DIR / "eegnet-int8.pt", "host", tmp_path, progress=False, recipe="w4a8")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_quantize_command_ptq_writes_a_checkpoint_and_its_qcdq_onnx(tmp_path, capsys):
    """`edgebci quantize` end to end (PTQ: calibration only) on the checkpoint's training subjects."""
    from edgebci.cli import main
    from edgebci.data import default_data_dir
    data = default_data_dir()
    if not (data / "S001R04.edf").exists():
        pytest.skip(f"the training subjects' recordings are not in {data}: set EDGEBCI_DATA to the EEGMMIDB folder")
    out = tmp_path / "q.pt"
    assert main(["quantize", str(BUNDLED_CHECKPOINT), "--recipe", "int8-pow2", "--method", "ptq", "--out", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "validation balanced accuracy" in text and out.exists() and out.with_suffix(".onnx").exists()
    import onnx
    model = onnx.load(str(out.with_suffix(".onnx")))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 8


def test_a_family_without_an_integer_form_is_refused_before_reading_data(tmp_path, monkeypatch):
    """A family with no quantised twin registered (every bundled one has one: mamba's is taken away here)."""
    from edgebci.errors import ConfigError
    from edgebci.quantize import twins
    monkeypatch.setattr(twins, "TWINS", {k: v for k, v in twins.TWINS.items() if k != "mamba"})
    monkeypatch.setattr("edgebci.defaults.QUANTIZED_DIR", tmp_path / "none")
    with pytest.raises(ConfigError, match="no integer form of the 'mamba' family yet: quantisable families are "
                                          "conformer, eegnet, s4d, spiking; compile mamba as float"):
        compile_for_target(CHECKPOINTS_DIR / "mamba.pt", "host", tmp_path, progress=False, recipe="int8")


def test_qat_fine_tunes_and_keeps_the_best_validation_epoch(tmp_path):
    """QAT for one epoch on the training subjects: epoch 0 is PTQ, epoch 1 the fine-tuned twin, the better one on
    the validation subjects is kept (never a test subject)."""
    from dataclasses import replace

    from edgebci.data import default_data_dir
    from edgebci.quantize.fit import quantize_checkpoint
    from edgebci.quantize.recipe import Recipe
    from edgebci.zoo import load_checkpoint
    data = default_data_dir()
    if not (data / "S001R04.edf").exists():
        pytest.skip(f"the training subjects' recordings are not in {data}: set EDGEBCI_DATA to the EEGMMIDB folder")
    ckpt = load_checkpoint(BUNDLED_CHECKPOINT)
    q = quantize_checkpoint(ckpt, replace(Recipe.from_name("int8"), qat_epochs=1), "qat", data, progress=False)
    history = q.quantization["history"]
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["what"] == "qat" and history[1]["loss"] > 0
    best = max(history, key=lambda h: h["val_balanced_accuracy"])
    assert q.quantization["best_epoch"] == best["epoch"]
    assert set(ckpt.summary["test_subjects"]).isdisjoint(ckpt.summary["validation_subjects"])


def test_a_qcdq_onnx_file_compiles_to_integers_without_a_recipe(tmp_path):
    """Any Brevitas QCDQ export (here the bundled one) takes the integer path: the host build decodes like the
    reference program read from the same file."""
    from edgebci.data import extract_cue_windows, read_recording
    from edgebci.hil.runner import HostReference
    from edgebci.pipeline import HOST_ENTRY
    from edgebci.quantize.deploy import fixed_windows, program_from_onnx
    from edgebci.quantize.program import run_reference
    from edgebci.zoo import load_checkpoint
    onnx_path = QUANTIZED_DIR / "eegnet-int8.onnx"
    compiled, _ = compile_for_target(onnx_path, "host", tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["quantization"]["integer_only"] and (tmp_path / "qcdq.onnx").read_bytes() == onnx_path.read_bytes()
    ckpt = load_checkpoint(QUANTIZED_DIR / "eegnet-int8.pt")
    windows = extract_cue_windows(read_recording(RECORDING, ckpt.channels), ckpt.window_samples, ckpt.offset_samples)
    program = program_from_onnx(onnx_path.read_bytes(), ckpt.frontend)
    want = run_reference(program, fixed_windows(ckpt.frontend, windows.x[:3]))
    host = HostReference(next((tmp_path / "host").glob("*.so")), compiled.n_classes, HOST_ENTRY)
    got = np.array([host.scores(np.ascontiguousarray(w.T)) for w in windows.x[:3]])
    assert np.array_equal(got, want.astype(np.float32))
