"""Dense segmentation by (multi-)Otsu thresholding, clean-up and labels.

In a cryo-ET reconstruction (and in a TEM projection) dense material such
as protein, membranes or gold scatters more electrons and appears *darker*
than the surrounding vitreous ice, so :func:`segment_otsu` selects dark
voxels by default. A denoiser is judged by how well the mask computed from
its output matches a reference mask (the scores :func:`~cryocare.metrics.dice`,
:func:`~cryocare.metrics.iou`, :func:`~cryocare.metrics.precision` and
:func:`~cryocare.metrics.recall`). :func:`segment_multi_otsu` splits an
image into several intensity classes; :func:`clean_mask` removes specks and
fills holes; :func:`label_components` numbers the connected objects.

All functions are pure: inputs are never modified (read-only memory maps
are fine), masks are returned as new ``bool`` arrays and scores as Python
floats.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu

from .errors import InputError
from .filters import _check_image, gaussian
from .metrics import _check_mask

__all__ = [
    "clean_mask",
    "label_components",
    "multi_otsu_thresholds",
    "otsu_threshold",
    "segment_multi_otsu",
    "segment_otsu",
]

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


def _check_classes(classes: int) -> int:
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or not (
        2 <= classes <= 5
    ):
        raise InputError(f"classes: expected an integer from 2 to 5, found {classes!r}")
    return int(classes)


def multi_otsu_thresholds(
    image: npt.ArrayLike, *, classes: int = 3, sigma: float | None = None
) -> tuple[float, ...]:
    """Multi-level Otsu thresholds splitting an image into `classes` intensity classes.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        Real-valued 2-D image or 3-D volume with finite values and at least
        `classes` distinct values. It is not modified.
    classes : int, optional
        Number of classes, 2 to 5 (the search is exhaustive over a
        256-bin histogram, so its cost grows as ``256 ** (classes - 1)``).
        ``classes=2`` gives Otsu's single threshold.
    sigma : float, optional
        Gaussian pre-smoothing in pixels/voxels, as in :func:`otsu_threshold`.

    Returns
    -------
    thresholds : tuple of float
        ``classes - 1`` increasing thresholds maximising the between-class
        variance; class ``i`` holds the values ``> thresholds[i - 1]`` and
        ``<= thresholds[i]``.

    Raises
    ------
    InputError
        If `image` is not a finite real 2-D/3-D array, is constant, has too
        few distinct values for `classes`, or `classes` / `sigma` is invalid.

    References
    ----------
    .. [1] P.-S. Liao, T.-S. Chen and P.-C. Chung, "A fast algorithm for
           multilevel thresholding", J. Inf. Sci. Eng. 17(5):713-727, 2001.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.repeat([0.0, 5.0, 10.0], 12).reshape(6, 6)
    >>> [round(t, 1) for t in multi_otsu_thresholds(image, classes=3)]
    [0.0, 5.0]
    """
    classes = _check_classes(classes)
    array = _prepared(image, sigma)
    try:
        thresholds = threshold_multiotsu(array.reshape(-1), classes=classes)
    except ValueError:  # fewer distinct histogram bins than classes
        raise InputError(
            f"image: expected at least {classes} distinct intensity levels for {classes} "
            f"classes, found fewer"
        ) from None
    return tuple(float(t) for t in thresholds)


def segment_multi_otsu(
    image: npt.ArrayLike, *, classes: int = 3, sigma: float | None = None
) -> np.ndarray:
    """Label each pixel/voxel with its multi-Otsu intensity class, darkest first.

    Parameters
    ----------
    image : (M, N[, P]) array_like
        As for :func:`multi_otsu_thresholds`. It is not modified.
    classes : int, optional
        Number of classes, 2 to 5.
    sigma : float, optional
        Gaussian pre-smoothing in pixels/voxels; the smoothed image is
        classified.

    Returns
    -------
    labels : ndarray of uint8
        Class ``0`` (darkest: values ``<=`` the first threshold) to
        ``classes - 1`` (brightest), same shape as `image`. In cryo-ET,
        class 0 is the densest material.

    Raises
    ------
    InputError
        As for :func:`multi_otsu_thresholds`.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[0.0, 0.0, 5.0, 5.0, 10.0, 10.0]] * 2)
    >>> segment_multi_otsu(image, classes=3)
    array([[0, 0, 1, 1, 2, 2],
           [0, 0, 1, 1, 2, 2]], dtype=uint8)
    """
    thresholds = multi_otsu_thresholds(image, classes=classes, sigma=sigma)
    array = _prepared(image, sigma)
    labels = np.digitize(array, np.asarray(thresholds, dtype=np.float64), right=True)
    return labels.astype(np.uint8)


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral) or not (
        1 <= connectivity <= ndim
    ):
        raise InputError(
            f"connectivity: expected an integer from 1 to {ndim}, found {connectivity!r}"
        )
    return ndi.generate_binary_structure(ndim, int(connectivity))


def label_components(
    mask: npt.ArrayLike, *, connectivity: int = 1
) -> tuple[np.ndarray, int]:
    """Number the connected components (objects) of a mask.

    Parameters
    ----------
    mask : array_like of bool
        2-D or 3-D mask (integer 0/1 accepted). It is not modified.
    connectivity : int, optional
        Which neighbours touch: 1 = faces only (4-/6-connectivity), up to
        ``mask.ndim`` = faces, edges and corners (8-/26-connectivity).

    Returns
    -------
    labels : ndarray of int32
        0 for background, ``1 .. count`` for the objects, in scan order.
    count : int
        Number of objects.

    Raises
    ------
    InputError
        If `mask` is not a boolean 2-D/3-D array or `connectivity` is out
        of range.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=bool)
    >>> labels, count = label_components(mask)
    >>> count, labels[2, 3]
    (2, np.int32(2))
    """
    array = _check_mask(mask, name="mask")
    if array.ndim not in (2, 3):
        raise InputError(f"mask: expected a 2-D or 3-D mask, found shape {array.shape}")
    labels = np.zeros(array.shape, dtype=np.int32)
    count = ndi.label(array, structure=_structure(array.ndim, connectivity), output=labels)
    return labels, int(count)


def clean_mask(
    mask: npt.ArrayLike,
    *,
    min_size: int = 0,
    fill_holes: bool = False,
    connectivity: int = 1,
) -> np.ndarray:
    """Remove small objects from a mask and optionally fill its holes.

    Parameters
    ----------
    mask : array_like of bool
        2-D or 3-D mask (integer 0/1 accepted). It is not modified.
    min_size : int, optional
        Objects (connected components) with fewer pixels/voxels than this
        are removed. 0 keeps everything.
    fill_holes : bool, optional
        Fill background regions completely enclosed by foreground (e.g.
        the lumen of a segmented vesicle wall), after removing small
        objects. Holes touching the border are not enclosed.
    connectivity : int, optional
        Connectivity of objects, as in :func:`label_components`.

    Returns
    -------
    cleaned : ndarray of bool
        The cleaned mask, same shape.

    Raises
    ------
    InputError
        If `mask` is not a boolean 2-D/3-D array, `min_size` is not a
        non-negative integer, `fill_holes` is not a bool or `connectivity`
        is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((5, 7), dtype=bool)
    >>> mask[1:4, 1:4] = True
    >>> mask[2, 2] = False      # a hole
    >>> mask[0, 6] = True       # a speck
    >>> clean_mask(mask, min_size=2, fill_holes=True).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0, 0, 0],
           [0, 1, 1, 1, 0, 0, 0],
           [0, 1, 1, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 0:
        raise InputError(f"min_size: expected a non-negative integer, found {min_size!r}")
    if not isinstance(fill_holes, bool | np.bool_):
        raise InputError(f"fill_holes: expected True or False, found {fill_holes!r}")
    labels, count = label_components(mask, connectivity=connectivity)
    cleaned = labels > 0
    if min_size > 1 and count:
        sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
        small = sizes < min_size
        small[0] = False
        cleaned[small[labels]] = False
        logger.debug("removed %d of %d objects below %d voxels",
                     int(small.sum()), count, min_size)
    if fill_holes:
        cleaned = ndi.binary_fill_holes(cleaned, structure=_structure(cleaned.ndim, 1))
    return cleaned
