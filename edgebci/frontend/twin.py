"""Front-end stage, train/deploy check: a decoder's accuracy through the float front end it was trained
with (edgebci.frontend.apply_frontend) and through the device's fixed-point front end.

Three inputs for the same cue windows, each fed to the same float model on the host:
    float       float32 sosfilt of each window from rest: the training path
    fixed       the device's Q31 cascade of each window from rest: window mode (WINDOW requests)
    continuous  the Q31 cascade run over the whole recording, windows cut from its output: stream mode
                (STREAM), where the filter never restarts (no start-up transient in the window)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebci.data import Recording, Windows, subject_of
from edgebci.frontend.bessel import apply_frontend
from edgebci.frontend.fixed import apply_fixed_frontend, filter_fixed, quantize_frontend, to_microvolts
from edgebci.metrics import balanced_accuracy


def continuous_windows(recordings: list[Recording], frontend, window_samples: int, offset_samples: int) -> np.ndarray:
    """The fixed-point front end over each whole recording, cut into the cue windows in the order of
    edgebci.data.extract_cue_windows: float32 uV, shape (n_windows, n_channels, window_samples)."""
    fixed = quantize_frontend(frontend)
    out = []
    for rec in recordings:
        y = to_microvolts(fixed, filter_fixed(fixed, rec.samples)[0])
        for onset, _ in rec.events:
            start = onset + offset_samples
            if 0 <= start and start + window_samples <= y.shape[1]:
                out.append(y[:, start:start + window_samples])
    return np.stack(out).astype(np.float32)


def _predict(model, x: np.ndarray) -> np.ndarray:
    import torch
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        return np.concatenate([model(t[i:i + 256]).argmax(1).numpy() for i in range(0, len(t), 256)])


def compare_frontends(ckpt, windows: Windows, recordings: list[Recording] | None = None,
                      alignments: dict | None = None) -> dict:
    """Balanced accuracy per front end (float, fixed, and continuous when recordings are given), per
    subject, the largest input difference from the float path in uV, and how often predictions agree.

    An aligned decoder (edgebci.zoo.align) gets each subject's alignment after the front end: from
    `alignments` {subject: matrix}, else the checkpoint's calibrated matrix.
    """
    model = ckpt.build_model()
    inputs = {"float": apply_frontend(ckpt.frontend, windows.x), "fixed": apply_fixed_frontend(ckpt.frontend, windows.x)}
    if recordings is not None:
        inputs["continuous"] = continuous_windows(recordings, ckpt.frontend, ckpt.window_samples, ckpt.offset_samples)
        if inputs["continuous"].shape != inputs["float"].shape:
            raise ValueError(f"continuous windows {inputs['continuous'].shape} do not line up with the cue windows "
                             f"{inputs['float'].shape}")
    n = len(ckpt.classes)
    subjects = np.array([subject_of(Path(s.split("@")[0])) for s in windows.source])
    diffs = {k: float(np.abs(x - inputs["float"]).max()) for k, x in inputs.items()}   # before any alignment
    if ckpt.alignment != "none":
        from edgebci.zoo.align import align_windows
        if alignments is None:
            if ckpt.align_matrix is None:
                raise ValueError("an aligned decoder needs per-subject alignments or a calibrated checkpoint")
            alignments = {int(s): ckpt.align_matrix for s in set(subjects.tolist())}
        for x in inputs.values():
            for s in set(subjects.tolist()):
                x[subjects == s] = align_windows(x[subjects == s], alignments[int(s)])
    preds = {k: _predict(model, x) for k, x in inputs.items()}
    out = {"n_windows": len(windows), "chance": 1.0 / n}
    for k, p in preds.items():
        out[k] = {"balanced_accuracy": balanced_accuracy(windows.y, p, n),
                  "per_subject": {f"S{s:03d}": balanced_accuracy(windows.y[subjects == s], p[subjects == s], n)
                                  for s in sorted(set(subjects))},
                  "max_abs_input_diff_uv": diffs[k],
                  "predictions_equal_to_float": int(np.sum(p == preds["float"]))}
    return out
