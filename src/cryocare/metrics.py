"""Full-reference image quality scores: MSE, PSNR, Pearson correlation.

Every function takes two real arrays of the same shape (any number of
dimensions), never modifies them and returns a Python float. Sums are
accumulated in float64 over slabs along the first axis, so float32 memory
maps of hundreds of millions of voxels are read piece by piece without a
full float64 copy.

A denoiser may return an image on another intensity scale than the
reference (a Noise2Noise network is trained on normalised noisy data, so
its output need not share the scale and offset of a clean reference).
:func:`psnr_affine` scores the image after the best affine rescaling and so
measures structure, not calibration.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from .errors import InputError

__all__ = ["mse", "pearson", "psnr", "psnr_affine"]

logger = logging.getLogger(__name__)

#: Approximate number of elements read per slab (8 MiB per float64 copy).
_CHUNK = 2**20


def _check_pair(
    a: npt.ArrayLike, b: npt.ArrayLike, *, names: tuple[str, str] = ("reference", "image")
) -> tuple[np.ndarray, np.ndarray]:
    """Return `a` and `b` as arrays after checking dtypes and shapes (values are checked later)."""
    arrays = []
    for value, name in zip((a, b), names, strict=True):
        array = np.asarray(value)
        if array.dtype == np.bool_ or not (
            np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        ):
            raise InputError(
                f"{name}: expected a real-valued numeric array, found dtype {array.dtype}"
            )
        if array.ndim == 0 or array.size == 0:
            raise InputError(f"{name}: expected a non-empty array, found shape {array.shape}")
        arrays.append(array)
    first, second = arrays
    if first.shape != second.shape:
        raise InputError(
            f"{names[1]}: expected the shape of {names[0]} {first.shape},"
            f" found shape {second.shape}"
        )
    return first, second


def _slabs(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield matching flat float64 slabs of `a` and `b`, checking that values are finite.

    Slabs hold at most about ``_CHUNK`` elements (whole rows of the first
    axis); they are float64 copies, or views of float64 inputs, and are never
    written.
    """
    rows = max(1, _CHUNK // max(1, a[0].size))
    for start in range(0, a.shape[0], rows):
        pair = []
        for array, name in zip((a, b), names, strict=True):
            slab = np.asarray(array[start : start + rows], dtype=np.float64).reshape(-1)
            if not np.isfinite(slab).all():
                raise InputError(f"{name}: expected finite values, found NaN or inf")
            pair.append(slab)
        yield pair[0], pair[1]


class _Moments:
    """Count, means, centred second moments and ranges of two arrays.

    Slabs are merged with the pairwise update of Chan, Golub and LeVeque,
    which stays accurate when the means are large compared to the spread.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
        self.n = 0
        self.mean_a = self.mean_b = 0.0
        self.ss_a = self.ss_b = self.sp_ab = 0.0
        self.min_a = self.min_b = math.inf
        self.max_a = self.max_b = -math.inf
        for x, y in _slabs(a, b, names):
            self._add(x, y)

    def _add(self, x: np.ndarray, y: np.ndarray) -> None:
        n_slab = x.size
        mean_x, mean_y = float(x.mean()), float(y.mean())
        dx, dy = x - mean_x, y - mean_y
        n = self.n + n_slab
        delta_a, delta_b = mean_x - self.mean_a, mean_y - self.mean_b
        weight = self.n * n_slab / n
        self.ss_a += float(dx @ dx) + delta_a * delta_a * weight
        self.ss_b += float(dy @ dy) + delta_b * delta_b * weight
        self.sp_ab += float(dx @ dy) + delta_a * delta_b * weight
        self.mean_a += delta_a * n_slab / n
        self.mean_b += delta_b * n_slab / n
        self.n = n
        self.min_a = min(self.min_a, float(x.min()))
        self.max_a = max(self.max_a, float(x.max()))
        self.min_b = min(self.min_b, float(y.min()))
        self.max_b = max(self.max_b, float(y.max()))


def _check_data_range(data_range: float | None) -> float | None:
    """Validate an explicit `data_range` (None means: use the reference's range)."""
    if data_range is None:
        return None
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real):
        raise InputError(f"data_range: expected None or a positive number, found {data_range!r}")
    if not (math.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range: expected a positive finite number, found {data_range}")
    return float(data_range)


def _peak(data_range: float | None, low: float, high: float) -> float:
    """The peak value for PSNR: `data_range` if given, else ``high - low`` of the reference."""
    if data_range is not None:
        return data_range
    if high == low:
        raise InputError(
            f"data_range: reference is constant (all values {low!r}), so its range is 0;"
            f" pass data_range explicitly"
        )
    return high - low


def _psnr_from_mse(peak: float, error: float) -> float:
    if error == 0:
        return math.inf
    # 20 log10(peak) - 10 log10(mse) == 10 log10(peak**2 / mse), without overflow.
    return 20.0 * math.log10(peak) - 10.0 * math.log10(error)


def _mse_and_range(reference: np.ndarray, image: np.ndarray) -> tuple[float, float, float]:
    total, low, high = 0.0, math.inf, -math.inf
    for r, x in _slabs(reference, image, ("reference", "image")):
        difference = r - x
        total += float(difference @ difference)
        low, high = min(low, float(r.min())), max(high, float(r.max()))
    return total / reference.size, low, high


def mse(reference: npt.ArrayLike, image: npt.ArrayLike) -> float:
    """Mean squared error between an image and a reference.

    Parameters
    ----------
    reference, image : array_like
        Real-valued arrays of the same shape with finite values. They are
        not modified.

    Returns
    -------
    error : float
        ``mean((reference - image) ** 2)``, computed in float64.

    Raises
    ------
    InputError
        If the shapes differ (both are named), an array is empty or not
        real-valued, or holds NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> mse(np.zeros((2, 2)), np.array([[1.0, -1.0], [2.0, 0.0]]))
    1.5
    """
    ref, img = _check_pair(reference, image)
    return _mse_and_range(ref, img)[0]


def psnr(
    reference: npt.ArrayLike, image: npt.ArrayLike, *, data_range: float | None = None
) -> float:
    """Peak signal-to-noise ratio of an image against a reference, in dB.

    ``PSNR = 10 log10(data_range**2 / mse(reference, image))``.

    Parameters
    ----------
    reference, image : array_like
        Real-valued arrays of the same shape with finite values. They are
        not modified.
    data_range : float, optional
        Peak-to-peak range of the signal. Default:
        ``reference.max() - reference.min()``, the range of the reference
        itself (not the range of its dtype, unlike
        ``skimage.metrics.peak_signal_noise_ratio``), which suits
        tomograms in arbitrary units.

    Returns
    -------
    psnr : float
        PSNR in decibels; ``inf`` if the image equals the reference.

    Raises
    ------
    InputError
        If the shapes differ, an array is empty, not real-valued or holds
        NaN or inf, if `data_range` is given and is not a positive finite
        number, or if it is not given and the reference is constant (its
        range is 0, so the PSNR is undefined).

    Notes
    -----
    For an image equal to the reference plus independent Gaussian noise of
    standard deviation sigma, the PSNR tends to
    ``20 log10(data_range / sigma)``.

    References
    ----------
    .. [1] Wikipedia, "Peak signal-to-noise ratio",
           https://en.wikipedia.org/wiki/Peak_signal-to-noise_ratio

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[0.0, 10.0], [0.0, 10.0]])
    >>> psnr(reference, reference + 1.0)  # mse 1, range 10
    20.0
    >>> psnr(reference, reference)
    inf
    """
    given = _check_data_range(data_range)
    ref, img = _check_pair(reference, image)
    error, low, high = _mse_and_range(ref, img)
    peak = _peak(given, low, high)
    return _psnr_from_mse(peak, error)


def psnr_affine(
    reference: npt.ArrayLike, image: npt.ArrayLike, *, data_range: float | None = None
) -> float:
    """PSNR in dB after the least-squares affine fit of the image to the reference.

    The image is replaced by ``a * image + b`` with the scalars ``a`` and
    ``b`` that minimise ``mse(reference, a * image + b)``, and the PSNR of
    that is returned. Denoisers (and normalisation before and after a
    network) change the intensity scale and offset; this score ignores such
    changes and is invariant to any ``image -> c * image + d`` with
    ``c != 0``.

    Parameters
    ----------
    reference, image : array_like
        Real-valued arrays of the same shape with finite values. They are
        not modified.
    data_range : float, optional
        Peak-to-peak range of the signal. Default:
        ``reference.max() - reference.min()``.

    Returns
    -------
    psnr : float
        PSNR in decibels of the fitted image; ``inf`` if the fit is exact.
        It is never below ``psnr(reference, image)`` (``a = 1, b = 0`` is
        one of the candidates), up to rounding.

    Raises
    ------
    InputError
        As for :func:`psnr`.

    Notes
    -----
    With means ``m_r``, ``m_x`` and centred sums ``S_xx``, ``S_rx``,
    ``a = S_rx / S_xx`` and ``b = m_r - a m_x``. If the image is constant,
    ``a = 0`` and the fit is the mean of the reference. The inputs are read
    twice: once for the fit, once for the residual, which is summed
    directly rather than derived from the correlation so that it stays
    accurate when the fit is nearly exact.

    References
    ----------
    .. [1] M. Weigert et al., "Content-aware image restoration: pushing the
           limits of fluorescence microscopy", Nature Methods 15:1090-1097,
           2018, :DOI:`10.1038/s41592-018-0216-7` (affine-scaled NRMSE and
           PSNR used to compare restorations).

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[0.0, 1.0], [0.0, 1.0]])
    >>> noisy = reference + np.array([[0.1, -0.1], [-0.1, 0.1]])
    >>> round(psnr_affine(reference, noisy), 6) == round(psnr_affine(reference, 3 * noisy - 7), 6)
    True
    """
    given = _check_data_range(data_range)
    names = ("reference", "image")
    ref, img = _check_pair(reference, image)
    moments = _Moments(ref, img, names)
    peak = _peak(given, moments.min_a, moments.max_a)
    # Compare the range, not the centred sum, with 0: rounding of the mean
    # leaves a tiny non-zero sum for a constant image.
    constant = moments.min_b == moments.max_b
    slope = 0.0 if constant else moments.sp_ab / moments.ss_b
    total = 0.0
    for r, x in _slabs(ref, img, names):
        residual = (r - moments.mean_a) - slope * (x - moments.mean_b)
        total += float(residual @ residual)
    logger.debug(
        "affine fit: image * %g + %g", slope, moments.mean_a - slope * moments.mean_b
    )
    return _psnr_from_mse(peak, total / ref.size)


def pearson(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Pearson correlation coefficient of two arrays.

    Parameters
    ----------
    a, b : array_like
        Real-valued arrays of the same shape with finite values, compared
        element by element. They are not modified.

    Returns
    -------
    r : float
        Correlation coefficient in ``[-1, 1]``: 1 if ``b = c * a + d`` with
        ``c > 0``, -1 if ``c < 0``.

    Raises
    ------
    InputError
        If the shapes differ, an array is empty, not real-valued, holds
        NaN or inf, or is constant (the coefficient is undefined).

    References
    ----------
    .. [1] Wikipedia, "Pearson correlation coefficient",
           https://en.wikipedia.org/wiki/Pearson_correlation_coefficient

    Examples
    --------
    >>> import numpy as np
    >>> pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    0.5
    """
    names = ("a", "b")
    first, second = _check_pair(a, b, names=names)
    moments = _Moments(first, second, names)
    ranges = ((moments.min_a, moments.max_a), (moments.min_b, moments.max_b))
    for name, (low, high) in zip(names, ranges, strict=True):
        if low == high:
            raise InputError(
                f"{name}: expected at least two distinct values, found a constant array"
            )
    r = moments.sp_ab / math.sqrt(moments.ss_a * moments.ss_b)
    return min(1.0, max(-1.0, r))
