"""Quantisation recipes: `quantize/<name>.toml` read into a frozen `Recipe`, and the Brevitas quantisers it names.

    recipe = Recipe.from_name("int8")            # or a path to a .toml of your own
    conv = QuantConv1d(..., **recipe.weight_kwargs())
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from edgebci.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent.parent.parent / "quantize"
METHODS = ("ptq", "qat")
SCALES = ("float", "pow2")
GRANULARITIES = ("per-channel", "per-tensor")
WEIGHT_BITS = (2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    method: str                    # the default of `edgebci quantize`
    weight_bits: int
    weight_granularity: str
    weight_scale: str              # "float" (multiplier + shift) or "pow2" (shift only)
    act_bits: int
    act_scale: str
    calibration_windows: int = 512
    input_percentile: float = 99.99
    qat_epochs: int = 10
    qat_lr: float = 1e-4
    # the first (spatial) layer takes the user's alignment folded into its weights at deployment and is
    # quantised again from those: below 8 bits that re-rounding undoes what QAT learned for it
    first_layer_bits: int = 8
    source: Path | None = None

    def __post_init__(self):
        where = f"recipe {self.name!r}" + (f" ({self.source})" if self.source else "")
        if self.method not in METHODS:
            raise ConfigError(f"{where}: method must be one of {METHODS}, got {self.method!r}")
        for key, bits in (("weights.bits", self.weight_bits), ("weights.first_layer_bits", self.first_layer_bits)):
            if bits not in WEIGHT_BITS:
                raise ConfigError(f"{where}: {key} must be one of {WEIGHT_BITS}, got {bits}")
        if self.act_bits != 8:
            raise ConfigError(f"{where}: activations.bits must be 8 (int8 activations; QCDQ export and the "
                              f"integer kernels carry 8-bit activations), got {self.act_bits}")
        for key, value in (("weights.scale", self.weight_scale), ("activations.scale", self.act_scale)):
            if value not in SCALES:
                raise ConfigError(f"{where}: {key} must be one of {SCALES}, got {value!r}")
        if self.weight_granularity not in GRANULARITIES:
            raise ConfigError(f"{where}: weights.granularity must be one of {GRANULARITIES}, "
                              f"got {self.weight_granularity!r}")
        if self.calibration_windows <= 0 or self.qat_epochs < 0 or self.qat_lr <= 0:
            raise ConfigError(f"{where}: calibration.windows and qat.lr must be > 0 and qat.epochs >= 0, got "
                              f"{self.calibration_windows}, {self.qat_lr}, {self.qat_epochs}")
        if not 50.0 < self.input_percentile <= 100.0:
            raise ConfigError(f"{where}: calibration.input_percentile must be in (50, 100], got {self.input_percentile}")

    @property
    def pow2(self) -> bool:
        return self.weight_scale == "pow2" and self.act_scale == "pow2"

    @classmethod
    def from_name(cls, name: str | Path) -> "Recipe":
        """A bundled recipe by name (quantize/<name>.toml) or any .toml path."""
        path = Path(name)
        if path.suffix != ".toml":
            path = RECIPES_DIR / f"{name}.toml"
        if not path.exists():
            raise ConfigError(f"unknown quantisation recipe {str(name)!r}; known: {', '.join(known_recipes())} "
                              f"(or pass a path to a .toml recipe)")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        w, a = raw.get("weights", {}), raw.get("activations", {})
        cal, qat = raw.get("calibration", {}), raw.get("qat", {})
        try:
            return cls(raw["name"], raw.get("description", ""), raw.get("method", "qat"), int(w["bits"]),
                       w.get("granularity", "per-channel"), w.get("scale", "float"), int(a["bits"]),
                       a.get("scale", "float"), int(cal.get("windows", 512)), float(cal.get("input_percentile", 99.99)),
                       int(qat.get("epochs", 10)), float(qat.get("lr", 1e-4)),
                       int(w.get("first_layer_bits", 8)), path)
        except KeyError as e:
            raise ConfigError(f"{path}: missing key {e}; a recipe needs name, [weights] bits and [activations] "
                              f"bits (see quantize/int8.toml)") from None

    def to_dict(self) -> dict:
        return {"name": self.name, "method": self.method, "weight_bits": self.weight_bits,
                "weight_granularity": self.weight_granularity, "weight_scale": self.weight_scale,
                "act_bits": self.act_bits, "act_scale": self.act_scale,
                "calibration_windows": self.calibration_windows, "input_percentile": self.input_percentile,
                "qat_epochs": self.qat_epochs, "qat_lr": self.qat_lr, "first_layer_bits": self.first_layer_bits}

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        return cls(d["name"], "", d["method"], d["weight_bits"], d["weight_granularity"], d["weight_scale"],
                   d["act_bits"], d["act_scale"], d["calibration_windows"], d["input_percentile"], d["qat_epochs"],
                   d["qat_lr"], d.get("first_layer_bits", 8))

    # ------------------------------------------------------------------ Brevitas quantisers
    def weight_kwargs(self, first: bool = False) -> dict:
        """Keyword arguments for a Brevitas QuantConv1d / QuantLinear's weights (first: the spatial layer)."""
        q = _brevitas()
        if self.weight_scale == "pow2":
            quant = q.Int8WeightPerChannelFixedPoint if self.weight_granularity == "per-channel" \
                else q.Int8WeightPerTensorFixedPoint
        else:
            quant = q.Int8WeightPerChannelFloat if self.weight_granularity == "per-channel" \
                else q.Int8WeightPerTensorFloat
        return {"weight_quant": quant, "weight_bit_width": self.first_layer_bits if first else self.weight_bits}

    def act_quant(self):
        """The Brevitas activation quantiser (signed, per tensor, learned scale)."""
        q = _brevitas()
        return q.Int8ActPerTensorFixedPoint if self.act_scale == "pow2" else q.Int8ActPerTensorFloat

    def const_act_kwargs(self, threshold: float) -> dict:
        """A fixed-range activation quantiser: [-threshold, threshold) in 2^bits steps (pow2: rounded up)."""
        return {"act_quant": self.act_quant(), "scaling_impl_type": "const", "scaling_init": float(threshold)}


def known_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


class _Quantisers:
    def __init__(self):
        import brevitas.quant as bq
        from brevitas.quant import fixed_point as fp
        self.Int8WeightPerChannelFloat = bq.Int8WeightPerChannelFloat
        self.Int8WeightPerTensorFloat = bq.Int8WeightPerTensorFloat
        self.Int8WeightPerChannelFixedPoint = fp.Int8WeightPerChannelFixedPoint
        self.Int8WeightPerTensorFixedPoint = fp.Int8WeightPerTensorFixedPoint
        self.Int8ActPerTensorFloat = bq.Int8ActPerTensorFloat
        self.Int8ActPerTensorFixedPoint = fp.Int8ActPerTensorFixedPoint
        self.Int32Bias = bq.Int32Bias


_CACHE: list = []


def _brevitas() -> _Quantisers:
    if not _CACHE:
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _CACHE.append(_Quantisers())
        except ImportError:
            from edgebci.errors import missing_extra
            raise missing_extra("brevitas", "quantize") from None
    return _CACHE[0]


def int32_bias():
    return _brevitas().Int32Bias
