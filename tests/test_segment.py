"""Tests of cryocare.segment and of the mask scores of cryocare.metrics, on hand-made images."""

import numpy as np
import pytest

from cryocare.errors import InputError
from cryocare.metrics import dice, iou, precision, recall
from cryocare.segment import otsu_threshold, segment_otsu


def readonly(array):
    """A read-only copy of `array`: any write into it by the code under test raises."""
    array = np.array(array)
    array.flags.writeable = False
    return array


def two_level_2d():
    """Background 5, dense (dark) blocks 1, no noise; returns (image, dark mask)."""
    mask = np.zeros((8, 10), dtype=bool)
    mask[1:4, 2:5] = True
    mask[5:7, 6:9] = True
    return np.where(mask, 1.0, 5.0), mask


def two_level_3d():
    # Last axis of length 3: must not be mistaken for an RGB image.
    mask = np.zeros((6, 7, 3), dtype=bool)
    mask[1:4, 2:5, :2] = True
    return np.where(mask, 1.0, 5.0), mask


# --- otsu_threshold / segment_otsu -------------------------------------------


@pytest.mark.parametrize("make", [two_level_2d, two_level_3d])
def test_otsu_threshold_between_levels(make):
    image, _ = make()
    threshold = otsu_threshold(readonly(image))
    assert isinstance(threshold, float)
    assert 1.0 < threshold < 5.0


@pytest.mark.parametrize("make", [two_level_2d, two_level_3d])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int16])
def test_segment_otsu_exact_masks(make, dtype):
    image, dark = make()
    image = readonly(image.astype(dtype))
    np.testing.assert_array_equal(segment_otsu(image), dark)
    np.testing.assert_array_equal(segment_otsu(image, foreground="dark"), dark)
    np.testing.assert_array_equal(segment_otsu(image, foreground="bright"), ~dark)


def test_integer_threshold_is_dark_level():
    # For integer images the bins are the values themselves, so the threshold
    # is the dark level, 1; dark means "<= threshold", which keeps the mask right.
    image, dark = two_level_2d()
    assert otsu_threshold(image.astype(np.uint8)) == 1.0
    np.testing.assert_array_equal(segment_otsu(image.astype(np.uint8)), dark)


def test_segment_otsu_returns_bool_copy():
    image, dark = two_level_2d()
    copy = image.copy()
    mask = segment_otsu(image)
    assert mask.dtype == np.bool_
    assert mask.shape == image.shape
    np.testing.assert_array_equal(image, copy)


def test_segment_otsu_with_smoothing_recovers_blocks_in_noise():
    # Two levels 1 and 5 plus Gaussian noise of sigma 1.5: single voxels are
    # misclassified without smoothing (the levels are 2.7 sigma apart, so
    # about 9 % of voxels fall on the wrong side of the midpoint), and
    # smoothing with sigma 1 averages ~4*pi voxels, which brings the noise
    # below 0.5 and leaves only voxels at the block edges in doubt.
    rng = np.random.default_rng(3)
    dark = np.zeros((64, 64), dtype=bool)
    dark[16:48, 8:30] = True
    dark[20:40, 40:58] = True
    image = np.where(dark, 1.0, 5.0) + rng.normal(scale=1.5, size=dark.shape)
    raw = dice(segment_otsu(image), dark)
    smoothed = dice(segment_otsu(image, sigma=1.0), dark)
    assert raw < 0.95
    assert smoothed > 0.97
    t = otsu_threshold(image, sigma=1.0)
    assert 2.0 < t < 4.0  # near the midpoint 3 of the two levels


def test_sigma_smoothing_uses_gaussian_filter():
    # The mask with sigma equals thresholding the filters.gaussian output.
    from cryocare.filters import gaussian

    image, _ = two_level_2d()
    smooth = gaussian(image, sigma=0.8)
    t = otsu_threshold(image, sigma=0.8)
    np.testing.assert_array_equal(segment_otsu(image, sigma=0.8), smooth <= t)


@pytest.mark.parametrize("function", [otsu_threshold, segment_otsu])
@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.full((4, 4), 2.0), "constant image"),
        (np.full((2, 3, 4), 7, dtype=np.uint8), "constant image"),
        (np.array([[1.0, np.nan], [5.0, 5.0]]), "finite"),
        (np.array([[1.0, -np.inf], [5.0, 5.0]]), "finite"),
        (np.zeros((0, 3)), "non-empty"),
        (np.arange(5.0), "2-D or 3-D"),
        (np.zeros((3, 3), dtype=bool), "dtype bool"),
    ],
)
def test_otsu_rejects_bad_images(function, image, match):
    with pytest.raises(InputError, match=match):
        function(image)


@pytest.mark.parametrize("sigma", [0, -1.0, np.nan, "1", True])
def test_otsu_rejects_bad_sigma(sigma):
    image, _ = two_level_2d()
    with pytest.raises(InputError, match="sigma"):
        segment_otsu(image, sigma=sigma)


@pytest.mark.parametrize("foreground", ["Dark", "light", None, 1])
def test_segment_otsu_rejects_unknown_foreground(foreground):
    image, _ = two_level_2d()
    with pytest.raises(InputError, match="foreground: expected 'dark' or 'bright'"):
        segment_otsu(image, foreground=foreground)


# --- dice / iou ---------------------------------------------------------------


def hand_made_masks():
    a = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)  # 3 pixels
    b = np.array([[0, 1, 0], [1, 0, 1]], dtype=bool)  # 3 pixels, 2 shared
    return a, b


def test_dice_hand_made():
    a, b = hand_made_masks()
    assert dice(readonly(a), readonly(b)) == 2 * 2 / (3 + 3)
    assert dice(b, a) == 2 * 2 / (3 + 3)


def test_iou_hand_made():
    a, b = hand_made_masks()
    assert iou(readonly(a), readonly(b)) == 2 / 4
    d = dice(a, b)
    assert iou(a, b) == pytest.approx(d / (2 - d), abs=1e-15)


@pytest.mark.parametrize("score", [dice, iou])
def test_scores_identical_disjoint_empty(score):
    a, _ = hand_made_masks()
    empty = np.zeros_like(a)
    assert score(a, a) == 1.0
    assert score(a, ~a) == 0.0
    assert score(a, empty) == 0.0
    assert score(empty, empty) == 1.0  # documented convention


@pytest.mark.parametrize("score", [dice, iou])
def test_scores_accept_zero_one_integers_3d(score):
    a = np.zeros((2, 3, 4), dtype=np.uint8)
    b = np.zeros((2, 3, 4), dtype=np.int32)
    a[0, :, :2] = 1  # 6 voxels
    b[0, :2, :2] = 1  # 4 voxels, all inside a
    expected = {dice: 2 * 4 / (6 + 4), iou: 4 / 6}[score]
    assert score(a, b) == expected
    assert isinstance(score(a, b), float)


@pytest.mark.parametrize("score", [dice, iou])
def test_scores_shape_mismatch_names_both_shapes(score):
    with pytest.raises(InputError, match=r"\(2, 3\).*\(3, 2\)"):
        score(np.zeros((2, 3), dtype=bool), np.zeros((3, 2), dtype=bool))


@pytest.mark.parametrize("score", [dice, iou])
@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.array([[0.0, 1.0]]), "boolean mask, found dtype float64"),
        (np.array([[0, 2]]), "integers 0 and 1"),
        (np.array([[-1, 1]]), "integers 0 and 1"),
        (np.zeros((0, 2), dtype=bool), "non-empty"),
    ],
)
def test_scores_reject_bad_masks(score, mask, match):
    good = np.ones(mask.shape, dtype=bool)
    with pytest.raises(InputError, match=match):
        score(mask, good)
    with pytest.raises(InputError, match=match):
        score(good, mask)


# --- multi-Otsu, clean-up, labels, precision/recall -----------------------------

from cryocare.segment import (  # noqa: E402
    clean_mask,
    label_components,
    multi_otsu_thresholds,
    segment_multi_otsu,
)


def test_otsu_of_a_two_level_image_separates_the_levels():
    # Two levels, any proportions: the threshold lies between them, so the
    # dark mask is exactly the low level.
    image = np.full((10, 12), 7.0)
    image[:3, :5] = 2.0
    t = otsu_threshold(image)
    assert 2.0 <= t < 7.0
    np.testing.assert_array_equal(segment_otsu(image), image == 2.0)


def test_multi_otsu_three_levels_exact():
    image = np.zeros((6, 9, 9))
    image[:, 3:6] = 5.0
    image[:, 6:] = 10.0
    low, high = multi_otsu_thresholds(image, classes=3)
    assert 0.0 <= low < 5.0 <= high < 10.0
    labels = segment_multi_otsu(image, classes=3)
    np.testing.assert_array_equal(labels, (image / 5).astype(np.uint8))


def test_multi_otsu_two_classes_matches_otsu():
    image = np.random.default_rng(0).normal(size=(20, 20)) + np.eye(20) * 5
    assert multi_otsu_thresholds(image, classes=2)[0] == pytest.approx(otsu_threshold(image),
                                                                       rel=0.02)


@pytest.mark.parametrize(
    ("image", "options", "match"),
    [
        (np.ones((5, 5)), {}, "constant"),
        (np.array([[0.0, 1.0] * 4] * 2), {"classes": 3}, "at least 3 distinct"),
        (np.arange(25.0).reshape(5, 5), {"classes": 7}, "classes"),
    ],
)
def test_multi_otsu_bad_input(image, options, match):
    with pytest.raises(InputError, match=match):
        segment_multi_otsu(image, **options)


def test_multi_otsu_rejects_nan():
    image = np.arange(25.0).reshape(5, 5)
    image[0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        multi_otsu_thresholds(image)


def test_label_components_counts_objects_by_connectivity():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = True     # diagonal neighbours
    mask[4:6, 4:6] = True
    labels, count = label_components(mask, connectivity=1)
    assert count == 3 and labels.dtype == np.int32
    assert label_components(mask, connectivity=2)[1] == 2
    with pytest.raises(InputError, match="connectivity"):
        label_components(mask, connectivity=3)


def test_clean_mask_removes_small_objects_and_fills_holes():
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[1:8, 1:8, 1:8] = True
    mask[3:6, 3:6, 3:6] = False        # an enclosed cavity of 27 voxels
    mask[0, 0, 8] = True               # a one-voxel speck
    frozen = mask.copy()
    frozen.flags.writeable = False
    cleaned = clean_mask(frozen, min_size=2, fill_holes=True)
    expected = np.zeros_like(mask)
    expected[1:8, 1:8, 1:8] = True
    np.testing.assert_array_equal(cleaned, expected)
    # min_size=0 keeps the speck, fill_holes=False keeps the cavity.
    np.testing.assert_array_equal(clean_mask(mask), mask)


def test_precision_recall_hand_made_and_relations():
    a = np.array([[1, 1, 1, 1, 0, 0]], dtype=bool)
    b = np.array([[0, 0, 1, 1, 1, 0]], dtype=bool)
    assert precision(a, b) == 2 / 4 and recall(a, b) == 2 / 3
    # Dice is the harmonic mean of precision and recall.
    p, r = precision(a, b), recall(a, b)
    assert dice(a, b) == pytest.approx(2 * p * r / (p + r))
    empty = np.zeros_like(a)
    assert precision(empty, empty) == recall(empty, empty) == 1.0
    assert precision(empty, b) == 0.0 and recall(a, empty) == 0.0
    with pytest.raises(InputError, match=r"\(1, 6\).*\(1, 5\)"):
        precision(a, b[:, :5])
