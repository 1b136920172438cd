"""Image quality scores: MSE, PSNR, SSIM, Pearson, FSC/FRC, even/odd SNR.

Full-reference scores (:func:`mse`, :func:`psnr`, :func:`psnr_affine`,
:func:`ssim_affine`) compare an image with a clean reference; Fourier
shell/ring correlation (:func:`fsc`) compares two images frequency by
frequency and gives a resolution in Å; :func:`snr_from_halves` and
:func:`halves_score` need no reference at all, only the independent even and
odd halves of a data set.

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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import InputError

__all__ = [
    "FSCCurve",
    "fsc",
    "halves_score",
    "mse",
    "pearson",
    "psnr",
    "psnr_affine",
    "snr_from_halves",
    "ssim_affine",
]

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



def _affine_fit(ref: np.ndarray, img: np.ndarray, names: tuple[str, str]) -> tuple[float, float]:
    """Slope and offset of the least-squares fit ``ref ~ slope * img + offset``."""
    moments = _Moments(ref, img, names)
    constant = moments.min_b == moments.max_b
    slope = 0.0 if constant else moments.sp_ab / moments.ss_b
    return slope, moments.mean_a - slope * moments.mean_b


def ssim_affine(
    reference: npt.ArrayLike, image: npt.ArrayLike, *, data_range: float | None = None
) -> float:
    """Structural similarity (SSIM) after the least-squares affine fit to the reference.

    The image is replaced by ``a * image + b`` as in :func:`psnr_affine`,
    then the mean SSIM of Wang et al. is computed with a Gaussian window
    (sigma 1.5, the original paper's choice) over every pixel/voxel.

    Parameters
    ----------
    reference, image : array_like
        Real-valued 2-D or 3-D arrays of the same shape with finite values,
        at least 11 pixels along every axis (the Gaussian window is 11
        wide). They are not modified.
    data_range : float, optional
        Peak-to-peak range of the signal (sets SSIM's stabilising
        constants). Default: ``reference.max() - reference.min()``.

    Returns
    -------
    ssim : float
        Mean SSIM, at most 1 (1 for an exact fit); invariant to
        ``image -> c * image + d`` with ``c != 0``.

    Raises
    ------
    InputError
        As for :func:`psnr`, and if the arrays are not 2-D/3-D or are
        smaller than 11 along an axis.

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image
           quality assessment: from error visibility to structural
           similarity", IEEE Trans. Image Process. 13(4):600-612, 2004.
           :DOI:`10.1109/TIP.2003.819861`

    Examples
    --------
    >>> import numpy as np
    >>> clean = np.outer(np.sin(np.linspace(0, 6, 32)), np.cos(np.linspace(0, 4, 32)))
    >>> ssim_affine(clean, 5 * clean + 2)
    1.0
    >>> noisy = clean + np.random.default_rng(0).normal(scale=0.5, size=clean.shape)
    >>> bool(ssim_affine(clean, noisy) < 0.5)
    True
    """
    from skimage.metrics import structural_similarity

    given = _check_data_range(data_range)
    names = ("reference", "image")
    ref, img = _check_pair(reference, image)
    if ref.ndim not in (2, 3) or min(ref.shape) < 11:
        raise InputError(
            f"image: expected 2-D or 3-D arrays at least 11 long on every axis for SSIM, "
            f"found shape {ref.shape}"
        )
    slope, offset = _affine_fit(ref, img, names)
    low, high = float(np.min(ref)), float(np.max(ref))
    peak = _peak(given, low, high)
    fitted = np.asarray(img, dtype=np.float64) * slope + offset
    value = structural_similarity(
        np.asarray(ref, dtype=np.float64), fitted, data_range=peak,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    return min(1.0, float(value))


@dataclass(frozen=True)
class FSCCurve:
    """A Fourier shell (3-D) or ring (2-D) correlation curve.

    Attributes
    ----------
    frequency : ndarray of float64
        Centre of each shell in 1/Å (cycles per Å), from the first shell
        beyond zero up to Nyquist, ``1 / (2 * voxel_size)``.
    correlation : ndarray of float64
        Correlation of the two images' Fourier coefficients in each shell,
        in ``[-1, 1]``.
    count : ndarray of int64
        Number of Fourier coefficients in each shell (of the half-space of a
        real transform).
    voxel_size : float
        Voxel size in Å used for the frequencies.
    """

    frequency: np.ndarray
    correlation: np.ndarray
    count: np.ndarray
    voxel_size: float

    def resolution(self, threshold: float = 0.143) -> float:
        """Resolution in Å where the curve first drops below `threshold`.

        The crossing is interpolated linearly between the two shells around
        it, and ``1 / frequency`` returned. If the curve never drops below
        the threshold, the Nyquist resolution ``2 * voxel_size`` is
        returned (the true resolution is at least that good); if the first
        shell is already below it, the resolution of the first shell.

        Parameters
        ----------
        threshold : float
            ``0.143`` (Rosenthal & Henderson, for the FSC of two
            independent half maps) or ``0.5`` (the conservative criterion,
            e.g. against a reference) are the usual choices.

        Returns
        -------
        resolution : float
            Resolution in Å.

        Raises
        ------
        InputError
            If `threshold` is not a number in ``(-1, 1)``.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise InputError(f"threshold: expected a number in (-1, 1), found {threshold!r}")
        if not -1 < threshold < 1:
            raise InputError(f"threshold: expected a number in (-1, 1), found {threshold}")
        below = np.flatnonzero(self.correlation < threshold)
        if below.size == 0:
            return 2.0 * self.voxel_size
        i = int(below[0])
        if i == 0:
            return float(1.0 / self.frequency[0])
        f0, f1 = self.frequency[i - 1], self.frequency[i]
        c0, c1 = self.correlation[i - 1], self.correlation[i]
        crossing = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
        return float(1.0 / crossing)


def fsc(a: npt.ArrayLike, b: npt.ArrayLike, *, voxel_size: float = 1.0) -> FSCCurve:
    """Fourier shell (3-D) or ring (2-D) correlation of two images.

    Parameters
    ----------
    a, b : array_like
        Real-valued 2-D or 3-D arrays of the same shape with finite
        values, neither constant (after removing the mean). Any shape is
        allowed; shells are spherical in physical frequency. They are not
        modified.
    voxel_size : float, optional
        Voxel (pixel) size in Å; frequencies are in 1/Å.

    Returns
    -------
    curve : FSCCurve
        Correlation per shell of width ``1 / (min(shape) * voxel_size)``
        (one Fourier sample along the shortest axis), from the first shell
        beyond zero frequency up to Nyquist. ``curve.resolution(0.143)``
        and ``curve.resolution(0.5)`` give resolutions in Å.

    Raises
    ------
    InputError
        If the shapes differ (both are named), the arrays are not 2-D/3-D
        real finite arrays, shorter than 4 on an axis, or constant (the
        correlation is undefined), or `voxel_size` is not a positive
        number.

    Notes
    -----
    ``FSC(k) = Re sum F_a F_b^* / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the
    coefficients of shell ``k``. Identical images give 1 everywhere; images
    of independent noise give values around 0 with a spread of about
    ``1 / sqrt(count)``. Computed in float64 with real FFTs (about six
    copies of the volume in memory).

    References
    ----------
    .. [1] M. van Heel and M. Schatz, "Fourier shell correlation threshold
           criteria", J. Struct. Biol. 151(3):250-262, 2005.
           :DOI:`10.1016/j.jsb.2005.05.009`
    .. [2] P. B. Rosenthal and R. Henderson, "Optimal determination of
           particle orientation, absolute hand, and contrast loss in
           single-particle electron cryomicroscopy", J. Mol. Biol.
           333(4):721-745, 2003. :DOI:`10.1016/j.jmb.2003.07.013`

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> volume = rng.normal(size=(16, 16, 16))
    >>> curve = fsc(volume, volume, voxel_size=5.0)
    >>> bool(np.allclose(curve.correlation, 1.0)), curve.resolution(0.143)
    (True, 10.0)
    """
    names = ("a", "b")
    first, second = _check_pair(a, b, names=names)
    if first.ndim not in (2, 3) or min(first.shape) < 4:
        raise InputError(
            f"a: expected 2-D or 3-D arrays at least 4 long on every axis, "
            f"found shape {first.shape}"
        )
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, numbers.Real) or not (
        math.isfinite(voxel_size) and voxel_size > 0
    ):
        raise InputError(f"voxel_size: expected a positive number in Å, found {voxel_size!r}")
    transforms = []
    for array, name in zip((first, second), names, strict=True):
        values = np.asarray(array, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InputError(f"{name}: expected finite values, found NaN or inf")
        if values.min() == values.max():
            raise InputError(
                f"{name}: expected a non-constant image, found a constant one "
                f"(the Fourier shell correlation is undefined)"
            )
        transforms.append(np.fft.rfftn(values - values.mean()))
    shape = first.shape
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    # Radius in cycles per voxel, binned in steps of 1 / min(shape).
    radius_sq = np.zeros(transforms[0].shape)
    for axis, freq in enumerate(axes):
        view = [1] * len(shape)
        view[axis] = freq.size
        radius_sq = radius_sq + (freq.reshape(view)) ** 2
    step = 1.0 / min(shape)
    n_shells = int(0.5 / step)
    index = np.rint(np.sqrt(radius_sq) / step).astype(np.int64).reshape(-1)
    fa, fb = transforms[0].reshape(-1), transforms[1].reshape(-1)
    length = n_shells + 1
    keep = index < length
    index = index[keep]
    cross = np.bincount(index, weights=(fa * np.conj(fb)).real[keep], minlength=length)
    power_a = np.bincount(index, weights=(np.abs(fa) ** 2)[keep], minlength=length)
    power_b = np.bincount(index, weights=(np.abs(fb) ** 2)[keep], minlength=length)
    count = np.bincount(index, minlength=length)
    denominator = np.sqrt(power_a * power_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(denominator > 0, cross / denominator, 0.0)
    shells = np.arange(1, length)
    frequency = shells * step / float(voxel_size)
    logger.debug("FSC over %d shells of shape %s", n_shells, shape)
    return FSCCurve(frequency=frequency, correlation=np.clip(correlation[1:], -1.0, 1.0),
                    count=count[1:], voxel_size=float(voxel_size))


def snr_from_halves(even: npt.ArrayLike, odd: npt.ArrayLike) -> float:
    """Signal-to-noise ratio of one half, from the correlation of the two halves.

    Two images ``even = s + n1`` and ``odd = s + n2`` with independent
    noise of equal power have correlation ``r = S / (S + N)``, so
    ``SNR = S / N = r / (1 - r)`` (Frank & Al-Ali). The average of the two
    halves has twice this SNR.

    Parameters
    ----------
    even, odd : array_like
        Real-valued arrays of the same shape with finite values, not
        constant. They are not modified.

    Returns
    -------
    snr : float
        Estimated signal-to-noise power ratio of one half; 0.0 when the
        halves are uncorrelated or anti-correlated (``r <= 0``), ``inf``
        when they are identical (no noise).

    Raises
    ------
    InputError
        As for :func:`pearson`.

    References
    ----------
    .. [1] J. Frank and L. Al-Ali, "Signal-to-noise ratio of electron
           micrographs obtained by cross correlation", Nature 256:376-379,
           1975. :DOI:`10.1038/256376a0`

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(scale=2.0, size=(64, 64, 64))  # power 4
    >>> even = signal + rng.normal(size=signal.shape)      # noise power 1
    >>> odd = signal + rng.normal(size=signal.shape)
    >>> round(snr_from_halves(even, odd), 1)
    4.0
    """
    r = pearson(even, odd)
    if r <= 0:
        return 0.0
    if r >= 1:
        return math.inf
    return r / (1.0 - r)


def halves_score(denoised_even: npt.ArrayLike, odd: npt.ArrayLike) -> float:
    """Reference-free score: correlation of a denoised half with the other raw half.

    Denoise the even half *alone* and correlate the result with the raw
    odd half, whose noise is independent of everything the denoiser saw.
    Noise in `odd` is uncorrelated with the denoised image, so
    ``corr(denoised, odd) = corr(denoised, signal) * std(signal) / std(odd)``
    in expectation: the score ranks denoisers exactly as their (unknown)
    correlation with the clean signal does. Higher is better.

    Parameters
    ----------
    denoised_even : array_like
        The even half after denoising, computed without the odd half.
    odd : array_like
        The raw odd half, same shape.

    Returns
    -------
    score : float
        Pearson correlation in ``[-1, 1]``.

    Raises
    ------
    InputError
        As for :func:`pearson` (shapes differ, NaN, constant input...).

    Notes
    -----
    A denoiser that used the odd half (like Cryo-CARE's average of both
    restored halves) must not be scored this way: its output contains the
    odd noise and would score too high. Score ``model.predict(even)``
    instead.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = np.repeat(rng.normal(size=(32, 32, 1)), 32, axis=2)
    >>> even = signal + rng.normal(size=signal.shape)
    >>> odd = signal + rng.normal(size=signal.shape)
    >>> smooth = even.mean(axis=2, keepdims=True).repeat(32, axis=2)
    >>> bool(halves_score(smooth, odd) > halves_score(even, odd))
    True
    """
    return pearson(denoised_even, odd)
