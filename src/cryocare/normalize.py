"""Intensity normalisation: the statistics a network's inputs are scaled with.

A network is trained on intensities scaled to zero mean and unit variance,
``(x - mean) / std``, and its outputs are scaled back. The statistics are
those of the training data (:class:`Normalization`, saved with the model),
or, for a model that carries none (a pretrained general model), those of
each image it restores. Pure NumPy: used by pair sampling, prediction and
the model alike.

Examples
--------
>>> import numpy as np
>>> norm = compute_normalization([np.zeros((2, 4, 4)), np.full((2, 4, 4), 2.0)])
>>> norm
Normalization(mean=1.0, std=1.0)
>>> norm.normalize(np.array([3.0])).tolist(), norm.denormalize(np.array([2.0])).tolist()
([2.0], [3.0])
>>> Normalization.from_dict(norm.to_dict()) == norm
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["Normalization", "compute_normalization"]


@dataclass(frozen=True)
class Normalization:
    """Affine intensity normalisation ``(x - mean) / std`` and its inverse."""

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mean) and np.isfinite(self.std) and self.std > 0):
            raise InputError(
                f"normalisation: expected a finite mean and a positive std, "
                f"got mean={self.mean}, std={self.std}"
            )

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - np.float32(self.mean))
                / np.float32(self.std))

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32) * np.float32(self.std) + np.float32(self.mean)

    def to_dict(self) -> dict[str, float]:
        return {"mean": float(self.mean), "std": float(self.std)}

    @classmethod
    def from_dict(cls, values: Any) -> Normalization:
        try:
            return cls(mean=float(values["mean"]), std=float(values["std"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"normalisation: expected keys 'mean' and 'std' with numbers, got {values!r}"
            ) from None


def compute_normalization(volumes: Sequence[np.ndarray], *, chunk: int = 8) -> Normalization:
    """Mean and standard deviation over all voxels of all ``volumes``.

    Accumulated in float64 over slabs of ``chunk`` slices (rows for 2-D
    images), so memory-mapped volumes are never loaded whole.

    Examples
    --------
    >>> import numpy as np
    >>> compute_normalization([np.zeros((2, 4, 4)), np.full((2, 4, 4), 2.0)])
    Normalization(mean=1.0, std=1.0)
    """
    total = 0
    s1 = 0.0
    s2 = 0.0
    for volume in volumes:
        for start in range(0, volume.shape[0], chunk):
            block = np.asarray(volume[start:start + chunk], dtype=np.float64)
            total += block.size
            s1 += float(block.sum())
            s2 += float(np.square(block).sum())
    if total == 0:
        raise InputError("normalisation: expected at least one non-empty volume")
    mean = s1 / total
    std = float(np.sqrt(max(s2 / total - mean * mean, 0.0)))
    if std == 0:
        raise InputError("normalisation: the volumes are constant (standard deviation 0)")
    return Normalization(mean=mean, std=std)
