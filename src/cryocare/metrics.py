"""Image quality scores: MSE, PSNR, SSIM, Pearson, FSC/FRC, even/odd SNR, the missing wedge.

:func:`wedge_correlation`, :func:`directional_resolution` and
:func:`psnr_lowpass` score a volume against a wedge-free truth (section
"the missing wedge", at the end). :func:`dice`, :func:`iou`,
:func:`precision` and :func:`recall` score a mask (e.g. from
:mod:`cryocare.segment`) against a reference mask (section "masks", last).

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

import itertools
import logging
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import InputError

__all__ = [
    "FSCCurve",
    "HeldOutScore",
    "fsc",
    "halves_score",
    "heldout_scores",
    "mse",
    "pearson",
    "psnr",
    "psnr_affine",
    "snr_from_halves",
    "ssim_affine",
    # the missing wedge
    "WEDGE_BAND",
    "DirectionalResolution",
    "WedgeCorrelation",
    "directional_resolution",
    "lowpass",
    "psnr_lowpass",
    "wedge_correlation",
    # masks
    "dice",
    "iou",
    "precision",
    "recall",
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
        ``c > 0``, -1 if ``c < 0``; 0 if either array is constant (the
        coefficient is undefined there; a constant image carries nothing that
        correlates, so a denoiser whose output collapsed to a constant scores
        as uncorrelated and a filter tuned by correlation moves on).

    Raises
    ------
    InputError
        If the shapes differ, an array is empty, not real-valued, or holds
        NaN or inf.

    References
    ----------
    .. [1] Wikipedia, "Pearson correlation coefficient",
           https://en.wikipedia.org/wiki/Pearson_correlation_coefficient

    Examples
    --------
    >>> import numpy as np
    >>> pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    0.5
    >>> pearson(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0]))
    0.0
    """
    names = ("a", "b")
    first, second = _check_pair(a, b, names=names)
    moments = _Moments(first, second, names)
    if moments.min_a == moments.max_a or moments.min_b == moments.max_b:
        return 0.0
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


# ------------------------------------------------------------------------- held-out halves
# How much a restoration improved on the raw average, estimated from the two halves alone.

#: Weights tried for a blend of two restorations, both ends included.
_BLEND_WEIGHTS = tuple(i / 20 for i in range(21))


@dataclass(frozen=True)
class HeldOutScore:
    """Quality of one restoration of a pair, estimated from the halves (:func:`heldout_scores`).

    Attributes
    ----------
    weights : dict of str to float
        The restoration: the methods whose pair outputs it combines, with their weights (one
        method with weight 1, or a blend of two whose weights sum to 1).
    gain_db : float
        Estimated gain in dB over the raw average ``(even + odd) / 2``, in PSNR after the best
        affine fit to the signal (as :func:`psnr_affine` scores against a clean reference):
        ``10 log10(raw_error / error)``; ``inf`` if the estimated error is not positive.
    uncertainty_db : float
        Standard error of `gain_db` by the delete-one-block jackknife over sub-volumes.
    error, raw_error : float
        Estimated mean squared error per voxel against the signal after the best affine fit,
        of the restoration and of the raw average.
    replicates : tuple of float
        The gains with each block left out in turn, for paired comparisons (:meth:`compare`).
    explained : float
        Estimated ``cov(m, s)**2 / var(m)``: the signal variance that the restoration ``m``
        explains after the best affine fit (its error is ``var(s)`` minus this). Needs no
        estimate of ``var(s)``, so it ranks restorations even where the halves hold no
        measurable signal (:meth:`compare_explained`).
    explained_replicates : tuple of float
        `explained` with each block left out in turn.
    signal_measured : bool
        Whether the halves' covariance was above twice its standard error; if not,
        `gain_db`, `uncertainty_db` and `replicates` are NaN and only `explained` ranks.
    """

    weights: dict[str, float]
    gain_db: float
    uncertainty_db: float
    error: float
    raw_error: float
    replicates: tuple[float, ...]
    explained: float = math.nan
    explained_replicates: tuple[float, ...] = ()
    signal_measured: bool = True

    def compare(self, other: HeldOutScore) -> tuple[float, float]:
        """Gain of this restoration over `other` in dB, and its standard error.

        Both were estimated from the same halves and blocks, so the errors they share (above
        all that of the signal's variance) cancel in the difference: its standard error is
        usually much smaller than either `uncertainty_db`.

        Parameters
        ----------
        other : HeldOutScore
            A score from the same call of :func:`heldout_scores`.

        Returns
        -------
        difference, uncertainty : float
            ``self.gain_db - other.gain_db`` and its jackknife standard error in dB.

        Raises
        ------
        InputError
            If `other` was estimated over another number of blocks.
        """
        return _paired(self.gain_db, other.gain_db, self.replicates, other.replicates)

    @property
    def explained_uncertainty(self) -> float:
        """Jackknife standard error of `explained` (NaN without replicates)."""
        return _jackknife_error(self.explained_replicates)

    def compare_explained(self, other: HeldOutScore) -> tuple[float, float]:
        """How much more of the signal this restoration explains than `other`, and its error.

        ``explained`` minus ``other.explained``, with the jackknife standard error of that
        difference (their ratio above 1: ahead by more than one standard error). It is also
        their error difference (``other.error - self.error``), so it ranks as
        :meth:`compare` does, but it needs no estimate of the signal's variance: it ranks
        restorations of halves without a measurable signal per voxel.

        Parameters
        ----------
        other : HeldOutScore
            A score from the same call of :func:`heldout_scores`.

        Returns
        -------
        difference, uncertainty : float
            ``self.explained - other.explained`` and its jackknife standard error (in the
            data's squared units).

        Raises
        ------
        InputError
            If `other` was estimated over another number of blocks.
        """
        return _paired(self.explained, other.explained, self.explained_replicates,
                       other.explained_replicates)


def _paired(value: float, other: float, replicates: tuple[float, ...],
            other_replicates: tuple[float, ...]) -> tuple[float, float]:
    """``value - other`` and the jackknife standard error of that paired difference."""
    if len(other_replicates) != len(replicates):
        raise InputError(f"other: expected a score over the same {len(replicates)} blocks, "
                         f"found {len(other_replicates)}")
    return value - other, _jackknife_error(np.subtract(replicates, other_replicates))


def _jackknife_error(replicates: npt.ArrayLike) -> float:
    """Standard error from delete-one jackknife replicates (NaN with fewer than 2 or non-finite)."""
    values = np.asarray(replicates, dtype=np.float64)
    if values.size < 2 or not np.isfinite(values).all():
        return math.nan
    spread = values - values.mean()
    return float(math.sqrt((values.size - 1) / values.size * float(spread @ spread)))


def _blocks(shape: tuple[int, ...], per_axis: int) -> list[tuple[slice, ...]]:
    """Split ``shape`` into up to ``per_axis`` parts along every axis (fewer on short axes)."""
    edges = []
    for n in shape:
        parts = max(1, min(per_axis, n // 4))
        bounds = [round(n * i / parts) for i in range(parts + 1)]
        edges.append([slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return list(itertools.product(*edges))


class _Gram:
    """Per-block voxel counts, sums and cross products of the vectors ``x_0 .. x_(k-1)``.

    Sums are taken after subtracting an offset per vector (its mean over the first slab),
    so covariances stay accurate for data far from zero.
    """

    def __init__(self, arrays: list[np.ndarray], names: list[str], per_axis: int) -> None:
        k = len(arrays)
        regions = _blocks(arrays[0].shape, per_axis)
        self.count = np.zeros(len(regions))
        self.sums = np.zeros((len(regions), k))
        self.products = np.zeros((len(regions), k, k))
        offset = None
        for b, region in enumerate(regions):
            for rows in _row_slabs(region, arrays[0].shape):
                stack = np.empty((k, 0))
                for i, (array, name) in enumerate(zip(arrays, names, strict=True)):
                    values = np.asarray(array[rows], dtype=np.float64).reshape(-1)
                    if not np.isfinite(values).all():
                        raise InputError(f"{name}: expected finite values, found NaN or inf")
                    if i == 0:
                        stack = np.empty((k, values.size))
                    stack[i] = values
                if offset is None:
                    offset = stack.mean(axis=1)
                stack -= offset[:, None]
                self.count[b] += stack.shape[1]
                self.sums[b] += stack.sum(axis=1)
                self.products[b] += stack @ stack.T

    def covariances(self, leave_out: int | None = None) -> np.ndarray:
        """The k x k covariance matrix over all blocks, or all but one."""
        n, s, p = self.count.sum(), self.sums.sum(axis=0), self.products.sum(axis=0)
        if leave_out is not None:
            n = n - self.count[leave_out]
            s = s - self.sums[leave_out]
            p = p - self.products[leave_out]
        mean = s / n
        return p / n - np.outer(mean, mean)


def _row_slabs(region: tuple[slice, ...], shape: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """Sub-regions of ``region`` of about ``_CHUNK`` voxels, split along the first axis."""
    first = region[0]
    size = math.prod((s.stop - s.start) for s in region[1:]) or 1
    step = max(1, _CHUNK // size)
    for start in range(first.start, first.stop, step):
        yield (slice(start, min(first.stop, start + step)), *region[1:])


def _explained(cov: np.ndarray, weights: np.ndarray) -> float:
    """Estimated ``cov(m, s)**2 / var(m)`` of ``m = weights @ x`` (see :func:`_affine_errors`)."""
    held_out = np.array([cov[0, 1], cov[1, 0]]
                        + [cov[i, 1 - (i % 2)] for i in range(2, cov.shape[0])])
    variance = float(weights @ cov @ weights)
    return 0.0 if variance <= 0 else float(weights @ held_out) ** 2 / variance


def _affine_errors(cov: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Estimated affine-fit MSE against the signal of the raw average and of ``weights @ x``.

    Vector 0 is the even half, 1 the odd half, then each method's output on the even half and
    on the odd half. The signal's variance is ``cov(even, odd)``; each vector's covariance with
    the signal is its covariance with the half it never saw.
    """
    raw = np.zeros(cov.shape[0])
    raw[:2] = 0.5
    signal = cov[0, 1]
    return signal - _explained(cov, raw), signal - _explained(cov, weights)


def _gain_db(raw_error: float, error: float) -> float:
    if error <= 0:
        return math.inf
    if raw_error <= 0:
        return -math.inf
    return 10.0 * math.log10(raw_error / error)


def heldout_scores(
    even: npt.ArrayLike,
    odd: npt.ArrayLike,
    outputs: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    blends: Sequence[tuple[str, str]] = (),
    blocks: int = 3,
    require_signal: bool = True,
) -> dict[str, HeldOutScore]:
    """Estimate, from the two halves alone, how much each restoration gains on the raw average.

    Every method restores each half *alone*: ``f(even)`` and ``f(odd)``, and its output on the
    pair is their mean ``m = (f(even) + f(odd)) / 2`` (what
    :meth:`cryocare.model.CAREModel.denoise` returns, and for a linear filter the same as
    filtering the average). With ``even = s + n_e`` and ``odd = s + n_o`` (independent noise of
    zero mean), ``f(even)`` is independent of ``n_o``, so ``cov(f(even), odd)`` estimates
    ``cov(f(even), s)`` without bias, and ``cov(even, odd)`` estimates ``var(s)``. The error
    of ``m`` against the signal after the best affine fit is
    ``var(s) - cov(m, s)**2 / var(m)``: estimated from these covariances, for ``m`` and for
    the raw average, their ratio in dB is the gain returned.

    Parameters
    ----------
    even, odd : array_like
        The two independently noisy halves, same shape, finite real values; not modified.
    outputs : mapping of str to (array_like, array_like)
        For each method, its outputs on the even half and on the odd half, each computed
        from that half alone (same shape as the halves).
    blends : sequence of (str, str), optional
        Pairs of methods of `outputs` to blend: ``w * a + (1 - w) * b`` with the weight
        ``w`` in 0, 0.05, ..., 1 of the best estimated gain; scored under ``"a+b"``.
    blocks : int, optional
        Parts per axis of the sub-volumes of the jackknife (fewer on axes shorter than
        ``4 * blocks``); default 3, i.e. 27 blocks in 3-D.
    require_signal : bool, optional
        True (default): halves without a measurable signal are an error. False: score them
        anyway, with ``signal_measured`` False and NaN gains; ``explained`` (and
        :meth:`HeldOutScore.compare_explained`) still ranks the restorations, since it needs
        no estimate of the signal's variance, and blends take the weight that explains most.

    Returns
    -------
    dict of str to HeldOutScore
        One score per method of `outputs`, then one per blend.

    Raises
    ------
    InputError
        If shapes differ, values are not finite, a blend names an unknown method, `blocks`
        is not a positive integer, or (with `require_signal`) the halves hold no measurable
        signal (their covariance is not above twice its jackknife standard error; with one
        block, not positive).

    See Also
    --------
    halves_score : the correlation of one restored half with the other raw half, which
        ranks single-half restorations the same way.

    Notes
    -----
    The numerator and denominator of the gain are each built from unbiased estimates; the
    ratio is consistent, not exactly unbiased. What limits the precision is the estimate of
    ``var(s)`` from ``cov(even, odd)`` at low signal-to-noise ratio: the uncertainty says how
    much. A method that saw the odd half while restoring the even one (a network trained
    on these halves, on this region) scores too high; score it on a region it was not
    trained on. The blend weight is chosen on the same data it is scored on, so a blend's
    gain is slightly optimistic.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage as ndi
    >>> rng = np.random.default_rng(0)
    >>> clean = ndi.gaussian_filter(rng.normal(size=(48, 48, 48)), 2) * 10
    >>> even = clean + rng.normal(size=clean.shape)
    >>> odd = clean + rng.normal(size=clean.shape)
    >>> smooth = lambda x: ndi.gaussian_filter(x, 1.5)
    >>> score = heldout_scores(even, odd, {"gaussian": (smooth(even), smooth(odd))})["gaussian"]
    >>> truth = psnr_affine(clean, smooth((even + odd) / 2)) - psnr_affine(clean, (even + odd) / 2)
    >>> bool(abs(score.gain_db - truth) < 3 * score.uncertainty_db), round(truth, 1)
    (True, 8.1)
    """
    first, second = _check_pair(even, odd, names=("even", "odd"))
    if isinstance(blocks, bool) or not isinstance(blocks, numbers.Integral) or blocks < 1:
        raise InputError(f"blocks: expected a positive integer, found {blocks!r}")
    arrays, names = [first, second], ["even", "odd"]
    for method, pair in outputs.items():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InputError(f"outputs[{method!r}]: expected (output on even, output on odd), "
                             f"found {type(pair).__name__}")
        for half, value in zip(("even", "odd"), pair, strict=True):
            name = f"outputs[{method!r}] on the {half} half"
            arrays.append(_check_pair(first, value, names=("even", name))[1])
            names.append(name)
    methods = list(outputs)
    for a, b in blends:
        for method in (a, b):
            if method not in outputs:
                raise InputError(f"blends: expected methods of outputs "
                                 f"({', '.join(methods)}), found {method!r}")
    gram = _Gram(arrays, names, int(blocks))
    total = gram.covariances()
    replicated = [gram.covariances(leave_out=b) for b in range(len(gram.count))]
    # The signal's variance must be measurable: above twice its own standard error.
    spread = _jackknife_error([cov[0, 1] for cov in replicated])
    measured = bool(total[0, 1] > (2 * spread if math.isfinite(spread) else 0.0))
    if not measured and require_signal:
        r = total[0, 1] / math.sqrt(max(total[0, 0] * total[1, 1], 1e-300))
        raise InputError(f"even/odd: no measurable signal: the halves' covariance "
                         f"{total[0, 1]:.3g} (r = {r:.4f}) is not above twice its standard "
                         f"error {spread:.2g}, so there is no gain to estimate")

    def vector(weights: Mapping[str, float]) -> np.ndarray:
        a = np.zeros(len(arrays))
        for method, weight in weights.items():
            i = 2 + 2 * methods.index(method)
            a[i] += weight / 2
            a[i + 1] += weight / 2
        return a

    def score(weights: dict[str, float]) -> HeldOutScore:
        a = vector(weights)
        raw_error, error = _affine_errors(total, a)
        per_block = [_affine_errors(cov, a) for cov in replicated]
        if measured:
            gains = tuple(_gain_db(*errors) for errors in per_block)
            gain, spread = _gain_db(raw_error, error), _jackknife_error(gains)
        else:  # no var(s) to compare with: only `explained` ranks
            gains, gain, spread = (math.nan,) * len(per_block), math.nan, math.nan
        # the error is var(s) minus the signal explained: var(s) is cov(even, odd)
        return HeldOutScore(weights=weights, gain_db=gain, uncertainty_db=spread, error=error,
                            raw_error=raw_error, replicates=gains,
                            explained=total[0, 1] - error,
                            explained_replicates=tuple(cov[0, 1] - e for cov, (_, e)
                                                       in zip(replicated, per_block,
                                                              strict=True)),
                            signal_measured=measured)

    scores = {method: score({method: 1.0}) for method in methods}
    for a, b in blends:
        # the least error is the most signal explained, with or without a measurable var(s)
        best = max(_BLEND_WEIGHTS, key=lambda w: _explained(total, vector({a: w, b: 1.0 - w})))
        scores[f"{a}+{b}"] = score({a: best, b: 1.0 - best} if a != b else {a: 1.0})
    logger.debug("held-out gains: %s", ", ".join(
        f"{k} {v.gain_db:.2f} ± {v.uncertainty_db:.2f} dB" for k, v in scores.items()))
    return scores


# ------------------------------------------------------------------ the missing wedge
# Scores against a wedge-free truth: Fourier correlation inside the missing cone and in
# the measured directions, directional resolution, PSNR of the low-passed volumes.

#: Default frequency band of :func:`wedge_correlation`, cycles per voxel.
WEDGE_BAND = (0.04, 0.15)


@dataclass(frozen=True)
class WedgeCorrelation:
    """Fourier correlation of an image with a truth, split by the missing wedge.

    Attributes
    ----------
    missing : float
        Correlation inside the missing cone (at least ``margin`` degrees beyond
        the measured range), in ``[-1, 1]``; NaN when the cone is empty (a full
        ±90° series).
    measured : float
        Correlation in the measured directions (at least ``margin`` degrees
        inside the measured range), in ``[-1, 1]``.
    """

    missing: float
    measured: float


@dataclass(frozen=True, eq=False)
class DirectionalResolution:
    """FSC resolution of two volumes in cones around the ``Z``, ``Y`` and ``X`` axes.

    Attributes
    ----------
    z, y, x : float
        Resolution in Å (in voxels for ``voxel_size=1``) where the FSC within
        the cone around that axis first drops below the threshold; the larger,
        the worse. The first shell's resolution when even that is below it.
    curves : dict of str to FSCCurve
        The FSC curve of each cone, by axis name ``"z"``, ``"y"``, ``"x"``.
    threshold : float
        The threshold used.
    """

    z: float
    y: float
    x: float
    curves: dict[str, FSCCurve]
    threshold: float

    @property
    def anisotropy(self) -> float:
        """``z / x``: how much worse the resolution is along the beam than across it
        (about 1 for an isotropic map, large for a map with a missing wedge about ``Y``)."""
        return self.z / self.x

    def at(self, threshold: float) -> DirectionalResolution:
        """The same curves read at another FSC threshold (no transform computed again).

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> volume = rng.normal(size=(16, 16, 16))
        >>> directional_resolution(volume, volume, threshold=0.5).at(0.143).x
        2.0
        """
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            -1 < threshold < 1
        ):
            raise InputError(f"threshold: expected a number in (-1, 1), found {threshold!r}")
        values = {name: curve.resolution(float(threshold)) for name, curve in self.curves.items()}
        return DirectionalResolution(**values, curves=self.curves, threshold=float(threshold))


def _check_volumes(a: npt.ArrayLike, b: npt.ArrayLike, names: tuple[str, str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Two finite, non-constant 3-D float64 volumes of the same shape, each ≥ 8 on every axis."""
    first, second = _check_pair(a, b, names=names)
    if first.ndim != 3 or min(first.shape) < 8:
        raise InputError(f"{names[0]}: expected 3-D volumes (Z, Y, X) at least 8 long on every "
                         f"axis, found shape {first.shape}")
    out = []
    for array, name in zip((first, second), names, strict=True):
        values = np.asarray(array, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InputError(f"{name}: expected finite values, found NaN or inf")
        if values.min() == values.max():
            raise InputError(f"{name}: expected a volume with structure, found a constant one "
                             "(its Fourier correlation is undefined)")
        out.append(values)
    return out[0], out[1]


def _fraction(value, name: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and low <= value <= high
    ):
        raise InputError(f"{name}: expected a number in [{low:g}, {high:g}], found {value!r}")
    return float(value)


def _edge_window(shape: tuple[int, ...], taper: float) -> np.ndarray:
    """Separable window: 1 inside, a raised cosine over ``taper`` of each axis at both ends."""
    window = np.ones(shape)
    for axis, n in enumerate(shape):
        width = int(round(taper * n))
        ramp = np.ones(n)
        if width > 0:
            # Half a Hann window over `width` samples, starting above 0 so no voxel is lost.
            rising = 0.5 * (1 - np.cos(np.pi * (np.arange(width) + 0.5) / width))
            ramp[:width] = rising
            ramp[n - width:] = rising[::-1]
        view = [1] * len(shape)
        view[axis] = n
        window = window * ramp.reshape(view)
    return window


def _apodised_spectrum(volume: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``rfftn`` of the volume minus its window-weighted mean, times the window."""
    mean = float((volume * window).sum() / window.sum())
    return np.fft.rfftn((volume - mean) * window)


def _rfft_grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Radius (cycles per voxel) of every ``rfftn`` coefficient and its weight in a full-space
    sum (2 for the coefficients that stand for a conjugate pair, 1 for the planes
    ``k_x = 0`` and, for even ``X``, Nyquist)."""
    kz, ky = np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1])
    kx = np.fft.rfftfreq(shape[2])
    radius = np.sqrt(kz[:, None, None] ** 2 + ky[None, :, None] ** 2 + kx[None, None, :] ** 2)
    weight = np.full(kx.size, 2.0)
    weight[0] = 1.0
    if shape[2] % 2 == 0:
        weight[-1] = 1.0
    return radius, np.broadcast_to(weight, radius.shape)


def _half(mask: np.ndarray) -> np.ndarray:
    """The ``rfftn`` half of an ``fftn``-ordered mask (the wedge masks are point-symmetric)."""
    return mask[..., : mask.shape[-1] // 2 + 1]


def _correlation(fa: np.ndarray, fb: np.ndarray, weight: np.ndarray, region: np.ndarray
                 ) -> float:
    if not region.any():
        return math.nan
    a, b, w = fa[region], fb[region], weight[region]
    cross = float((w * (a * np.conj(b)).real).sum())
    power = float((w * np.abs(a) ** 2).sum()) * float((w * np.abs(b) ** 2).sum())
    return 0.0 if power <= 0 else float(np.clip(cross / math.sqrt(power), -1.0, 1.0))


def wedge_correlation(
    truth: npt.ArrayLike,
    image: npt.ArrayLike,
    wedge,
    *,
    band: tuple[float, float] = WEDGE_BAND,
    margin: float = 5.0,
    taper: float = 0.1,
) -> WedgeCorrelation:
    """Fourier correlation of an image with a wedge-free truth, inside and outside the wedge.

    Both volumes are apodised (their window-weighted mean removed, then a
    raised-cosine edge over ``taper`` of every axis, so that the box edges add
    no streak along the axes), Fourier transformed, and the normalised
    cross-correlation of their coefficients,
    ``Re Σ T I* / sqrt(Σ |T|² Σ |I|²)``, is taken over the frequencies of the
    band that lie in the missing cone (:func:`cryocare.wedge.missing_mask`)
    and over those in the measured directions
    (:func:`cryocare.wedge.measured_mask`), each ``margin`` degrees clear of
    the wedge's edge.

    A denoiser that leaves the wedge alone keeps the in-cone correlation of
    the wedged noiseless reconstruction (about 0.1-0.2); a method that
    restores the wedge raises it towards 1. The score ignores scale and
    offset (``image -> c * image + d``, ``c > 0``).

    Parameters
    ----------
    truth, image : array_like, shape (Z, Y, X)
        The wedge-free truth (e.g. :attr:`cryocare.simulate.SimulatedTomogram.isotropic`)
        and the image to score; finite, not constant, at least 8 on every axis.
        They are not modified.
    wedge : Wedge or str or (float, float)
        The tilt range of the image's data (:func:`cryocare.wedge.parse_wedge`).
    band : (float, float), optional
        Lowest and highest spatial frequency in cycles per voxel,
        ``0 <= low < high <= 0.5``.
    margin : float, optional
        Degrees kept clear of the wedge's edge on both sides, in ``[0, 45]``.
    taper : float, optional
        Fraction of each axis tapered at each end, in ``[0, 0.5]``.

    Returns
    -------
    WedgeCorrelation
        ``missing`` and ``measured`` correlations; 0 where the image has no
        power in the region.

    Raises
    ------
    InputError
        For volumes of other shapes, not 3-D, too small, non-finite or
        constant, a bad wedge, band, margin or taper.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(64, 64, 64))
    >>> wedge_correlation(truth, 2 * truth + 1, "-60,60")
    WedgeCorrelation(missing=1.0, measured=1.0)
    >>> score = wedge_correlation(truth, rng.normal(size=truth.shape), "-60,60")
    >>> bool(abs(score.missing) < 0.15 and abs(score.measured) < 0.15)
    True
    """
    from .wedge import measured_mask, missing_mask, parse_wedge

    tilt = parse_wedge(wedge)
    low, high = _band(band)
    margin = _fraction(margin, "margin", low=0.0, high=45.0)
    taper = _fraction(taper, "taper", low=0.0, high=0.5)
    reference, restored = _check_volumes(truth, image, ("truth", "image"))
    window = _edge_window(reference.shape, taper)
    fa, fb = (_apodised_spectrum(v, window) for v in (reference, restored))
    del window
    radius, weight = _rfft_grid(reference.shape)
    inside = (radius >= low) & (radius <= high)
    cone = inside & _half(missing_mask(reference.shape, tilt, margin=margin))
    seen = inside & _half(measured_mask(reference.shape, tilt, margin=margin))
    result = WedgeCorrelation(missing=_correlation(fa, fb, weight, cone),
                              measured=_correlation(fa, fb, weight, seen))
    logger.debug("wedge correlation %s (%d in the cone, %d measured): %s", tilt,
                 int(cone.sum()), int(seen.sum()), result)
    return result


def _band(band) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in band)
    except (TypeError, ValueError):
        raise InputError(f"band: expected (low, high) in cycles per voxel, found {band!r}"
                         ) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high <= 0.5):
        raise InputError(f"band: expected 0 <= low < high <= 0.5 cycles per voxel, "
                         f"found {band!r}")
    return low, high


def directional_resolution(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    threshold: float = 0.143,
    cone: float = 30.0,
    voxel_size: float = 1.0,
    taper: float = 0.1,
) -> DirectionalResolution:
    """Directional FSC: the resolution of two volumes along ``Z``, ``Y`` and ``X``.

    The Fourier shell correlation of :func:`fsc`, summed only over the
    coefficients within ``cone`` degrees of one axis (``|k·e| >= |k| cos
    cone``), after the apodisation of :func:`wedge_correlation`. A tomogram
    with a missing wedge about ``Y`` correlates poorly along ``Z`` (the beam)
    and well along ``X`` and ``Y``; ``result.anisotropy = z / x`` says by
    how much. Pass two independent half maps with ``threshold=0.143``, or a
    map and its truth with ``0.5`` or ``0.143``.

    Parameters
    ----------
    a, b : array_like, shape (Z, Y, X)
        Finite, non-constant volumes at least 8 long on every axis.
    threshold : float, optional
        FSC threshold of the resolution, in ``(-1, 1)``.
    cone : float, optional
        Half-angle in degrees of each cone, in ``(0, 90)``. The default 30° is
        the missing cone of a ±60° series.
    voxel_size : float, optional
        Voxel size in Å; with 1 (the default) resolutions are in voxels.
    taper : float, optional
        Fraction of each axis tapered at each end, in ``[0, 0.5]``.

    Returns
    -------
    DirectionalResolution

    Raises
    ------
    InputError
        For volumes of other shapes, not 3-D, too small, non-finite or
        constant, or a bad option.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> volume = rng.normal(size=(16, 16, 16))
    >>> result = directional_resolution(volume, volume)
    >>> result.z, result.x, result.anisotropy       # Nyquist everywhere: 2 voxels
    (2.0, 2.0, 1.0)
    """
    reference, other = _check_volumes(a, b, ("a", "b"))
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
        -1 < threshold < 1
    ):
        raise InputError(f"threshold: expected a number in (-1, 1), found {threshold!r}")
    if isinstance(cone, bool) or not isinstance(cone, numbers.Real) or not 0 < cone < 90:
        raise InputError(f"cone: expected a half-angle in (0, 90) degrees, found {cone!r}")
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, numbers.Real) or not (
        math.isfinite(voxel_size) and voxel_size > 0
    ):
        raise InputError(f"voxel_size: expected a positive number in Å, found {voxel_size!r}")
    taper = _fraction(taper, "taper", low=0.0, high=0.5)
    shape = reference.shape
    window = _edge_window(shape, taper)
    fa, fb = (_apodised_spectrum(v, window) for v in (reference, other))
    del window
    radius, weight = _rfft_grid(shape)
    step = 1.0 / min(shape)
    length = int(0.5 / step) + 1
    index = np.rint(radius / step).astype(np.int64)
    cross_all = weight * (fa * np.conj(fb)).real
    power_a, power_b = weight * np.abs(fa) ** 2, weight * np.abs(fb) ** 2
    components = (np.fft.fftfreq(shape[0])[:, None, None], np.fft.fftfreq(shape[1])[None, :, None],
                  np.fft.rfftfreq(shape[2])[None, None, :])
    cosine = math.cos(math.radians(float(cone)))
    curves, resolutions = {}, {}
    for name, component in zip("zyx", components, strict=True):
        region = (np.abs(component) >= cosine * radius) & (index < length) & (radius > 0)
        bins = index[region]
        sums = [np.bincount(bins, weights=values[region], minlength=length)
                for values in (cross_all, power_a, power_b)]
        count = np.bincount(bins, minlength=length)
        denominator = np.sqrt(sums[1] * sums[2])
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.where(denominator > 0, sums[0] / denominator, 0.0)
        curve = FSCCurve(frequency=np.arange(1, length) * step / float(voxel_size),
                         correlation=np.clip(correlation[1:], -1.0, 1.0),
                         count=count[1:], voxel_size=float(voxel_size))
        curves[name] = curve
        resolutions[name] = curve.resolution(float(threshold))
    logger.debug("directional resolution (cones of %g°): %s", cone, resolutions)
    return DirectionalResolution(z=resolutions["z"], y=resolutions["y"], x=resolutions["x"],
                                 curves=curves, threshold=float(threshold))


def lowpass(volume: npt.ArrayLike, cutoff: float = 0.15, *, width: float = 0.2) -> np.ndarray:
    """A volume low-passed to ``cutoff`` cycles per voxel (spherical, raised-cosine edge).

    The transfer is 1 up to ``(1 - width / 2) · cutoff``, falls as a half
    cosine and is 0 from ``(1 + width / 2) · cutoff`` on (a sharp edge would
    ring); periodic boundaries.

    Parameters
    ----------
    volume : array_like
        Real, finite 2-D or 3-D array.
    cutoff : float, optional
        Frequency of the half-power point, cycles per voxel, in ``(0, 0.5]``.
    width : float, optional
        Width of the edge as a fraction of `cutoff`, in ``[0, 1]``.

    Returns
    -------
    ndarray of float64, the shape of `volume`

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(64)
    >>> slow, fast = np.cos(2 * np.pi * x * 4 / 64), np.cos(2 * np.pi * x * 16 / 64)
    >>> image = np.tile(slow + fast, (8, 1))
    >>> bool(np.allclose(lowpass(image, 0.15), np.tile(slow, (8, 1))))
    True
    """
    cutoff, width = _lowpass_options(cutoff, width)
    return _lowpassed(_finite_2d_3d(volume, "volume"), cutoff, width)


def _finite_2d_3d(volume: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(volume)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer)
                                      or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{name}: expected a real-valued array, found dtype {array.dtype}")
    if array.ndim not in (2, 3) or min(array.shape) < 2:
        raise InputError(f"{name}: expected a 2-D or 3-D array, found shape {array.shape}")
    values = np.asarray(array, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"{name}: expected finite values, found NaN or inf")
    return values


def _lowpass_options(cutoff, width) -> tuple[float, float]:
    cutoff = _fraction(cutoff, "cutoff", low=0.0, high=0.5)
    if cutoff == 0:
        raise InputError("cutoff: expected a frequency in (0, 0.5] cycles per voxel, found 0")
    return cutoff, _fraction(width, "width", low=0.0, high=1.0)


def _lowpassed(values: np.ndarray, cutoff: float, width: float) -> np.ndarray:
    axes = [np.fft.fftfreq(n) for n in values.shape[:-1]] + [np.fft.rfftfreq(values.shape[-1])]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    radius = np.sqrt(sum(g**2 for g in grids))
    start, stop = (1 - width / 2) * cutoff, (1 + width / 2) * cutoff
    if stop > start:
        phase = np.clip((radius - start) / (stop - start), 0.0, 1.0)
        transfer = 0.5 * (1 + np.cos(np.pi * phase))
    else:
        transfer = (radius <= cutoff).astype(np.float64)
    spectrum = np.fft.rfftn(values) * transfer
    return np.fft.irfftn(spectrum, s=values.shape, axes=tuple(range(values.ndim)))


def psnr_lowpass(
    truth: npt.ArrayLike,
    image: npt.ArrayLike,
    *,
    cutoff: float = 0.15,
    data_range: float | None = None,
) -> float:
    """PSNR in dB of the low-passed image against the low-passed truth, after an affine fit.

    Both are low-passed to ``cutoff`` cycles per voxel (:func:`lowpass`), then
    scored by :func:`psnr_affine` (the peak is the range of the low-passed
    truth unless `data_range` is given). Against a wedge-free truth this
    weighs the missing wedge at the resolution where it matters (membranes,
    particles) and not the high-frequency noise no method recovers.

    Parameters
    ----------
    truth, image : array_like
        Real, finite 2-D or 3-D arrays of the same shape.
    cutoff : float, optional
        Low-pass frequency, cycles per voxel, in ``(0, 0.5]``.
    data_range : float, optional
        Peak-to-peak range of the signal; default that of the low-passed truth.

    Returns
    -------
    float

    Raises
    ------
    InputError
        As for :func:`psnr_affine` and :func:`lowpass`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = np.cos(2 * np.pi * np.arange(64) * 4 / 64)[None, :].repeat(16, 0)
    >>> noisy = truth + 0.1 * rng.normal(size=truth.shape)
    >>> bool(psnr_lowpass(truth, 3 * noisy + 1) > psnr_affine(truth, noisy) + 3)
    True
    """
    reference, restored = _check_pair(truth, image, names=("truth", "image"))
    cutoff, width = _lowpass_options(cutoff, 0.2)
    smooth = [_lowpassed(_finite_2d_3d(v, name), cutoff, width)
              for v, name in ((reference, "truth"), (restored, "image"))]
    return psnr_affine(smooth[0], smooth[1], data_range=data_range)


# --- masks: overlap scores ------------------------------------------------------
# How well a segmentation (cryocare.segment) matches a reference mask.

def _check_mask(mask: npt.ArrayLike, *, name: str) -> np.ndarray:
    """Return `mask` as a bool array; integer masks must hold only 0 and 1."""
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"{name}: expected a boolean mask, found dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise InputError(
                f"{name}: expected a boolean mask or integers 0 and 1, "
                f"found values from {array.min()} to {array.max()}"
            )
        array = array.astype(bool)
    if array.size == 0:
        raise InputError(f"{name}: expected a non-empty mask, found shape {array.shape}")
    return array


def _counts(mask: npt.ArrayLike, reference: npt.ArrayLike) -> tuple[int, int, int]:
    """Sizes of `mask`, `reference` and their intersection, after validation."""
    a = _check_mask(mask, name="mask")
    b = _check_mask(reference, name="reference")
    if a.shape != b.shape:
        raise InputError(
            f"reference: expected the shape of mask {a.shape}, found shape {b.shape}"
        )
    both = int(np.count_nonzero(np.logical_and(a, b)))
    return int(np.count_nonzero(a)), int(np.count_nonzero(b)), both


def dice(mask: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Dice similarity coefficient of two masks.

    ``2 |A ∩ B| / (|A| + |B|)``: 1 for identical masks, 0 for disjoint ones.

    Parameters
    ----------
    mask, reference : array_like of bool
        Masks of the same shape (any number of dimensions). Integer arrays
        holding only 0 and 1 are accepted as masks. They are not modified.

    Returns
    -------
    score : float
        Dice coefficient in ``[0, 1]``. Two empty masks (no ``True``
        anywhere) agree perfectly and score 1.0.

    Raises
    ------
    InputError
        If the shapes differ (both are named), an array is empty, or a
        value is not boolean (nor an integer 0 or 1).

    See Also
    --------
    iou : Jaccard index; ``iou = dice / (2 - dice)``.

    References
    ----------
    .. [1] L. R. Dice, "Measures of the amount of ecologic association
           between species", Ecology 26(3):297-302, 1945.
           :DOI:`10.2307/1932409`

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 1, 1, 0]], dtype=bool)
    >>> b = np.array([[0, 1, 1, 1]], dtype=bool)
    >>> dice(a, b)  # 2 * 2 / (3 + 3)
    0.6666666666666666
    """
    size_a, size_b, both = _counts(mask, reference)
    if size_a + size_b == 0:
        return 1.0
    return 2.0 * both / (size_a + size_b)


def iou(mask: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Intersection over union (Jaccard index) of two masks.

    ``|A ∩ B| / |A ∪ B|``: 1 for identical masks, 0 for disjoint ones.

    Parameters
    ----------
    mask, reference : array_like of bool
        Masks of the same shape (any number of dimensions). Integer arrays
        holding only 0 and 1 are accepted as masks. They are not modified.

    Returns
    -------
    score : float
        Jaccard index in ``[0, 1]``. Two empty masks score 1.0, as in
        :func:`dice`.

    Raises
    ------
    InputError
        If the shapes differ (both are named), an array is empty, or a
        value is not boolean (nor an integer 0 or 1).

    References
    ----------
    .. [1] P. Jaccard, "The distribution of the flora in the alpine zone",
           New Phytologist 11(2):37-50, 1912.
           :DOI:`10.1111/j.1469-8137.1912.tb05611.x`

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 1, 1, 0]], dtype=bool)
    >>> b = np.array([[0, 1, 1, 1]], dtype=bool)
    >>> iou(a, b)  # 2 / 4
    0.5
    """
    size_a, size_b, both = _counts(mask, reference)
    union = size_a + size_b - both
    if union == 0:
        return 1.0
    return both / union


def precision(mask: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Fraction of the mask that lies in the reference: ``|A ∩ B| / |A|``.

    Parameters
    ----------
    mask, reference : array_like of bool
        Masks of the same shape, as for :func:`dice`. Not modified.

    Returns
    -------
    score : float
        Precision in ``[0, 1]`` (1 - false discovery rate). An empty mask
        scores 1.0 if the reference is empty too, else 0.0 (nothing
        found).

    Raises
    ------
    InputError
        As for :func:`dice`.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 1, 1, 0]], dtype=bool)
    >>> b = np.array([[0, 1, 1, 1]], dtype=bool)
    >>> precision(a, b), precision(a[:, :2], b[:, :2])
    (0.6666666666666666, 0.5)
    """
    size_a, size_b, both = _counts(mask, reference)
    if size_a == 0:
        return 1.0 if size_b == 0 else 0.0
    return both / size_a


def recall(mask: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Fraction of the reference found by the mask: ``|A ∩ B| / |B|``.

    Parameters
    ----------
    mask, reference : array_like of bool
        Masks of the same shape, as for :func:`dice`. Not modified.

    Returns
    -------
    score : float
        Recall (sensitivity) in ``[0, 1]``. An empty reference scores 1.0
        if the mask is empty too, else 0.0.

    Raises
    ------
    InputError
        As for :func:`dice`.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 1, 0, 0]], dtype=bool)
    >>> b = np.array([[0, 1, 1, 1]], dtype=bool)
    >>> recall(a, b)
    0.3333333333333333
    """
    size_a, size_b, both = _counts(mask, reference)
    if size_b == 0:
        return 1.0 if size_a == 0 else 0.0
    return both / size_b
