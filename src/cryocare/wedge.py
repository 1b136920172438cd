"""The missing wedge: which directions of Fourier space a tilt series measured.

A tilt series about the ``Y`` axis over angles ``θ ∈ [min, max]`` measures,
by the Fourier slice theorem, the central planes that contain the ``k_y``
axis and the direction ``(k_x, k_z) = (cos θ, sin θ)`` (the projection
geometry of :func:`cryocare.reconstruct.project`: detector coordinate
``u = x cos θ + z sin θ``). A frequency is *measured* when the angle of its
``(k_x, k_z)`` part, folded into ``(-90°, 90°]``, lies in ``[min, max]``;
the rest is the *missing wedge* — a double cone around ``k_z`` when seen in
3-D, which stretches objects along ``Z``. About ``X`` read ``k_y`` for
``k_x``. Frequencies on the tilt axis itself (``k_x = k_z = 0``) lie in every
plane and count as measured.

Masks are in the order of :func:`numpy.fft.fftn` (zero frequency first, not
shifted), over the three axes ``(Z, Y, X)``. This module is NumPy-only.

Examples
--------
>>> wedge = parse_wedge("-60,60")
>>> wedge
Wedge(min_angle=-60.0, max_angle=60.0, tilt_axis='Y')
>>> mask = measured_mask((8, 8, 8), wedge)
>>> bool(mask[0, 0, 1]), bool(mask[1, 0, 0])   # k_x measured, k_z (the beam) missing
(True, False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["Wedge", "parse_wedge", "read_tilt_angles", "direction_angles", "measured_mask",
           "missing_mask", "FULL"]

_AXES = ("Y", "X")


@dataclass(frozen=True)
class Wedge:
    """A tilt range in degrees and the axis the specimen was tilted about.

    Attributes
    ----------
    min_angle, max_angle : float
        The lowest and highest tilt, in degrees (``-90 <= min < max <= 90``).
    tilt_axis : {"Y", "X"}
        The axis of the volume the specimen rotated about.
    """

    min_angle: float
    max_angle: float
    tilt_axis: str = "Y"

    def __post_init__(self) -> None:
        low, high = float(self.min_angle), float(self.max_angle)
        if not (np.isfinite(low) and np.isfinite(high) and -90 <= low < high <= 90):
            raise InputError(f"wedge: expected tilt angles -90 <= MIN < MAX <= 90 degrees, got "
                             f"{self.min_angle!r}, {self.max_angle!r}")
        if self.tilt_axis not in _AXES:
            raise InputError(f"wedge: expected tilt axis 'Y' or 'X', got {self.tilt_axis!r}")
        object.__setattr__(self, "min_angle", low)
        object.__setattr__(self, "max_angle", high)

    @property
    def missing(self) -> float:
        """Width of the missing range in degrees (0 for a full ±90° series)."""
        return 180.0 - (self.max_angle - self.min_angle)

    def to_dict(self) -> dict[str, Any]:
        return {"min_angle": self.min_angle, "max_angle": self.max_angle,
                "tilt_axis": self.tilt_axis}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Wedge:
        try:
            return cls(**values)
        except TypeError as error:
            raise InputError(f"wedge: {error}") from None


#: A series over the full ±90°: nothing is missing.
FULL = Wedge(-90.0, 90.0)


def read_tilt_angles(path: str | os.PathLike) -> np.ndarray:
    """The tilt angles (degrees) of an IMOD ``.tlt``/``.rawtlt`` file: one number a line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "TS_01.rawtlt"
    >>> _ = path.write_text("-57.0\\n-54.0\\n 3.0\\n 60.0\\n")
    >>> read_tilt_angles(path).tolist()
    [-57.0, -54.0, 3.0, 60.0]
    """
    path = Path(path)
    try:
        lines = path.read_text().split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the tilt angles ({error})") from None
    angles = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            angles.append(float(text.split()[0]))
        except ValueError:
            raise InputError(f"{path}, line {number}: expected a tilt angle in degrees, "
                             f"found {text!r}") from None
    if len(angles) < 2:
        raise InputError(f"{path}: expected at least two tilt angles, found {len(angles)}")
    return np.asarray(angles, dtype=np.float64)


def parse_wedge(spec: Any, *, tilt_axis: str = "Y") -> Wedge:
    """A :class:`Wedge` from ``"MIN,MAX"``, a pair of numbers, a tilt file or a Wedge.

    Parameters
    ----------
    spec : str, path, sequence of two numbers or Wedge
        ``"-60,60"`` (degrees), ``(-60, 60)``, or the path of an IMOD
        ``.tlt``/``.rawtlt`` file (its lowest and highest angle).
    tilt_axis : {"Y", "X"}
        Axis of the volume the specimen rotated about (ignored for a Wedge).

    Examples
    --------
    >>> parse_wedge((-45, 50), tilt_axis="X")
    Wedge(min_angle=-45.0, max_angle=50.0, tilt_axis='X')
    >>> parse_wedge("60")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cryocare.errors.InputError: wedge: expected MIN,MAX in degrees (e.g. -60,60) or a ..., got '60'
    """
    if isinstance(spec, Wedge):
        return spec
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "," not in spec):
        path = Path(spec)
        if path.suffix.lower() in (".tlt", ".rawtlt") or path.is_file():
            if not path.is_file():
                raise InputError(f"{path}: no such tilt-angle file")
            angles = read_tilt_angles(path)
            return Wedge(float(angles.min()), float(angles.max()), tilt_axis)
        raise InputError(f"wedge: expected MIN,MAX in degrees (e.g. -60,60) or a .tlt/.rawtlt "
                         f"file, got {spec!r}")
    if isinstance(spec, str):
        parts = spec.split(",")
    else:
        try:
            parts = list(spec)
        except TypeError:
            parts = [spec]
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2:
        raise InputError(f"wedge: expected MIN,MAX in degrees (e.g. -60,60) or a .tlt/.rawtlt "
                         f"file, got {spec!r}")
    return Wedge(min(values), max(values), tilt_axis)


def _frequencies(shape: tuple[int, ...]) -> list[np.ndarray]:
    return [np.fft.fftfreq(n).astype(np.float32) for n in shape]


def direction_angles(shape: tuple[int, int, int], tilt_axis: str = "Y") -> np.ndarray:
    """Angle in degrees, in ``(-90, 90]``, of every frequency's ``(k_⊥, k_z)`` direction.

    ``k_⊥`` is ``k_x`` for a tilt about ``Y`` and ``k_y`` about ``X``; NaN on
    the tilt axis (``k_⊥ = k_z = 0``). Order of :func:`numpy.fft.fftn`.
    """
    if len(shape) != 3:
        raise InputError(f"wedge: expected a 3-D shape, got {tuple(shape)}")
    if tilt_axis not in _AXES:
        raise InputError(f"wedge: expected tilt axis 'Y' or 'X', got {tilt_axis!r}")
    kz, ky, kx = _frequencies(tuple(int(n) for n in shape))
    across = kx[None, None, :] if tilt_axis == "Y" else ky[None, :, None]
    kz = kz[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.degrees(np.arctan2(kz, across))  # (-180, 180]
    angle = np.where(angle > 90, angle - 180, np.where(angle <= -90, angle + 180, angle))
    angle = np.broadcast_to(angle, shape).astype(np.float32)
    on_axis = np.broadcast_to((across == 0) & (kz == 0), shape)
    return np.where(on_axis, np.float32(np.nan), angle)


def measured_mask(shape: tuple[int, int, int], wedge: Wedge, *, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of the frequencies the tilt series measured (``fftn`` order).

    ``margin`` degrees shrink the measured range on both sides (a frequency
    counts only ``margin`` inside it); the tilt axis always counts.

    Examples
    --------
    >>> mask = measured_mask((16, 16, 16), Wedge(-60, 60))
    >>> round(float(mask.mean()), 2)    # about 120° of 180° of directions
    0.71
    """
    angle = direction_angles(shape, wedge.tilt_axis)
    low, high = wedge.min_angle + margin, wedge.max_angle - margin
    with np.errstate(invalid="ignore"):
        # 90° and -90° are one direction (k_z); the fold keeps 90°
        inside = ((angle >= low) & (angle <= high)) | ((angle - 180 >= low) & (angle - 180 <= high))
    return inside | np.isnan(angle)


def missing_mask(shape: tuple[int, int, int], wedge: Wedge, *, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of the frequencies in the missing wedge, at least ``margin`` degrees
    beyond the measured range (``fftn`` order; empty for a full ±90° series).

    Examples
    --------
    >>> mask = missing_mask((16, 16, 16), Wedge(-60, 60), margin=5)
    >>> bool(mask[4, 0, 0]), bool(mask[0, 0, 4])
    (True, False)
    """
    angle = direction_angles(shape, wedge.tilt_axis)
    low, high = wedge.min_angle - margin, wedge.max_angle + margin
    with np.errstate(invalid="ignore"):
        outside = ((angle < low) | (angle > high)) & ((angle - 180 < low) | (angle - 180 > high))
    return outside & ~np.isnan(angle)


def bin_volume(volume: np.ndarray, factor: int) -> np.ndarray:
    """The mean of every ``factor``³ block of a 3-D volume (float32; ``factor`` 1 returns a copy).

    A shape that is no multiple of ``factor`` is first padded by repeating the
    last plane, so no voxel is dropped; the result has ``ceil(n / factor)``
    voxels along each axis.

    Examples
    --------
    >>> import numpy as np
    >>> bin_volume(np.arange(8.0).reshape(2, 2, 2), 2).tolist()
    [[[3.5]]]
    >>> bin_volume(np.ones((5, 6, 7)), 2).shape
    (3, 3, 4)
    """
    array = np.asarray(volume, dtype=np.float32)
    factor = int(factor)
    if array.ndim != 3:
        raise InputError(f"bin_volume: expected a 3-D volume, found shape {array.shape}")
    if factor < 1:
        raise InputError(f"bin_volume: expected a binning factor >= 1, found {factor}")
    if factor == 1:
        return array.copy()
    array = _pad_to_multiple(array, factor)
    z, y, x = (n // factor for n in array.shape)
    return array.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def _pad_to_multiple(array: np.ndarray, factor: int) -> np.ndarray:
    """``array`` padded at the end of each axis, by repeating its last plane, to a multiple
    of ``factor`` (itself when it is one already)."""
    pad = [(0, -n % factor) for n in array.shape]
    return np.pad(array, pad, mode="edge") if any(p for _, p in pad) else array


def _coarse_spectrum(binned: np.ndarray, factor: int
                     ) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """The spectrum (``rfftn`` layout) of ``binned`` as it lies on the grid ``factor`` times
    finer: values, where they go (one index array per axis of the fine ``rfftn``) and
    which of them hold anything.

    Each binned frequency keeps its place in cycles per fine voxel; the half
    block that :func:`bin_volume` moved each block's centre is shifted back
    and the block mean's transfer (``sin(π f b) / (b sin(π f))`` along each
    axis, at most 2×) divided out. The binned grid's Nyquist planes (even
    sizes) have no sign on the fine grid and are left out.
    """
    from scipy import fft

    m = binned.shape
    fine = tuple(n * factor for n in m)
    spectrum = fft.rfftn(binned.astype(np.float32), workers=-1)
    freq = [np.fft.fftfreq(m[0]), np.fft.fftfreq(m[1]), np.fft.rfftfreq(m[2])]
    valid = np.ones(spectrum.shape, dtype=bool)
    for axis, f in enumerate(freq):
        f_fine = f / factor
        with np.errstate(invalid="ignore", divide="ignore"):
            transfer = np.where(f_fine == 0, 1.0, np.sin(np.pi * f_fine * factor)
                                / (factor * np.sin(np.pi * f_fine)))
        # the block mean sits (factor - 1) / 2 fine voxels after the block's first voxel
        term = np.exp(-2j * np.pi * f_fine * (factor - 1) / 2) / np.maximum(transfer, 0.5)
        term *= factor  # the fine grid has factor times the samples along this axis
        shape = [-1 if a == axis else 1 for a in range(3)]
        if m[axis] % 2 == 0:
            term[m[axis] // 2] = 0  # the Nyquist plane
            valid &= (np.arange(len(f)) != m[axis] // 2).reshape(shape)
        spectrum *= term.astype(np.complex64).reshape(shape)
    index = tuple(np.where(np.arange(n) < (n + 1) // 2, np.arange(n), np.arange(n) + f - n)
                  for n, f in zip(m[:2], fine[:2], strict=True)) + (np.arange(len(freq[2])),)
    return spectrum, index, valid


def _check_binned(full_shape: tuple[int, ...], binned_shape: tuple[int, ...], factor: int,
                  what: str) -> None:
    expected = tuple(-(-n // factor) for n in full_shape)
    if len(full_shape) != 3 or tuple(binned_shape) != expected:
        raise InputError(f"{what}: shape {tuple(full_shape)} does not bin by {factor} to "
                         f"{tuple(binned_shape)} (expected a 3-D volume and its version binned "
                         f"by {factor}, of shape {expected})")


def unbin_volume(volume: np.ndarray, factor: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Undo :func:`bin_volume` as far as the binned grid allows: Fourier interpolation to ``shape``.

    The binned spectrum is placed on the fine grid (``factor`` times the
    binned shape, then cropped to ``shape``), shifted by the half block
    that :func:`bin_volume` moved each block's centre, and divided by the
    block mean's transfer; nothing at or above the binned Nyquist frequency
    is made up.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(64)
    >>> wave = np.cos(2 * np.pi * x * 3 / 64)[None, None, :].repeat(8, 0).repeat(8, 1)
    >>> back = unbin_volume(bin_volume(wave, 2), 2, wave.shape)
    >>> bool(np.abs(back - wave).max() < 1e-3)
    True
    """
    binned = np.asarray(volume, dtype=np.float32)
    factor = int(factor)
    shape = tuple(int(n) for n in shape)
    _check_binned(shape, binned.shape, factor, "unbin_volume")
    if factor == 1:
        return binned.copy()
    from scipy import fft

    values, index, _ = _coarse_spectrum(binned, factor)
    fine = tuple(m * factor for m in binned.shape)
    spectrum = np.zeros(fine[:2] + (fine[2] // 2 + 1,), dtype=np.complex64)
    spectrum[np.ix_(*index)] = values
    result = fft.irfftn(spectrum, s=fine, axes=(0, 1, 2), workers=-1)
    return np.ascontiguousarray(result[: shape[0], : shape[1], : shape[2]], dtype=np.float32)


def merge_cone(denoised: np.ndarray, restored: np.ndarray, wedge: Wedge,
               binning: int = 1) -> np.ndarray:
    """``denoised`` with its missing wedge taken from ``restored``, a restoration at ``binning``.

    In Fourier space the result is ``denoised``'s spectrum except inside the
    missing wedge (:func:`missing_mask`) below the Nyquist frequency of the
    binned grid, where it is ``restored``'s, brought to the full grid as by
    :func:`unbin_volume`. So the measured directions are the denoiser's
    alone, whatever the restoring network did to them, and so is the cone
    above what the binned grid holds (and on the Nyquist planes, whose side
    of an asymmetric wedge is undefined). A shape that is no multiple of
    ``binning`` is padded (edge values) for the transform and cropped back.

    Parameters
    ----------
    denoised : ndarray
        3-D volume at full resolution (a denoiser's output).
    restored : ndarray
        3-D volume on the binned grid (``ceil(n / binning)`` voxels per axis).
    wedge : Wedge
        Tilt range and axis of the data.
    binning : int
        Factor between the two grids.

    Returns
    -------
    ndarray of float32, the shape of ``denoised``

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> denoised, restored = rng.normal(size=(16, 32, 32)), rng.normal(size=(8, 16, 16))
    >>> merged = merge_cone(denoised, restored, Wedge(-60, 60), 2)
    >>> measured = measured_mask(merged.shape, Wedge(-60, 60))
    >>> change = np.fft.fftn(merged - denoised)
    >>> bool(np.abs(change[measured]).max() < 1e-3 * np.abs(change).max())
    True
    """
    from scipy import fft

    full = np.asarray(denoised, dtype=np.float32)
    coarse = np.asarray(restored, dtype=np.float32)
    binning = int(binning)
    _check_binned(full.shape, coarse.shape, binning, "merge_cone")
    padded = _pad_to_multiple(full, binning)  # the fine grid: the binned one times binning
    fine = padded.shape
    spectrum = fft.rfftn(padded, workers=-1)
    del padded
    values, index, valid = _coarse_spectrum(coarse, binning)
    # The binned grid's frequencies are the fine grid's below its Nyquist frequency, in the
    # same directions: the cone is the binned grid's own (which never holds the fine Nyquist
    # planes, whose side of an asymmetric wedge is undefined).
    cone = missing_mask(coarse.shape, wedge)[..., : values.shape[-1]] & valid
    region = np.ix_(*index)
    spectrum[region] = np.where(cone, values, spectrum[region])
    result = fft.irfftn(spectrum, s=fine, axes=(0, 1, 2), workers=-1)
    del spectrum
    return np.ascontiguousarray(result[: full.shape[0], : full.shape[1], : full.shape[2]],
                                dtype=np.float32)
