"""Import a decoder into TVM Relax: torch module -> torch.export -> Relax IRModule.

Operators TVM cannot import fail here, named, before anything reaches a C compiler.
"""
from __future__ import annotations

import re
import warnings

from edgebci.errors import UnsupportedOpError, missing_extra


def _tvm():
    try:
        import tvm  # noqa: F401  (2-3 s import: keep it out of `import edgebci`)
        from tvm.relax.frontend.torch import from_exported_program
    except ImportError:
        raise missing_extra("tvm", "compile") from None
    return from_exported_program


def import_torch_module(model, *example_inputs):
    """model : torch.nn.Module in eval mode; example_inputs : its inputs, e.g. one (1, n_channels, n_samples)."""
    import torch
    from_exported_program = _tvm()
    try:
        with warnings.catch_warnings():   # torch 2.13's own pytree deprecation, once per export
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
            program = torch.export.export(model, tuple(example_inputs))
    except Exception as e:
        raise UnsupportedOpError(f"torch.export could not trace the decoder: {str(e).splitlines()[0]}; "
                                 f"decoders must be traceable without data-dependent control flow") from None
    return import_exported_program(program, from_exported_program)


def import_exported_program(program, from_exported_program=None):
    from_exported_program = from_exported_program or _tvm()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
            return from_exported_program(program, unwrap_unit_return_tuple=True)
    except AssertionError as e:
        ops = re.findall(r"'([^']+)'", str(e))
        if "Unsupported function types" in str(e) and ops:
            raise UnsupportedOpError(
                f"the decoder uses operator(s) {', '.join(sorted(ops))} that TVM {_version()} cannot import; "
                f"replace them (e.g. materialise an FFT convolution as a direct convolution)") from None
        raise
    except (NotImplementedError, ValueError, KeyError) as e:
        raise UnsupportedOpError(f"TVM {_version()} failed to import the decoder: {e}") from None


def _version() -> str:
    import tvm
    return tvm.__version__
