"""The `edgebci` command line: train, quantize, frontend, compile, hil, evaluate, zoo, targets, demo.

Heavy libraries (torch, tvm, mne, pyserial) are imported inside the commands, so `edgebci --help`
answers at once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgebci import __version__
from edgebci.defaults import ARCH_NAMES, BUNDLED_CHECKPOINT, DEFAULT_TARGET
from edgebci.errors import EdgebciError



def _cmd_targets(args) -> int:
    from edgebci.targets import list_targets
    rows = [(t.name, t.cpu, t.fpu, t.flash_bytes // 1024, t.ram_bytes // 1024, t.stack_bytes,
             (f"qemu {t.qemu_machine}" if t.qemu_machine else t.serial_port or "process"), t.description) for t in list_targets()]
    if args.json:
        keys = ("name", "cpu", "fpu", "flash_kib", "ram_kib", "stack_bytes", "reached_by", "description")
        print(json.dumps([dict(zip(keys, r)) for r in rows], indent=2))
        return 0
    print(f"{'target':<14} {'cpu':<14} {'fpu':<14} {'flash KiB':>10} {'RAM KiB':>9} {'stack B':>8}  reached by")
    for name, cpu, fpu, flash, ram, stack, how, desc in rows:
        print(f"{name:<14} {cpu:<14} {fpu:<14} {flash:>10} {ram:>9} {stack:>8}  {how}\n{'':<14} {desc}")
    return 0


def _cmd_train(args) -> int:
    from edgebci.data import Split, default_data_dir
    from edgebci.train import TrainConfig, evaluate_held_out, train_decoder
    from edgebci.zoo import save_checkpoint
    split = Split(tuple(args.train_subjects), tuple(args.val_subjects), tuple(args.test_subjects))
    cfg = TrainConfig(arch=args.arch, epochs=args.epochs, seed=args.seed, alignment=args.alignment, split=split)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.protocol == "within-subject":
        return _train_within(cfg, data_dir, args)
    if args.protocol == "cross-validation":
        return _train_cv(cfg, data_dir, args)
    ckpt = train_decoder(cfg, data_dir, progress=not args.quiet)
    report = evaluate_held_out(ckpt, data_dir)
    ckpt.summary["test"] = report
    save_checkpoint(ckpt, args.out)
    print(f"wrote {args.out}: best epoch {ckpt.summary['best_epoch']}, validation balanced accuracy "
          f"{ckpt.summary['val_balanced_accuracy']:.3f}; held-out subjects {list(split.test)}: balanced accuracy "
          f"{report['balanced_accuracy']:.3f} (chance {report['chance']:.2f}) over {report['n_windows']} windows, "
          f"per subject {json.dumps({k: round(v, 3) for k, v in report['per_subject'].items()})}")
    return 0


def _train_within(cfg, data_dir: Path, args) -> int:
    """One decoder per subject: run 4 trains, run 8 picks the epoch, run 12 tests."""
    import numpy as np

    from edgebci.train import train_within_subject
    from edgebci.zoo import save_checkpoint
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for subject in args.subjects:
        ckpt, report = train_within_subject(cfg, data_dir, subject, progress=not args.quiet)
        ckpt.summary["test"] = report
        save_checkpoint(ckpt, out / f"{cfg.arch}-S{subject:03d}.pt")
        rows[f"S{subject:03d}"] = report["balanced_accuracy"]
        print(f"S{subject:03d}: balanced accuracy on run 12 {report['balanced_accuracy']:.3f} "
              f"({report['n_windows']} windows)")
    values = np.array(list(rows.values()))
    summary = {"protocol": "within-subject", "arch": cfg.arch, "per_subject": rows, "mean": float(values.mean()),
               "std": float(values.std()), "chance": 0.5}
    (out / "within_subject.json").write_text(json.dumps(summary, indent=2))
    print(f"within-subject {cfg.arch}: mean balanced accuracy {values.mean():.3f} +/- {values.std():.3f} over "
          f"{len(values)} subjects (chance 0.50); wrote {out / 'within_subject.json'}")
    return 0


def _cmd_zoo(args) -> int:
    from edgebci.defaults import CHECKPOINTS_DIR
    from edgebci.zoo import load_checkpoint
    from edgebci.zoo.stats import decoder_stats
    rows = []
    for path in sorted(CHECKPOINTS_DIR.glob("*.pt")):
        ck = load_checkpoint(path)
        test = ck.summary.get("test", {})
        rows.append({"arch": ck.arch, "checkpoint": str(path), **decoder_stats(ck),
                     "channels": len(ck.channels), "window_samples": ck.window_samples,
                     "val_balanced_accuracy": ck.summary.get("val_balanced_accuracy"),
                     "test_subjects": ck.summary.get("test_subjects"),
                     "test_balanced_accuracy": test.get("balanced_accuracy"), "per_subject": test.get("per_subject")})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'arch':<10} {'params':>7} {'MACs':>10}  {'val':>5}  {'held-out':>8}  per held-out subject")
    for r in rows:
        per = " ".join(f"{k} {v:.2f}" for k, v in (r["per_subject"] or {}).items())
        print(f"{r['arch']:<10} {r['params']:>7,} {r['macs']:>10,}  {r['val_balanced_accuracy']:>5.3f}  "
              f"{r['test_balanced_accuracy']:>8.3f}  {per}")
    return 0


def _train_cv(cfg, data_dir: Path, args) -> int:
    from edgebci.train import cross_validate
    result = cross_validate(cfg, data_dir, tuple(args.subjects), args.folds, progress=not args.quiet)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    per = " ".join(f"{k} {v:.2f}" for k, v in result["per_subject"].items())
    print(f"{cfg.arch}, {args.folds}-fold leave-subjects-out: mean balanced accuracy {result['mean']:.3f} +/- "
          f"{result['std']:.3f} (min {result['min']:.2f}, max {result['max']:.2f}, chance 0.50); {per}; "
          f"wrote {out}")
    return 0


def calibrate_subjects(ckpt, data: list[Path]) -> tuple[list[Path], dict | None]:
    """How an aligned decoder not yet calibrated for a user is evaluated: as an unseen user would meet it.

    When every subject's calibration run lies beside the data and other runs are given, each subject is
    aligned from its calibration run (labels unused) and only the other runs are scored. Otherwise the
    checkpoint's pooled (population) alignment is used for everyone, and the output says so.
    """
    from edgebci.data.splits import subject_of
    from edgebci.train import subject_alignments
    run = ckpt.summary.get("calibration_run") or 4
    subjects = sorted({subject_of(p) for p in data})
    calib = {s: next(p.parent for p in data if subject_of(p) == s) / f"S{s:03d}R{run:02d}.edf" for s in subjects}
    scored = [p for p in data if not p.name.upper().endswith(f"R{run:02d}.EDF")]
    if not scored or not all(f.exists() for f in calib.values()):
        print(f"aligned decoder: using the checkpoint's population alignment (to align each subject, pass its other "
              f"runs with its run {run} beside them)")
        return data, None
    alignments = {}
    for s in subjects:
        alignments.update(subject_alignments(ckpt.frontend, calib[s].parent, (s,), (run,), ckpt.channels,
                                             ckpt.window_samples, ckpt.offset_samples))
    print(f"aligned decoder: subjects {', '.join(f'S{s:03d}' for s in subjects)} calibrated on run {run} "
          f"(labels unused), scored on the other {len(scored)} recording(s)")
    return scored, alignments


def _evaluate_frontends(ckpt, windows, args, alignments=None) -> int:
    """Float (training) vs the device's fixed-point front end, from rest and continuous."""
    from edgebci.data import read_recording
    from edgebci.frontend.twin import compare_frontends
    data = sorted({s.split("@")[0] for s in windows.source})
    paths = [p for p in map(Path, args.data) if p.name in data]
    recordings = [read_recording(p, ckpt.channels) for p in paths]
    report = {"checkpoint": str(args.checkpoint), "arch": ckpt.arch, "recordings": [str(p) for p in paths],
              **compare_frontends(ckpt, windows, recordings, alignments)}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    names = {"float": "float32 from rest (training)", "fixed": "device Q31 from rest",
             "continuous": "device Q31 continuous"}
    print(f"{ckpt.arch}: balanced accuracy over {report['n_windows']} windows (chance {report['chance']:.2f})")
    for key, name in names.items():
        r = report[key]
        per = " ".join(f"{k} {v:.2f}" for k, v in r["per_subject"].items())
        print(f"  {name:<30} {r['balanced_accuracy']:.3f}  ({per}); predictions equal to float "
              f"{r['predictions_equal_to_float']}/{report['n_windows']}, largest input difference "
              f"{r['max_abs_input_diff_uv']:.3g} uV")
    return 0


def _cmd_quantize(args) -> int:
    from edgebci.data import default_data_dir
    from edgebci.quantize.deploy import deploy_program
    from edgebci.quantize.fit import evaluate_quantized_held_out, quantize_checkpoint
    from edgebci.quantize.recipe import Recipe
    from edgebci.zoo import load_checkpoint, save_checkpoint
    recipe = Recipe.from_name(args.recipe)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    qckpt = quantize_checkpoint(load_checkpoint(Path(args.checkpoint)), recipe, args.method, data_dir,
                                progress=not args.quiet, seed=args.seed)
    q = qckpt.quantization
    print(f"{qckpt.arch} {recipe.name} ({q['method']}): validation balanced accuracy {q['val_balanced_accuracy']:.3f} "
          f"(float {q['float_val_balanced_accuracy']:.3f}, epoch {q['best_epoch']}); input range "
          f"+/-{q['raw_input_threshold']:.1f} uV")
    if args.evaluate:
        report = evaluate_quantized_held_out(qckpt, data_dir)
        q["test"] = report
        per = " ".join(f"{k} {v:.2f}" for k, v in report["per_subject"].items())
        print(f"held-out subjects, integer program (device arithmetic): balanced accuracy "
              f"{report['balanced_accuracy']:.3f} ({per}); float {report['float_balanced_accuracy']:.3f}; "
              f"{report['n_windows']} windows, runs {report['scored_runs']} after calibrating on run "
              f"{report['calibration_run']}")
    out = save_checkpoint(qckpt, Path(args.out))
    program, onnx_bytes = deploy_program(qckpt)
    parts = onnx_bytes if isinstance(onnx_bytes, dict) else {"": onnx_bytes}    # a recurrent family: three graphs
    paths = [out.with_suffix(f".{part}.onnx" if part else ".onnx") for part in parts]
    for path, blob in zip(paths, parts.values()):
        path.write_bytes(blob)
    print(f"wrote {out} and {', '.join(p.name for p in paths)} (QCDQ, {len(program.ops)} integer ops, "
          f"{program.weight_bytes()} B of weights); compile it with `edgebci compile {out} --target BOARD "
          f"--calibrate USER_R04.edf --out DIR`")
    return 0


def _cmd_calibrate(args) -> int:
    from edgebci.pipeline import calibrate_to_file
    out = calibrate_to_file(Path(args.checkpoint), [Path(p) for p in args.data], Path(args.out), progress=True)
    print(f"wrote {out}: compile it with `edgebci compile {out} --target BOARD --out DIR`")
    return 0


def _cmd_evaluate(args) -> int:
    from edgebci.data import Windows
    from edgebci.pipeline import load_hil_windows
    from edgebci.train import evaluate
    from edgebci.zoo import load_checkpoint
    ckpt = load_checkpoint(Path(args.checkpoint))
    geometry = {"channels": ckpt.channels, "window_samples": ckpt.window_samples,
                "offset_samples": ckpt.offset_samples, "fs_hz": ckpt.fs_hz}
    data, alignments = [Path(p) for p in args.data], None
    if ckpt.alignment_source == "population":
        data, alignments = calibrate_subjects(ckpt, data)
    windows: Windows = load_hil_windows(data, geometry)
    if args.frontend == "compare":
        return _evaluate_frontends(ckpt, windows, args, alignments)
    report = {"checkpoint": str(args.checkpoint), "arch": ckpt.arch, "recordings": [str(p) for p in data],
              **evaluate(ckpt, windows, alignments)}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    cm = report["confusion_matrix"]
    print(f"{ckpt.arch}: balanced accuracy {report['balanced_accuracy']:.3f} (chance {report['chance']:.2f}) over "
          f"{report['n_windows']} windows; per subject "
          f"{json.dumps({k: round(v, 3) for k, v in report['per_subject'].items()})}")
    print("confusion matrix (rows true, columns predicted; " + ", ".join(ckpt.classes) + "):")
    for name, row in zip(ckpt.classes, cm):
        print(f"  {name:>8}: " + " ".join(f"{v:5d}" for v in row))
    return 0


def _graph_options(args):
    from edgebci.compile.sources import GraphOptions
    kw = {"fs_hz": args.fs_hz, "band_hz": tuple(args.band)}
    if args.channels:
        kw["channels"] = tuple(args.channels)
    if args.classes:
        kw["classes"] = tuple(args.classes)
    return GraphOptions(**kw)


def _cmd_compile(args) -> int:
    from edgebci.pipeline import compile_for_target
    compiled, image = compile_for_target(Path(args.checkpoint), args.target, Path(args.out), progress=not args.quiet,
                                         graph_options=_graph_options(args),
                                         calibration=[Path(p) for p in args.calibrate] if args.calibrate else None,
                                         recipe=args.recipe)
    print(f"compiled {args.checkpoint} for {compiled.target_name} into {compiled.out_dir}: "
          f"{compiled.n_kernels} kernels, arena {compiled.arena_bytes} B, weights {compiled.weight_bytes} B; "
          f"firmware {image.path} (flash {image.flash_bytes} B, static RAM {image.ram_static_bytes} B)")
    return 0


def _cmd_frontend_design(args) -> int:
    from edgebci.frontend import check_frontend, design_bessel, quantize_frontend
    from edgebci.report.frontend import write_frontend_report
    cut = args.cutoffs[0] if len(args.cutoffs) == 1 else tuple(args.cutoffs)
    fe = design_bessel(args.order, cut, args.fs_hz, args.btype, args.norm, args.notch, args.notch_q)
    analysis = check_frontend(fe)            # refuses what the device cannot run faithfully, saying why
    fixed = quantize_frontend(fe)
    json_path, html_path = write_frontend_report(fe, fixed, analysis, Path(args.out))
    lo, mean, hi = analysis.group_delay_ms
    print(f"order-{fe.order} Bessel {fe.btype} {'-'.join(f'{c:g}' for c in fe.cutoffs_hz)} Hz (norm {fe.norm})"
          f"{f' + {fe.notch_hz:g} Hz notch' if fe.notch_hz else ''} at {fe.fs_hz:g} Hz: {fe.n_sections} sections, "
          f"Q31 post-shifts {list(fixed.post_shift)}, data Q{31 - fixed.in_shift}.{fixed.in_shift}")
    print(f"  passband {analysis.passband_hz[0]:.2f}..{analysis.passband_hz[1]:.2f} Hz: gain error from quantisation "
          f"{analysis.gain_error_db:.2e} dB (limit 0.1), float32 {analysis.float32_gain_error_db:.2e} dB")
    print(f"  group delay across the passband {lo:.1f} .. {hi:.1f} ms (mean {mean:.1f} ms); rounding noise "
          f"{analysis.rounding_noise_uv:.2g} uV RMS; largest pole radius {analysis.max_pole_radius:.6f}")
    print(f"  wrote {json_path} and {html_path}")
    return 0


def _cmd_hil(args) -> int:
    if args.stream and args.max_windows is not None:
        raise EdgebciError("--max-windows applies to window mode; --stream sends whole recordings (pass fewer --data)")
    if args.stream:
        from edgebci.pipeline import hil_stream_and_report
        summary = hil_stream_and_report(Path(args.compiled), [Path(p) for p in args.data] if args.data else None,
                                        Path(args.out), port=args.port, pace=args.pace,
                                        chunk_samples=args.chunk_samples, filter_state=args.filter_state,
                                        progress=not args.quiet)
        print(summary.summary_line())
        return 0 if summary.ok else 1
    if args.chunk_samples is not None or args.pace != "max" or args.filter_state != "from-rest":
        raise EdgebciError("--pace, --chunk-samples and --filter-state apply to --stream only; add --stream")
    from edgebci.pipeline import hil_and_report
    result = hil_and_report(Path(args.compiled), [Path(p) for p in args.data] if args.data else None,
                            Path(args.out), port=args.port, max_windows=args.max_windows, progress=not args.quiet)
    print(result.summary_line())
    return 0 if result.ok else 1


def _cmd_demo(args) -> int:
    from edgebci.pipeline import run_demo
    result = run_demo(Path(args.out), progress=not args.quiet)
    print(result.summary_line())
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgebci", description="Compile trained EEG decoders for microcontrollers "
                                "and validate them hardware-in-the-loop.")
    p.add_argument("--version", action="version", version=f"edgebci {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("targets", help="list the boards edgebci can compile for, with their memory budgets")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t.set_defaults(func=_cmd_targets)

    tr = sub.add_parser("train", help="train a decoder on EEGMMIDB recordings (leave-subjects-out)",
                        description="Train a zoo decoder on left/right fist imagery, leave-subjects-out by "
                        "default: subjects are split into training, validation (early stopping) and held-out test "
                        "subjects; the test subjects' balanced accuracy is stored in the checkpoint and printed.")
    tr.add_argument("--arch", default="eegnet", choices=ARCH_NAMES, help="decoder family (default: eegnet)")
    tr.add_argument("--protocol", default="subject-independent", choices=["subject-independent", "within-subject", "cross-validation"],
                    help="subject-independent: train/validation/test subjects disjoint (default); within-subject: "
                    "one decoder per subject, run 4 trains, run 8 selects the epoch, run 12 tests; cross-validation: "
                    "--folds leave-subjects-out folds over --subjects, every subject tested once (writes JSON to --out)")
    tr.add_argument("--folds", type=int, default=5, help="folds for --protocol cross-validation (default 5)")
    tr.add_argument("--subjects", type=int, nargs="+", default=list(range(1, 16)), metavar="N",
                    help="subjects for --protocol within-subject or cross-validation (default: 1..15)")
    tr.add_argument("--data-dir", help="folder of SxxxRyy.edf files (default: $EDGEBCI_DATA or ../shared/eeg/eegmmidb)")
    tr.add_argument("--out", default="build/decoder.pt",
                    help="checkpoint to write (a folder for --protocol within-subject; default: build/decoder.pt)")
    tr.add_argument("--epochs", type=int, default=80)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--train-subjects", type=int, nargs="+", default=list(range(1, 11)), metavar="N")
    tr.add_argument("--val-subjects", type=int, nargs="+", default=[11, 12], metavar="N")
    tr.add_argument("--test-subjects", type=int, nargs="+", default=[13, 14, 15], metavar="N")
    tr.add_argument("--alignment", choices=["euclidean", "none"], default="euclidean",
                    help="euclidean (default): align every subject's EEG by its mean spatial covariance; unseen "
                    "subjects are calibrated on run 4 (labels unused) and scored on runs 8 and 12; none: raw input")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    c = sub.add_parser("compile", help="compile a checkpoint to plain C and firmware for a board",
                       description="Lower the decoder through TVM to C with no runtime, check it against the "
                       "board's memory budget, and build the firmware (ELF for a Cortex-M board, a process "
                       "for a Linux target) plus the host reference library.")
    c.add_argument("checkpoint", help=f"a zoo checkpoint (.pt), a torch.export program (.pt2) or an ONNX model "
                   f"(.onnx); the bundled checkpoint is {BUNDLED_CHECKPOINT}")
    c.add_argument("--target", default=DEFAULT_TARGET, help=f"board name or target .toml (default: {DEFAULT_TARGET}; "
                   f"see `edgebci targets`)")
    c.add_argument("--out", required=True, help="artifact folder to write")
    c.add_argument("--fs-hz", type=float, default=160.0, help=".pt2/.onnx only: sampling rate (default 160)")
    c.add_argument("--channels", nargs="+", help=".pt2/.onnx only: channel names in input order "
                   "(default: the 21-channel EEGMMIDB motor montage when the model takes 21)")
    c.add_argument("--band", type=float, nargs=2, default=[7.0, 30.0], metavar=("LO", "HI"),
                   help=".pt2/.onnx only: Bessel band-pass front end in Hz (default 7 30)")
    c.add_argument("--classes", nargs="+", help=".pt2/.onnx only: class names (default: left right)")
    c.add_argument("--calibrate", nargs="+", metavar="EDF",
                   help="the user's recording(s) to calibrate an aligned zoo decoder with (labels unused); needed "
                   "for the bundled decoders, which are trained on Euclidean-aligned EEG")
    c.add_argument("--recipe", metavar="NAME",
                   help="compile the integer-only (int8) form: a recipe from quantize/ (int8, int8-pow2, w4a8) or a "
                   ".toml; a float zoo checkpoint uses its bundled quantised twin, else PTQ on its training subjects. "
                   "A checkpoint from `edgebci quantize`, or a QCDQ .onnx, compiles to integers without it")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_compile)

    q = sub.add_parser("quantize", help="quantise a zoo decoder with Brevitas (QAT or PTQ) for integer-only devices",
                       description="Build the decoder's quantised twin (Brevitas, a quantiser at every int8 tensor), "
                       "calibrate its activation ranges on the checkpoint's training subjects (PTQ) and fine-tune it "
                       "(QAT, epoch chosen on its validation subjects), then write the quantised checkpoint and its "
                       "QCDQ ONNX export beside it. `edgebci compile` turns it into integer-only C.")
    q.add_argument("checkpoint", help="a float zoo checkpoint (.pt), e.g. edgebci/checkpoints/eegnet.pt")
    q.add_argument("--recipe", required=True, metavar="NAME",
                   help="int8 (float scales), int8-pow2 (every requantisation a shift), w4a8 (4-bit weights), or a "
                   "path to a recipe .toml (see quantize/)")
    q.add_argument("--method", choices=["qat", "ptq"], help="default: the recipe's (qat)")
    q.add_argument("--data-dir", help="folder of SxxxRyy.edf files (default: $EDGEBCI_DATA or ../shared/eeg/eegmmidb)")
    q.add_argument("--out", required=True, help="quantised checkpoint to write (.pt; the .onnx lands beside it)")
    q.add_argument("--evaluate", action="store_true",
                   help="also score the integer program on the held-out test subjects, beside the float decoder")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_quantize)

    cal = sub.add_parser("calibrate", help="fit an aligned decoder to its user from one recording (no labels)",
                         description="Compute the user's Euclidean alignment (the inverse square root of the mean "
                         "spatial covariance of the band-passed imagery windows) and write a checkpoint that "
                         "carries it; `edgebci compile` then puts it in front of the decoder.")
    cal.add_argument("checkpoint", help="an aligned zoo checkpoint (.pt), e.g. a bundled one")
    cal.add_argument("--data", nargs="+", required=True, metavar="EDF", help="the user's imagery recording(s)")
    cal.add_argument("--out", required=True, help="calibrated checkpoint to write")
    cal.set_defaults(func=_cmd_calibrate)

    z = sub.add_parser("zoo", help="the bundled decoders: parameters, MACs per window, held-out accuracy")
    z.add_argument("--json", action="store_true", help="print JSON instead of a table")
    z.set_defaults(func=_cmd_zoo)

    e = sub.add_parser("evaluate", help="balanced accuracy and confusion matrix of a checkpoint on recordings, "
                       "on the host (no device)")
    e.add_argument("checkpoint", help="a zoo checkpoint (.pt)")
    e.add_argument("--data", nargs="+", required=True, metavar="EDF",
                   help="EEGMMIDB .edf recordings (runs 4/8/12). An aligned decoder not yet calibrated for a user "
                   "aligns each subject from its run 4 (labels unused; the file must lie beside the others) and "
                   "scores the other runs; without those runs it uses the checkpoint's pooled alignment")
    e.add_argument("--out", help="write the report as JSON here")
    e.add_argument("--frontend", choices=["float", "compare"], default="float",
                   help="float: the training front end (default); compare: float32 vs the device's Q31 front end, "
                   "from rest (window mode) and continuous (stream mode), on the same windows")
    e.set_defaults(func=_cmd_evaluate)

    f = sub.add_parser("frontend", help="design and check the Bessel front end the device runs in fixed point")
    fsub = f.add_subparsers(dest="frontend_command", required=True, metavar="SUBCOMMAND")
    fd = fsub.add_parser("design", help="Bessel low/high/band-pass (+ notch) as Q31 biquads: gain error, group "
                         "delay, plots", description="Design a causal Bessel filter with scipy, quantise it to the "
                         "device's Q31 direct-form-I biquads, refuse it if the device cannot run it faithfully "
                         "(saying why), and write frontend.json and frontend.html (magnitude, phase, group delay).")
    fd.add_argument("--btype", default="bandpass", choices=["lowpass", "highpass", "bandpass"])
    fd.add_argument("--order", type=int, default=4, help="order per edge (default 4)")
    fd.add_argument("--cutoffs", type=float, nargs="+", default=[7.0, 30.0], metavar="HZ",
                    help="LO HI for a band-pass, one frequency otherwise (default 7 30)")
    fd.add_argument("--fs-hz", type=float, default=160.0, help="sampling rate (default 160)")
    fd.add_argument("--norm", default="mag", choices=["phase", "delay", "mag"],
                    help="scipy.signal.bessel norm (default mag: -3 dB at the cutoffs)")
    fd.add_argument("--notch", type=float, choices=[50.0, 60.0], help="add a mains notch at 50 or 60 Hz")
    fd.add_argument("--notch-q", type=float, default=30.0, help="notch quality (width = notch / Q; default 30)")
    fd.add_argument("--out", default="build/frontend", help="folder for frontend.json and frontend.html")
    fd.set_defaults(func=_cmd_frontend_design)

    h = sub.add_parser("hil", help="stream recorded EEG to the device and check it against the host reference",
                       description="Boot the compiled firmware (QEMU for an emulated board, a process for a "
                       "Linux target, or a physical board on --port), stream every cue window of the "
                       "recordings, and write report.json and report.html.")
    h.add_argument("compiled", help="folder written by `edgebci compile`")
    h.add_argument("--data", nargs="+", metavar="EDF", help="EEGMMIDB .edf recordings (default: the bundled sample)")
    h.add_argument("--port", help="a physical board's serial port or pyserial URL, e.g. /dev/ttyACM0")
    h.add_argument("--out", required=True, help="folder for report.json and report.html")
    h.add_argument("--max-windows", type=int, help="stream at most this many windows")
    h.add_argument("--stream", action="store_true",
                   help="stream whole recordings sample by sample: the device filters each sample and decides every "
                   "hop (from the compiled manifest); reports samples lost, filter bit-exactness, decisions per hop, "
                   "accuracy against the cues and the latency budget")
    h.add_argument("--pace", choices=["max", "realtime"], default="max",
                   help="--stream: as fast as the link allows (default) or at the recording's sampling rate")
    h.add_argument("--chunk-samples", type=int, help="--stream: samples per chunk (default: one hop)")
    h.add_argument("--filter-state", choices=["from-rest", "continuous"], default="from-rest",
                   help="--stream: decide on each window filtered from rest, as the decoders are trained (default), "
                   "or on the continuously filtered samples")
    h.add_argument("--quiet", action="store_true")
    h.set_defaults(func=_cmd_hil)

    d = sub.add_parser("demo", help=f"compile the bundled decoder for {DEFAULT_TARGET}, run HIL on the sample, report")
    d.add_argument("--out", default="build/demo", help="output folder (default: build/demo)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgebciError as e:
        print(f"edgebci {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
