"""Checks of inputs before any work: headers first, then streamed scans for NaN and infinity."""

from __future__ import annotations

import mmap as _mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import VolumeInfo, _Layout
from ._read import _inspect, _mapping, _pair_headers, release_pages
from ._tiff import _tiff_slabs

_SCAN_VALUES = 2**22  # values per step of the finite scan (16 MiB of float32)


def check_finite(data: np.ndarray | str | os.PathLike, *, name: str | None = None) -> None:
    """Check that every value is finite, streaming through the data in small chunks.

    Parameters
    ----------
    data : array_like or str or path-like
        An array (a memory map is fine: it is read a few MiB at a time and its
        pages released), or an MRC or TIFF file, read the same way: a file
        is never loaded whole.
    name : str, optional
        What to call the data in the message; default: the file name, or
        ``"data"`` for an array.

    Raises
    ------
    InputError
        Naming the file, the number of NaN and infinite values and the
        (Z, Y, X) position of the first; or as :func:`read_info`.

    Examples
    --------
    >>> volume = np.zeros((4, 5, 6), np.float32)
    >>> check_finite(volume, name="even.mrc")
    >>> volume[2, 3, 1] = volume[3, 0, 0] = np.nan
    >>> check_finite(volume, name="even.mrc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cryocare.errors.InputError: even.mrc: ... found 2 NaN ..., the first at (z, y, x) = (2, 3, 1)
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        _scan_file(path, _inspect(path)[1], name=name)
        return
    array = np.asarray(data)
    label = name or "data"
    if array.dtype.kind not in "fc":
        return
    shape = array.shape
    view = array.reshape(1, 1, -1) if array.ndim < 2 else (
        array[None] if array.ndim == 2 else array.reshape(-1, *array.shape[-2:]))
    step = max(1, _SCAN_VALUES // max(1, view[0].size))
    mapping = _mapping(array)
    blocks = ((start, np.asarray(view[start:start + step]))
              for start in range(0, len(view), step))
    if mapping is not None:
        blocks = _releasing(blocks, mapping)
    _scan(blocks, shape, label)


def _scan_file(path: Path, layout: _Layout, *, name: str | None = None) -> None:
    """:func:`check_finite` of a file whose header was read already."""
    if layout.dtype.kind in "iu":
        return  # integers are finite
    _scan(_slabs(path, layout), layout.shape, name or str(path))


def _scan(blocks, shape: tuple[int, ...], label: str) -> None:
    """Count non-finite values of ``(start, block)`` slabs along the first axis; raise if any."""
    bad, first = 0, None
    for start, block in blocks:
        flat = block.reshape(-1)
        if flat.dtype == np.float32 or flat.dtype == np.float64:
            if flat.flags.c_contiguous and np.isfinite(np.dot(flat, flat)):
                continue  # fast path: NaN and inf propagate into the dot product
        finite = np.isfinite(flat)
        count = flat.size - int(np.count_nonzero(finite))
        if count and first is None:
            index = int(np.argmin(finite)) + start * (flat.size // max(1, len(block)))
            first = tuple(int(i) for i in np.unravel_index(index, shape)) if shape else ()
        bad += count
    if bad:
        axes = "zyx"[-len(first):] if 0 < len(first) <= 3 else "index"
        where = f"({', '.join(axes)}) = {first}" if len(first) != 1 else f"index {first[0]}"
        raise InputError(f"{label}: expected finite values, found {bad} NaN or infinite "
                         f"value(s), the first at {where}")


def _releasing(blocks, mapping):
    for item in blocks:
        yield item
        mapping.madvise(_mmap.MADV_DONTNEED)


def _slabs(path: Path, layout: _Layout) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, block)`` along the first axis, a few MiB at a time, never the whole volume.

    ``block`` has shape ``(k, *shape[1:])`` (a 2-D image is one block of
    shape ``(1, Y, X)``); pages of a memory map are released after each.
    """
    shape = layout.shape if len(layout.shape) == 3 else (1, *layout.shape)
    if layout.offset is None:
        yield from _tiff_slabs(path, layout, shape)
        return
    mapped = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset, shape=shape)
    step = max(1, _SCAN_VALUES // max(1, shape[1] * shape[2]))
    for start in range(0, shape[0], step):
        yield start, np.asarray(mapped[start:start + step])
        release_pages(mapped)


def validate(path: str | os.PathLike, *, finite: bool = True) -> VolumeInfo:
    """Check an input file before any work: header, size, data type and (streamed) values.

    Reads the header only (:func:`read_info`: an MRC or TIFF file, real
    data, not truncated), then scans the values for NaN and infinity with
    :func:`check_finite` unless ``finite=False``.

    Returns
    -------
    VolumeInfo
        The header.

    Raises
    ------
    InputError
        Naming the file and what is wrong with it.

    Examples
    --------
    >>> import tempfile
    >>> from cryocare.io import write
    >>> path = write(Path(tempfile.mkdtemp()) / "tomo.mrc", np.zeros((4, 8, 8)))
    >>> validate(path).shape
    (4, 8, 8)
    """
    path = Path(path)
    info, layout = _inspect(path)
    if finite:
        _scan_file(path, layout)
    return info


def validate_pair(even: str | os.PathLike, odd: str | os.PathLike, *,
                  finite: bool = True) -> VolumeInfo:
    """Check an even/odd pair before any work: both headers, equal shapes and voxel sizes, values.

    The headers of both files are read and compared first (milliseconds),
    then each file is scanned for NaN and infinity (:func:`check_finite`)
    unless ``finite=False``.

    Returns
    -------
    VolumeInfo
        The header of the even file.

    Raises
    ------
    InputError
        As :func:`read_pair` and :func:`check_finite`, naming the file.

    Examples
    --------
    >>> import tempfile
    >>> from cryocare.io import write
    >>> folder = Path(tempfile.mkdtemp())
    >>> even = write(folder / "even.mrc", np.zeros((4, 8, 8)), voxel_size=10.0)
    >>> odd = write(folder / "odd.mrc", np.zeros((4, 8, 6)), voxel_size=10.0)
    >>> validate_pair(even, odd)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cryocare.errors.InputError: ...even.mrc and ...odd.mrc: ... found (4, 8, 8) and (4, 8, 6)
    """
    even, odd = Path(even), Path(odd)
    (_, info), (layout_e, layout_o) = _pair_headers(even, odd)
    if finite:
        _scan_file(even, layout_e)
        _scan_file(odd, layout_o)
    return info


def check_inputs(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], *,
                 masks: Sequence[str | os.PathLike | None] | str | os.PathLike | None = None,
                 finite: bool = True) -> list[VolumeInfo]:
    """Check every input of a run before any work: all headers first, then the values.

    Parameters
    ----------
    pairs : sequence of (even, odd)
        The even/odd files, e.g. from :func:`cryocare.halves.find_halves`.
    masks : path, or sequence of path or None, optional
        One mask for every pair, or one per pair (None: no mask). A mask
        must have the shape of its pair.
    finite : bool, optional
        Also scan every file for NaN and infinity (default True).

    Returns
    -------
    list of VolumeInfo
        The header of each even file.

    Raises
    ------
    InputError
        For the first bad file, naming it: every header is checked before
        any value is read, so a bad header fails in milliseconds.

    Examples
    --------
    >>> import tempfile
    >>> from cryocare.io import write
    >>> folder = Path(tempfile.mkdtemp())
    >>> files = [write(folder / f"t_{h}.mrc", np.zeros((4, 8, 8))) for h in ("even", "odd")]
    >>> [info.shape for info in check_inputs([files])]
    [(4, 8, 8)]
    """
    pairs = [(Path(e), Path(o)) for e, o in pairs]
    if masks is None or isinstance(masks, (str, os.PathLike)):
        mask_list = [masks] * len(pairs)
    else:
        mask_list = list(masks)
        if len(mask_list) != len(pairs):
            raise InputError(f"masks: expected one mask or one per pair ({len(pairs)}), "
                             f"found {len(mask_list)}")
    infos, scans, masks_read = [], {}, {}
    for (even, odd), mask in zip(pairs, mask_list, strict=True):
        (_, info), (layout_e, layout_o) = _pair_headers(even, odd)
        infos.append(info)
        scans.update({even: layout_e, odd: layout_o})
        if mask is not None:
            mask = Path(mask)
            if mask not in masks_read:  # one mask may serve every pair: read it once
                masks_read[mask] = _inspect(mask)
            mask_info, scans[mask] = masks_read[mask]
            if mask_info.shape != info.shape:
                raise InputError(f"{mask}: expected a mask of the shape of {even} "
                                 f"{info.shape}, found {mask_info.shape}")
    if finite:
        for path, layout in scans.items():  # each file once, in order
            _scan_file(path, layout)
    return infos
