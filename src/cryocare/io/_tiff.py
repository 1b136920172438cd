"""TIFF files: recognised, their headers read (shape, data type, voxel size), data read."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..halves import TIFF_SUFFIXES
from ._common import VolumeInfo, _f32, _Layout

logger = logging.getLogger(__package__)  # "cryocare.io", as the public module

_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
# Length units of TIFF resolution tags and ImageJ metadata, in Å.
_TIFF_UNITS = {2: 2.54e8, 3: 1e8, 4: 1e7, 5: 1e4}  # RESUNIT inch, cm, mm, µm
_IMAGEJ_UNITS = {"micron": 1e4, "microns": 1e4, "um": 1e4, "\u00b5m": 1e4, "\u03bcm": 1e4,
                 "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "a": 1.0, "\u00e5": 1.0,
                 "\u212b": 1.0, "angstrom": 1.0, "angstroms": 1.0, "mm": 1e7, "cm": 1e8}


def _is_tiff(path: Path) -> bool:
    """A TIFF by its name, or by its first bytes whatever the name."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError:
        return False  # reported by the MRC reader


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


def _read_tiff(path: Path, layout: _Layout) -> np.ndarray:
    """The first series of a TIFF file in the file's data type."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.series[0].asarray().reshape(layout.shape)
    except Exception as err:  # noqa: BLE001 - tifffile raises many kinds on bad files
        raise InputError(f"{path}: not a readable TIFF file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None


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
