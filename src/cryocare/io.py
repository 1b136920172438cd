"""Read and write MRC files: tomograms, tilt series, images and even/odd pairs.

Layers, from the bottom up: the header is read with :mod:`mrcfile`
(:func:`read_info`), the data block is mapped with :class:`numpy.memmap` at
the header's data offset (``read(..., mmap=True)``) or copied from it as
float32 (:func:`read`), and files are written through :mod:`mrcfile` to a
temporary file that atomically replaces the target (:func:`write`). Volumes
larger than memory are written slab by slab with :func:`open_writer`.

Arrays are indexed (Z, Y, X), as in :mod:`mrcfile`. Voxel sizes and origins
are given in (Z, Y, X) order, in Å; the MRC header stores them as (x, y, z).
Bad input raises :class:`~cryocare.errors.InputError` with a one-line message
naming the file; no :mod:`warnings` are emitted.
"""

from __future__ import annotations

import contextlib
import logging
import mmap as _mmap
import os
import secrets
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile import utils as mrc_utils
from mrcfile.mrcfile import MrcFile

from . import __version__
from .errors import InputError, OutputExistsError

__all__ = ["VolumeInfo", "SlabWriter", "read_info", "read", "read_pair", "write", "open_writer",
           "read_region", "release_pages"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".mrc", ".rec", ".st", ".mrcs", ".map")
_STACK_SUFFIXES = (".st", ".mrcs")  # 3-D data written as image stacks
_HEADER_BYTES = 1024
_REAL_MODES = (0, 1, 2, 6, 12)  # int8, int16, float32, uint16 (or uint8), float16
_PAIR_RTOL = 1e-3  # relative tolerance on voxel sizes of an even/odd pair


@dataclass(frozen=True)
class VolumeInfo:
    """What the header of an MRC file says about its data.

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
        Text labels of the header.

    Examples
    --------
    >>> import tempfile, numpy as np
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

    offset: int
    dtype: np.dtype  # with the file's byte order
    shape: tuple[int, ...]


def read_info(path: str | os.PathLike) -> VolumeInfo:
    """Read the header of an MRC file, without its data.

    Parameters
    ----------
    path : str or path-like
        The MRC file.

    Returns
    -------
    VolumeInfo
        Shape, data type, voxel size, origin and labels.

    Raises
    ------
    InputError
        If the file is missing, is not an MRC file, is truncated or holds
        complex or otherwise unsupported data.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = write(Path(tempfile.mkdtemp()) / "tomo.mrc", np.zeros((4, 8, 8)))
    >>> read_info(path).dtype
    dtype('float32')
    """
    return _inspect(Path(path))[0]


def read(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """Read the data of an MRC file.

    Parameters
    ----------
    path : str or path-like
        The MRC file.
    mmap : bool, optional
        If False (default), return an in-memory float32 copy, converted from
        the file's data type. If True, return a read-only memory map of the
        data block in the file's own data type; it stays valid after the
        file is closed, replaced or deleted.

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
        The two MRC files.
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
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("even.mrc", "odd.mrc"):
    ...     _ = write(folder / name, np.zeros((4, 8, 8)), voxel_size=10.0)
    >>> even, odd, info = read_pair(folder / "even.mrc", folder / "odd.mrc", mmap=True)
    >>> even.shape == odd.shape == info.shape
    True
    """
    even, odd = Path(even), Path(odd)
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
    return _load(even, layout_e, mmap=mmap), _load(odd, layout_o, mmap=mmap), info_e


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
        Header (or MRC file) whose voxel size and origin are copied unless
        given explicitly.
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
    (vz, vy, vx), (oz, oy, ox) = _geometry(path, like, voxel_size, origin)
    text = _label(label)

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with mrcfile.new(tmp) as mrc:
            mrc.set_data(array)  # also runs mrc.update_header_stats()
            if array.ndim == 3 and path.suffix.lower() in _STACK_SUFFIXES:
                mrc.set_image_stack()
            mrc.voxel_size = (vx, vy, vz)
            mrc.header.origin = (ox, oy, oz)
            mrc.header.nlabl = 0  # drop mrcfile's default label
            mrc.header.label = b""
            mrc.add_label(text)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        with contextlib.suppress(OSError):  # some file systems cannot sync folders
            _fsync(path.parent)
    logger.info("wrote %s: shape %s, voxel size %s Å", path, array.shape, (vz, vy, vx))
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
        np.ascontiguousarray(block, dtype="<f4").tofile(self._file)
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
    now and again nothing is replaced unless ``overwrite``.

    Examples
    --------
    >>> import tempfile, numpy as np
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
    (vz, vy, vx), (oz, oy, ox) = _geometry(path, like, voxel_size, origin)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with mrcfile.new(tmp) as mrc:  # header only; the data block is appended below
            mrc.set_data(np.zeros((1,) * len(shape), np.float32))
            header = mrc.header
            header.nx, header.ny = shape[-1], shape[-2]
            header.nz = header.mz = shape[0] if len(shape) == 3 else 1
            header.mx, header.my = shape[-1], shape[-2]
            if len(shape) == 3 and path.suffix.lower() in _STACK_SUFFIXES:
                mrc.set_image_stack()
            mrc.voxel_size = (vx, vy, vz)
            header.origin = (ox, oy, oz)
            header.nlabl = 0
            header.label = b""
            mrc.add_label(_label(label))
        size = _HEADER_BYTES + 4 * int(np.prod(shape))
        os.truncate(tmp, size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SlabWriter(path, tmp, shape, _HEADER_BYTES)


def _inspect(path: Path) -> tuple[VolumeInfo, _Layout]:
    """Read and check the header of `path`; all bad-input errors come from here."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: expected an MRC file, found a directory")
    size = _check_raw_header(path)
    # Permissive mode turns format problems into warnings; we check the fields
    # ourselves below and only log what mrcfile tolerated (e.g. a machine stamp).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # MrcFile, not mrcfile.open: no guessing of gzip/bzip2 from the first bytes.
            with MrcFile(path, header_only=True, permissive=True) as mrc:
                header = mrc.header.copy()
                labels = tuple(s.strip() for s in mrc.get_labels() if s.strip())
                with np.errstate(divide="ignore", invalid="ignore"):
                    voxel = mrc.voxel_size.item()  # (x, y, z); inf/nan if mx == 0
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: expected a readable MRC file, found error: {err}") from None

    mode = int(header.mode)
    if mode in (3, 4):
        raise InputError(f"{path}: expected real data, found complex data (MRC mode {mode})")
    if mode not in _REAL_MODES:
        raise InputError(f"{path}: expected MRC mode 0, 1, 2, 6 or 12, found unsupported {mode}")
    if mrc_utils.spacegroup_is_volume_stack(header.ispg):
        raise InputError(f"{path}: expected a 2-D image or 3-D volume, found a 4-D volume stack")
    dims = (int(header.nx), int(header.ny), int(header.nz))
    if min(dims) <= 0:
        raise InputError(f"{path}: expected positive dimensions, found nx, ny, nz = {dims}")
    layout = _Layout(
        offset=_HEADER_BYTES + int(header.nsymbt),
        dtype=mrc_utils.data_dtype_from_header(header),
        shape=tuple(int(n) for n in mrc_utils.data_shape_from_header(header)),
    )
    expected = layout.offset + layout.dtype.itemsize * int(np.prod(layout.shape))
    if size < expected:
        raise InputError(
            f"{path}: truncated MRC file: expected {expected} bytes from the header "
            f"(shape {layout.shape}, {layout.dtype.name}), found {size}"
        )

    for warning in caught:
        logger.warning("%s: %s", path, warning.message)
    if size > expected:
        logger.warning("%s: %d bytes after the data block ignored", path, size - expected)
    if (int(header.mapc), int(header.mapr), int(header.maps)) != (1, 2, 3):
        logger.warning("%s: axis order mapc/mapr/maps ignored; read as X, Y, Z", path)
    voxel_zyx = []
    for axis, value in zip("ZYX", voxel[::-1], strict=True):
        if not (np.isfinite(value) and value > 0):
            logger.warning("%s: voxel size along %s is %s in the header; reported as 0.0 "
                           "(unknown)", path, axis, value)
            value = 0.0
        voxel_zyx.append(_f32(value))
    info = VolumeInfo(
        path=path,
        shape=layout.shape,
        dtype=layout.dtype.newbyteorder("="),
        voxel_size=tuple(voxel_zyx),
        origin=tuple(_f32(v) for v in header.origin.item()[::-1]),
        labels=labels,
    )
    return info, layout


def _check_raw_header(path: Path) -> int:
    """Reject non-MRC files before mrcfile allocates their (garbage) extended-header size.

    Returns the file size. Byte offsets are those of the MRC2014 header: ``nsymbt``
    at 92, the map ID ``MAP`` at 208 and the machine stamp at 212.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(_HEADER_BYTES)
    except OSError as err:
        raise InputError(f"{path}: expected a readable file, found error: {err.strerror}") from None
    hint = "; decompress it first" if path.suffix.lower() in (".gz", ".bz2") else ""
    if size < _HEADER_BYTES:
        raise InputError(
            f"{path}: not an MRC file: expected at least the {_HEADER_BYTES}-byte header, "
            f"found {size} bytes{hint}"
        )
    if raw[208:211] != b"MAP":
        raise InputError(f"{path}: not an MRC file (no 'MAP' identifier in the header){hint}")
    nsymbt = int.from_bytes(raw[92:96], "big" if raw[212] == 0x11 else "little", signed=True)
    if not 0 <= nsymbt <= size - _HEADER_BYTES:
        raise InputError(
            f"{path}: corrupt or truncated MRC file: expected an extended header of 0 to "
            f"{size - _HEADER_BYTES} bytes, found {nsymbt} bytes"
        )
    return size


def _load(path: Path, layout: _Layout, *, mmap: bool) -> np.ndarray:
    """Map the data block read-only; copy it as float32 unless `mmap`."""
    mapped = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset,
                       shape=layout.shape)
    return mapped if mmap else np.array(mapped, dtype=np.float32)


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


def read_region(array: np.ndarray, region: tuple[slice, ...]) -> np.ndarray:
    """``array[region]`` as float32, without keeping mapped pages resident.

    A memory-mapped array (``read(..., mmap=True)``) is copied one index of
    the first axis at a time, and the pages read are dropped from resident
    memory after each (:func:`release_pages`): the kernel maps whole page
    folios (up to megabytes) around every row touched, so a thin tile of a
    large mapped volume would otherwise hold a good part of the file in the
    process's memory. Any other array is simply indexed (no copy when it
    is float32 already).

    Examples
    --------
    >>> data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    >>> read_region(data, (slice(0, 2), slice(1, 3), slice(0, 2)))[1].tolist()
    [[16.0, 17.0], [20.0, 21.0]]
    """
    mapping = _mapping(array)
    if mapping is None or np.ndim(array) < 2:
        return np.asarray(array[region], dtype=np.float32)
    first, rest = region[0], tuple(region[1:])
    rows = range(*first.indices(array.shape[0]))
    shape = [len(range(*s.indices(n))) for s, n in zip(rest, array.shape[1:], strict=True)]
    out = np.empty((len(rows), *shape), dtype=np.float32)
    for index, row in enumerate(rows):
        out[index] = array[(row, *rest)]
        mapping.madvise(_mmap.MADV_DONTNEED)
    return out


def _check_target(path: Path, *, overwrite: bool) -> None:
    if path.suffix.lower() not in _SUFFIXES:
        raise InputError(
            f"{path}: expected an MRC extension ({', '.join(_SUFFIXES)}), "
            f"found '{path.suffix}'"
        )
    if not path.parent.is_dir():
        raise InputError(f"{path}: expected an existing folder {path.parent}, found none")
    if path.is_dir():
        raise InputError(f"{path}: expected a file name, found a directory")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: file exists; pass overwrite=True to replace it")


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


def _geometry(path: Path, like, voxel_size, origin):
    """Voxel size and origin (Z, Y, X) for a new file: given values, else those of ``like``."""
    if isinstance(like, (str, os.PathLike)):
        like = read_info(like)
    elif like is not None and not isinstance(like, VolumeInfo):
        raise InputError(f"{path}: expected like= a VolumeInfo or an MRC file, found {like!r}")
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


def _label(label: str | None) -> str:
    """Build the header label: printable ASCII ("?" for other characters), 80 at most."""
    text = "written" if label is None else str(label)
    text = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    prefix = f"cryocare {__version__}: "
    room = 80 - len(prefix) - len(stamp) - 1
    return f"{prefix}{text[:room]} {stamp}"


def _f32(value: float) -> float:
    """Return a float32 header value as its shortest exact decimal (2.1, not 2.1000001...)."""
    return float(str(np.float32(value)))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _PAIR_RTOL * max(abs(a), abs(b))


def _fsync(path: Path) -> None:
    """Flush a file (or a folder entry) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
