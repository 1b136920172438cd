"""Parallel-beam projection and weighted back-projection (WBP) of single-axis tilt series.

Volumes are indexed ``(Z, Y, X)`` with ``Z`` the beam direction at 0° tilt.
A tilt series is a stack ``(n_tilts, Y, X)`` of projections. With the default
``tilt_axis="Y"`` the specimen rotates about ``Y``, so every ``Y`` row is an
independent two-dimensional problem in the ``Z``–``X`` plane; with
``tilt_axis="X"`` it rotates about ``X`` (the ``Z``–``Y`` plane), which is
handled by swapping the two in-plane axes.

Geometry (both functions use it, angles in degrees): with centred
coordinates ``x_c = x - (X - 1) / 2`` and ``z_c = z - (Z - 1) / 2``, the voxel
``(z, x)`` projects at tilt ``θ`` onto the detector coordinate
``u = x_c cos θ + z_c sin θ`` (measured from the detector centre
``(X - 1) / 2``). At 0° a projection is the plain sum along ``Z``. With
``tilt_axis="X"`` read ``y`` for ``x``: ``u = y_c cos θ + z_c sin θ``.

Both operators are sparse linear maps applied to all ``Y`` rows at once
(:mod:`scipy.sparse` matrix times a dense ``(…, Y)`` block), with one Python
loop over tilts at most.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse

from .errors import InputError

__all__ = ["Reconstruction", "bin_projections", "project", "reconstruct",
           "weighted_backprojection"]

logger = logging.getLogger(__name__)

_TILT_AXES = ("Y", "X")


def project(volume: np.ndarray, angles, *, tilt_axis: str = "Y") -> np.ndarray:
    """Forward-project a volume into a single-axis tilt series.

    Line integrals (in voxel units) along the tilted beam, computed with
    Joseph's method: the ray is stepped one voxel at a time along the axis it
    is closest to (``Z`` up to 45°, ``X`` beyond) and the volume is linearly
    interpolated along the other axis. Every ray runs through the whole volume
    (outside it counts as zero) and the detector is ``X`` pixels wide, so at
    high tilt material near the ``X`` edges projects off the detector, as in a
    real tilt series.

    Parameters
    ----------
    volume : ndarray, shape (Z, Y, X)
        Real-valued volume.
    angles : sequence of float
        Tilt angles in degrees.
    tilt_axis : {"Y", "X"}, optional
        Axis the specimen rotates about (keyword-only).

    Returns
    -------
    ndarray of float32, shape (n_tilts, Y, X)
        The projections; each has the width of the volume.

    Raises
    ------
    InputError
        If ``volume`` is not a finite real 3-D array, ``angles`` is not a
        non-empty 1-D sequence of finite numbers, or ``tilt_axis`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from cryocare.reconstruct import project
    >>> vol = np.zeros((8, 4, 16), dtype=np.float32)
    >>> vol[3:5, :, 6:10] = 1.0
    >>> proj = project(vol, [-30.0, 0.0, 30.0])
    >>> proj.shape
    (3, 4, 16)
    >>> float(proj[1].sum()) == float(vol.sum())
    True
    """
    vol = _as_real_array(volume, "volume", ndim=3)
    ang = _as_angles(angles)
    axis = _check_tilt_axis(tilt_axis)
    if axis == "X":
        vol = vol.transpose(0, 2, 1)
    nz, ny, nx = vol.shape
    # One row per (z, x) voxel column, the Y rows as dense columns: every
    # tilt is then a sparse (X, Z*X) matrix times this (Z*X, Y) block.
    block = np.ascontiguousarray(vol.transpose(0, 2, 1)).reshape(nz * nx, ny)
    out = np.empty((ang.size, nx, ny), dtype=np.float32)
    for i, theta in enumerate(np.deg2rad(ang)):
        out[i] = _joseph_matrix(nz, nx, theta) @ block
    # out is (n, X, Y); projections are (n, Y, X), or (n, X, Y) -> swapped back for "X".
    out = out if axis == "X" else out.transpose(0, 2, 1)
    return np.ascontiguousarray(out)


def weighted_backprojection(
    tilt_series: np.ndarray,
    angles,
    *,
    thickness: int,
    tilt_axis: str = "Y",
    lowpass: float | None = None,
) -> np.ndarray:
    """Reconstruct a tomogram from a tilt series by weighted back-projection.

    Each projection is ramp-filtered along the axis perpendicular to the tilt
    axis (Ram-Lak filter from its spatial kernel, so the zero frequency is
    kept correctly for a finite padded field), optionally low-pass filtered,
    and back-projected with linear interpolation on the detector. Before the
    FFT the projections are extended by repeating their edge pixels (to the
    next fast length ≥ twice the width and wide enough for every voxel's
    detector coordinate), which avoids wrap-around and the bright rims of
    truncated projections. Each tilt is weighted by the angular interval it
    covers (half the distance to its neighbours; the end tilts get the full
    distance to their one neighbour), so for a full 180° series
    ``weighted_backprojection(project(v, a), a, thickness=Z)`` ≈ ``v`` in
    amplitude; with a limited tilt range the missing wedge is simply absent.

    The operator is linear: the reconstruction of ``(a + b) / 2`` equals the
    mean of the reconstructions of ``a`` and ``b``.

    Parameters
    ----------
    tilt_series : ndarray, shape (n_tilts, Y, X)
        Projections, in the same geometry as :func:`project`.
    angles : sequence of float
        Tilt angle of every projection, in degrees.
    thickness : int
        Number of ``Z`` slices of the reconstruction, centred on the tilt
        axis (keyword-only).
    tilt_axis : {"Y", "X"}, optional
        Axis the specimen rotates about.
    lowpass : float or None, optional
        If given, multiply the ramp by a Hann (raised-cosine) window that
        falls from 1 at zero frequency to 0 at ``lowpass`` × Nyquist, e.g.
        ``1.0`` for the classic Hann-weighted filter or ``0.5`` for a strong
        smoothing. The default ``None`` applies no low-pass (plain Ram-Lak),
        which preserves resolution and amplitude but keeps all
        high-frequency noise.

    Returns
    -------
    ndarray of float32, shape (thickness, Y, X)
        The reconstruction, in the units of the projections per voxel.

    Raises
    ------
    InputError
        If the tilt series is not a finite real 3-D stack, the number of angles
        differs from the number of projections, ``thickness`` < 1, ``lowpass``
        is outside (0, 1] or ``tilt_axis`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from cryocare.reconstruct import project, weighted_backprojection
    >>> z, x = np.mgrid[-16:16, -32:32]
    >>> blob = np.exp(-(z**2 + x**2) / (2 * 3.0**2)).astype(np.float32)
    >>> vol = np.repeat(blob[:, None, :], 4, axis=1)          # (32, 4, 64)
    >>> angles = np.arange(-90.0, 90.0, 2.0)                  # full range
    >>> rec = weighted_backprojection(project(vol, angles), angles, thickness=32)
    >>> rec.shape, rec.dtype
    ((32, 4, 64), dtype('float32'))
    >>> bool(abs(rec.max() - vol.max()) < 0.05)
    True
    """
    series = _as_real_array(tilt_series, "tilt_series", ndim=3)
    ang = _as_angles(angles)
    if ang.size != series.shape[0]:
        raise InputError(
            f"angles: expected one angle per projection ({series.shape[0]}), "
            f"found {ang.size} angles"
        )
    if isinstance(thickness, bool) or not isinstance(thickness, (int, np.integer)):
        raise InputError(f"thickness: expected an integer >= 1, found {thickness!r}")
    if thickness < 1:
        raise InputError(f"thickness: expected an integer >= 1, found {thickness}")
    if lowpass is not None and not (0.0 < float(lowpass) <= 1.0):
        raise InputError(
            f"lowpass: expected a fraction of Nyquist in (0, 1] or None, found {lowpass!r}"
        )
    axis = _check_tilt_axis(tilt_axis)
    if axis == "X":
        series = series.transpose(0, 2, 1)
    n_tilts, ny, nx = series.shape
    thickness = int(thickness)
    theta = np.deg2rad(ang)

    # Detector extent needed by the farthest voxel, plus room for the filter.
    reach = (nx - 1) / 2 * np.abs(np.cos(theta)) + (thickness - 1) / 2 * np.abs(np.sin(theta))
    needed = int(2 * math.ceil(float(reach.max())) + 4)
    padded = scipy.fft.next_fast_len(max(2 * nx, needed, 64), real=True)
    left = (padded - nx) // 2

    filtered = _filter(series, padded, left, lowpass)  # (n, padded, Y), float32
    weights = _angular_weights(theta)
    matrix = _backprojection_matrix(nx, thickness, padded, left, theta, weights)
    rec = matrix @ filtered.reshape(n_tilts * padded, ny)  # (thickness * X, Y)
    rec = rec.reshape(thickness, nx, ny)
    rec = rec if axis == "X" else rec.transpose(0, 2, 1)
    logger.debug(
        "WBP of %d tilts (%d x %d) to thickness %d, padded width %d",
        n_tilts,
        ny,
        nx,
        thickness,
        padded,
    )
    return np.ascontiguousarray(rec, dtype=np.float32)


def _as_real_array(value, name: str, *, ndim: int) -> np.ndarray:
    """Return ``value`` as a finite float32 array of ``ndim`` dimensions."""
    arr = np.asarray(value)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
        or arr.dtype == bool
    ):
        raise InputError(f"{name}: expected a real-valued array, found dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise InputError(f"{name}: expected a {ndim}-D array, found shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: expected a non-empty array, found shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: expected finite values, found NaN or infinity")
    return arr


def _as_angles(angles) -> np.ndarray:
    """Return tilt angles as a non-empty 1-D float64 array of finite degrees."""
    try:
        ang = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"angles: expected a sequence of numbers, found {angles!r}") from None
    if ang.ndim != 1 or ang.size == 0:
        raise InputError(f"angles: expected a non-empty 1-D sequence, found shape {ang.shape}")
    if not np.isfinite(ang).all():
        raise InputError("angles: expected finite numbers, found NaN or infinity")
    return ang


def _check_tilt_axis(tilt_axis) -> str:
    if tilt_axis not in _TILT_AXES:
        raise InputError(f"tilt_axis: expected 'Y' or 'X', found {tilt_axis!r}")
    return tilt_axis


def _joseph_matrix(nz: int, nx: int, theta: float) -> scipy.sparse.csr_array:
    """Sparse ``(X, Z*X)`` matrix of line integrals along the rays at angle ``theta``."""
    c, s = math.cos(theta), math.sin(theta)
    u = np.arange(nx) - (nx - 1) / 2  # detector coordinate of each ray
    det = np.arange(nx)
    if abs(c) >= abs(s):
        # Step through the Z planes, interpolate along X; step length 1/|cos|.
        zc = np.arange(nz) - (nz - 1) / 2
        pos = (u[None, :] - zc[:, None] * s) / c + (nx - 1) / 2  # (Z, X_det)
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0
        step = np.arange(nz)[:, None]
        flat = [step * nx + i0, step * nx + i0 + 1]
        inside = [(i0 >= 0) & (i0 < nx), (i0 >= -1) & (i0 < nx - 1)]
        scale = 1.0 / abs(c)
    else:
        # Step through the X columns, interpolate along Z; step length 1/|sin|.
        xc = np.arange(nx) - (nx - 1) / 2
        pos = (u[None, :] - xc[:, None] * c) / s + (nz - 1) / 2  # (X_col, X_det)
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0
        step = np.arange(nx)[:, None]
        flat = [i0 * nx + step, (i0 + 1) * nx + step]
        inside = [(i0 >= 0) & (i0 < nz), (i0 >= -1) & (i0 < nz - 1)]
        scale = 1.0 / abs(s)
    rows = np.broadcast_to(det[None, :], pos.shape)
    weight = [(1.0 - frac) * scale, frac * scale]
    keep = [inside[k] & (weight[k] > 0) for k in (0, 1)]
    data = np.concatenate([weight[k][keep[k]] for k in (0, 1)]).astype(np.float32)
    row = np.concatenate([rows[keep[k]] for k in (0, 1)])
    col = np.concatenate([flat[k][keep[k]] for k in (0, 1)])
    return scipy.sparse.csr_array((data, (row, col)), shape=(nx, nz * nx))


def _ramp(padded: int, lowpass: float | None) -> np.ndarray:
    """Ram-Lak response for ``rfft`` of length ``padded`` (|f| in cycles per pixel)."""
    # Spatial Ram-Lak kernel, circularly: 1/4 at 0, -1/(π d)² at odd distances d.
    k = np.arange(padded)
    distance = np.minimum(k, padded - k)
    kernel = np.zeros(padded)
    odd = distance % 2 == 1
    kernel[odd] = -1.0 / (np.pi * distance[odd]) ** 2
    kernel[0] = 0.25
    response = np.real(scipy.fft.rfft(kernel))
    if lowpass is not None:
        f = scipy.fft.rfftfreq(padded) / 0.5  # fraction of Nyquist
        response = response * np.where(f < lowpass, 0.5 * (1.0 + np.cos(np.pi * f / lowpass)), 0)
    return response


def _filter(series: np.ndarray, padded: int, left: int, lowpass: float | None) -> np.ndarray:
    """Edge-extend each projection row to ``padded``, ramp-filter, return ``(n, padded, Y)``."""
    nx = series.shape[2]
    ext = np.pad(series, ((0, 0), (0, 0), (left, padded - nx - left)), mode="edge")
    spectrum = scipy.fft.rfft(ext, axis=2, workers=-1)
    spectrum *= _ramp(padded, lowpass).astype(np.float32)
    out = scipy.fft.irfft(spectrum, n=padded, axis=2, workers=-1)
    return np.ascontiguousarray(out.transpose(0, 2, 1), dtype=np.float32)


def _angular_weights(theta: np.ndarray) -> np.ndarray:
    """Angular interval (radians) covered by each tilt, for any order of angles."""
    n = theta.size
    if n == 1:
        return np.array([np.pi])
    order = np.argsort(theta, kind="stable")
    t = theta[order]
    gaps = np.diff(t)
    if not np.any(gaps > 0):
        return np.full(n, np.pi / n)
    w = np.empty(n)
    w[1:-1] = (t[2:] - t[:-2]) / 2
    w[0] = gaps[0]
    w[-1] = gaps[-1]
    out = np.empty(n)
    out[order] = w
    return out


def _backprojection_matrix(
    nx: int, thickness: int, padded: int, left: int, theta: np.ndarray, weights: np.ndarray
) -> scipy.sparse.csr_array:
    """Sparse ``(thickness*X, n*padded)`` matrix: linear interpolation on every detector."""
    n = theta.size
    zc = np.arange(thickness) - (thickness - 1) / 2
    xc = np.arange(nx) - (nx - 1) / 2
    # Detector position of every voxel (z, x) at every tilt: (T*X, n).
    pos = (
        xc[None, :, None] * np.cos(theta)[None, None, :]
        + zc[:, None, None] * np.sin(theta)[None, None, :]
        + (nx - 1) / 2
        + left
    ).reshape(thickness * nx, n)
    pos = np.clip(pos, 0.0, padded - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), padded - 2)
    frac = pos - i0
    indices = np.empty((thickness * nx, n, 2), dtype=np.int64)
    indices[..., 0] = i0 + np.arange(n) * padded
    indices[..., 1] = indices[..., 0] + 1
    data = np.empty((thickness * nx, n, 2), dtype=np.float32)
    data[..., 0] = (1.0 - frac) * weights
    data[..., 1] = frac * weights
    indptr = np.arange(0, thickness * nx * n * 2 + 1, n * 2, dtype=np.int64)
    return scipy.sparse.csr_array(
        (data.ravel(), indices.ravel(), indptr), shape=(thickness * nx, n * padded)
    )


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """A reconstructed tomogram and its voxel size.

    Attributes
    ----------
    volume : ndarray of float32, shape (Z, Y, X)
        The tomogram.
    voxel_size : float
        Voxel size in Å (the pixel size of the tilt series times the
        binning); 0.0 if the pixel size was unknown.
    """

    volume: np.ndarray
    voxel_size: float


def bin_projections(tilt_series: np.ndarray, binning: int) -> np.ndarray:
    """Average ``binning`` × ``binning`` blocks of every projection.

    Rows and columns beyond the last whole block are dropped. The block mean
    is divided by ``binning`` so that a line integral measured in binned
    voxels keeps its value per voxel: the reconstruction of a binned series
    has the same density units as that of the unbinned one.

    Examples
    --------
    >>> import numpy as np
    >>> series = np.ones((2, 5, 8), np.float32)
    >>> binned = bin_projections(series, 2)
    >>> binned.shape, float(binned[0, 0, 0])
    ((2, 2, 4), 0.5)
    """
    series = _as_real_array(tilt_series, "tilt_series", ndim=3)
    if isinstance(binning, bool) or not isinstance(binning, (int, np.integer)) or binning < 1:
        raise InputError(f"binning: expected an integer >= 1, found {binning!r}")
    b = int(binning)
    n, ny, nx = series.shape
    if b == 1:
        return series
    if ny < b or nx < b:
        raise InputError(f"binning: {b} is larger than the projections ({ny} x {nx})")
    blocks = series[:, : ny // b * b, : nx // b * b].reshape(n, ny // b, b, nx // b, b)
    return (blocks.mean(axis=(2, 4), dtype=np.float64) / b).astype(np.float32)


def reconstruct(
    tilt_series: np.ndarray,
    angles,
    *,
    thickness: int,
    tilt_axis: str = "Y",
    lowpass: float | None = None,
    binning: int = 1,
    pixel_size: float = 0.0,
) -> Reconstruction:
    """Bin a tilt series, reconstruct it by WBP and carry the voxel size through.

    Parameters
    ----------
    tilt_series : ndarray, shape (n_tilts, Y, X)
        Projections (memory maps are fine; they are read once).
    angles : sequence of float
        Tilt angle of every projection, in degrees (e.g. from an IMOD
        ``.tlt`` file, :func:`cryocare.tiltseries.read_tilt_angles`).
    thickness : int
        Thickness of the tomogram in *unbinned* pixels; the output has
        ``max(1, round(thickness / binning))`` slices.
    tilt_axis : {"Y", "X"}, optional
        Axis the specimen rotates about.
    lowpass : float or None, optional
        Hann taper of the ramp filter, as in :func:`weighted_backprojection`.
    binning : int, optional
        Bin the projections by this factor first (:func:`bin_projections`).
    pixel_size : float, optional
        Pixel size of the tilt series in Å (0 if unknown).

    Returns
    -------
    Reconstruction
        The tomogram (``Z = thickness / binning``, ``Y`` and ``X`` of the
        binned projections) and its voxel size ``pixel_size * binning``.

    Examples
    --------
    >>> import numpy as np
    >>> from cryocare.reconstruct import project, reconstruct
    >>> vol = np.zeros((16, 8, 32), np.float32)
    >>> vol[6:10, :, 12:20] = 1.0
    >>> angles = np.arange(-60.0, 61.0, 3.0)
    >>> rec = reconstruct(project(vol, angles), angles, thickness=16, binning=2, pixel_size=5.0)
    >>> rec.volume.shape, rec.voxel_size
    ((8, 4, 16), 10.0)
    """
    if not (np.isfinite(pixel_size) and pixel_size >= 0):
        raise InputError(f"pixel_size: expected a number >= 0 (Å), found {pixel_size!r}")
    if (isinstance(thickness, bool) or not isinstance(thickness, (int, np.integer))
            or thickness < 1):
        raise InputError(f"thickness: expected an integer >= 1, found {thickness!r}")
    series = bin_projections(tilt_series, binning)
    volume = weighted_backprojection(series, angles, thickness=max(1, round(thickness / binning)),
                                     tilt_axis=tilt_axis, lowpass=lowpass)
    return Reconstruction(volume=volume, voxel_size=float(pixel_size) * int(binning))
