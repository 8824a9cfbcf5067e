"""Quantise a trained decoder: PTQ (calibrate the activation ranges) or QAT (then fine-tune), and judge it.

    qckpt = quantize_checkpoint(ckpt, Recipe.from_name("int8"), "qat", data_dir)
    report = evaluate_quantized_held_out(qckpt, data_dir)

Both use the checkpoint's own subject split: calibration and fine-tuning on its training subjects
(each aligned with their own matrix, as in training), the fine-tuning epoch chosen on its validation
subjects (calibrated on run 4, scored on runs 8 and 12), never on a test subject. The held-out
evaluation runs what the device runs: the Q31 front end's int32 output through the integer program
(edgebci.quantize.program.run_reference), each test subject with its own alignment and input range
from its run 4, scored on its runs 8 and 12.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgebci.data import Split, find_recordings
from edgebci.data.splits import IMAGERY_RUNS
from edgebci.errors import ConfigError
from edgebci.metrics import balanced_accuracy, confusion_matrix
from edgebci.quantize.deploy import deploy_program, fixed_windows, input_threshold
from edgebci.quantize.program import run_reference
from edgebci.quantize.recipe import METHODS, Recipe

BATCH = 64
QAT_WEIGHT_DECAY = 5e-2              # edgebci.train.TrainConfig.weight_decay
QAT_CROPS_S = (-0.25, 0.0, 0.25)     # training crops around the cue offset, as training uses (fewer: QAT is short)


def _split(ckpt) -> Split:
    s = ckpt.summary
    if s.get("protocol") != "leave-subjects-out":
        raise ConfigError(f"quantising needs the checkpoint's leave-subjects-out split (its training and validation "
                          f"subjects); this one was trained {s.get('protocol')!r}")
    return Split(tuple(s["train_subjects"]), tuple(s["validation_subjects"]), tuple(s["test_subjects"]))


def _training_data(ckpt, data_dir: Path, crops_s=(0.0,)):
    """Aligned training windows (x float32, y) and validation windows, as `edgebci train` builds them."""
    from edgebci.train import load_windows, model_input, scored_runs, subject_alignments
    split = _split(ckpt)
    crops = tuple(int(round(c * ckpt.fs_hz)) for c in crops_s)
    train = load_windows(find_recordings(data_dir, split.train), ckpt.channels, ckpt.window_samples,
                         ckpt.offset_samples, crops)
    cal_run = ckpt.summary.get("calibration_run") or 4
    val = load_windows(find_recordings(data_dir, split.validation, scored_runs(ckpt.alignment, cal_run)),
                       ckpt.channels, ckpt.window_samples, ckpt.offset_samples)
    a_train = a_val = None
    if ckpt.alignment == "euclidean":
        a_train = subject_alignments(ckpt.frontend, data_dir, split.train, IMAGERY_RUNS, ckpt.channels,
                                     ckpt.window_samples, ckpt.offset_samples)
        a_val = subject_alignments(ckpt.frontend, data_dir, split.validation, (cal_run,), ckpt.channels,
                                   ckpt.window_samples, ckpt.offset_samples)
    return ((model_input(ckpt.frontend, train, a_train), train.y), (model_input(ckpt.frontend, val, a_val), val.y),
            train)


def _accuracy(model, x, y) -> float:
    import torch
    model.eval()
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(x[i:i + 256])).argmax(1).numpy() for i in range(0, len(x), 256)])
    return balanced_accuracy(y, pred, int(y.max()) + 1)


def quantize_checkpoint(ckpt, recipe: Recipe, method: str | None, data_dir: Path, progress: bool = True,
                        seed: int = 0):
    """A float zoo checkpoint -> the same checkpoint with a `quantization` entry (see edgebci.quantize.deploy)."""
    import torch
    from tqdm import tqdm

    from edgebci.frontend import apply_frontend
    from edgebci.quantize.twins import make_twin
    method = method or recipe.method
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if ckpt.quantized:
        raise ConfigError("this checkpoint is already quantised; quantise the float checkpoint it came from")
    from edgebci.quantize.twins import TWINS
    if ckpt.arch not in TWINS:     # before any data is read
        raise ConfigError(f"no integer form of the {ckpt.arch!r} family yet: quantisable families are "
                          f"{', '.join(sorted(TWINS))}; compile {ckpt.arch} as float (without --recipe)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    (xt, yt), (xv, yv), raw_train = _training_data(ckpt, data_dir, QAT_CROPS_S if method == "qat" else (0.0,))
    float_model = ckpt.build_model()
    twin = make_twin(ckpt.arch, float_model, recipe, input_threshold(xt, recipe.input_percentile))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.graph.calibrate import calibration_mode
    cal = xt[rng.permutation(len(xt))[:recipe.calibration_windows]]
    with torch.no_grad(), calibration_mode(twin), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(0, len(cal), BATCH):
            twin(torch.from_numpy(cal[i:i + BATCH]))
    twin.eval()
    history = [{"epoch": 0, "what": "ptq", "val_balanced_accuracy": _accuracy(twin, xv, yv)}]
    best = (history[0]["val_balanced_accuracy"], 0, copy.deepcopy(twin.state_dict()))
    if method == "qat" and recipe.qat_epochs:
        # the float training's regularisation (AdamW weight decay, the family's dropout): without it a few
        # epochs overfit the ten training subjects and the validation subjects get worse, not better
        opt = torch.optim.AdamW(twin.parameters(), lr=recipe.qat_lr, weight_decay=QAT_WEIGHT_DECAY)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        bar = tqdm(range(1, recipe.qat_epochs + 1), desc=f"QAT {ckpt.arch} {recipe.name}", disable=not progress,
                   unit="epoch")
        for epoch in bar:
            twin.train()
            order = rng.permutation(len(xt))
            total = 0.0
            for i in range(0, len(order), BATCH):
                idx = order[i:i + BATCH]
                opt.zero_grad()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loss = loss_fn(twin(torch.from_numpy(xt[idx])), torch.from_numpy(yt[idx]))
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            acc = _accuracy(twin, xv, yv)
            history.append({"epoch": epoch, "what": "qat", "loss": total / len(xt), "val_balanced_accuracy": acc})
            if acc > best[0]:
                best = (acc, epoch, copy.deepcopy(twin.state_dict()))
            bar.set_postfix(loss=f"{total / len(xt):.3f}", val=f"{acc:.3f}", best=f"{best[0]:.3f}@{best[1]}")
    raw = apply_frontend(ckpt.frontend, raw_train.x)     # what the device quantises: filtered, not aligned
    quantization = {
        "recipe": recipe.to_dict(), "method": method, "twin_state": best[2],
        "aligned_input_threshold": float(twin.input_threshold),
        "raw_input_threshold": input_threshold(raw, recipe.input_percentile), "input_range_source": "population",
        "val_balanced_accuracy": best[0], "best_epoch": best[1], "history": history,
        "float_val_balanced_accuracy": _accuracy(float_model, xv, yv), "seed": seed,
        "float_hash": ckpt.content_hash(),
    }
    return replace(ckpt, quantization=quantization)


def calibrate_input_range(qckpt, filtered_uv: np.ndarray):
    """A quantised checkpoint whose input range is its user's: from that user's filtered (unaligned) windows."""
    q = dict(qckpt.quantization)
    q["raw_input_threshold"] = input_threshold(filtered_uv, q["recipe"]["input_percentile"])
    q["input_range_source"] = "user"
    return replace(qckpt, quantization=q)


def predict_integer(qckpt, x_int16: np.ndarray) -> np.ndarray:
    """Integer logits of the deployed program for int16 windows (N, C, T), exactly as the device computes them."""
    program, _ = deploy_program(qckpt)
    return run_reference(program, fixed_windows(qckpt.frontend, x_int16))


def evaluate_quantized_held_out(qckpt, data_dir: Path) -> dict:
    """Balanced accuracy of the integer program and of the float decoder on the held-out test subjects."""
    from edgebci.train import calibrate_checkpoint, evaluate_held_out, load_windows, scored_runs, window_subjects
    from edgebci.frontend import apply_frontend
    split = _split(qckpt)
    cal_run = qckpt.summary.get("calibration_run") or 4
    runs = scored_runs(qckpt.alignment, cal_run)
    preds, ys, subjects = [], [], []
    for s in split.test:
        cal = find_recordings(data_dir, (s,), (cal_run,))
        if qckpt.alignment == "euclidean":     # the user's alignment and, for a quantised decoder, input range
            user = calibrate_checkpoint(qckpt, cal)
        else:
            cal_windows = load_windows(cal, qckpt.channels, qckpt.window_samples, qckpt.offset_samples)
            user = calibrate_input_range(qckpt, apply_frontend(qckpt.frontend, cal_windows.x))
        test = load_windows(find_recordings(data_dir, (s,), runs), qckpt.channels, qckpt.window_samples,
                            qckpt.offset_samples)
        preds.append(np.argmax(predict_integer(user, test.x), axis=1))
        ys.append(test.y)
        subjects.append(window_subjects(test))
    pred, y, subj = np.concatenate(preds), np.concatenate(ys), np.concatenate(subjects)
    n = len(qckpt.classes)
    float_report = evaluate_held_out(replace(qckpt, quantization=None), data_dir)
    return {"recipe": qckpt.quantization["recipe"]["name"], "method": qckpt.quantization["method"],
            "n_windows": int(len(y)), "balanced_accuracy": balanced_accuracy(y, pred, n),
            "confusion_matrix": confusion_matrix(y, pred, n).tolist(),
            "per_subject": {f"S{s:03d}": balanced_accuracy(y[subj == s], pred[subj == s], n) for s in sorted(set(subj))},
            "float_balanced_accuracy": float_report["balanced_accuracy"],
            "float_per_subject": float_report["per_subject"], "scored_runs": list(runs), "calibration_run": cal_run}
