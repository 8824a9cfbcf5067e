"""Architecture names -> model classes. Later families register here."""
from __future__ import annotations

from edgebci.errors import ConfigError
from edgebci.zoo.conformer import Conformer
from edgebci.zoo.eegnet import EEGNet
from edgebci.zoo.spiking import SpikingLIF
from edgebci.zoo.ssm import S4D, Mamba

ARCHITECTURES = {"conformer": Conformer, "eegnet": EEGNet, "s4d": S4D, "mamba": Mamba, "spiking": SpikingLIF}


def build_model(arch: str, config: dict):
    """Instantiate `arch` from its config dict (as stored in a checkpoint)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    fields = cls.config_class.__dataclass_fields__
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ConfigError(f"{arch} config has unknown keys {unknown}; allowed: {sorted(fields)}")
    return cls(cls.config_class(**config))
