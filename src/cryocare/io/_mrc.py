"""MRC headers: checked byte by byte, then read with :mod:`mrcfile`, without the data."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from mrcfile import utils as mrc_utils
from mrcfile.mrcfile import MrcFile

from ..errors import InputError
from ._common import _HEADER_BYTES, VolumeInfo, _f32, _Layout

logger = logging.getLogger(__package__)  # "cryocare.io", as the public module

_REAL_MODES = (0, 1, 2, 6, 12)  # int8, int16, float32, uint16 (or uint8), float16


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
