"""Classical denoising baselines: median, Gaussian, NAD and (optionally) BM4D.

These are the filters an expert compares a Noise2Noise network against.
Each filter is a pure function ``filter(image, *, option=...)`` that takes a
2-D or 3-D real array, never modifies it (read-only memory maps are fine)
and returns a new ``float32`` array of the same shape.

:data:`FILTERS` maps the names used on the command line to the functions;
:func:`apply_filter` looks a filter up by name and checks its options. A new
filter (for example nonlinear anisotropic diffusion) is added by writing the
function and adding one entry to :data:`FILTERS`. ``"bm4d"`` is registered
only when the optional `bm4d` package is installed
(``pip install "cryocare-ng[bm4d]"``).

A fair baseline chooses its own strength: :func:`tune` picks NAD's
iterations, the Gaussian's sigma or the median's size from two
independently noisy halves (no clean reference needed), and
:func:`filter_halves` filters their average with it and reports the choice.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from .errors import InputError
from .metrics import pearson

__all__ = ["FILTERS", "STRENGTH", "CANDIDATES", "Tuning", "apply_filter", "bm4d",
           "estimate_noise_sigma", "filter_halves", "gaussian", "median", "nad", "tune"]

logger = logging.getLogger(__name__)


def _check_image(image: npt.ArrayLike, *, name: str = "image", finite: bool = True) -> np.ndarray:
    """Return `image` as an array after checking it is a 2-D/3-D finite real image.

    The array is not copied when `image` is already an ndarray (or memmap). With
    ``finite=False`` the values are not scanned (the caller checks the part it reads:
    scanning a memory map brings all of it into memory).
    """
    array = np.asarray(image)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InputError(f"{name}: expected a real-valued numeric array, found dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise InputError(
            f"{name}: expected a 2-D or 3-D array, found {array.ndim}-D with shape {array.shape}"
        )
    if array.size == 0:
        raise InputError(f"{name}: expected a non-empty array, found shape {array.shape}")
    if finite and np.issubdtype(array.dtype, np.floating) and not _all_finite(array):
        raise InputError(f"{name}: expected finite values, found NaN or inf")
    return array


def _all_finite(array: np.ndarray, *, chunk: int = 2**22) -> bool:
    """Whether every value of a float `array` is finite, checked slab by slab."""
    rows = max(1, chunk // max(1, array[0].size))
    return all(
        bool(np.isfinite(array[start : start + rows]).all())
        for start in range(0, array.shape[0], rows)
    )


def _as_float32(array: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return `array` as float32 (a view if it already is), rejecting overflow."""
    if array.dtype == np.float32:
        return array
    with np.errstate(over="ignore"):
        converted = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating) and not _all_finite(converted):
        raise InputError(f"{name}: expected values within the float32 range, found larger ones")
    return converted


def median(image: npt.ArrayLike, *, size: int = 3) -> np.ndarray:
    """Median filter with a cubic (square in 2-D) window.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values. It is not
        modified.
    size : int, optional
        Edge length of the window in pixels/voxels, the same along every
        axis; a positive odd integer so that the window is centred.
        ``size=1`` returns the image unchanged (as float32).

    Returns
    -------
    filtered : ndarray of float32
        Median of each window, same shape as `image`. Borders are handled
        by mirror reflection about the edge (scipy's ``mode="reflect"``:
        ``d c b a | a b c d | d c b a``).

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array or `size` is not a
        positive odd integer.

    Notes
    -----
    The median removes isolated outliers (hot pixels, gold-bead streaks
    narrower than half the window) exactly while keeping straight edges
    sharp; its output values are always values of the input.

    References
    ----------
    .. [1] J. W. Tukey, "Exploratory Data Analysis", Addison-Wesley, 1977.
    .. [2] scipy.ndimage.median_filter,
           https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.median_filter.html

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((5, 5))
    >>> image[2, 2] = 100.0  # a hot pixel
    >>> median(image, size=3).max()
    np.float32(0.0)
    """
    array = _check_image(image)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise InputError(f"size: expected an odd integer >= 1, found {size!r}")
    if size < 1 or size % 2 == 0:
        raise InputError(f"size: expected an odd integer >= 1, found {size}")
    logger.debug("median filter, size %d, on shape %s", size, array.shape)
    return ndi.median_filter(_as_float32(array), size=int(size), mode="reflect")


def gaussian(image: npt.ArrayLike, *, sigma: float = 1.0) -> np.ndarray:
    """Gaussian low-pass filter, computed in float32.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values. It is not
        modified.
    sigma : float, optional
        Standard deviation of the Gaussian kernel in pixels/voxels, the same
        along every axis; must be positive and finite. The kernel is
        truncated at 4 sigma.

    Returns
    -------
    filtered : ndarray of float32
        Smoothed image, same shape as `image`. Borders are handled by
        mirror reflection (``mode="reflect"``).

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array or `sigma` is not a
        positive finite number.

    Notes
    -----
    Because the kernel is normalised and the border is mirrored, the filter
    keeps a constant image constant and preserves the sum (hence the mean)
    of any image, up to float32 rounding.

    References
    ----------
    .. [1] R. C. Gonzalez and R. E. Woods, "Digital Image Processing",
           4th ed., Pearson, 2018, section 3.5.
    .. [2] scipy.ndimage.gaussian_filter,
           https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.gaussian_filter.html

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(size=(32, 32))
    >>> smooth = gaussian(image, sigma=2.0)
    >>> smooth.dtype, smooth.std() < image.std()
    (dtype('float32'), np.True_)
    """
    array = _check_image(image)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise InputError(f"sigma: expected a positive number, found {sigma!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma: expected a positive finite number, found {sigma}")
    logger.debug("gaussian filter, sigma %g, on shape %s", sigma, array.shape)
    return ndi.gaussian_filter(
        _as_float32(array), sigma=float(sigma), mode="reflect", output=np.float32
    )


#: Weickert's constant for the m = 4 edge-stopping function: with it the flux
#: ``g(s) s`` across an edge of gradient ``s`` is largest at ``s = k``.
_C4 = 3.31488


def _positive_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}: expected a positive number, found {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"{name}: expected a positive finite number, found {value}")
    return float(value)


def _central_gradient(u: np.ndarray, axis: int) -> np.ndarray:
    """Central difference ``(u[i+1] - u[i-1]) / 2`` along `axis`, mirrored borders."""
    return ndi.correlate1d(u, np.array([-0.5, 0.0, 0.5], np.float32), axis=axis,
                           mode="reflect", output=np.float32)


def _gradient_magnitude_sq(u: np.ndarray, sigma: float) -> tuple[list[np.ndarray], np.ndarray]:
    smooth = ndi.gaussian_filter(u, sigma=sigma, mode="reflect", output=np.float32)
    grads = [_central_gradient(smooth, axis) for axis in range(u.ndim)]
    del smooth
    s2 = np.zeros_like(u)
    for g in grads:
        s2 += g * g
    return grads, s2


def _along(axis: int, ndim: int, index: slice) -> tuple[slice, ...]:
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def _forward_difference(u: np.ndarray, axis: int) -> np.ndarray:
    """``u[i+1] - u[i]`` at the half-points ``i + 1/2``; 0 after the last voxel."""
    out = np.zeros_like(u)
    head, tail = _along(axis, u.ndim, slice(None, -1)), _along(axis, u.ndim, slice(1, None))
    np.subtract(u[tail], u[head], out=out[head])
    return out


def _half_point_mean(x: np.ndarray, axis: int) -> np.ndarray:
    """``(x[i] + x[i+1]) / 2`` at the half-points ``i + 1/2`` (last one: ``x[-1]``)."""
    out = x.copy()
    head, tail = _along(axis, x.ndim, slice(None, -1)), _along(axis, x.ndim, slice(1, None))
    out[head] += x[tail]
    out[head] *= np.float32(0.5)
    return out


def _eed_divergence(u: np.ndarray, *, k: float, sigma: float) -> np.ndarray:
    """``div(D grad u)`` for the edge-enhancing diffusion tensor ``D``, no-flux borders.

    Fluxes live on the half-points between voxels (a staggered grid): the
    derivative along the flux direction is the forward difference and the
    others are central differences averaged onto the half-point, so
    ``D = I`` gives the nearest-neighbour Laplacian and a tensor that
    blocks one direction blocks it exactly.
    """
    ndim = u.ndim
    grads, s2 = _gradient_magnitude_sq(u, sigma)
    # c = (g - 1) / s2 = -exp(-C4 (k^2 / s2)^4) / s2; clipped where it is 0 in float32.
    k2 = np.float32(k * k)
    np.maximum(s2, k2 * np.float32(1e-6), out=s2)
    ratio = k2 / s2
    np.minimum(ratio, np.float32((88.0 / _C4) ** 0.25), out=ratio)
    np.power(ratio, 4, out=ratio)
    ratio *= np.float32(-_C4)
    np.exp(ratio, out=ratio)
    ratio /= s2
    c = np.negative(ratio, out=ratio)
    del s2
    central = [_central_gradient(u, axis) for axis in range(ndim)]
    divergence = np.zeros_like(u)
    for i in range(ndim):
        flux = _forward_difference(u, i)
        ci = c * grads[i]
        for j in range(ndim):
            weight = _half_point_mean(ci * grads[j], i)
            if i == j:
                weight += np.float32(1.0)
                weight *= flux
                flux = weight
            else:
                weight *= _half_point_mean(central[j], i)
                flux += weight
        last = _along(i, ndim, slice(-1, None))
        flux[last] = 0.0  # no flux through the border
        divergence += flux
        head, tail = _along(i, ndim, slice(None, -1)), _along(i, ndim, slice(1, None))
        divergence[tail] -= flux[head]
    return divergence


def nad(
    image: npt.ArrayLike,
    *,
    iterations: int = 5,
    k: float | None = None,
    time_step: float = 0.1,
    sigma: float = 1.0,
    progress: bool = False,
) -> np.ndarray:
    """Edge-enhancing nonlinear anisotropic diffusion (NAD), 2-D or 3-D.

    The edge-enhancing diffusion (EED) of Weickert as used for electron
    tomograms by Frangakis and Hegerl (2001) and in IMOD's ``nad_eed_3d``:
    the image evolves by ``du/dt = div(D grad u)`` where the diffusion
    tensor ``D`` smooths freely *along* edges and, *across* an edge, only
    as much as ``g(|grad u_sigma|)`` allows, with ``u_sigma`` the image
    smoothed by a Gaussian of `sigma`. Noise (weak gradients) is smoothed
    like a heat equation, while membranes and particle boundaries (strong
    gradients) are kept and sharpened.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values. It is not
        modified.
    iterations : int, optional
        Number of explicit time steps (IMOD's number of iterations); 0
        returns the image as float32. The total diffusion time is
        ``iterations * time_step``. Default 5: the best fixed count (within
        0.3 dB of the best) on every simulated tomogram measured, where 20
        (the default before) fell to the raw level or below it
        (docs/filters.md). With two halves, let :func:`tune` choose it.
    k : float, optional
        Contrast parameter (IMOD's K), in intensity units per voxel: edges
        whose smoothed gradient magnitude is well above `k` stop diffusion
        across them. Default: the 90th percentile of the smoothed gradient
        magnitude of the input, so that the weakest 90 % of gradients
        (mostly noise) are diffused away.
    time_step : float, optional
        Time step of the explicit scheme (IMOD's time step). Must be
        positive and at most ``1 / (2 * ndim)`` (1/6 in 3-D, 1/4 in 2-D),
        the stability limit of the scheme.
    sigma : float, optional
        Standard deviation in voxels of the Gaussian regularisation of the
        gradient that steers the diffusion tensor (Catté et al.).
    progress : bool, optional
        Show a tqdm progress bar over the iterations.

    Returns
    -------
    filtered : ndarray of float32
        Diffused image, same shape as `image`. Borders are reflecting (no
        flux through the border), so the sum of the image is preserved up
        to float32 rounding.

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array, `iterations` is not
        a non-negative integer, `k`, `time_step` or `sigma` is not a
        positive number, or `time_step` exceeds the stability limit.

    Notes
    -----
    With ``v = grad u_sigma / |grad u_sigma|`` the tensor is
    ``D = I + (g - 1) v v^T``: eigenvalue 1 along the edge directions and
    ``g(s) = 1 - exp(-3.31488 / (s / k)^8)`` (Weickert's m = 4 function
    of ``s = |grad u_sigma|``) across. Each step computes
    ``div(D grad u) = laplace(u) + div(c (grad u_sigma . grad u) grad u_sigma)``
    with ``c = (g - 1) / s^2``: the Laplacian with the nearest-neighbour
    stencil (so the finest, pixel-level noise is removed) and the
    anisotropic correction with central differences. Everything is
    vectorised NumPy/SciPy in float32; memory is about ten copies of the
    volume in float32.

    References
    ----------
    .. [1] A. S. Frangakis and R. Hegerl, "Noise reduction in electron
           tomographic reconstructions using nonlinear anisotropic
           diffusion", J. Struct. Biol. 135(3):239-250, 2001.
           :DOI:`10.1006/jsbi.2001.4406`
    .. [2] J. Weickert, "Anisotropic Diffusion in Image Processing",
           Teubner, Stuttgart, 1998.
    .. [3] IMOD ``nad_eed_3d``, https://bio3d.colorado.edu/imod/doc/man/nad_eed_3d.html

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> step = np.zeros((32, 32))
    >>> step[:, 16:] = 10.0
    >>> noisy = step + rng.normal(size=step.shape)
    >>> out = nad(noisy, iterations=20, k=1.0)
    >>> rms = lambda x: float(np.sqrt(np.mean((x - step) ** 2)))
    >>> rms(noisy) > 0.9, rms(out) < 0.25  # noise removed, edge kept
    (True, True)
    """
    array = _check_image(image)
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral):
        raise InputError(f"iterations: expected a non-negative integer, found {iterations!r}")
    if iterations < 0:
        raise InputError(f"iterations: expected a non-negative integer, found {iterations}")
    u = array
    from tqdm.auto import tqdm

    with tqdm(total=int(iterations), desc="NAD", disable=not progress, leave=False) as bar:
        for step, u in _nad_steps(array, k=k, time_step=time_step, sigma=sigma):  # noqa: B007
            if step == iterations:
                break
            bar.update(1)
    return u


def _nad_steps(array: np.ndarray, *, k: float | None, time_step: float,
               sigma: float) -> Iterator[tuple[int, np.ndarray]]:
    """``(n, u)`` after n = 0, 1, 2, ... NAD iterations of ``array`` (an endless path).

    ``u`` is updated in place: use (or copy) it before the next step. Checks
    the options first; ``k`` None: from the input, as :func:`nad` documents.
    """
    time_step = _positive_real(time_step, "time_step")
    limit = 1.0 / (2 * array.ndim)
    if time_step > limit:
        raise InputError(
            f"time_step: expected at most {limit:.4g} (stability limit in {array.ndim}-D), "
            f"found {time_step}"
        )
    sigma = _positive_real(sigma, "sigma")
    if k is not None:
        k = _positive_real(k, "k")
    u = np.array(array, dtype=np.float32, copy=True)
    yield 0, u
    if k is None:
        _, s2 = _gradient_magnitude_sq(u, sigma)
        k = float(np.sqrt(np.percentile(s2, 90)))
        del s2
    logger.debug("NAD: k %g, time step %g, sigma %g on shape %s", k, time_step, sigma, u.shape)
    step = 0
    while True:
        step += 1
        if k > 0.0:  # k == 0: a constant image, nothing to diffuse
            u += np.float32(time_step) * _eed_divergence(u, k=k, sigma=sigma)
        yield step, u


def estimate_noise_sigma(image: npt.ArrayLike) -> float:
    """Robust estimate of the standard deviation of white noise in an image.

    The median absolute deviation of the differences between neighbours
    along the last axis, divided by ``sqrt(2)`` and scaled by 1.4826 to a
    Gaussian standard deviation. Smooth signal contributes little to
    neighbour differences, so this measures the noise.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values, at least 2
        pixels along the last axis. It is not modified.

    Returns
    -------
    sigma : float
        Estimated noise standard deviation (0 for a constant image).

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array with at least two
        pixels along its last axis.

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(0).normal(scale=2.0, size=(64, 64, 64))
    >>> round(estimate_noise_sigma(noise), 1)
    2.0
    """
    array = _check_image(image)
    if array.shape[-1] < 2:
        raise InputError(f"image: expected at least 2 pixels along the last axis, "
                         f"found shape {array.shape}")
    diff = np.diff(_as_float32(array), axis=-1).reshape(-1) / np.float32(np.sqrt(2.0))
    centre = np.median(diff)
    return float(1.4826 * np.median(np.abs(diff - centre)))


def bm4d(image: npt.ArrayLike, *, sigma: float | None = None) -> np.ndarray:
    """BM4D collaborative filtering (needs the optional ``bm4d`` package).

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values. It is not
        modified.
    sigma : float, optional
        Standard deviation of the (white) noise. Default:
        :func:`estimate_noise_sigma` of the image.

    Returns
    -------
    filtered : ndarray of float32
        Denoised image, same shape as `image`.

    Raises
    ------
    InputError
        If the ``bm4d`` package is not installed, `image` is not a finite
        real 2-D/3-D array or `sigma` is not a positive number.

    Notes
    -----
    ``bm4d`` (PyPI, by Tampere University; free for non-commercial use
    only, see its licence) ships compiled block-matching code; install it
    with ``pip install "cryocare-ng[bm4d]"``. It is slow: minutes for a
    128³ volume on one core.

    References
    ----------
    .. [1] M. Maggioni, V. Katkovnik, K. Egiazarian and A. Foi, "Nonlocal
           transform-domain filter for volumetric data denoising and
           reconstruction", IEEE Trans. Image Process. 22(1):119-133, 2013.
           :DOI:`10.1109/TIP.2012.2210725`

    Examples
    --------
    Shown, not run (the package is optional)::

        smooth = bm4d(volume)              # noise level estimated
        smooth = bm4d(volume, sigma=0.5)
    """
    array = _check_image(image)
    if importlib.util.find_spec("bm4d") is None:
        raise InputError('bm4d: the optional package is not installed '
                         '(pip install "cryocare-ng[bm4d]")')
    import bm4d as _bm4d

    if sigma is None:
        sigma = estimate_noise_sigma(array)
        if sigma == 0:
            return np.array(array, dtype=np.float32, copy=True)
    sigma = _positive_real(sigma, "sigma")
    volume = _as_float32(array)
    squeeze = volume.ndim == 2
    if squeeze:
        volume = volume[np.newaxis]
    logger.debug("BM4D, sigma %g, on shape %s", sigma, array.shape)
    out = np.asarray(_bm4d.bm4d(np.array(volume, dtype=np.float32), sigma), dtype=np.float32)
    out = out.reshape(volume.shape)
    return out[0] if squeeze else out


def _registry() -> dict[str, Callable[..., np.ndarray]]:
    filters: dict[str, Callable[..., np.ndarray]] = {
        "median": median, "gaussian": gaussian, "nad": nad,
    }
    if importlib.util.find_spec("bm4d") is not None:
        filters["bm4d"] = bm4d
    return filters


#: Filters by the name used on the command line. Read-only; add a filter by
#: adding an entry here. ``"bm4d"`` is present only when the optional
#: package is installed.
FILTERS: Mapping[str, Callable[..., np.ndarray]] = MappingProxyType(_registry())


def apply_filter(image: npt.ArrayLike, method: str, **options: Any) -> np.ndarray:
    """Apply the filter named `method` from :data:`FILTERS` to `image`.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume; it is not modified.
    method : str
        A key of :data:`FILTERS`, e.g. ``"median"`` or ``"gaussian"``.
    **options
        Keyword options of that filter, e.g. ``size=5`` for ``"median"``.

    Returns
    -------
    filtered : ndarray of float32
        Output of the filter, same shape as `image`.

    Raises
    ------
    InputError
        If `method` is not a known filter (the message lists the known
        ones), if an option is not one the filter takes, or if the filter
        itself rejects the input.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> apply_filter(image, "gaussian", sigma=1.5).shape
    (4, 4)
    >>> apply_filter(image, "wiener")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    cryocare.errors.InputError: method: expected one of ..., found 'wiener'
    """
    if method not in FILTERS:
        known = ", ".join(repr(name) for name in sorted(FILTERS))
        raise InputError(f"method: expected one of {known}, found {method!r}")
    function = FILTERS[method]
    accepted = [
        parameter.name
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        expected = ", ".join(repr(name) for name in accepted) or "no options"
        found = ", ".join(repr(name) for name in unknown)
        raise InputError(f"{method} options: expected {expected}, found {found}")
    return function(image, **options)


# ------------------------------------------------------------------ self-tuning from two halves
#: The option that sets each filter's strength, and the values tried by :func:`tune`
#: (weakest first). NAD's are iteration counts: one diffusion path covers them all.
STRENGTH: Mapping[str, str] = MappingProxyType(
    {"nad": "iterations", "gaussian": "sigma", "median": "size"})
CANDIDATES: Mapping[str, tuple] = MappingProxyType({
    "nad": tuple(range(1, 41)),
    "gaussian": (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0),
    "median": (3, 5, 7),
})
# Candidates tried past the best before the search stops (the scores are unimodal in the
# strength; NAD's path is cheap per step, a median of size 9 is not).
_PATIENCE = MappingProxyType({"nad": 5, "gaussian": 2, "median": 1})
_ALPHA = 0.5  # recorruption strength for target="average" (see tune's Notes)
# Tuning runs on a central crop of at most this many voxels (a median of size 5 is slow).
_TUNE_VOXELS = MappingProxyType({"nad": 2**22, "gaussian": 2**22, "median": 2**20})


class Tuning(NamedTuple):
    """Result of :func:`tune`: the options chosen and their score."""

    params: dict[str, Any]
    score: float


def tune(
    method: str,
    even: npt.ArrayLike,
    odd: npt.ArrayLike,
    *,
    candidates: Sequence | None = None,
    target: str = "average",
    max_voxels: int | None = None,
    **options: Any,
) -> Tuning:
    """Choose a filter's strength from two independently noisy halves of the same data.

    Each candidate strength filters one noisy copy of the data and is scored
    by the Pearson correlation of the result with a second copy whose noise
    is independent of the first. The noise of the second copy is
    uncorrelated with everything else, so the correlation is, up to a factor
    that does not depend on the candidate, the correlation of the filtered
    copy with the noiseless data: the candidate with the highest score is
    the best one against the truth (in PSNR after an affine fit, as
    :func:`cryocare.metrics.psnr_affine` scores), without knowing the truth.

    Parameters
    ----------
    method : {"nad", "gaussian", "median"}
        The filter, a key of :data:`STRENGTH`.
    even, odd : (M, N[, P]) array_like
        The two halves, same shape, finite real values; not modified.
    candidates : sequence, optional
        Strengths to try, weakest first: NAD iterations, Gaussian sigma or
        median window size. Default :data:`CANDIDATES` of the method. The
        search stops once the score has fallen for a few candidates in a
        row (the score is unimodal in the strength).
    target : {"average", "half"}, optional
        What the chosen strength is for. ``"half"``: filtering one half; the
        even half is filtered and scored against the odd one. ``"average"``
        (default): filtering the average ``(even + odd) / 2``, which holds
        half the noise variance of one half and so wants a weaker filter;
        see Notes.
    max_voxels : int, optional
        Tune on a central crop of at most this many voxels (the best
        strength depends on the noise and the structures, not on the size
        of the volume); default 2**22 (2**20 for the median).
    **options
        Other options of the filter, fixed while tuning (e.g. ``k`` of NAD).

    Returns
    -------
    Tuning
        ``params``: the filter's options with the chosen strength, to pass to
        the filter; ``score``: its correlation.

    Raises
    ------
    InputError
        If the method cannot be tuned, the halves differ in shape or are not
        finite real 2-D/3-D arrays, or an option or candidate is invalid.

    Notes
    -----
    For ``target="average"`` the halves are recombined as
    ``x1 = a + alpha d`` and ``x2 = a - d / alpha`` with ``a`` the average,
    ``d = (even - odd) / 2`` and ``alpha = 0.5``, i.e. ``x1 = 0.75 even +
    0.25 odd`` and ``x2 = 1.5 odd - 0.5 even``: both are unbiased copies of
    the data, their noises are uncorrelated (independent for Gaussian
    noise), and ``x1`` holds 1.25 times the noise variance of the average
    instead of the 2 times of one half ("recorrupted-to-recorrupted",
    Pang et al. 2021). ``x1`` is filtered and scored against ``x2``, and the
    same again with the halves swapped; the two scores are averaged. On
    simulated tomograms this chose the best NAD iteration count for the
    average in all cases measured, where tuning on one half chose up to one
    iteration too many (docs/filters.md).

    References
    ----------
    .. [1] T. Pang, H. Zheng, Y. Quan and H. Ji, "Recorrupted-to-Recorrupted:
           Unsupervised Deep Learning for Image Denoising", CVPR 2021.
    .. [2] J. Batson and L. Royer, "Noise2Self: Blind Denoising by
           Self-Supervision", ICML 2019 (calibrating classical denoisers).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage as ndi
    >>> rng = np.random.default_rng(0)
    >>> clean = ndi.gaussian_filter(rng.normal(size=(32, 48, 48)), 3) * 30
    >>> even = clean + rng.normal(size=clean.shape)
    >>> odd = clean + rng.normal(size=clean.shape)
    >>> params, score = tune("gaussian", even, odd)
    >>> params  # also the best sigma against ``clean`` (0.9911, against 0.9908 for 1.0)
    {'sigma': 1.25}
    """
    if method not in STRENGTH:
        known = ", ".join(repr(name) for name in STRENGTH)
        raise InputError(f"method: expected one of {known} to tune, found {method!r}")
    if target not in ("average", "half"):
        raise InputError(f"target: expected 'average' or 'half', found {target!r}")
    strength = STRENGTH[method]
    if strength in options:
        raise InputError(f"{method} options: {strength} is what tune() chooses; do not give it")
    if max_voxels is None:
        max_voxels = _TUNE_VOXELS[method]
    if isinstance(max_voxels, bool) or not isinstance(max_voxels, numbers.Integral) \
            or max_voxels < 1:
        raise InputError(f"max_voxels: expected a positive integer, found {max_voxels!r}")
    values = tuple(CANDIDATES[method] if candidates is None else candidates)
    if not values:
        raise InputError(f"candidates: expected at least one {strength}, found none")
    even_array = _check_image(even, name="even")
    odd_array = _check_image(odd, name="odd")
    if even_array.shape != odd_array.shape:
        raise InputError(f"odd: expected the shape of even {even_array.shape}, "
                         f"found {odd_array.shape}")
    crop = _central_crop(even_array.shape, max_voxels)
    e = np.asarray(even_array[crop], dtype=np.float32)
    o = np.asarray(odd_array[crop], dtype=np.float32)
    if target == "half":
        copies = [(e, o)]
    else:
        a, b = np.float32((1 + _ALPHA) / 2), np.float32((1 - _ALPHA) / 2)
        c, d = np.float32((1 + 1 / _ALPHA) / 2), np.float32((1 - 1 / _ALPHA) / 2)
        copies = [(a * e + b * o, c * o + d * e), (a * o + b * e, c * e + d * o)]
    del e, o
    totals: dict[Any, float] = {}
    for noisy, reference in copies:
        for value, score in _scores(method, noisy, reference, values, options):
            totals[value] = totals.get(value, 0.0) + score / len(copies)
    scored = [value for value in values if value in totals]
    best = max(scored, key=lambda value: totals[value])  # the weakest of equals
    logger.info("%s tuned for the %s: %s %s (correlation %.4f; tried %s)", method, target,
                strength, best, totals[best],
                ", ".join(f"{v}: {totals[v]:.4f}" for v in scored))
    return Tuning({**options, strength: best}, float(totals[best]))


def _scores(method: str, noisy: np.ndarray, reference: np.ndarray, values: tuple,
            options: Mapping[str, Any]) -> Iterator[tuple[Any, float]]:
    """``(value, corr(filter(noisy, value), reference))`` weakest first, until past the peak."""
    patience, best, since = _PATIENCE[method], -np.inf, 0
    if method == "nad":
        wanted = sorted(set(values))
        if isinstance(wanted[0], bool) or not all(isinstance(v, numbers.Integral) and v >= 0
                                                  for v in wanted):
            raise InputError(f"candidates: expected non-negative iteration counts, "
                             f"found {values!r}")
        accepted = {"k", "time_step", "sigma"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise InputError(f"nad options: expected 'k', 'time_step' or 'sigma', found "
                             f"{', '.join(map(repr, unknown))}")
        evaluated = (_nad_at(noisy, wanted, options))
    else:
        function = FILTERS[method]
        evaluated = ((value, function(noisy, **{**options, STRENGTH[method]: value}))
                     for value in values)
    for value, filtered in evaluated:
        score = pearson(filtered, reference)
        yield value, score
        if score > best:
            best, since = score, 0
        else:
            since += 1
            if since >= patience:
                return


def _nad_at(noisy: np.ndarray, wanted: list[int],
            options: Mapping[str, Any]) -> Iterator[tuple[int, np.ndarray]]:
    """NAD of ``noisy`` after each iteration count in ``wanted`` (ascending), one path."""
    targets = iter(wanted)
    goal = next(targets)
    for step, u in _nad_steps(noisy, k=options.get("k"),
                              time_step=options.get("time_step", 0.1),
                              sigma=options.get("sigma", 1.0)):
        while step == goal:
            yield step, u
            goal = next(targets, None)
        if goal is None:
            return


def _central_crop(shape: tuple[int, ...], max_voxels: int) -> tuple[slice, ...]:
    """The central box of ``shape`` of at most ``max_voxels`` voxels (longest axes shrunk)."""
    size = list(shape)
    while int(np.prod(size)) > max_voxels and max(size) > 16:
        axis = int(np.argmax(size))
        size[axis] = max(16, int(size[axis] * 0.9))
    return tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(shape, size, strict=True))


def filter_halves(
    even: npt.ArrayLike,
    odd: npt.ArrayLike,
    method: str,
    **options: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Filter the average of two halves; a strength not given is tuned on the halves.

    Parameters
    ----------
    even, odd : (M, N[, P]) array_like
        Two independently noisy halves of the same data (e.g. even and odd
        frames); not modified.
    method : str
        A key of :data:`FILTERS`.
    **options
        Options of the filter. If the strength option (:data:`STRENGTH`:
        NAD ``iterations``, Gaussian ``sigma``, median ``size``) is not
        given, it is chosen by ``tune(method, even, odd, target="average")``.

    Returns
    -------
    filtered : ndarray of float32
        The filtered average ``(even + odd) / 2``.
    params : dict
        Every option used, with the chosen strength: report it.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage as ndi
    >>> rng = np.random.default_rng(0)
    >>> clean = ndi.gaussian_filter(rng.normal(size=(32, 48, 48)), 3) * 30
    >>> even = clean + rng.normal(size=clean.shape)
    >>> odd = clean + rng.normal(size=clean.shape)
    >>> filtered, params = filter_halves(even, odd, "gaussian")
    >>> params, filtered.shape
    ({'sigma': 1.25}, (32, 48, 48))
    """
    even_array = _check_image(even, name="even")
    odd_array = _check_image(odd, name="odd")
    if even_array.shape != odd_array.shape:
        raise InputError(f"odd: expected the shape of even {even_array.shape}, "
                         f"found {odd_array.shape}")
    if method not in FILTERS:
        apply_filter(np.zeros((1, 1)), method)  # raises, listing the known filters
    params = dict(options)
    progress = params.pop("progress", None)
    if method in STRENGTH and STRENGTH[method] not in params:
        params = tune(method, even_array, odd_array, **params).params
    average = np.add(even_array, odd_array, dtype=np.float32)
    average *= np.float32(0.5)
    call = {**params, "progress": progress} if progress is not None else params
    return apply_filter(average, method, **call), params
