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
