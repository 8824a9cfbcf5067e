"""Quantise stage: a trained float decoder -> a quantised checkpoint whose integer program a device runs.

    qckpt = quantize_checkpoint(load_checkpoint(path), Recipe.from_name("int8"), "qat", data_dir)   # fit.py
    program, onnx = deploy_program(qckpt)            # the user's alignment folded, QCDQ ONNX -> integers
    logits = run_reference(program, fixed_windows(qckpt.frontend, x_int16))   # what the device computes

recipe.py    quantize/<name>.toml -> Recipe (bit widths, float or power-of-two scales, calibration, QAT)
twins*.py    each family's inference form as Brevitas layers, a quantiser at every int8 tensor
fit.py       PTQ (calibration) and QAT on the checkpoint's training subjects; held-out evaluation
deploy.py    twin -> QCDQ ONNX (Brevitas) -> integer program, for one user
qcdq.py      QCDQ ONNX read as integer ops; float islands refused by name
program.py   the integer program (QProgram, SteppedProgram) and its numpy reference
arith.py     the arithmetic both sides share: multipliers, requantisation, tables

Brevitas and onnx are imported where first used (pip install 'edgebci[quantize]').
"""
