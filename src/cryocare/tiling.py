"""Seam-free tiled prediction, planned as data.

A :class:`TilePlan` cuts an image into *cores* that tile it without overlap.
Each core is read with a margin (the *halo*) at least as wide as the
network's receptive-field radius, so that the network's output on the core
does not depend on where the tile was cut. All reads start on multiples of
``multiple_of`` (the network's total pooling factor), which keeps the pooling
grid aligned with that of the whole image. Together these make tiled output
equal to untiled output up to floating-point rounding.

Images whose sizes are not multiples of ``multiple_of`` are extended at the
far end by reflection (tile by tile, never as a copy of the whole image), so
every voxel of the input gets a prediction: no zero slices at the edges.

This module plans; :mod:`cryocare.predict` runs the plans (the one prediction
engine). It is NumPy-only.

Examples
--------
>>> import numpy as np
>>> plan = plan_tiles((100, 70), tile_shape=(64, 64), halo=8, multiple_of=4)
>>> len(plan.tiles)
4
>>> [t.read_shape for t in plan.tiles]
[(72, 72), (72, 16), (44, 72), (44, 16)]
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .io import read_region

__all__ = ["Tile", "TilePlan", "aligned_margin", "plan_tiles", "read_tile", "round_up",
           "split_tile"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Tile:
    """One tile: where to read, which part of the prediction to keep, where to write it.

    Attributes
    ----------
    read : tuple of slice
        Region of the (virtually padded) image fed to the network.
    crop : tuple of slice
        Part of the network's output on ``read`` that is kept.
    write : tuple of slice
        Region of the output image that the kept part fills.
    """

    read: tuple[slice, ...]
    crop: tuple[slice, ...]
    write: tuple[slice, ...]

    @property
    def read_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.read)


@dataclass(frozen=True)
class TilePlan:
    """How an image of ``shape`` is cut into tiles."""

    shape: tuple[int, ...]
    padded_shape: tuple[int, ...]
    tile_shape: tuple[int, ...]
    halo: int
    tiles: tuple[Tile, ...]
    multiple_of: int = 1

    @property
    def n_tiles(self) -> tuple[int, ...]:
        """Number of tiles along each axis."""
        return tuple(-(-p // t) for p, t in zip(self.padded_shape, self.tile_shape, strict=True))


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``.

    Examples
    --------
    >>> round_up(23, 4), round_up(24, 4)
    (24, 24)
    """
    return -(-value // multiple) * multiple


def aligned_margin(halo: int, multiple_of: int) -> int:
    """The margin read around a core: ``halo`` rounded up to the pooling grid.

    At least ``multiple_of``, so that reflection padding at the far end has
    real voxels to mirror. Every tiling of cryocare (the tile plans of
    :mod:`cryocare.predict` and of :mod:`cryocare.distributed`'s chunks) reads this much.

    Examples
    --------
    >>> aligned_margin(23, 4), aligned_margin(0, 4)
    (24, 4)
    """
    return max(round_up(halo, multiple_of), multiple_of)


def plan_tiles(
    shape: Sequence[int],
    *,
    tile_shape: Sequence[int] | None = None,
    halo: int,
    multiple_of: int = 1,
) -> TilePlan:
    """Plan tiles for an image of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the image.
    tile_shape : sequence of int, optional
        Size of the cores (rounded up to multiples of ``multiple_of``). None
        means a single tile holding the whole image.
    halo : int
        Margin read around each core, at least the receptive-field radius
        (rounded up to a multiple of ``multiple_of``).
    multiple_of : int
        Every read region starts at and spans multiples of this.

    Returns
    -------
    TilePlan
    """
    shape = tuple(int(n) for n in shape)
    if not shape or min(shape) < 1:
        raise InputError(f"tiling: expected a non-empty image shape, got {shape}")
    if multiple_of < 1 or halo < 0:
        raise InputError(
            f"tiling: expected multiple_of >= 1 and halo >= 0, got {multiple_of} and {halo}"
        )
    padded = tuple(round_up(n, multiple_of) for n in shape)
    if tile_shape is None:
        tile_shape = padded
    tile_shape = tuple(int(t) for t in tile_shape)
    if len(tile_shape) != len(shape) or min(tile_shape) < 1:
        raise InputError(
            f"tiling: expected {len(shape)} positive tile sizes for an image of shape {shape}, "
            f"got {tile_shape}"
        )
    tile_shape = tuple(
        min(round_up(t, multiple_of), p) for t, p in zip(tile_shape, padded, strict=True)
    )
    margin = aligned_margin(halo, multiple_of)

    per_axis = []
    for n, p, t in zip(shape, padded, tile_shape, strict=True):
        axis = []
        for start in range(0, p, t):
            stop = min(start + t, p)
            read = slice(max(0, start - margin), min(p, stop + margin))
            crop = slice(start - read.start, min(stop, n) - read.start)
            axis.append((read, crop, slice(start, min(stop, n))))
        # A core that lies entirely in the padding writes nothing.
        per_axis.append([a for a in axis if a[2].stop > a[2].start])
    tiles = tuple(
        Tile(read=tuple(c[0] for c in combo), crop=tuple(c[1] for c in combo),
             write=tuple(c[2] for c in combo))
        for combo in itertools.product(*per_axis)
    )
    return TilePlan(shape=shape, padded_shape=padded, tile_shape=tile_shape,
                    halo=margin, tiles=tiles, multiple_of=multiple_of)


def split_tile(tile: Tile, plan: TilePlan) -> tuple[Tile, ...]:
    """Cut ``tile`` in two along its longest core axis, keeping the rules of ``plan``.

    Each half is read with the plan's halo and aligned to its ``multiple_of``,
    so predictions on the halves equal the prediction on the whole tile. A
    tile whose core is at most ``multiple_of`` long on every axis cannot be
    cut and is returned alone.

    Examples
    --------
    >>> plan = plan_tiles((40, 24), halo=4, multiple_of=4)
    >>> [t.write for t in split_tile(plan.tiles[0], plan)]
    [(slice(0, 20, None), slice(0, 24, None)), (slice(20, 40, None), slice(0, 24, None))]
    """
    m = plan.multiple_of
    lengths = [w.stop - w.start for w in tile.write]
    axis = int(np.argmax(lengths))
    if lengths[axis] <= m:
        return (tile,)
    start, stop = tile.write[axis].start, tile.write[axis].stop
    middle = start + round_up(lengths[axis] // 2, m)
    if middle >= stop:
        middle = start + m
    halves = []
    for a, b in ((start, middle), (middle, stop)):
        read = slice(max(0, a - plan.halo),
                     min(plan.padded_shape[axis], round_up(b, m) + plan.halo))
        halves.append(Tile(
            read=tile.read[:axis] + (read,) + tile.read[axis + 1:],
            crop=tile.crop[:axis] + (slice(a - read.start, b - read.start),)
            + tile.crop[axis + 1:],
            write=tile.write[:axis] + (slice(a, b),) + tile.write[axis + 1:],
        ))
    return tuple(halves)


def read_tile(image: np.ndarray, read: tuple[slice, ...], *,
              out: np.ndarray | None = None) -> np.ndarray:
    """The ``read`` region of ``image`` extended beyond its end by reflection.

    ``out``, a float32 array of the region's shape, receives it instead of a new array.
    """
    inside = tuple(slice(s.start, min(s.stop, n)) for s, n in zip(read, image.shape, strict=True))
    pad = [(0, s.stop - i.stop) for s, i in zip(read, inside, strict=True)]
    if not any(after for _, after in pad):
        return read_region(image, inside, out=out)
    block = np.pad(read_region(image, inside), pad, mode="symmetric")
    if out is None:
        return block
    out[...] = block
    return out

