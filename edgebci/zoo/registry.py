"""Architecture names -> model classes. Later families register here."""
from __future__ import annotations

from edgebci.errors import ConfigError
from edgebci.zoo.conformer import Conformer
from edgebci.zoo.convattn import ConvAttn
from edgebci.zoo.eegnet import EEGNet

ARCHITECTURES = {"convattn": ConvAttn, "conformer": Conformer, "eegnet": EEGNet}


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
