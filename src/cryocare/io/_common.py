"""What the readers and writers of :mod:`cryocare.io` share: the header record, the layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_HEADER_BYTES = 1024


@dataclass(frozen=True)
class VolumeInfo:
    """What the header of an MRC or TIFF file says about its data.

    Attributes
    ----------
    path : Path
        The file.
    shape : tuple of int
        Array shape, (Z, Y, X) for volumes and stacks, (Y, X) for one image.
    dtype : numpy.dtype
        Data type stored in the file (native byte order).
    voxel_size : tuple of float
        (Z, Y, X) voxel size in Å; 0.0 means unknown.
    origin : tuple of float
        (Z, Y, X) origin in Å (the header's ``origin`` field).
    labels : tuple of str
        Text labels of the header (none for TIFF).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cryocare.io import read_info, write
    >>> path = write(Path(tempfile.mkdtemp()) / "tomo.mrc", np.zeros((4, 8, 8)), voxel_size=10.0)
    >>> info = read_info(path)
    >>> info.shape, info.voxel_size
    ((4, 8, 8), (10.0, 10.0, 10.0))
    """

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Layout:
    """Where and how the data block is stored."""

    offset: int | None  # None: not one block (a compressed or scattered TIFF)
    dtype: np.dtype  # with the file's byte order
    shape: tuple[int, ...]
    tiff: bool = False


def _f32(value: float) -> float:
    """Return a float32 header value as its shortest exact decimal (2.1, not 2.1000001...)."""
    return float(str(np.float32(value)))
