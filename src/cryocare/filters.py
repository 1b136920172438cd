"""Classical denoising baselines: median and Gaussian filters.

These are the filters an expert compares a Noise2Noise network against.
Each filter is a pure function ``filter(image, *, option=...)`` that takes a
2-D or 3-D real array, never modifies it (read-only memory maps are fine)
and returns a new ``float32`` array of the same shape.

:data:`FILTERS` maps the names used on the command line to the functions;
:func:`apply_filter` looks a filter up by name and checks its options. A new
filter (for example nonlinear anisotropic diffusion) is added by writing the
function and adding one entry to :data:`FILTERS`.
"""

from __future__ import annotations

import inspect
import logging
import numbers
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from .errors import InputError

__all__ = ["FILTERS", "apply_filter", "gaussian", "median"]

logger = logging.getLogger(__name__)


def _check_image(image: npt.ArrayLike, *, name: str = "image") -> np.ndarray:
    """Return `image` as an array after checking it is a 2-D/3-D finite real image.

    The array is not copied when `image` is already an ndarray (or memmap).
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
    if np.issubdtype(array.dtype, np.floating) and not _all_finite(array):
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


#: Filters by the name used on the command line. Read-only; add a filter by
#: adding an entry here.
FILTERS: Mapping[str, Callable[..., np.ndarray]] = MappingProxyType(
    {"median": median, "gaussian": gaussian}
)


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
    >>> apply_filter(image, "wiener")
    Traceback (most recent call last):
        ...
    cryocare.errors.InputError: method: expected one of 'gaussian', 'median', found 'wiener'
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
