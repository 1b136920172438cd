"""Reading: headers of either format, data copied or memory-mapped, even/odd pairs.

Also the helpers that keep memory maps small: :func:`release_pages` and
:func:`read_region`.
"""

from __future__ import annotations

import mmap as _mmap
import os
from pathlib import Path

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # NumPy < 2
    from numpy import byte_bounds

from .._pages import empty
from ..errors import InputError
from ._common import VolumeInfo, _Layout
from ._mrc import _inspect_mrc
from ._tiff import _inspect_tiff, _is_tiff, _read_tiff

_PAIR_RTOL = 1e-3  # relative tolerance on voxel sizes of an even/odd pair


def read_info(path: str | os.PathLike) -> VolumeInfo:
    """Read the header of an MRC or TIFF file, without its data.

    A TIFF file is recognised by its first bytes (or a .tif/.tiff name); its
    first series is the data: a 2-D image, or a stack of images read as
    (Z, Y, X). Its voxel size comes from the resolution tags (the unit from
    ResolutionUnit, or ImageJ's ``unit``), Z from ImageJ's ``spacing`` or
    else the in-plane size; 0.0 where the file does not say.

    Parameters
    ----------
    path : str or path-like
        The MRC or TIFF file.

    Returns
    -------
    VolumeInfo
        Shape, data type, voxel size, origin and labels.

    Raises
    ------
    InputError
        If the file is missing, is neither an MRC nor a TIFF file, is
        truncated or holds complex, colour or otherwise unsupported data.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cryocare.io import write
    >>> path = write(Path(tempfile.mkdtemp()) / "tomo.mrc", np.zeros((4, 8, 8)))
    >>> read_info(path).dtype
    dtype('float32')
    """
    return _inspect(Path(path))[0]


def read(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """Read the data of an MRC or TIFF file.

    Parameters
    ----------
    path : str or path-like
        The MRC or TIFF file (see :func:`read_info`).
    mmap : bool, optional
        If False (default), return an in-memory float32 copy, converted from
        the file's data type. If True, return a read-only memory map of the
        data block in the file's own data type; it stays valid after the
        file is closed, replaced or deleted. A compressed TIFF cannot be
        mapped: it is then read into memory in its own data type.

    Returns
    -------
    numpy.ndarray
        Array of shape (Z, Y, X), or (Y, X) for a single image.

    Raises
    ------
    InputError
        As :func:`read_info`.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cryocare.io import write
    >>> path = write(Path(tempfile.mkdtemp()) / "tomo.mrc", np.ones((4, 8, 8), np.int16))
    >>> volume = read(path)
    >>> volume.dtype, float(volume.sum())
    (dtype('float32'), 256.0)
    """
    path = Path(path)
    _, layout = _inspect(path)
    return _load(path, layout, mmap=mmap)


def read_pair(
    even: str | os.PathLike, odd: str | os.PathLike, *, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray, VolumeInfo]:
    """Read two independently noisy halves (even/odd) of the same data.

    Parameters
    ----------
    even, odd : str or path-like
        The two MRC or TIFF files.
    mmap : bool, optional
        As in :func:`read`.

    Returns
    -------
    even_data, odd_data : numpy.ndarray
        The two arrays, of equal shape.
    info : VolumeInfo
        Header of the even file.

    Raises
    ------
    InputError
        As :func:`read_info`, or naming both files if their shapes differ or
        their voxel sizes differ by more than a relative 1e-3.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cryocare.io import write
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("even.mrc", "odd.mrc"):
    ...     _ = write(folder / name, np.zeros((4, 8, 8)), voxel_size=10.0)
    >>> even, odd, info = read_pair(folder / "even.mrc", folder / "odd.mrc", mmap=True)
    >>> even.shape == odd.shape == info.shape
    True
    """
    even, odd = Path(even), Path(odd)
    (_, info_e), (layout_e, layout_o) = _pair_headers(even, odd)
    return _load(even, layout_e, mmap=mmap), _load(odd, layout_o, mmap=mmap), info_e


def _inspect(path: Path) -> tuple[VolumeInfo, _Layout]:
    """Read and check the header of `path`; all bad-input errors come from here."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: expected an MRC or TIFF file, found a directory")
    if _is_tiff(path):
        return _inspect_tiff(path)
    return _inspect_mrc(path)


def _load(path: Path, layout: _Layout, *, mmap: bool) -> np.ndarray:
    """Map the data block read-only; copy it as float32 unless `mmap`."""
    if layout.offset is None:  # a TIFF whose data is compressed or scattered
        data = _read_tiff(path, layout)
        data.flags.writeable = False
        return data if mmap else data.astype(np.float32)
    mapped = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset,
                       shape=layout.shape)
    return mapped if mmap else np.array(mapped, dtype=np.float32)


def _pair_headers(even: Path, odd: Path):
    """Headers and layouts of an even/odd pair, checked to match (shape, voxel size)."""
    info_e, layout_e = _inspect(even)
    info_o, layout_o = _inspect(odd)
    if info_e.shape != info_o.shape:
        raise InputError(
            f"{even} and {odd}: expected an even/odd pair of equal shape, "
            f"found {info_e.shape} and {info_o.shape}"
        )
    if not all(_close(a, b) for a, b in zip(info_e.voxel_size, info_o.voxel_size, strict=True)):
        raise InputError(
            f"{even} and {odd}: expected an even/odd pair of equal voxel size "
            f"(relative tolerance {_PAIR_RTOL:g}), found {info_e.voxel_size} and "
            f"{info_o.voxel_size} Å (Z, Y, X)"
        )
    return (even, info_e), (layout_e, layout_o)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _PAIR_RTOL * max(abs(a), abs(b))


def release_pages(array: np.ndarray) -> bool:
    """Drop the pages of a memory-mapped ``array`` from this process's resident memory.

    Pages of a file mapped with ``read(..., mmap=True)`` stay resident (and
    counted in the process's memory) once touched, so streaming through a
    large mapped volume would end up holding all of it. This tells the kernel
    that they are not needed now: they stay in the page cache, and are read
    back from it (or from disk) on the next access. The array stays valid and
    unchanged. Returns whether anything was released (False for an array that
    is not a memory map, or where the platform cannot).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cryocare import io
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "vol.mrc"
    >>> _ = io.write(path, np.ones((4, 8, 8), np.float32))
    >>> volume = io.read(path, mmap=True)
    >>> float(volume.sum()), io.release_pages(volume), float(volume.sum())
    (256.0, True, 256.0)
    """
    mapping = _mapping(array)
    if mapping is None:
        return False
    mapping.madvise(_mmap.MADV_DONTNEED)
    return True


def _mapping(array) -> _mmap.mmap | None:
    """The memory map under ``array``, if there is one and pages can be dropped from it here."""
    if not hasattr(_mmap, "MADV_DONTNEED"):
        return None
    base = array
    while base is not None and not isinstance(base, _mmap.mmap):
        base = getattr(base, "base", None)
    return base


def read_region(array: np.ndarray, region: tuple[slice, ...], *,
                out: np.ndarray | None = None) -> np.ndarray:
    """``array[region]`` as float32, without keeping mapped pages resident.

    A memory-mapped array (``read(..., mmap=True)``) is copied one index of
    the first axis at a time, and the pages of each index are dropped from
    resident memory after it is read: the kernel maps whole page folios (up
    to megabytes) around every row touched, so a thin tile of a large mapped
    volume would otherwise hold a good part of the file in the process's
    memory. Any other array is simply indexed (no copy when it is float32
    already and ``out`` is not given).

    ``out``, a float32 array of the region's shape, receives the values
    (and is returned) instead of a new array.

    Examples
    --------
    >>> data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    >>> read_region(data, (slice(0, 2), slice(1, 3), slice(0, 2)))[1].tolist()
    [[16.0, 17.0], [20.0, 21.0]]
    """
    mapping = _mapping(array)
    if mapping is None or np.ndim(array) < 2:
        if out is None:
            return np.asarray(array[region], dtype=np.float32)
        out[...] = array[region]
        return out
    first, rest = region[0], tuple(region[1:])
    rows = range(*first.indices(array.shape[0]))
    shape = [len(range(*s.indices(n))) for s, n in zip(rest, array.shape[1:], strict=True)]
    if out is None:
        out = empty((len(rows), *shape), np.float32)
    base = np.frombuffer(mapping, np.uint8).ctypes.data
    for index, row in enumerate(rows):
        out[index] = array[(row, *rest)]
        _drop(mapping, array[row], base)
    return out


def _drop(mapping: _mmap.mmap, plane: np.ndarray, base: int) -> None:
    """Drop the mapped pages under ``plane`` (one index of the first axis) from memory.

    Only the plane's own pages: dropping the whole mapping after every plane
    made the kernel walk the page tables of the whole file each time (7 s of
    a 90-s prediction of a 256×512×512 pair).
    """
    if plane.size == 0:
        return
    low, high = byte_bounds(plane)
    start, stop = low - base, high - base
    start -= start % _mmap.PAGESIZE
    mapping.madvise(_mmap.MADV_DONTNEED, start, min(len(mapping), stop) - start)
