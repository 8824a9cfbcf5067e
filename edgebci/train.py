"""Training stage: fit a zoo decoder on recorded EEG, subject-independent, and write a checkpoint.

The decoder trains on the front end's output computed exactly as the device computes it: each
window is filtered causally from a zero state. Subjects are split by `Split` (train / validation
for early stopping / held-out test), so test subjects never influence the weights or the epoch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgebci.data import CLASSES, MOTOR_MONTAGE, Split, Windows, extract_cue_windows, find_recordings, read_recording
from edgebci.data.splits import IMAGERY_RUNS, subject_of
from edgebci.errors import ConfigError, DataError
from edgebci.frontend import apply_frontend, design_bessel
from edgebci.metrics import balanced_accuracy, confusion_matrix
from edgebci.zoo import Checkpoint, build_model
from edgebci.zoo.align import align_windows, alignment_matrix
from edgebci.zoo.checkpoint import ALIGNMENTS


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "eegnet"
    channels: tuple[str, ...] = MOTOR_MONTAGE
    window_s: float = 3.0
    offset_s: float = 0.5          # window starts this long after the cue
    hop_s: float = 0.5             # decision period when streaming
    crop_s: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5)   # training crops around offset_s
    band_hz: tuple[float, float] = (7.0, 30.0)
    filter_order: int = 4
    epochs: int = 80
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-2
    patience: int = 15
    warmup_epochs: int = 5         # epochs never selected: an early validation peak is noise, not skill
    seed: int = 0
    alignment: str = "euclidean"   # per-subject Euclidean alignment (edgebci.zoo.align), or "none"
    calibration_run: int = 4       # unseen subjects are aligned from this run and scored on the other runs
    split: Split = field(default_factory=Split)

    def __post_init__(self):
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")
        if self.calibration_run not in IMAGERY_RUNS:
            raise ConfigError(f"calibration_run must be an imagery run {IMAGERY_RUNS}, got {self.calibration_run}")
        if self.window_s <= 0 or self.hop_s <= 0:
            raise ConfigError(f"window_s and hop_s must be > 0, got {self.window_s}, {self.hop_s}")
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ConfigError(f"epochs and batch_size must be > 0, got {self.epochs}, {self.batch_size}")


def load_windows(files: list[Path], channels, window: int, offset: int, crops=(0,)) -> Windows:
    parts = [extract_cue_windows(read_recording(f, tuple(channels)), window, offset, tuple(crops)) for f in files]
    return Windows.concat(parts)


def window_subjects(windows: Windows) -> np.ndarray:
    """The subject number of every window, from its source file name."""
    return np.array([subject_of(Path(s.split("@")[0])) for s in windows.source])


def windows_alignment(frontend, windows: Windows) -> np.ndarray:
    """The alignment matrix (edgebci.zoo.align) of imagery windows of one person; labels are not used."""
    if abs(windows.fs_hz - frontend.fs_hz) > 1e-6:
        raise DataError(f"recordings sampled at {windows.fs_hz} Hz cannot calibrate a decoder that runs at "
                        f"{frontend.fs_hz} Hz: use recordings at {frontend.fs_hz} Hz")
    return alignment_matrix(apply_frontend(frontend, windows.x), tuple(windows.channels))


def subject_alignments(frontend, data_dir: Path, subjects, runs, channels, window: int, offset: int) -> dict:
    """{subject: alignment matrix} from the subject's imagery windows in `runs` (labels are not used)."""
    return {int(s): windows_alignment(frontend, load_windows(find_recordings(data_dir, (s,), tuple(runs)), channels,
                                                             window, offset)) for s in subjects}


def model_input(frontend, windows: Windows, alignments: dict | None) -> np.ndarray:
    """What the decoder sees: the front end's output, aligned per subject when `alignments` is given.

    -> ndarray, shape (n_windows, n_channels, n_samples), float32.
    """
    x = apply_frontend(frontend, windows.x)
    if alignments is None:
        return x
    subjects = window_subjects(windows)
    missing = sorted(set(subjects.tolist()) - set(alignments))
    if missing:
        raise DataError(f"no alignment for subject(s) {missing}: calibrate them on one of their imagery runs")
    for s in set(subjects.tolist()):
        x[subjects == s] = align_windows(x[subjects == s], alignments[s])
    return x


def evaluate(ckpt: Checkpoint, windows: Windows, alignments: dict | None = None) -> dict:
    """Host-side float evaluation: balanced accuracy, confusion matrix and per-subject accuracy.

    An aligned decoder needs each subject's alignment: `alignments` {subject: matrix}, else the
    checkpoint's own matrix (its user's, or the training subjects' pooled one) for every window.
    """
    import torch
    model = ckpt.build_model()
    subjects = window_subjects(windows)
    if ckpt.alignment == "euclidean" and alignments is None:
        if ckpt.align_matrix is None:
            raise ConfigError("this decoder expects aligned EEG: calibrate it for the user first (`edgebci calibrate`) "
                              "or pass per-subject alignments")
        alignments = {int(s): ckpt.align_matrix for s in set(subjects.tolist())}
    with torch.no_grad():
        x = torch.from_numpy(model_input(ckpt.frontend, windows, alignments if ckpt.alignment != "none" else None))
        pred = np.concatenate([model(x[i:i + 256]).argmax(1).numpy() for i in range(0, len(x), 256)])
    n = len(ckpt.classes)
    per_subject = {f"S{s:03d}": balanced_accuracy(windows.y[subjects == s], pred[subjects == s], n)
                   for s in sorted(set(subjects))}
    return {"n_windows": len(windows), "balanced_accuracy": balanced_accuracy(windows.y, pred, n),
            "confusion_matrix": confusion_matrix(windows.y, pred, n).tolist(), "per_subject": per_subject,
            "chance": 1.0 / n}


def _epoch_accuracy(model, x, y) -> float:
    import torch
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    return balanced_accuracy(y.numpy(), pred, int(y.max()) + 1)


def _fit(cfg: TrainConfig, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
         progress: bool, desc: str):
    """Minimise cross-entropy on `train` (model input, labels), keep the best validation epoch after warm-up.

    Returns (model config dict, best state_dict, best validation accuracy, best epoch, history).
    """
    import torch
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    xt, yt = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    xv, yv = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    model = build_model(cfg.arch, {"n_channels": len(cfg.channels), "n_samples": xt.shape[-1],
                                   "n_classes": len(CLASSES)})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    best = (-1.0, 0, None)
    history = []
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        order = torch.from_numpy(rng.permutation(len(xt)))
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        val_acc = _epoch_accuracy(model, xv, yv)
        history.append({"epoch": epoch, "loss": total / len(xt), "val_balanced_accuracy": val_acc})
        if epoch >= min(cfg.warmup_epochs, cfg.epochs - 1) and val_acc > best[0]:
            best = (val_acc, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        bar.set_postfix(loss=f"{total / len(xt):.3f}", val=f"{val_acc:.3f}", best=f"{best[0]:.3f}@{best[1]}")
        if best[2] is not None and epoch - best[1] >= cfg.patience:
            break
    return model.config.to_dict(), best[2], best[0], best[1], history


def _geometry(cfg: TrainConfig) -> tuple[float, int, int, tuple[int, ...]]:
    fs_hz = 160.0
    return (fs_hz, int(round(cfg.window_s * fs_hz)), int(round(cfg.offset_s * fs_hz)),
            tuple(int(round(c * fs_hz)) for c in cfg.crop_s))


def _checkpoint(cfg: TrainConfig, frontend, fit, summary: dict) -> Checkpoint:
    config, state, val_acc, epoch, history = fit
    fs_hz, window, offset, _ = _geometry(cfg)
    summary = {**summary, "best_epoch": epoch, "val_balanced_accuracy": val_acc, "history": history,
               "config": {k: v for k, v in asdict(cfg).items() if k != "split"}}
    return Checkpoint(cfg.arch, config, tuple(cfg.channels), fs_hz, window, offset, int(round(cfg.hop_s * fs_hz)),
                      CLASSES, frontend, state, summary, cfg.alignment)


def train_decoder(cfg: TrainConfig, data_dir: Path, progress: bool = True) -> Checkpoint:
    """Subject-independent: train on the split's training subjects, early-stop on its validation subjects.

    With alignment, each training subject is aligned from all its imagery windows, and each validation
    subject from its calibration run only, then scored on its other runs: as an unseen user would be.
    """
    fs_hz, window, offset, crops = _geometry(cfg)
    frontend = design_bessel(cfg.filter_order, cfg.band_hz, fs_hz, "bandpass", "mag")
    aligned = cfg.alignment == "euclidean"
    train = load_windows(find_recordings(data_dir, cfg.split.train), cfg.channels, window, offset, crops)
    if train.fs_hz != fs_hz:
        raise ConfigError(f"recordings are sampled at {train.fs_hz} Hz; EEGMMIDB decoders expect {fs_hz} Hz")
    val_runs = scored_runs(cfg.alignment, cfg.calibration_run)
    val = load_windows(find_recordings(data_dir, cfg.split.validation, val_runs), cfg.channels, window, offset)
    a_train = subject_alignments(frontend, data_dir, cfg.split.train, IMAGERY_RUNS, cfg.channels, window,
                                 offset) if aligned else None
    a_val = subject_alignments(frontend, data_dir, cfg.split.validation, (cfg.calibration_run,), cfg.channels,
                               window, offset) if aligned else None
    fit = _fit(cfg, (model_input(frontend, train, a_train), train.y), (model_input(frontend, val, a_val), val.y),
               progress, f"train {cfg.arch}")
    ckpt = _checkpoint(cfg, frontend, fit, {
        "protocol": "leave-subjects-out", "train_subjects": list(cfg.split.train),
        "validation_subjects": list(cfg.split.validation), "test_subjects": list(cfg.split.test),
        "n_train_windows": len(train), "alignment": cfg.alignment,
        "calibration_run": cfg.calibration_run if aligned else None, "scored_runs": list(val_runs)})
    if aligned:   # until a user calibrates it, the decoder deploys with the training subjects' pooled alignment
        pooled = load_windows(find_recordings(data_dir, cfg.split.train), cfg.channels, window, offset)
        ckpt = replace(ckpt, align_matrix=windows_alignment(frontend, pooled))
    return ckpt


def scored_runs(alignment: str, calibration_run: int) -> tuple[int, ...]:
    """The runs an unseen subject is scored on: all imagery runs, or those besides the calibration run."""
    return tuple(r for r in IMAGERY_RUNS if alignment == "none" or r != calibration_run)


def train_within_subject(cfg: TrainConfig, data_dir: Path, subject: int, progress: bool = True):
    """Within-subject: train on run 4, early-stop on run 8, test on run 12 (time-ordered, no shared trial).

    Returns (checkpoint, test report).
    """
    fs_hz, window, offset, crops = _geometry(cfg)
    frontend = design_bessel(cfg.filter_order, cfg.band_hz, fs_hz, "bandpass", "mag")
    runs = [find_recordings(data_dir, (subject,), (r,)) for r in (4, 8, 12)]
    train = load_windows(runs[0], cfg.channels, window, offset, crops)
    val = load_windows(runs[1], cfg.channels, window, offset)
    test = load_windows(runs[2], cfg.channels, window, offset)
    # one subject, one alignment (from the training run): a fixed spatial whitening of all three runs
    align = {subject: windows_alignment(frontend, load_windows(runs[0], cfg.channels, window, offset))} \
        if cfg.alignment == "euclidean" else None
    fit = _fit(cfg, (model_input(frontend, train, align), train.y), (model_input(frontend, val, align), val.y),
               progress, f"train {cfg.arch} S{subject:03d}")
    ckpt = _checkpoint(cfg, frontend, fit, {"protocol": "within-subject", "subject": subject,
                                            "train_runs": [4], "validation_runs": [8], "test_runs": [12],
                                            "n_train_windows": len(train)})
    return ckpt, evaluate(ckpt, test, align)


def evaluate_held_out(ckpt: Checkpoint, data_dir: Path) -> dict:
    """Balanced accuracy on the held-out test subjects (never used for training or model selection)."""
    if ckpt.summary.get("protocol") != "leave-subjects-out":
        raise ConfigError(f"checkpoint was trained {ckpt.summary.get('protocol')!r}; held-out subjects exist only "
                          f"for 'leave-subjects-out' checkpoints")
    split = Split(tuple(ckpt.summary["train_subjects"]), tuple(ckpt.summary["validation_subjects"]),
                  tuple(ckpt.summary["test_subjects"]))
    calibration = ckpt.summary.get("calibration_run")
    runs = scored_runs(ckpt.alignment, calibration)
    test = load_windows(find_recordings(data_dir, split.test, runs), ckpt.channels, ckpt.window_samples,
                        ckpt.offset_samples)
    alignments = None
    if ckpt.alignment == "euclidean":
        alignments = subject_alignments(ckpt.frontend, data_dir, split.test, (calibration,), ckpt.channels,
                                        ckpt.window_samples, ckpt.offset_samples)
    return {**evaluate(ckpt, test, alignments), "scored_runs": list(runs), "calibration_run": calibration}




def cross_validate(cfg: TrainConfig, data_dir: Path, subjects: tuple[int, ...], folds: int,
                   progress: bool = True) -> dict:
    """Leave-subjects-out cross-validation: every subject is tested once, by a decoder that never saw it.

    Subjects are cut into `folds` consecutive groups; for each group the two subjects before it (cyclically)
    select the epoch and the rest train. Returns per-subject balanced accuracy and its spread.
    """
    if not 2 <= folds <= len(subjects) // 2:
        raise ConfigError(f"folds must be 2..{len(subjects) // 2} for {len(subjects)} subjects, got {folds}")
    groups = [tuple(int(s) for s in g) for g in np.array_split(np.asarray(subjects), folds)]
    per_subject, per_fold = {}, []
    for k, test in enumerate(groups):
        rest = [s for s in subjects if s not in test]
        val = tuple(rest[-2:]) if k == 0 else tuple(s for s in rest if s < test[0])[-2:]
        train = tuple(s for s in rest if s not in val)
        if not train:
            raise ConfigError(f"fold {k} leaves no training subject ({len(subjects)} subjects, {folds} folds, "
                              f"2 for validation): use more subjects or fewer folds")
        fold_cfg = TrainConfig(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
                                  "split": Split(train, val, test)})
        ckpt = train_decoder(fold_cfg, data_dir, progress)
        report = evaluate_held_out(ckpt, data_dir)
        per_subject.update(report["per_subject"])
        per_fold.append({"test": list(test), "validation": list(val), "balanced_accuracy": report["balanced_accuracy"],
                         "val_balanced_accuracy": ckpt.summary["val_balanced_accuracy"]})
    values = np.array(list(per_subject.values()))
    return {"protocol": "leave-subjects-out cross-validation", "arch": cfg.arch, "folds": per_fold,
            "per_subject": per_subject, "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()), "chance": 1.0 / len(CLASSES)}


def calibrate_checkpoint(ckpt: Checkpoint, recordings: list[Path]) -> Checkpoint:
    """Fit an aligned decoder to its user: the alignment matrix from the user's imagery windows in
    `recordings` (one run is enough; labels are not used). Returns the checkpoint ready to compile."""
    if ckpt.alignment != "euclidean":
        raise ConfigError(f"this {ckpt.arch} decoder was trained without alignment (alignment={ckpt.alignment!r}): "
                          f"it needs no calibration; compile it as it is")
    windows = load_windows([Path(p) for p in recordings], ckpt.channels, ckpt.window_samples, ckpt.offset_samples)
    matrix = windows_alignment(ckpt.frontend, windows)
    summary = {**ckpt.summary, "calibration": {"recordings": [Path(p).name for p in recordings],
                                               "n_windows": len(windows)}}
    ckpt = replace(ckpt, align_matrix=matrix, summary=summary)
    if ckpt.quantized:   # the input quantiser's range follows the user's raw amplitude too
        from edgebci.quantize.fit import calibrate_input_range
        ckpt = calibrate_input_range(ckpt, apply_frontend(ckpt.frontend, windows.x))
    return ckpt
