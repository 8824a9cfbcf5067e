"""What `edgebci compile` accepts: a zoo checkpoint (.pt), a torch.export program (.pt2) or an ONNX file.

Each becomes a Relax module plus a `DecoderSpec`: what the device needs besides the graph (channels,
rate, window, front end, classes). A zoo checkpoint carries all of it; a .pt2 or .onnx file carries
only the graph, so the rest comes from the command line (defaults: the EEGMMIDB montage and front end).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgebci.artifacts import sha256_file
from edgebci.data import CLASSES, MOTOR_MONTAGE
from edgebci.errors import ConfigError, missing_extra
from edgebci.frontend import FrontEnd, design_bessel
from edgebci.zoo.checkpoint import Checkpoint

SUFFIXES = (".pt", ".pt2", ".onnx")


@dataclass(frozen=True)
class DecoderSpec:
    arch: str
    channels: tuple[str, ...]
    fs_hz: float
    window_samples: int
    offset_samples: int
    hop_samples: int
    classes: tuple[str, ...]
    frontend: FrontEnd
    model_id: str                 # 16 hex digits, echoed by the device so the host knows what it runs
    # an integer-only decoder: its program (edgebci.quantize.program.QProgram), the QCDQ ONNX it was read
    # from, and how it was quantised ({"recipe": ..., "method": ...}); None for a float decoder
    program: object = field(default=None, compare=False, repr=False)
    qcdq_onnx: bytes | dict | None = field(default=None, compare=False, repr=False)
    quantization: dict | None = field(default=None, compare=False, repr=False)

    @property
    def integer(self) -> bool:
        return self.program is not None

    def __post_init__(self):
        if self.window_samples <= 0 or not self.channels or len(self.classes) < 2:
            raise ConfigError(f"decoder spec needs a window > 0, channels and >= 2 classes; got window "
                              f"{self.window_samples}, {len(self.channels)} channels, classes {self.classes}")

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> "DecoderSpec":
        return cls(ckpt.arch, ckpt.channels, ckpt.fs_hz, ckpt.window_samples, ckpt.offset_samples,
                   ckpt.hop_samples, ckpt.classes, ckpt.frontend, ckpt.content_hash())


@dataclass(frozen=True)
class GraphOptions:
    """Metadata for graph-only inputs (.pt2, .onnx); ignored for zoo checkpoints."""
    fs_hz: float = 160.0
    channels: tuple[str, ...] | None = None
    band_hz: tuple[float, float] = (7.0, 30.0)
    filter_order: int = 4
    offset_s: float = 0.5
    hop_s: float = 0.5
    classes: tuple[str, ...] = CLASSES


def checkpoint_module(ckpt: Checkpoint):
    """The torch module to export: the family's inference form when it has one, after the user's alignment."""
    model = ckpt.deploy_model()
    return model.for_export() if hasattr(model, "for_export") else model


def _graph_spec(path: Path, shape: tuple[int, ...], n_out: int, opts: GraphOptions, arch: str) -> DecoderSpec:
    if len(shape) != 3 or shape[0] != 1:
        raise ConfigError(f"{path.name}: the decoder input must have shape (1, n_channels, n_samples), got {shape}")
    n_ch, n_samp = shape[1], shape[2]
    channels = opts.channels or (MOTOR_MONTAGE if n_ch == len(MOTOR_MONTAGE) else None)
    if channels is None or len(channels) != n_ch:
        raise ConfigError(f"{path.name} takes {n_ch} channels; name them with --channels (got "
                          f"{len(channels) if channels else 'none'}), in the order the model expects")
    if n_out != len(opts.classes):
        raise ConfigError(f"{path.name} outputs {n_out} scores but {len(opts.classes)} classes are named "
                          f"{opts.classes}; pass --classes with {n_out} names")
    frontend = design_bessel(opts.filter_order, opts.band_hz, opts.fs_hz, "bandpass", "mag")
    return DecoderSpec(arch, tuple(channels), opts.fs_hz, n_samp, int(round(opts.offset_s * opts.fs_hz)),
                       int(round(opts.hop_s * opts.fs_hz)), tuple(opts.classes), frontend, sha256_file(path)[:16])


def _load_pt2(path: Path, opts: GraphOptions):
    import torch

    from edgebci.compile.importer import import_exported_program
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise ConfigError(f"{path} is not a torch.export program (.pt2): {e}") from None
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1:
        raise ConfigError(f"{path.name} takes {len(inputs)} inputs; a decoder takes one window tensor")
    mod = import_exported_program(program)
    out_shape = [int(d) for d in mod["main"].ret_struct_info.shape.values] if hasattr(mod["main"], "ret_struct_info") \
        else [int(d) for d in mod["main"].body.body.ty.shape.values]
    spec = _graph_spec(path, tuple(int(d) for d in inputs[0].meta["val"].shape), out_shape[-1], opts, "torch.export")
    return mod, spec


def _load_onnx(path: Path, opts: GraphOptions):
    try:
        import onnx
        from tvm.relax.frontend.onnx import from_onnx
    except ImportError:
        raise missing_extra("onnx", "test") from None
    from edgebci.errors import UnsupportedOpError
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ConfigError(f"{path} is not an ONNX model: {e}") from None
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1:
        raise ConfigError(f"{path.name} takes {len(graph_inputs)} inputs; a decoder takes one window tensor")
    dims = tuple(d.dim_value or 1 for d in graph_inputs[0].type.tensor_type.shape.dim)
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):     # QCDQ: the integer-only path
        from dataclasses import replace

        from edgebci.quantize.deploy import program_from_onnx
        spec = _graph_spec(path, dims, out_dims[-1], opts, "onnx-qcdq")
        onnx_bytes = path.read_bytes()
        program = program_from_onnx(onnx_bytes, spec.frontend)
        return _integer_module(program), replace(spec, program=program, qcdq_onnx=onnx_bytes,
                                                 quantization={"recipe": "from the ONNX file", "method": "unknown"})
    try:
        mod = from_onnx(model, shape_dict={graph_inputs[0].name: dims}, keep_params_in_input=False)
    except Exception as e:
        raise UnsupportedOpError(f"TVM could not import {path.name}: {str(e).splitlines()[0]}") from None
    return mod, _graph_spec(path, dims, out_dims[-1], opts, "onnx")


def load_decoder(path: str | Path, opts: GraphOptions = GraphOptions()):
    """Read a decoder file. Returns (relax module, DecoderSpec)."""
    from edgebci.zoo import load_checkpoint
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"cannot compile {path.name}: expected a zoo checkpoint (.pt), a torch.export program "
                          f"(.pt2) or an ONNX model (.onnx)")
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if path.suffix == ".pt2":
        return _load_pt2(path, opts)
    if path.suffix == ".onnx":
        return _load_onnx(path, opts)
    return import_checkpoint(load_checkpoint(path))


def import_checkpoint(ckpt: Checkpoint):
    """A zoo checkpoint as (relax module, DecoderSpec): its export form traced at the window's shape.

    A recurrent family (`for_device`, see edgebci.zoo.stepped) becomes one module of three Relax functions,
    `main` (window -> sequence), `step` and `readout`, whose time loop the generated driver runs.
    """
    import torch

    from edgebci.compile.importer import import_torch_module
    if ckpt.quantized:
        from dataclasses import replace

        from edgebci.quantize.deploy import deploy_program
        program, onnx_bytes = deploy_program(ckpt)
        q = ckpt.quantization
        return _integer_module(program), replace(DecoderSpec.from_checkpoint(ckpt), program=program,
                                                 qcdq_onnx=onnx_bytes,
                                                 quantization={"recipe": q["recipe"]["name"], "method": q["method"],
                                                               "input_range_source": q["input_range_source"]})
    window = torch.zeros(1, len(ckpt.channels), ckpt.window_samples)
    if hasattr(ckpt.build_model(), "for_device"):
        return import_stepped(ckpt.deploy_model().for_device(), window), DecoderSpec.from_checkpoint(ckpt)
    mod = import_torch_module(checkpoint_module(ckpt), window)
    return mod, DecoderSpec.from_checkpoint(ckpt)


def _integer_module(program):
    from edgebci.compile.integer import emit_relax
    return emit_relax(program)


def import_stepped(export, window):
    """export : edgebci.zoo.stepped.SteppedExport -> one Relax module with `main`, `step` and `readout`."""
    import torch
    import tvm

    from edgebci.compile.importer import import_torch_module
    examples = {"main": (export.encode, (window,)),
                "step": (export.cell, (torch.zeros(1, export.seq_width), *(torch.zeros(s) for s in export.state_shapes))),
                "readout": (export.readout, (torch.zeros(1, export.out_width),))}
    funcs = {}
    for name, (module, args) in examples.items():
        imported = import_torch_module(module, *args)
        funcs[tvm.ir.GlobalVar(name)] = imported["main"].with_attr("global_symbol", name)
    return tvm.IRModule(funcs)
