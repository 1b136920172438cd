"""Writing MRC files atomically: whole (:func:`write`) or slab by slab (:func:`open_writer`)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import mrcfile
import numpy as np
from mrcfile.mrcfile import MrcFile

from .. import __version__
from ..errors import InputError, OutputError
from ._common import _HEADER_BYTES, VolumeInfo
from ._files import _check_target, _fsync, _output_errors, remove_stale_temporaries, temporary_path
from ._read import read_info

logger = logging.getLogger(__package__)  # "cryocare.io", as the public module

_STACK_SUFFIXES = (".st", ".mrcs")  # 3-D data written as image stacks
_MAX_LABELS = 10  # the MRC header holds ten 80-character labels


def write(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    origin: tuple[float, float, float] | None = None,
    like: VolumeInfo | str | os.PathLike | None = None,
    overwrite: bool = False,
    label: str | None = None,
) -> Path:
    """Write a 2-D image or 3-D volume to an MRC file as float32, atomically.

    The file is written to a temporary file in the same folder, synced to disk
    and renamed onto `path`; on failure the temporary file is removed and an
    existing `path` is left untouched. The header statistics (dmin, dmax,
    dmean, rms) are computed from the data written.

    Parameters
    ----------
    path : str or path-like
        Output file, ending in .mrc, .rec, .st, .mrcs or .map (any case). Its
        folder must exist. 3-D data in .st or .mrcs files is marked as an
        image stack, otherwise as a volume.
    data : array_like
        Real, finite 2-D (Y, X) or 3-D (Z, Y, X) data; converted to float32.
        Not modified.
    voxel_size : float or tuple of 3 floats, optional
        Voxel size in Å, isotropic or (Z, Y, X). Default: from `like`, else
        0.0 (unknown).
    origin : tuple of 3 floats, optional
        (Z, Y, X) origin in Å. Default: from `like`, else zeros.
    like : VolumeInfo or str or path-like, optional
        Header (or MRC or TIFF file) whose voxel size and origin are copied
        unless given explicitly, and whose labels are kept: ours is appended
        after them, as IMOD does (the header holds 10; when full, the oldest
        of the source's are dropped, never ours).
    overwrite : bool, optional
        Replace an existing file. Default False.
    label : str, optional
        Text for the header label ``"cryocare <version>: <label> <UTC time>"``,
        shortened to fit its 80 characters; characters other than printable
        ASCII become ``?``. Default ``"written"``.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputExistsError
        If `path` exists and `overwrite` is False; nothing is written.
    InputError
        For a wrong extension, a missing folder, or invalid data or options.
    OutputError
        If the file cannot be written (no space left, a file-size limit, a
        read-only folder): an :class:`OSError` naming `path`; nothing is
        left behind and an existing `path` is untouched.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "out.mrc"
    >>> write(path, np.zeros((4, 8, 8)), voxel_size=(12.0, 10.0, 10.0)) == path
    True
    """
    path = Path(path)
    _check_target(path, overwrite=overwrite)
    array = _as_float32(path, data)
    header = _new_header(path, like, voxel_size, origin, label)

    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        with _output_errors(path):
            with mrcfile.new(tmp) as mrc:
                mrc.set_data(array)  # also runs mrc.update_header_stats()
                _set_header(mrc, path, array.ndim, header)
            _fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        with contextlib.suppress(OSError):  # some file systems cannot sync folders
            _fsync(path.parent)
    logger.info("wrote %s: shape %s, voxel size %s Å", path, array.shape, header.voxel_size)
    return path


class SlabWriter:
    """Write an MRC file slab by slab (along the first axis), atomically.

    Made by :func:`open_writer`; use it as a context manager. Slabs are
    appended in order with :meth:`write` and go straight to a temporary file
    in the target's folder, so memory holds at most one slab. Header
    statistics (dmin, dmax, dmean, rms) are accumulated slab by slab (rms is
    the standard deviation, as :mod:`mrcfile` computes it) and written when
    the last slab is in; only then is the file renamed onto the target. If
    the ``with`` block fails, or ends before every slab was written, the
    temporary file is removed and the target is left untouched.
    """

    _CHUNK = 2**18  # values per step of the statistics

    def __init__(self, path: Path, tmp: Path, shape: tuple[int, ...], offset: int):
        self.path, self.shape = path, shape
        self._tmp, self._offset = tmp, offset
        self._file = open(tmp, "r+b")  # noqa: SIM115  (closed in close/abort)
        self._file.seek(offset)
        self.written = 0  # slabs (indices along the first axis) written so far
        self._count, self._mean, self._m2 = 0, 0.0, 0.0
        self._min, self._max = np.inf, -np.inf

    def write(self, slab: np.ndarray) -> None:
        """Append ``slab``, shape ``(k, *shape[1:])`` (or ``shape[1:]`` for one), as float32."""
        block = np.asarray(slab)
        if block.shape == self.shape[1:]:
            block = block[None]
        if block.ndim == 2:  # rows of a 2-D image
            block = _as_float32(self.path, block)
        elif block.ndim == 3:
            block = _as_float32(self.path, block)
        if block.shape[1:] != self.shape[1:] or self.written + len(block) > self.shape[0]:
            raise InputError(
                f"{self.path}: expected slabs of shape (k, {', '.join(map(str, self.shape[1:]))})"
                f" filling {self.shape[0]} along the first axis, found {block.shape} after "
                f"{self.written} written"
            )
        flat = block.reshape(-1)
        for start in range(0, flat.size, self._CHUNK):  # float64 in chunks: memory stays small
            values = flat[start:start + self._CHUNK].astype(np.float64)
            n, mean = values.size, float(values.mean())
            values -= mean
            m2 = float(np.dot(values, values))
            total = self._count + n
            delta = mean - self._mean
            self._m2 += m2 + delta * delta * self._count * n / total  # Chan et al. (1979)
            self._mean += delta * n / total
            self._count = total
        self._min = min(self._min, float(block.min()))
        self._max = max(self._max, float(block.max()))
        try:
            with _output_errors(self.path):
                np.ascontiguousarray(block, dtype="<f4").tofile(self._file)
        except OutputError:
            self.abort()
            raise
        self.written += len(block)

    def close(self) -> Path:
        """Finish: header statistics, sync, rename onto the target. Returns the path."""
        if self.written != self.shape[0]:
            self.abort()
            raise InputError(f"{self.path}: expected {self.shape[0]} slices, "
                             f"{self.written} were written; nothing written")
        try:
            header = np.zeros(1, dtype=mrcfile.dtypes.HEADER_DTYPE)
            self._file.seek(0)
            header_bytes = bytearray(self._file.read(header.itemsize))
            header = np.frombuffer(header_bytes, dtype=mrcfile.dtypes.HEADER_DTYPE)
            header = header.copy()
            header["dmin"], header["dmax"] = self._min, self._max
            header["dmean"] = self._mean
            header["rms"] = np.sqrt(self._m2 / self._count)
            with _output_errors(self.path):
                self._file.seek(0)
                self._file.write(header.tobytes())
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        if os.name == "posix":
            with contextlib.suppress(OSError):
                _fsync(self.path.parent)
        logger.info("wrote %s slab by slab: shape %s", self.path, self.shape)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file; the target is not touched."""
        with contextlib.suppress(OSError):  # closing flushes, which fails on a full disk
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> SlabWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def open_writer(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    origin: tuple[float, float, float] | None = None,
    like: VolumeInfo | str | os.PathLike | None = None,
    overwrite: bool = False,
    label: str | None = None,
) -> SlabWriter:
    """Start writing a float32 MRC file of ``shape`` slab by slab (see :class:`SlabWriter`).

    Options are those of :func:`write`. The existence of ``path`` is checked
    now and again nothing is replaced unless ``overwrite``. The full-size
    temporary file is created now, so a lack of space or permission raises
    :class:`~cryocare.errors.OutputError` here, before any work, and later
    failures of :meth:`SlabWriter.write` too; nothing is left behind.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cryocare.io import read
    >>> path = Path(tempfile.mkdtemp()) / "big.mrc"
    >>> with open_writer(path, (4, 8, 8), voxel_size=10.0) as writer:
    ...     for z in range(0, 4, 2):
    ...         writer.write(np.full((2, 8, 8), z, np.float32))
    >>> float(read(path).mean()), mrcfile.open(path).header.dmax.item()
    (1.0, 2.0)
    """
    path = Path(path)
    _check_target(path, overwrite=overwrite)
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"{path}: expected a non-empty 2-D or 3-D shape, found {shape}")
    header = _new_header(path, like, voxel_size, origin, label)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        with _output_errors(path):
            with mrcfile.new(tmp) as mrc:  # header only; the data block is appended below
                mrc.set_data(np.zeros((1,) * len(shape), np.float32))
                fields = mrc.header
                fields.nx, fields.ny = shape[-1], shape[-2]
                fields.nz = fields.mz = shape[0] if len(shape) == 3 else 1
                fields.mx, fields.my = shape[-1], shape[-2]
                _set_header(mrc, path, len(shape), header)
            size = _HEADER_BYTES + 4 * int(np.prod(shape))
            os.truncate(tmp, size)
            writer = SlabWriter(path, tmp, shape, _HEADER_BYTES)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return writer


def _as_float32(path: Path, data: np.ndarray) -> np.ndarray:
    """Convert real 2-D/3-D data to float32, rejecting what MRC cannot hold."""
    data = np.asarray(data)
    if data.dtype.kind not in "iuf":
        raise InputError(f"{path}: expected real numeric data, found dtype {data.dtype}")
    if data.ndim not in (2, 3) or data.size == 0:
        raise InputError(f"{path}: expected non-empty 2-D or 3-D data, found shape {data.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, caught below
        array = data.astype(np.float32, copy=False)
    step = max(1, 2**22 // max(1, array[0].size))  # in chunks: no mask of the whole slab
    bad = sum(int(array[i:i + step].size - np.count_nonzero(np.isfinite(array[i:i + step])))
              for i in range(0, len(array), step))
    if bad:
        raise InputError(
            f"{path}: expected finite float32 values, found {bad} NaN or infinite value(s)"
        )
    return array


class _Header(NamedTuple):
    """What a new file's header says beyond its data: (Z, Y, X) geometry in Å, labels."""

    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    labels: list[str]


def _new_header(path: Path, like, voxel_size, origin, label: str | None) -> _Header:
    """The header of a new file: the given values, else those of ``like``; its labels and ours."""
    like = _like(path, like)
    return _Header(*_geometry(path, like, voxel_size, origin), _labels(like, label))


def _set_header(mrc: MrcFile, path: Path, ndim: int, header: _Header) -> None:
    """Write ``header`` into an open new file (an image stack for 3-D data named .st/.mrcs)."""
    if ndim == 3 and path.suffix.lower() in _STACK_SUFFIXES:
        mrc.set_image_stack()
    mrc.voxel_size = header.voxel_size[::-1]  # the MRC header holds (x, y, z)
    mrc.header.origin = header.origin[::-1]
    _set_labels(mrc, header.labels)


def _like(path: Path, like) -> VolumeInfo | None:
    """The header ``like=`` stands for (read from its file if a path)."""
    if isinstance(like, (str, os.PathLike)):
        return read_info(like)
    if like is not None and not isinstance(like, VolumeInfo):
        raise InputError(f"{path}: expected like= a VolumeInfo or an MRC file, found {like!r}")
    return like


def _geometry(path: Path, like: VolumeInfo | None, voxel_size, origin):
    """Voxel size and origin (Z, Y, X) for a new file: given values, else those of ``like``."""
    if voxel_size is None:
        voxel_size = like.voxel_size if like is not None else 0.0
    if origin is None:
        origin = like.origin if like is not None else (0.0, 0.0, 0.0)
    voxel = _triple(path, "voxel_size", voxel_size, scalar_ok=True)
    if min(voxel) < 0:
        raise InputError(f"{path}: expected voxel_size >= 0 Å, found {voxel}")
    return voxel, _triple(path, "origin", origin, scalar_ok=False)


def _triple(path: Path, name: str, value, *, scalar_ok: bool) -> tuple[float, float, float]:
    """Return `value` as three finite floats (Z, Y, X)."""
    try:
        values = np.array(value, dtype=float)
    except (TypeError, ValueError):
        values = np.empty(0)
    if scalar_ok and values.ndim == 0:
        values = np.repeat(values, 3)
    if values.shape != (3,) or not np.isfinite(values).all():
        what = "a number or " if scalar_ok else ""
        raise InputError(f"{path}: expected {name} as {what}3 finite numbers (Z, Y, X) in Å, "
                         f"found {value!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _labels(like: VolumeInfo | None, label: str | None) -> list[str]:
    """The source's labels (the newest that fit) followed by ours: 10 at most."""
    ours = _label(label)
    kept = [_ascii(text)[:80] for text in (like.labels if like is not None else ())]
    kept = [text for text in kept if text.strip()][-(_MAX_LABELS - 1):]
    if like is not None and len(like.labels) > len(kept):
        logger.info("%s: the header holds %d labels; the oldest %d of the source's dropped",
                    like.path, _MAX_LABELS, len(like.labels) - len(kept))
    return [*kept, ours]


def _set_labels(mrc: MrcFile, labels: Sequence[str]) -> None:
    mrc.header.nlabl = 0  # drop mrcfile's default label
    mrc.header.label = b""
    for text in labels:
        mrc.add_label(text)


def _ascii(text: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)


def _label(label: str | None) -> str:
    """Build the header label: printable ASCII ("?" for other characters), 80 at most."""
    text = "written" if label is None else str(label)
    text = _ascii(text)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    prefix = f"cryocare {__version__}: "
    room = 80 - len(prefix) - len(stamp) - 1
    return f"{prefix}{text[:room]} {stamp}"
