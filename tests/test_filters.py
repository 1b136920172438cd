"""Tests of cryocare.filters: exact answers on hand-made images."""

import numpy as np
import pytest

from cryocare.errors import InputError
from cryocare.filters import FILTERS, apply_filter, gaussian, median


def readonly(array):
    """A read-only copy of `array`: any write into it by the code under test raises."""
    array = np.array(array)
    array.flags.writeable = False
    return array


# --- median -----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 9), (5, 6, 7)])
def test_median_removes_isolated_spike_exactly(shape):
    image = np.zeros(shape)
    image[tuple(n // 2 for n in shape)] = 1000.0
    out = median(readonly(image), size=3)
    assert out.dtype == np.float32
    assert out.shape == shape
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_median_leaves_constant_image_unchanged(dtype):
    image = np.full((4, 5, 6), 7, dtype=dtype)
    np.testing.assert_array_equal(median(readonly(image), size=5), np.float32(7))


def test_median_keeps_step_edge():
    # A straight edge survives: every 3x3 window holds a majority of one side.
    image = np.zeros((6, 6))
    image[:, 3:] = 4.0
    np.testing.assert_array_equal(median(image, size=3), image)


def test_median_hand_made_window():
    # Centre window of [[1, 2, 3], [4, 100, 6], [7, 8, 9]] sorted: 1 2 3 4 6 7 8 9 100 -> 6.
    image = np.array([[1.0, 2.0, 3.0], [4.0, 100.0, 6.0], [7.0, 8.0, 9.0]])
    assert median(image, size=3)[1, 1] == 6.0


def test_median_size_one_is_identity():
    image = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(median(image, size=1), image)


@pytest.mark.parametrize("size", [0, -3, 2, 4, 2.0, 3.0, True, "3", None])
def test_median_rejects_bad_size(size):
    with pytest.raises(InputError, match="size"):
        median(np.zeros((5, 5)), size=size)


# --- gaussian ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 9), (4, 5, 6)])
def test_gaussian_keeps_constant_image(shape):
    image = np.full(shape, 3.25)  # exact in float32
    out = gaussian(readonly(image), sigma=1.5)
    assert out.dtype == np.float32
    # Weights sum to 1 up to float rounding: allow a few float32 ulps of 3.25.
    np.testing.assert_allclose(out, 3.25, rtol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("sigma", [0.5, 2.0, 10.0])
def test_gaussian_preserves_sum_and_mean(sigma):
    # The mirrored border makes the filter a circular convolution of the
    # even extension, which preserves the sum of any image (also when the
    # kernel is wider than the image, sigma=10).
    rng = np.random.default_rng(1)
    image = rng.random((17, 23, 5)).astype(np.float32)
    out = gaussian(image, sigma=sigma)
    # float32 storage of each value: relative error ~1e-7 per voxel.
    assert out.sum(dtype=np.float64) == pytest.approx(image.sum(dtype=np.float64), rel=1e-6)
    assert out.std() < image.std()


def test_gaussian_matches_discrete_kernel_on_impulse():
    # On a unit impulse far from the border the output is the kernel itself:
    # separable, symmetric, summing to 1, peak exp(0)/sum(exp(-k^2/2)).
    image = np.zeros((41, 41))
    image[20, 20] = 1.0
    out = gaussian(image, sigma=1.0)
    k = np.arange(-4, 5)
    weights = np.exp(-(k**2) / 2.0)
    weights /= weights.sum()
    expected = np.zeros((41, 41))
    expected[16:25, 16:25] = np.outer(weights, weights)
    np.testing.assert_allclose(out, expected, atol=1e-7)  # float32 rounding


def test_gaussian_integer_input():
    image = np.arange(20, dtype=np.int16).reshape(4, 5)
    out = gaussian(image, sigma=0.5)
    assert out.dtype == np.float32
    assert out.sum(dtype=np.float64) == pytest.approx(image.sum(), rel=1e-6)


@pytest.mark.parametrize("sigma", [0, -1.0, np.inf, np.nan, True, "1", None])
def test_gaussian_rejects_bad_sigma(sigma):
    with pytest.raises(InputError, match="sigma"):
        gaussian(np.zeros((5, 5)), sigma=sigma)


# --- input checks shared by all filters ---------------------------------------


@pytest.mark.parametrize("function", [median, gaussian])
@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros(5), "2-D or 3-D"),
        (np.zeros((2, 2, 2, 2)), "2-D or 3-D"),
        (np.zeros((0, 4)), "non-empty"),
        (np.array([[1.0, np.nan], [0.0, 0.0]]), "finite"),
        (np.array([[1.0, np.inf], [0.0, 0.0]]), "finite"),
        (np.zeros((3, 3), dtype=bool), "dtype bool"),
        (np.zeros((3, 3), dtype=complex), "dtype complex128"),
        (np.array([[1e300, 0.0], [0.0, 0.0]]), "float32 range"),
    ],
)
def test_filters_reject_bad_images(function, image, match):
    with pytest.raises(InputError, match=match):
        function(image)


@pytest.mark.parametrize("function", [median, gaussian])
def test_filters_do_not_modify_input(function):
    rng = np.random.default_rng(2)
    image = rng.normal(size=(6, 7, 8)).astype(np.float32)
    copy = image.copy()
    out = function(image)
    np.testing.assert_array_equal(image, copy)
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize("function", [median, gaussian])
def test_filters_read_only_memmap(function, tmp_path):
    path = tmp_path / "volume.raw"
    np.arange(60, dtype=np.float32).reshape(3, 4, 5).tofile(path)
    volume = np.memmap(path, dtype=np.float32, mode="r", shape=(3, 4, 5))
    out = function(volume)
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.float32


# --- registry ---------------------------------------------------------------


def test_filters_registry():
    assert FILTERS == {"median": median, "gaussian": gaussian}
    with pytest.raises(TypeError):
        FILTERS["mine"] = median  # read-only


def test_apply_filter_dispatches_by_name():
    image = np.zeros((5, 5))
    image[2, 2] = 9.0
    np.testing.assert_array_equal(apply_filter(image, "median", size=3), median(image, size=3))
    np.testing.assert_array_equal(
        apply_filter(image, "gaussian", sigma=0.7), gaussian(image, sigma=0.7)
    )


def test_apply_filter_unknown_method_lists_known_ones():
    with pytest.raises(InputError, match="expected one of 'gaussian', 'median', found 'nad'"):
        apply_filter(np.zeros((3, 3)), "nad")


def test_apply_filter_unknown_option():
    with pytest.raises(InputError, match="median options: expected 'size', found 'sigma'"):
        apply_filter(np.zeros((3, 3)), "median", sigma=1.0)


def test_apply_filter_passes_option_errors_through():
    with pytest.raises(InputError, match="size"):
        apply_filter(np.zeros((3, 3)), "median", size=2)
