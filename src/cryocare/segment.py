"""Dense segmentation by Otsu thresholding, and overlap scores of masks.

In a cryo-ET reconstruction (and in a TEM projection) dense material such
as protein, membranes or gold scatters more electrons and appears *darker*
than the surrounding vitreous ice, so :func:`segment_otsu` selects dark
voxels by default. A denoiser is judged by how well the mask computed from
its output matches a reference mask (:func:`dice`, :func:`iou`).

All functions are pure: inputs are never modified (read-only memory maps
are fine), masks are returned as new ``bool`` arrays and scores as Python
floats.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
import numpy.typing as npt
from skimage.filters import threshold_otsu

from .errors import InputError
from .filters import _check_image, gaussian

__all__ = ["dice", "iou", "otsu_threshold", "segment_otsu"]

logger = logging.getLogger(__name__)

_FOREGROUNDS = ("dark", "bright")


def _prepared(image: npt.ArrayLike, sigma: float | None) -> np.ndarray:
    """Validate `image`, smooth it if `sigma` is given, and reject constant images."""
    array = _check_image(image)
    if sigma is not None:
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
            raise InputError(f"sigma: expected None or a positive number, found {sigma!r}")
        array = gaussian(array, sigma=sigma)
    low, high = array.min(), array.max()
    if low == high:
        raise InputError(
            f"image: expected at least two distinct values for Otsu's threshold, "
            f"found a constant image (all values {low.item()!r})"
        )
    return array


def _threshold(array: np.ndarray) -> float:
    # Flattened so that scikit-image does not mistake a thin 3-D volume of
    # shape (..., 3) or (..., 4) for an RGB image (and warn).
    return float(threshold_otsu(array.reshape(-1)))


def otsu_threshold(image: npt.ArrayLike, *, sigma: float | None = None) -> float:
    """Otsu's threshold of an image, optionally after Gaussian smoothing.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values and at least
        two distinct values. It is not modified.
    sigma : float, optional
        If given, the image is first smoothed with
        :func:`cryocare.filters.gaussian` of this standard deviation in
        pixels/voxels, and the threshold is that of the smoothed image.
        Default: no smoothing.

    Returns
    -------
    threshold : float
        Threshold maximising the between-class variance of the (smoothed)
        image's histogram (256 bins for floating-point images, one bin per
        value for integer images). Values ``<= threshold`` form the dark
        class, values ``> threshold`` the bright class.

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array, is constant (Otsu's
        threshold is undefined), or `sigma` is not a positive number.

    References
    ----------
    .. [1] N. Otsu, "A threshold selection method from gray-level
           histograms", IEEE Trans. Syst. Man Cybern. 9(1):62-66, 1979.
           :DOI:`10.1109/TSMC.1979.4310076`
    .. [2] skimage.filters.threshold_otsu,
           https://scikit-image.org/docs/stable/api/skimage.filters.html#skimage.filters.threshold_otsu

    Examples
    --------
    >>> import numpy as np
    >>> image = np.full((6, 6), 5.0)
    >>> image[1:3, 1:4] = 1.0
    >>> 1.0 < otsu_threshold(image) < 5.0
    True
    """
    array = _prepared(image, sigma)
    threshold = _threshold(array)
    logger.debug("Otsu threshold %g (sigma %s) on shape %s", threshold, sigma, array.shape)
    return threshold


def segment_otsu(
    image: npt.ArrayLike, *, sigma: float | None = None, foreground: str = "dark"
) -> np.ndarray:
    """Foreground mask of an image by Otsu thresholding.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values and at least
        two distinct values. It is not modified.
    sigma : float, optional
        If given, the image is first smoothed with
        :func:`cryocare.filters.gaussian` of this standard deviation in
        pixels/voxels, and the smoothed image is thresholded. Default: no
        smoothing.
    foreground : {"dark", "bright"}, optional
        Which class is foreground. ``"dark"`` (default) selects values
        ``<= threshold``: in cryo-ET reconstructions and TEM projections
        dense material is darker than the ice around it. ``"bright"``
        selects values ``> threshold`` (e.g. for contrast-inverted data).
        The two masks are complements of each other.

    Returns
    -------
    mask : ndarray of bool
        Foreground mask, same shape as `image`.

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array or is constant, if
        `sigma` is not a positive number, or if `foreground` is neither
        ``"dark"`` nor ``"bright"``.

    See Also
    --------
    otsu_threshold : the threshold used here.

    References
    ----------
    .. [1] N. Otsu, "A threshold selection method from gray-level
           histograms", IEEE Trans. Syst. Man Cybern. 9(1):62-66, 1979.
           :DOI:`10.1109/TSMC.1979.4310076`

    Examples
    --------
    >>> import numpy as np
    >>> image = np.full((4, 5), 5.0)
    >>> image[1:3, 1:4] = 1.0
    >>> segment_otsu(image).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    if foreground not in _FOREGROUNDS:
        raise InputError(f"foreground: expected 'dark' or 'bright', found {foreground!r}")
    array = _prepared(image, sigma)
    # A float64 scalar compares exactly against any input dtype; a Python
    # float would be rounded to float32 against a float32 image.
    threshold = np.float64(_threshold(array))
    mask = array <= threshold if foreground == "dark" else array > threshold
    logger.debug(
        "Otsu segmentation (%s, threshold %g): %d of %d voxels",
        foreground,
        threshold,
        np.count_nonzero(mask),
        mask.size,
    )
    return mask


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
