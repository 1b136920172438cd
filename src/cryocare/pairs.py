"""Noise2Noise training pairs from even/odd tomograms or micrographs.

Pairs are cut at the same place from the even and the odd half of each
dataset: sub-volumes of 3-D tomograms (T2T) or patches of 2-D projections
and micrographs (P2P), through one interface, :func:`sample_pairs`. Training
and validation patches come from disjoint slabs along the tilt axis: the last
``val_fraction`` of the tilt axis is kept for validation, and no training
patch reaches into it.

Sampling is lazy: the halves may be memory maps (``io.read(path, mmap=True)``)
and only the sampled patches (and, for masks, single voxels) are read.
Normalisation statistics are accumulated slab by slab. By default they are
computed over *all* datasets and both halves; ``normalize="per_dataset"``
normalises every dataset with its own statistics instead.

:func:`plan_pairs` does the sampling without cutting anything: a
:class:`PairPlan` holds the patch corners and statistics (saved as a small
file) and cuts patches batch by batch, so training never needs the whole
pair set, let alone whole tomograms, in memory.

Masks restrict patches to where there is sample: a patch is taken only if
its centre lies inside the mask. Masks are arrays (or memory maps) of the
data's shape, or ``"auto"`` for :func:`variance_mask`.

:func:`augment_batch` is a pure NumPy augmentation of a batch of pairs:
90° rotations and flips in the plane normal to the tilt axis and random
even/odd swaps.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> even, odd = rng.normal(size=(2, 32, 64, 48)).astype(np.float32)
>>> pairs = sample_pairs([even], [odd], patch_shape=16, n_patches=20, seed=1)
>>> pairs.x_train.shape, pairs.x_val.shape
((18, 16, 16, 16), (2, 16, 16, 16))
>>> images = sample_pairs([even[0]], [odd[0]], patch_shape=(16, 16), n_patches=10, seed=1)
>>> images.x_train.shape
(9, 16, 16)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage

from .errors import InputError, OutputExistsError
from .normalize import Normalization, compute_normalization

__all__ = [
    "PairPlan",
    "PairSet",
    "augment_batch",
    "plan_pairs",
    "sample_pairs",
    "variance_mask",
]

log = logging.getLogger(__name__)

_AXES = {3: {"Z": 0, "Y": 1, "X": 2}, 2: {"Y": 0, "X": 1}}
_NORMALIZE = ("global", "per_dataset")
_MAX_TRIES = 50  # rounds of rejection sampling before a mask is declared too small


@dataclass(frozen=True)
class PairSet:
    """Normalised patch pairs: ``x`` from the even, ``y`` from the odd half.

    Arrays have shape ``(n, *patch_shape)`` and dtype float32; ``patch_shape``
    has two sizes for image pairs and three for volume pairs.

    Attributes
    ----------
    normalization : Normalization
        Statistics of all datasets and both halves (used to normalise data at
        prediction time).
    normalize : {"global", "per_dataset"}
        How the patches were normalised.
    dataset_normalizations : tuple of Normalization
        With ``normalize="per_dataset"``, the statistics of each dataset, in
        input order; empty otherwise.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    normalization: Normalization
    patch_shape: tuple[int, ...]
    tilt_axis: str
    normalize: str = "global"
    dataset_normalizations: tuple[Normalization, ...] = ()

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the pair set to one ``.npz`` file (atomically)."""
        meta = {"normalization": self.normalization.to_dict(),
                "patch_shape": list(self.patch_shape), "tilt_axis": self.tilt_axis,
                "normalize": self.normalize,
                "dataset_normalizations": [n.to_dict() for n in self.dataset_normalizations]}
        return _save_npz(path, "pair sets", meta, overwrite=overwrite, x_train=self.x_train,
                         y_train=self.y_train, x_val=self.x_val, y_val=self.y_val)

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
                   patch_shape=tuple(meta["patch_shape"]), tilt_axis=meta["tilt_axis"],
                   normalize=meta.get("normalize", "global"),
                   dataset_normalizations=tuple(Normalization.from_dict(n) for n in
                                                meta.get("dataset_normalizations", [])))


@dataclass(frozen=True, eq=False)
class PairPlan:
    """Where to cut patch pairs and how to normalise them, without any pixels.

    Made by :func:`plan_pairs`. Patches are read from the halves only when
    asked for, all at once (:meth:`to_pairs`) or a batch at a time
    (:meth:`patches`), so training data can be drawn from memory-mapped
    tomograms that never fit in memory. Saved and loaded (:meth:`save`,
    :meth:`load`) as one small ``.npz`` file of coordinates and statistics.

    Attributes
    ----------
    train, val : tuple of ndarray of int64, shape (n_i, ndim)
        Patch corners in each dataset, in input order.
    shapes : tuple of tuple of int
        Shape of each dataset (checked when patches are cut).
    normalization : Normalization
        Statistics of all datasets and both halves.
    dataset_normalizations : tuple of Normalization
        Per-dataset statistics with ``normalize="per_dataset"``, else empty.
    patch_shape, tilt_axis, normalize
        As passed to :func:`plan_pairs`.

    Examples
    --------
    >>> import numpy as np
    >>> even, odd = np.random.default_rng(0).normal(size=(2, 32, 64, 48)).astype(np.float32)
    >>> plan = plan_pairs([even], [odd], patch_shape=16, n_patches=20, seed=1)
    >>> len(plan), plan.n_train, plan.n_val
    (20, 18, 2)
    >>> x, y = plan.patches([even], [odd], "train", [0, 5, 7])
    >>> x.shape
    (3, 16, 16, 16)
    """

    train: tuple[np.ndarray, ...]
    val: tuple[np.ndarray, ...]
    shapes: tuple[tuple[int, ...], ...]
    normalization: Normalization
    patch_shape: tuple[int, ...]
    tilt_axis: str
    normalize: str = "global"
    dataset_normalizations: tuple[Normalization, ...] = ()

    @property
    def n_train(self) -> int:
        return sum(len(c) for c in self.train)

    @property
    def n_val(self) -> int:
        return sum(len(c) for c in self.val)

    def __len__(self) -> int:
        return self.n_train + self.n_val

    def _check(self, evens, odds) -> None:
        shapes = tuple(tuple(e.shape) for e in evens)
        if len(evens) != len(odds) or shapes != self.shapes or any(
                tuple(o.shape) != sh for o, sh in zip(odds, shapes, strict=True)):
            raise InputError(f"pairs: the plan is for data of shapes {list(self.shapes)}, "
                             f"got even {list(shapes)} and odd "
                             f"{[tuple(o.shape) for o in odds]}")

    def patches(self, evens: Sequence[np.ndarray], odds: Sequence[np.ndarray],
                part: str = "train", indices=None) -> tuple[np.ndarray, np.ndarray]:
        """Cut normalised patch pairs ``(x, y)`` of ``part`` ("train" or "val").

        ``indices`` select pairs (numbered over all datasets in order);
        default all. Only these patches are read from the halves.
        """
        if part not in ("train", "val"):
            raise InputError(f"pairs: part must be 'train' or 'val', got {part!r}")
        self._check(evens, odds)
        corners = getattr(self, part)
        owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(corners)]
                               ).astype(np.int64)
        flat = np.concatenate(corners) if corners else np.zeros((0, len(self.patch_shape)))
        chosen = np.arange(len(flat)) if indices is None else np.asarray(indices, np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= len(flat)):
            raise InputError(f"pairs: indices must lie in [0, {len(flat)}), "
                             f"got {chosen.min()}..{chosen.max()}")
        x = np.empty((chosen.size, *self.patch_shape), np.float32)
        y = np.empty_like(x)
        norms = self.dataset_normalizations or (self.normalization,) * len(self.shapes)
        for k, j in enumerate(chosen):
            i = owner[j]
            region = tuple(slice(c, c + p) for c, p in zip(flat[j], self.patch_shape,
                                                            strict=True))
            x[k] = norms[i].normalize(evens[i][region])
            y[k] = norms[i].normalize(odds[i][region])
        return x, y

    def to_pairs(self, evens: Sequence[np.ndarray], odds: Sequence[np.ndarray]) -> PairSet:
        """Cut every planned patch pair into a :class:`PairSet`."""
        x_train, y_train = self.patches(evens, odds, "train")
        x_val, y_val = self.patches(evens, odds, "val")
        log.info("sampled %d training and %d validation pairs of %s", len(x_train),
                 len(x_val), self.patch_shape)
        return PairSet(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                       normalization=self.normalization, patch_shape=self.patch_shape,
                       tilt_axis=self.tilt_axis, normalize=self.normalize,
                       dataset_normalizations=self.dataset_normalizations)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write coordinates and statistics to one ``.npz`` file (atomically)."""
        meta = {"kind": "cryocare pair plan", "shapes": [list(s) for s in self.shapes],
                "normalization": self.normalization.to_dict(),
                "patch_shape": list(self.patch_shape), "tilt_axis": self.tilt_axis,
                "normalize": self.normalize,
                "dataset_normalizations": [n.to_dict() for n in self.dataset_normalizations]}
        arrays = {f"{part}_{i}": c for part in ("train", "val")
                  for i, c in enumerate(getattr(self, part))}
        return _save_npz(path, "pair plans", meta, overwrite=overwrite, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PairPlan:
        """Read a plan written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such pair-plan file")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("kind") != "cryocare pair plan":
                    raise ValueError("no pair-plan header")
                n = len(meta["shapes"])
                train = tuple(data[f"train_{i}"] for i in range(n))
                val = tuple(data[f"val_{i}"] for i in range(n))
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{path}: not a cryocare pair-plan file ({error})") from None
        return cls(train=train, val=val, shapes=tuple(tuple(s) for s in meta["shapes"]),
                   normalization=Normalization.from_dict(meta["normalization"]),
                   patch_shape=tuple(meta["patch_shape"]), tilt_axis=meta["tilt_axis"],
                   normalize=meta["normalize"],
                   dataset_normalizations=tuple(Normalization.from_dict(d) for d in
                                                meta["dataset_normalizations"]))


def _patch_shape(patch_shape: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    if isinstance(patch_shape, int | np.integer):
        shape = (int(patch_shape),) * ndim
    else:
        shape = tuple(int(p) for p in patch_shape)
    if len(shape) != ndim:
        raise InputError(f"patch_shape: expected {ndim} sizes for {ndim}-D data, got {shape}")
    if min(shape) < 1:
        raise InputError(f"patch_shape: expected positive sizes, got {shape}")
    return shape


def _random_corners(rng, low, high, count):
    """``count`` random corners with ``low[i] <= corner[i] <= high[i]``."""
    return np.stack([rng.integers(lo, hi + 1, size=count) for lo, hi in zip(low, high,
                                                                            strict=True)], axis=1)


def variance_mask(volume: np.ndarray, *, window: int = 9, bin_to: int = 64) -> np.ndarray:
    """Automatic sample mask: where the local variance is above its Otsu threshold.

    The data is first block-averaged (binned) so that its longest axis has at
    most about ``bin_to`` pixels, read slab by slab (memory maps are never
    loaded whole); the local variance in a ``window``-wide cube (square) of
    binned pixels is thresholded with Otsu's method on its logarithm, and the
    mask is scaled back to the full size (nearest neighbour). Empty regions of
    a FIB lamella or vacuum beside it have a lower variance than the sample.

    Parameters
    ----------
    volume : ndarray, 2-D or 3-D
        Image or tomogram (e.g. the even half or the mean of both halves).
    window : int, optional
        Side of the local window, in binned pixels.
    bin_to : int, optional
        Approximate size of the longest binned axis.

    Returns
    -------
    ndarray of bool, same shape as ``volume``

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> vol = rng.normal(scale=0.1, size=(32, 32, 32)).astype(np.float32)
    >>> vol[8:24] += rng.normal(size=(16, 32, 32)).astype(np.float32)  # sample in the middle
    >>> mask = variance_mask(vol, window=3, bin_to=32)
    >>> bool(mask[10:22].all()), bool(mask[:4].any() or mask[28:].any())
    (True, False)
    """
    small, factor = _binned_variance_mask(volume, window=window, bin_to=bin_to)
    return _Upscaled(small, factor, volume.shape)[np.ix_(*[np.arange(n) for n in volume.shape])]


def _binned_variance_mask(volume, *, window: int, bin_to: int) -> tuple[np.ndarray, int]:
    if volume.ndim not in (2, 3) or min(volume.shape) < 1:
        raise InputError(f"variance_mask: expected a 2-D or 3-D array, got shape {volume.shape}")
    if window < 1 or bin_to < 1:
        raise InputError(f"variance_mask: window and bin_to must be >= 1, got {window}, {bin_to}")
    factor = max(1, int(np.ceil(max(volume.shape) / bin_to)))
    binned = _bin(volume, factor)
    mean = scipy.ndimage.uniform_filter(binned, window, mode="reflect")
    mean_sq = scipy.ndimage.uniform_filter(binned * binned, window, mode="reflect")
    log_var = np.log(np.maximum(mean_sq - mean * mean, 1e-30))
    from skimage.filters import threshold_otsu

    if np.ptp(log_var) == 0:
        small = np.ones(binned.shape, bool)
    else:
        small = log_var > threshold_otsu(log_var)
    return small, factor


class _Upscaled:
    """A binned mask read as if it had full size (nearest neighbour), point by point."""

    def __init__(self, small: np.ndarray, factor: int, shape: tuple[int, ...]):
        self.small, self.factor, self.shape = small, factor, tuple(shape)

    def __getitem__(self, index):
        return self.small[tuple(np.minimum(np.asarray(i) // self.factor, m - 1)
                                for i, m in zip(index, self.small.shape, strict=True))]


def _bin(volume: np.ndarray, factor: int, *, chunk: int = 8) -> np.ndarray:
    """Block mean over ``factor``-wide blocks (partial blocks at the end kept), slab by slab."""
    out = []
    step = factor * max(1, chunk // factor)
    for start in range(0, volume.shape[0], step):
        block = np.asarray(volume[start:start + step], dtype=np.float64)
        for axis in range(block.ndim):
            edges = np.arange(0, block.shape[axis], factor)
            block = np.add.reduceat(block, edges, axis=axis) / np.diff(
                np.append(edges, block.shape[axis])).reshape(
                [-1 if a == axis else 1 for a in range(block.ndim)])
        out.append(block)
    return np.concatenate(out).astype(np.float64)


def sample_pairs(
    evens: Sequence[np.ndarray],
    odds: Sequence[np.ndarray],
    *,
    patch_shape: int | Sequence[int] = 32,
    n_patches: int = 1200,
    val_fraction: float = 0.1,
    tilt_axis: str = "Y",
    normalization: Normalization | None = None,
    normalize: str = "global",
    masks: Sequence[np.ndarray | None] | str | None = None,
    seed: int = 0,
) -> PairSet:
    """Sample normalised patch pairs from even/odd tomograms or images.

    Parameters
    ----------
    evens, odds : sequence of ndarray
        Even and odd halves, matched by position: all 3-D tomograms
        (Z, Y, X) or all 2-D images (Y, X), shapes may differ between
        datasets. Memory maps are fine (only the sampled patches are read).
    patch_shape : int or sequence of int
        Patch size, one number for a cube (square); sizes may differ per
        axis, e.g. ``(16, 64, 64)`` for a thin lamella.
    n_patches : int
        Total number of patch pairs over all datasets, split between
        datasets in proportion to their size.
    val_fraction : float
        Fraction of the tilt axis held out for validation (0 < f < 1).
    tilt_axis : {"Y", "X", "Z"}
        Axis along which training and validation slabs are separated: the
        tilt axis. ``"Z"`` (volumes only) splits along Z instead, as
        cryoCARE 0.3.0 (and Scipion) offer it.
    normalization : Normalization, optional
        Fixed statistics for all datasets (then ``normalize`` is ignored).
    normalize : {"global", "per_dataset"}
        ``"global"`` (default): statistics of all datasets, both halves;
        ``"per_dataset"``: each dataset with the statistics of its two halves.
    masks : sequence of (ndarray or None), or "auto", optional
        One mask per dataset (non-zero where there is sample, same shape as
        the data; ``None`` for no mask), or ``"auto"`` for a
        :func:`variance_mask` of each even half. A patch is taken only if its
        centre voxel is inside the mask.
    seed : int
        Seed of the patch positions.

    Returns
    -------
    PairSet

    Raises
    ------
    InputError
        Mismatched halves, mixed 2-D/3-D data, a mask of the wrong shape or
        with too few voxels where patches may go, a patch larger than the data.
    """
    plan = plan_pairs(evens, odds, patch_shape=patch_shape, n_patches=n_patches,
                      val_fraction=val_fraction, tilt_axis=tilt_axis,
                      normalization=normalization, normalize=normalize, masks=masks, seed=seed)
    return plan.to_pairs(evens, odds)


def plan_pairs(
    evens: Sequence[np.ndarray],
    odds: Sequence[np.ndarray],
    *,
    patch_shape: int | Sequence[int] = 32,
    n_patches: int = 1200,
    val_fraction: float = 0.1,
    tilt_axis: str = "Y",
    normalization: Normalization | None = None,
    normalize: str = "global",
    masks: Sequence[np.ndarray | None] | str | None = None,
    seed: int = 0,
) -> PairPlan:
    """Plan patch pairs: where to cut them and how to normalise them, no pixels read.

    Takes the arguments of :func:`sample_pairs`; only the statistics (slab by
    slab) and the mask voxels at candidate centres are read. Patches are cut
    later, all at once (:meth:`PairPlan.to_pairs`) or batch by batch
    (:meth:`PairPlan.patches`).

    Returns
    -------
    PairPlan

    Raises
    ------
    InputError
        Mismatched halves, mixed 2-D/3-D data, a mask of the wrong shape or
        with too few voxels where patches may go, a patch larger than the data.
    """
    if len(evens) != len(odds) or not evens:
        raise InputError(
            f"pairs: expected as many even as odd tomograms (at least one), "
            f"got {len(evens)} even and {len(odds)} odd"
        )
    if not 0 < val_fraction < 1:
        raise InputError(f"pairs: val_fraction must be between 0 and 1, got {val_fraction}")
    if n_patches < 2:
        raise InputError(f"pairs: n_patches must be at least 2, got {n_patches}")
    if normalize not in _NORMALIZE:
        raise InputError(f"pairs: normalize must be one of {_NORMALIZE}, got {normalize!r}")
    ndim = evens[0].ndim
    if ndim in _AXES and tilt_axis not in _AXES[ndim]:
        raise InputError(f"pairs: tilt_axis must be one of {', '.join(map(repr, _AXES[ndim]))} "
                         f"for {ndim}-D data, got {tilt_axis!r}")
    for i, (even, odd) in enumerate(zip(evens, odds, strict=True)):
        if even.ndim not in (2, 3) or even.ndim != ndim or even.shape != odd.shape:
            raise InputError(
                f"pairs: pair {i}: expected two {ndim}-D arrays of equal shape "
                f"(all pairs 2-D or all 3-D), got {even.shape} and {odd.shape}"
            )
    patch = _patch_shape(patch_shape, ndim)
    axis = _AXES[ndim][tilt_axis]
    splits = []
    for i, even in enumerate(evens):
        length = even.shape[axis]
        split = length - max(patch[axis], round(length * val_fraction))
        if split < patch[axis] or any(p > n for p, n in zip(patch, even.shape, strict=True)):
            raise InputError(
                f"pairs: dataset {i} of shape {even.shape} is too small for patches of "
                f"{patch} with {val_fraction:.0%} of its {tilt_axis} axis held out for validation"
            )
        splits.append(split)
    masks = _check_masks(masks, evens)
    if normalization is not None:
        normalize, dataset_norms = "global", ()
    else:
        normalization = compute_normalization([*evens, *odds])
        dataset_norms = ()
        if normalize == "per_dataset":
            dataset_norms = tuple(compute_normalization([e, o]) for e, o in
                                  zip(evens, odds, strict=True))

    sizes = np.array([e.size for e in evens], dtype=float)
    n_val_total = max(1, round(n_patches * val_fraction))
    counts_train = _split_count(n_patches - n_val_total, sizes)
    counts_val = _split_count(n_val_total, sizes)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for i, even in enumerate(evens):
        high = [n - p for n, p in zip(even.shape, patch, strict=True)]
        train_high = list(high)
        train_high[axis] = splits[i] - patch[axis]
        val_low = [0] * ndim
        val_low[axis] = splits[i]
        train.append(_corners(rng, [0] * ndim, train_high, counts_train[i], patch, masks[i],
                              name=f"dataset {i}"))
        val.append(_corners(rng, val_low, high, counts_val[i], patch, masks[i],
                            name=f"dataset {i}"))
    return PairPlan(train=tuple(train), val=tuple(val), shapes=tuple(e.shape for e in evens),
                    normalization=normalization, dataset_normalizations=dataset_norms,
                    patch_shape=patch, tilt_axis=tilt_axis, normalize=normalize)


def _check_masks(masks, evens) -> list:
    if masks is None:
        return [None] * len(evens)
    if isinstance(masks, str):
        if masks != "auto":
            raise InputError(f"pairs: masks must be a sequence of arrays or 'auto', got {masks!r}")
        return [_Upscaled(*_binned_variance_mask(e, window=9, bin_to=64), e.shape)
                for e in evens]
    masks = list(masks)
    if len(masks) != len(evens):
        raise InputError(f"pairs: expected one mask per dataset ({len(evens)}), "
                         f"got {len(masks)}")
    for i, (mask, even) in enumerate(zip(masks, evens, strict=True)):
        if mask is not None and tuple(mask.shape) != tuple(even.shape):
            raise InputError(f"pairs: mask {i}: expected the shape of its data {even.shape}, "
                             f"got {tuple(mask.shape)}")
    return masks


def _corners(rng, low, high, count, patch, mask, *, name):
    """``count`` corners in the box ``[low, high]`` whose patch centre is inside ``mask``."""
    if mask is None or count == 0:
        return _random_corners(rng, low, high, count)
    found = []
    n_found = 0
    for _ in range(_MAX_TRIES):
        candidates = _random_corners(rng, low, high, max(4 * (count - n_found), 16))
        centres = tuple((candidates + np.array(patch) // 2).T)
        inside = np.asarray(mask[centres]) != 0  # fancy indexing reads only these voxels
        found.append(candidates[inside][: count - n_found])
        n_found += len(found[-1])
        if n_found == count:
            return np.concatenate(found)
    raise InputError(f"pairs: {name}: its mask leaves too few places for patches of {patch} "
                     f"(found {n_found} of {count} after {_MAX_TRIES} rounds)")


def augment_batch(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
                  tilt_axis: str = "Y") -> tuple[np.ndarray, np.ndarray]:
    """Randomly rotate, flip and swap a batch of pairs (a pure function).

    Every pair ``(x[i], y[i])`` gets the same random transform of the plane
    normal to the tilt axis — for volumes the ``Z``–``X`` plane
    (``tilt_axis="Y"``), the ``Z``–``Y`` plane (``"X"``) or, as cryoCARE
    0.3.0 does for ``"Z"``, the ``Y``–``X`` plane: a rotation by a
    multiple of 90° (multiples of 180° if the two patch sizes differ)
    followed by an optional flip — and, with probability 1/2, its two halves
    swapped (Noise2Noise is symmetric in them). For 2-D images (projections)
    the tilt axis lies in the image, so only flips of each axis are used;
    they keep the tilt axis along itself. The missing wedge, being symmetric
    about the beam axis, stays in place under flips.

    Parameters
    ----------
    x, y : ndarray, shape (n, *patch_shape) or (n, *patch_shape, channels)
        Batch of even and odd patches (2 or 3 spatial axes after the batch
        axis; a trailing channel axis of size 1 is allowed).
    rng : numpy.random.Generator
        Source of randomness (keyword-only).
    tilt_axis : {"Y", "X", "Z"}
        Tilt axis of the data (``"Z"``: see above).

    Returns
    -------
    (ndarray, ndarray)
        New arrays; the inputs are not modified.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    >>> ax, ay = augment_batch(x, x + 1, rng=np.random.default_rng(0))
    >>> ax.shape, bool(np.all(np.abs(ax - ay) == 1))
    ((2, 4, 4, 4), True)
    >>> s = ax[0] + ay[0]                    # swaps do not change the sum
    >>> bool(np.all(np.sort(s, axis=None) == np.sort(2 * x[0] + 1, axis=None)))
    True
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise InputError(f"augment_batch: x and y differ in shape, {x.shape} and {y.shape}")
    if tilt_axis not in ("Y", "X", "Z"):
        raise InputError(f"augment_batch: tilt_axis must be 'Y', 'X' or 'Z', got {tilt_axis!r}")
    channel = x.ndim == 5 or (x.ndim == 4 and x.shape[-1] == 1)
    spatial = x.ndim - 1 - channel
    if spatial not in (2, 3):
        raise InputError(f"augment_batch: expected a batch of 2-D or 3-D patches, got {x.shape}")
    out_x, out_y = np.empty_like(x), np.empty_like(y)
    for i in range(len(x)):
        a, b = x[i], y[i]
        if spatial == 3:
            plane = {"Y": (0, 2), "X": (0, 1), "Z": (1, 2)}[tilt_axis]
            quarter = a.shape[plane[0]] == a.shape[plane[1]]
            k = int(rng.integers(4)) if quarter else 2 * int(rng.integers(2))
            a, b = np.rot90(a, k, axes=plane), np.rot90(b, k, axes=plane)
            if rng.random() < 0.5:
                a, b = np.flip(a, plane[0]), np.flip(b, plane[0])
        else:
            for ax in (0, 1):
                if rng.random() < 0.5:
                    a, b = np.flip(a, ax), np.flip(b, ax)
        if rng.random() < 0.5:
            a, b = b, a
        out_x[i], out_y[i] = a, b
    return out_x, out_y


def _split_count(total: int, weights: np.ndarray) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders)."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(exact - counts)[::-1][: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _save_npz(path: str | os.PathLike, what: str, meta: dict, *, overwrite: bool,
              **arrays: np.ndarray) -> Path:
    """Write ``arrays`` and the JSON ``meta`` to one ``.npz`` file, atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"{path}: {what} are saved as .npz files")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists already (pass overwrite=True to replace it)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
