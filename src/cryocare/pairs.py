"""Noise2Noise training pairs from even/odd tomograms.

Sub-volume pairs are cut at the same place from the even and the odd
tomogram of each dataset. Training and validation patches come from
disjoint slabs along the tilt axis: the last ``val_fraction`` of the tilt
axis is kept for validation, and no training patch reaches into it.
Normalisation statistics (mean and standard deviation) are computed over
*all* tomograms and both halves, not the first tomogram only.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> even, odd = rng.normal(size=(2, 32, 64, 48)).astype(np.float32)
>>> pairs = sample_pairs([even], [odd], patch_shape=16, n_patches=20, seed=1)
>>> pairs.x_train.shape, pairs.x_val.shape
((18, 16, 16, 16), (2, 16, 16, 16))
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, OutputExistsError

__all__ = ["Normalization", "PairSet", "compute_normalization", "sample_pairs"]

log = logging.getLogger(__name__)

_AXES = {"Z": 0, "Y": 1, "X": 2}


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
    def from_dict(cls, values: dict) -> Normalization:
        try:
            return cls(mean=float(values["mean"]), std=float(values["std"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"normalisation: expected keys 'mean' and 'std' with numbers, got {values!r}"
            ) from None


def compute_normalization(volumes: Sequence[np.ndarray], *, chunk: int = 8) -> Normalization:
    """Mean and standard deviation over all voxels of all ``volumes``.

    Accumulated in float64 over slabs of ``chunk`` slices, so memory-mapped
    volumes are never loaded whole.
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


@dataclass(frozen=True)
class PairSet:
    """Normalised patch pairs: ``x`` from the even, ``y`` from the odd half.

    Arrays have shape ``(n, *patch_shape)`` and dtype float32.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    normalization: Normalization
    patch_shape: tuple[int, ...]
    tilt_axis: str

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the pair set to one ``.npz`` file (atomically)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"{path}: pair sets are saved as .npz files")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: exists already (pass overwrite=True to replace it)")
        meta = {"normalization": self.normalization.to_dict(),
                "patch_shape": list(self.patch_shape), "tilt_axis": self.tilt_axis}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, x_train=self.x_train, y_train=self.y_train, x_val=self.x_val,
                     y_val=self.y_val, meta=np.array(json.dumps(meta)))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PairSet:
        """Read a pair set written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such pair-set file")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in ("x_train", "y_train", "x_val", "y_val")}
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{path}: not a cryocare pair-set file ({error})") from None
        return cls(**arrays, normalization=Normalization.from_dict(meta["normalization"]),
                   patch_shape=tuple(meta["patch_shape"]), tilt_axis=meta["tilt_axis"])


def _patch_shape(patch_shape: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    if isinstance(patch_shape, int | np.integer):
        return (int(patch_shape),) * ndim
    shape = tuple(int(p) for p in patch_shape)
    if len(shape) != ndim:
        raise InputError(f"patch_shape: expected {ndim} sizes, got {shape}")
    return shape


def _random_corners(rng, low, high, count):
    """``count`` random corners with ``low[i] <= corner[i] <= high[i]``."""
    return np.stack([rng.integers(lo, hi + 1, size=count) for lo, hi in zip(low, high,
                                                                            strict=True)], axis=1)


def sample_pairs(
    evens: Sequence[np.ndarray],
    odds: Sequence[np.ndarray],
    *,
    patch_shape: int | Sequence[int] = 32,
    n_patches: int = 1200,
    val_fraction: float = 0.1,
    tilt_axis: str = "Y",
    normalization: Normalization | None = None,
    seed: int = 0,
) -> PairSet:
    """Sample normalised patch pairs from even/odd tomograms.

    Parameters
    ----------
    evens, odds : sequence of ndarray
        Even and odd tomograms (Z, Y, X), matched by position; memory maps
        are fine (only the sampled patches are read).
    patch_shape : int or sequence of int
        Patch size, one number for a cube.
    n_patches : int
        Total number of patch pairs over all tomograms, split between
        tomograms in proportion to their size.
    val_fraction : float
        Fraction of the tilt axis held out for validation (0 < f < 1).
    tilt_axis : {"Y", "X"}
        Axis along which training and validation slabs are separated.
    normalization : Normalization, optional
        Defaults to the statistics of all tomograms, both halves.
    seed : int
        Seed of the patch positions.

    Returns
    -------
    PairSet
    """
    if len(evens) != len(odds) or not evens:
        raise InputError(
            f"pairs: expected as many even as odd tomograms (at least one), "
            f"got {len(evens)} even and {len(odds)} odd"
        )
    if tilt_axis not in ("Y", "X"):
        raise InputError(f"pairs: tilt_axis must be 'Y' or 'X', got {tilt_axis!r}")
    if not 0 < val_fraction < 1:
        raise InputError(f"pairs: val_fraction must be between 0 and 1, got {val_fraction}")
    if n_patches < 2:
        raise InputError(f"pairs: n_patches must be at least 2, got {n_patches}")
    for i, (even, odd) in enumerate(zip(evens, odds, strict=True)):
        if even.ndim != 3 or even.shape != odd.shape:
            raise InputError(
                f"pairs: tomogram pair {i}: expected two 3-D volumes of equal shape, "
                f"got {even.shape} and {odd.shape}"
            )
    patch = _patch_shape(patch_shape, 3)
    axis = _AXES[tilt_axis]
    if normalization is None:
        normalization = compute_normalization([*evens, *odds])

    sizes = np.array([e.size for e in evens], dtype=float)
    n_val_total = max(1, round(n_patches * val_fraction))
    counts_train = _split_count(n_patches - n_val_total, sizes)
    counts_val = _split_count(n_val_total, sizes)
    rng = np.random.default_rng(seed)
    x_train, y_train, x_val, y_val = [], [], [], []
    for i, (even, odd) in enumerate(zip(evens, odds, strict=True)):
        length = even.shape[axis]
        n_val_slices = max(patch[axis], round(length * val_fraction))
        split = length - n_val_slices
        if split < patch[axis] or any(p > n for p, n in zip(patch, even.shape, strict=True)):
            raise InputError(
                f"pairs: tomogram {i} of shape {even.shape} is too small for patches of "
                f"{patch} with {val_fraction:.0%} of its {tilt_axis} axis held out for validation"
            )
        high = [n - p for n, p in zip(even.shape, patch, strict=True)]
        train_high = list(high)
        train_high[axis] = split - patch[axis]
        val_low = [0, 0, 0]
        val_low[axis] = split
        for corners, xs, ys in (
            (_random_corners(rng, [0, 0, 0], train_high, counts_train[i]), x_train, y_train),
            (_random_corners(rng, val_low, high, counts_val[i]), x_val, y_val),
        ):
            for corner in corners:
                region = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
                xs.append(normalization.normalize(even[region]))
                ys.append(normalization.normalize(odd[region]))
    log.info("sampled %d training and %d validation pairs of %s", len(x_train), len(x_val), patch)
    return PairSet(
        x_train=np.stack(x_train), y_train=np.stack(y_train),
        x_val=np.stack(x_val), y_val=np.stack(y_val),
        normalization=normalization, patch_shape=patch, tilt_axis=tilt_axis,
    )


def _split_count(total: int, weights: np.ndarray) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders)."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(exact - counts)[::-1][: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()
