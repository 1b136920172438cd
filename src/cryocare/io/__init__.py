"""Read and write tomograms: MRC (read and write) and TIFF (read), and even/odd pairs.

Layers, from the bottom up: the header is read with :mod:`mrcfile` or
:mod:`tifffile` (:func:`read_info`), the data block is mapped with
:class:`numpy.memmap` at the header's data offset (``read(..., mmap=True)``)
or copied from it as float32 (:func:`read`), and MRC files are written
through :mod:`mrcfile` to a temporary file that atomically replaces the
target (:func:`write`). Volumes larger than memory are written slab by slab
with :func:`open_writer`. Inputs are checked before any work with
:func:`validate`, :func:`validate_pair` and :func:`check_inputs`: headers
first, then a streamed scan for NaN and infinite values
(:func:`check_finite`) that never holds a whole volume in memory.

Arrays are indexed (Z, Y, X), as in :mod:`mrcfile`. Voxel sizes and origins
are given in (Z, Y, X) order, in Å; the MRC header stores them as (x, y, z).
Bad input raises :class:`~cryocare.errors.InputError` with a one-line message
naming the file; a write that fails (no space, no permission) raises
:class:`~cryocare.errors.OutputError` naming the file and leaves nothing
behind; no :mod:`warnings` are emitted.

Temporary files are named ``.<name>.cryocare-<host>-<pid>-<token>.tmp``
beside the target; one left by a process that was killed is removed by the
next write to the same target on the same host.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import mmap as _mmap
import os
import re
import secrets
import socket
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile import utils as mrc_utils
from mrcfile.mrcfile import MrcFile

from .. import __version__
from ..errors import InputError, OutputError, OutputExistsError

__all__ = ["VolumeInfo", "SlabWriter", "read_info", "read", "read_pair", "write", "open_writer",
           "read_region", "release_pages", "check_finite", "validate", "validate_pair",
           "check_inputs", "check_output", "temporary_path", "remove_stale_temporaries"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".mrc", ".rec", ".st", ".mrcs", ".map")
_TIFF_SUFFIXES = (".tif", ".tiff")
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
_STACK_SUFFIXES = (".st", ".mrcs")  # 3-D data written as image stacks
_HEADER_BYTES = 1024
_REAL_MODES = (0, 1, 2, 6, 12)  # int8, int16, float32, uint16 (or uint8), float16
_PAIR_RTOL = 1e-3  # relative tolerance on voxel sizes of an even/odd pair
_MAX_LABELS = 10  # the MRC header holds ten 80-character labels
_SCAN_VALUES = 2**22  # values per step of the finite scan (16 MiB of float32)
# Length units of TIFF resolution tags and ImageJ metadata, in Å.
_TIFF_UNITS = {2: 2.54e8, 3: 1e8, 4: 1e7, 5: 1e4}  # RESUNIT inch, cm, mm, µm
_IMAGEJ_UNITS = {"micron": 1e4, "microns": 1e4, "um": 1e4, "\u00b5m": 1e4, "\u03bcm": 1e4,
                 "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "a": 1.0, "\u00e5": 1.0,
                 "\u212b": 1.0, "angstrom": 1.0, "angstroms": 1.0, "mm": 1e7, "cm": 1e8}


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
    like = _like(path, like)
    (vz, vy, vx), (oz, oy, ox) = _geometry(path, like, voxel_size, origin)
    labels = _labels(like, label)

    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        with _output_errors(path):
            with mrcfile.new(tmp) as mrc:
                mrc.set_data(array)  # also runs mrc.update_header_stats()
                if array.ndim == 3 and path.suffix.lower() in _STACK_SUFFIXES:
                    mrc.set_image_stack()
                mrc.voxel_size = (vx, vy, vz)
                mrc.header.origin = (ox, oy, oz)
                _set_labels(mrc, labels)
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
    like = _like(path, like)
    (vz, vy, vx), (oz, oy, ox) = _geometry(path, like, voxel_size, origin)
    labels = _labels(like, label)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        with _output_errors(path):
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
                _set_labels(mrc, labels)
            size = _HEADER_BYTES + 4 * int(np.prod(shape))
            os.truncate(tmp, size)
            writer = SlabWriter(path, tmp, shape, _HEADER_BYTES)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return writer


def _inspect(path: Path) -> tuple[VolumeInfo, _Layout]:
    """Read and check the header of `path`; all bad-input errors come from here."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: expected an MRC or TIFF file, found a directory")
    if _is_tiff(path):
        return _inspect_tiff(path)
    return _inspect_mrc(path)


def _is_tiff(path: Path) -> bool:
    """A TIFF by its name, or by its first bytes whatever the name."""
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError:
        return False  # reported by the MRC reader


def _inspect_mrc(path: Path) -> tuple[VolumeInfo, _Layout]:
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


def _inspect_tiff(path: Path) -> tuple[VolumeInfo, _Layout]:
    """Header of a TIFF file: shape, data type, voxel size; where its data lies."""
    import tifffile

    try:
        size = path.stat().st_size
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: expected a TIFF image or stack, found no image data")
            series = tif.series[0]
            page = series.keyframe
            photometric = int(page.photometric)
            shape = tuple(int(n) for n in series.shape if n != 1) or (1, 1)
            dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            offset = series.dataoffset
            if offset is not None:
                end = int(offset) + int(series.nbytes)
            else:
                end = max((int(o) + int(n) for p in series.pages if p is not None
                           for o, n in zip(p.dataoffsets, p.databytecounts, strict=True)),
                          default=0)
            resolution, unit = page.resolution, int(page.resolutionunit)
            imagej = tif.imagej_metadata or {}
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - tifffile raises many kinds on bad files
        raise InputError(f"{path}: not a readable TIFF file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None
    if photometric in (2, 3, 6):  # RGB, palette, YCbCr
        raise InputError(f"{path}: expected a grayscale image or stack, found colour data "
                         f"(TIFF photometric {photometric})")
    if dtype.kind not in "iuf":
        raise InputError(f"{path}: expected real data, found {dtype.name} in the TIFF file")
    if len(shape) not in (2, 3):
        raise InputError(f"{path}: expected a 2-D image or a 3-D stack, found a TIFF series "
                         f"of shape {tuple(series.shape)}")
    if end > size:
        raise InputError(f"{path}: truncated TIFF file: expected {end} bytes from its tags, "
                         f"found {size}")
    info = VolumeInfo(path=path, shape=shape, dtype=dtype.newbyteorder("="),
                      voxel_size=_tiff_voxel_size(path, resolution, unit, imagej, len(shape)),
                      origin=(0.0, 0.0, 0.0), labels=())
    layout = _Layout(offset=None if offset is None else int(offset), dtype=dtype, shape=shape,
                     tiff=True)
    return info, layout


def _tiff_voxel_size(path: Path, resolution, unit: int, imagej: dict,
                     ndim: int) -> tuple[float, float, float]:
    """(Z, Y, X) voxel size in Å from TIFF resolution tags and ImageJ metadata; 0.0: unknown."""
    scale = _TIFF_UNITS.get(unit)
    if scale is None:  # ResolutionUnit "none": ImageJ keeps the unit in its description
        scale = _IMAGEJ_UNITS.get(str(imagej.get("unit", "")).strip().lower())
    if scale is None:
        return (0.0, 0.0, 0.0)
    try:
        x, y = (scale / float(r) if float(r) > 0 else 0.0 for r in resolution)
    except (TypeError, ValueError, ZeroDivisionError):
        return (0.0, 0.0, 0.0)
    z = x if x == y else 0.0
    if ndim == 3 and "spacing" in imagej:
        with contextlib.suppress(TypeError, ValueError):
            z = float(imagej["spacing"]) * scale
    voxel = tuple(_f32(v) if np.isfinite(v) and v > 0 else 0.0 for v in (z, y, x))
    logger.debug("%s: voxel size %s Å (Z, Y, X) from the TIFF tags", path, voxel)
    return voxel


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
    if layout.offset is None:  # a TIFF whose data is compressed or scattered
        data = _read_tiff(path, layout)
        data.flags.writeable = False
        return data if mmap else data.astype(np.float32)
    mapped = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset,
                       shape=layout.shape)
    return mapped if mmap else np.array(mapped, dtype=np.float32)


def _read_tiff(path: Path, layout: _Layout) -> np.ndarray:
    """The first series of a TIFF file in the file's data type."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.series[0].asarray().reshape(layout.shape)
    except Exception as err:  # noqa: BLE001 - tifffile raises many kinds on bad files
        raise InputError(f"{path}: not a readable TIFF file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None


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


def _tiff_slabs(path: Path, layout: _Layout,
                shape: tuple[int, ...]) -> Iterator[tuple[int, np.ndarray]]:
    """Slices of a compressed TIFF page by page (the whole series if pages are not slices)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.series[0].pages
            if len(pages) != shape[0]:
                yield 0, tif.series[0].asarray().reshape(shape)
                return
            for z, page in enumerate(pages):
                yield z, page.asarray().reshape(1, *shape[1:])
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - tifffile raises many kinds on bad files
        raise InputError(f"{path}: not a readable TIFF file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None


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


def temporary_path(path: str | os.PathLike, *, suffix: str = "") -> Path:
    """A new temporary file name beside ``path`` that :func:`remove_stale_temporaries` knows.

    ``.<name>.cryocare-<host>-<pid>-<token>.tmp<suffix>``: hidden, unique to
    this call, and naming the process that writes it, so that the file of a
    process that died can be recognised and removed. Nothing is created.

    Examples
    --------
    >>> name = temporary_path("out/tomo.mrc").name
    >>> name.startswith(".tomo.mrc.cryocare-") and name.endswith(".tmp")
    True
    """
    path = Path(path)
    return path.with_name(f".{path.name}.cryocare-{_host()}-{os.getpid()}-"
                          f"{secrets.token_hex(4)}.tmp{suffix}")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``path`` left by processes of this host that no longer run.

    A process killed while writing (SIGKILL, out of memory, power loss)
    leaves its :func:`temporary_path` file beside the target; :func:`write`
    and :func:`open_writer` call this first, so the next write of the same
    target cleans up. Files of running processes, of other hosts (a shared
    file system) and of other targets are left alone.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "tomo.mrc"
    >>> dead = target.with_name(f".tomo.mrc.cryocare-{_host()}-999999999-0a1b.tmp")
    >>> _ = dead.write_bytes(b"partial")
    >>> [p.name for p in remove_stale_temporaries(target)] == [dead.name]
    True
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.cryocare-(?P<host>[A-Za-z0-9-]*)-"
                         rf"(?P<pid>\d+)-[0-9a-f]+\.tmp.*")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.cryocare-*.tmp*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None or match["host"] != _host() or _alive(int(match["pid"])):
            continue
        try:
            candidate.unlink()
        except OSError as err:
            logger.debug("%s: stale temporary file not removed (%s)", candidate, err.strerror)
            continue
        logger.info("removed %s, left by process %s that no longer runs", candidate,
                    match["pid"])
        removed.append(candidate)
    return removed


def _host() -> str:
    """This host's name as it goes into temporary file names: letters, digits, '-'."""
    name = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9-]", "-", name)[:32] or "host"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process can have)
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def _output_errors(path: Path):
    """Turn an OSError of writing ``path`` into one :class:`OutputError` that names it."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        if err.errno == errno.EFBIG:
            reason += " (the file-size limit of this process or file system)"
        raise OutputError(err.errno, f"{path}: cannot write: {reason}; nothing was written",
                          str(path)) from None


def check_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check before any work that an MRC file can be written at ``path``.

    The extension, the folder, an existing file (refused unless
    ``overwrite``) and that the folder takes a new file (a read-only folder,
    a full disk or a missing permission is found now, not after hours of
    work): a temporary file is created and removed. Stale temporary files of
    ``path`` (:func:`remove_stale_temporaries`) are removed.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError, InputError
        As :func:`write`.
    OutputError
        If the folder does not take a new file.

    Examples
    --------
    >>> import tempfile
    >>> check_output(Path(tempfile.mkdtemp()) / "out.mrc").name
    'out.mrc'
    """
    path = Path(path)
    _check_target(path, overwrite=overwrite)
    remove_stale_temporaries(path)
    probe = temporary_path(path)
    with _output_errors(path):
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    return path


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
