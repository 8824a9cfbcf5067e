"""Self-describing decoder checkpoints, loadable with `torch.load(weights_only=True)`.

A checkpoint holds everything the device needs besides the weights: architecture and config,
channels, fs_hz, window/offset/hop in samples, class names and the front-end design.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgebci.errors import ConfigError, missing_extra
from edgebci.frontend import FrontEnd

SCHEMA = 1
ALIGNMENTS = ("none", "euclidean")


@dataclass(frozen=True)
class Checkpoint:
    arch: str
    config: dict
    channels: tuple[str, ...]
    fs_hz: float
    window_samples: int
    offset_samples: int          # window start after the cue, in samples
    hop_samples: int             # decision period for streaming, in samples
    classes: tuple[str, ...]
    frontend: FrontEnd
    state_dict: dict = field(repr=False)
    summary: dict = field(default_factory=dict, repr=False)   # training report: protocol, accuracy
    alignment: str = "none"      # "euclidean": the decoder expects its user's aligned input (edgebci.zoo.align)
    # (C, C) float32: the training subjects' pooled alignment, replaced by the user's when calibrated
    align_matrix: object = field(default=None, repr=False)
    # a quantised decoder (edgebci.quantize): recipe, the Brevitas twin's state, input ranges; None for float
    quantization: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.window_samples <= 0 or self.hop_samples <= 0:
            raise ConfigError(f"window_samples and hop_samples must be > 0, got "
                              f"{self.window_samples}, {self.hop_samples}")
        if abs(self.frontend.fs_hz - self.fs_hz) > 1e-9:
            raise ConfigError(f"front end designed for {self.frontend.fs_hz} Hz but the decoder runs at "
                              f"{self.fs_hz} Hz; redesign the front end at fs_hz={self.fs_hz}")
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")
        if self.align_matrix is not None:
            m = np.asarray(self.align_matrix)
            if self.alignment != "euclidean" or m.shape != (len(self.channels),) * 2:
                raise ConfigError(f"an alignment matrix needs alignment='euclidean' and shape "
                                  f"{(len(self.channels),) * 2}; got {self.alignment!r}, {m.shape}")
        if self.config.get("n_channels") != len(self.channels):
            raise ConfigError(f"config.n_channels={self.config.get('n_channels')} but "
                              f"{len(self.channels)} channels are listed")

    def build_model(self):
        """The torch module in eval mode with the checkpoint's weights."""
        from edgebci.zoo.registry import build_model
        model = build_model(self.arch, self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()

    @property
    def quantized(self) -> bool:
        return bool(self.quantization)

    @property
    def calibrated(self) -> bool:
        """Ready to deploy: no alignment needed, or an alignment matrix is set."""
        return self.alignment == "none" or self.align_matrix is not None

    @property
    def alignment_source(self) -> str:
        """"none", "population" (the training subjects' pooled alignment) or "user" (calibrated)."""
        if self.alignment == "none":
            return "none"
        return "user" if "calibration" in self.summary else "population"

    def deploy_model(self):
        """The module a device runs: the decoder, preceded by the user's alignment when it has one."""
        from edgebci.zoo.align import Aligned
        model = self.build_model()
        if self.alignment == "none":
            return model
        if self.align_matrix is None:
            raise ConfigError(f"this {self.arch} decoder was trained on Euclidean-aligned EEG and must be calibrated "
                              f"for its user first: `edgebci compile CHECKPOINT --calibrate USER_RUN.edf ...` or "
                              f"`edgebci calibrate CHECKPOINT --data USER_RUN.edf --out USER.pt` (one imagery run of "
                              f"that user; labels are not used)")
        return Aligned(model, np.asarray(self.align_matrix, np.float32)).eval()

    def content_hash(self) -> str:
        h = hashlib.sha256(repr((self.arch, sorted(self.config.items()), self.channels, self.fs_hz,
                                 self.window_samples, self.frontend.sos)).encode())
        if self.align_matrix is not None:
            h.update(np.asarray(self.align_matrix, np.float32).tobytes())
        if self.quantization:
            q = self.quantization
            h.update(repr((sorted(q["recipe"].items()), q["raw_input_threshold"])).encode())
            for k in sorted(q["twin_state"]):
                h.update(k.encode())
                h.update(q["twin_state"][k].detach().cpu().numpy().tobytes())
        for k in sorted(self.state_dict):
            h.update(k.encode())
            h.update(self.state_dict[k].detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]


def _torch():
    try:
        import torch
    except ImportError:
        raise missing_extra("torch", "train") from None
    return torch


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    torch = _torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"schema": SCHEMA, "arch": ckpt.arch, "config": dict(ckpt.config),
                "channels": list(ckpt.channels), "fs_hz": ckpt.fs_hz, "window_samples": ckpt.window_samples,
                "offset_samples": ckpt.offset_samples, "hop_samples": ckpt.hop_samples,
                "classes": list(ckpt.classes), "frontend": ckpt.frontend.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
                "summary": ckpt.summary, "alignment": ckpt.alignment,
                "align_matrix": None if ckpt.align_matrix is None else torch.from_numpy(
                    np.asarray(ckpt.align_matrix, np.float32)), "quantization": ckpt.quantization}, path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    torch = _torch()
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist; train one with `edgebci train` "
                          f"or use the bundled one (edgebci/checkpoints/*.pt)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path} is not an edgebci checkpoint: {e}") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ConfigError(f"{path}: unsupported checkpoint schema {raw.get('schema') if isinstance(raw, dict) else None}, "
                          f"expected {SCHEMA}")
    return Checkpoint(raw["arch"], raw["config"], tuple(raw["channels"]), float(raw["fs_hz"]),
                      int(raw["window_samples"]), int(raw["offset_samples"]), int(raw["hop_samples"]),
                      tuple(raw["classes"]), FrontEnd.from_dict(raw["frontend"]), raw["state_dict"],
                      raw.get("summary", {}), raw.get("alignment", "none"),
                      None if raw.get("align_matrix") is None else raw["align_matrix"].numpy(),
                      raw.get("quantization"))
