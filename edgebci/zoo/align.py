"""Euclidean alignment: per-user spatial whitening, the cross-subject normalisation of the bundled decoders.

He & Wu (2019), "Transfer learning for brain-computer interfaces: a Euclidean space data alignment
approach", IEEE TBME 67(2). Each person's EEG, after the band-pass, is multiplied by R^-1/2, where R is
that person's mean spatial covariance over imagery windows: every person's aligned data then has the same
(identity) mean covariance, which removes much of what differs between heads (electrode impedance,
skull conductivity, source orientation). Training aligns every training subject with their own R; a new
user is calibrated once, without labels, from one recording with cues (`calibrate_checkpoint`), and the
resulting 21 x 21 matrix becomes the first layer of the compiled decoder (`Aligned`).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from edgebci.errors import DataError

# Aligned data is scaled to this RMS per channel, so models see microvolt-sized input as without alignment.
ALIGN_RMS_UV = 20.0
MIN_CALIBRATION_WINDOWS = 10
MAX_CONDITION = 1e6       # larger: a flat or duplicated channel, and R^-1/2 would amplify noise


def alignment_matrix(filtered: np.ndarray, channels: tuple[str, ...] | None = None) -> np.ndarray:
    """filtered : ndarray, shape (n_windows, n_channels, n_samples), band-passed uV -> (C, C) float32
    ALIGN_RMS_UV * R^-1/2 with R the mean spatial covariance of the windows."""
    x = np.asarray(filtered, np.float64)
    if x.ndim != 3 or len(x) < MIN_CALIBRATION_WINDOWS:
        raise DataError(f"alignment needs at least {MIN_CALIBRATION_WINDOWS} windows of shape (channels, samples), "
                        f"got {x.shape}: calibrate on a whole imagery run (15 cues or more)")
    r = np.einsum("nct,ndt->cd", x, x) / (x.shape[0] * x.shape[2])
    w, v = np.linalg.eigh(r)
    if w[0] <= 0 or w[-1] / w[0] > MAX_CONDITION:
        power = np.diag(r)
        weakest = int(np.argmin(power))
        name = channels[weakest] if channels else f"#{weakest}"
        raise DataError(f"the calibration recording's spatial covariance is singular or ill-conditioned "
                        f"(condition {w[-1] / max(w[0], 1e-300):.3g}, allowed <= {MAX_CONDITION:.0e}); channel "
                        f"{name} has power {power[weakest]:.3g} uV^2: check for flat, bridged or duplicated channels")
    return (ALIGN_RMS_UV * (v / np.sqrt(w)) @ v.T).astype(np.float32)


def align_windows(filtered: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(n, C, T) float32 -> matrix @ each window, float32."""
    return np.einsum("cd,ndt->nct", matrix, filtered, optimize=True).astype(np.float32)


class Aligned(nn.Module):
    """A decoder preceded by its user's alignment: x (batch, C, T) filtered uV -> model(matrix @ x).

    For the device, every zoo family folds the matrix into its first spatial weights (`fold_alignment`),
    so the alignment costs nothing at run time; a model without that method keeps it as a matrix product.
    """

    def __init__(self, model: nn.Module, matrix: np.ndarray):
        super().__init__()
        self.model = model
        self.register_buffer("matrix", torch.as_tensor(np.asarray(matrix, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.matmul(self.matrix, x))

    def _folded(self) -> nn.Module | None:
        fold = getattr(self.model, "fold_alignment", None)
        return fold(self.matrix) if fold is not None else None

    def for_export(self) -> nn.Module:
        folded = self._folded()
        if folded is not None:
            return folded.for_export() if hasattr(folded, "for_export") else folded
        inner = self.model.for_export() if hasattr(self.model, "for_export") else self.model
        return Aligned(inner, self.matrix.numpy()).eval()

    def for_device(self):
        """For a stepped family (the wrapped model has `for_device`): the alignment runs first in `encode`."""
        folded = self._folded()
        if folded is not None:
            return folded.for_device()
        export = self.model.for_device()
        return replace(export, encode=Aligned(export.encode, self.matrix.numpy()).eval())
