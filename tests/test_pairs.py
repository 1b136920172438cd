import numpy as np
import pytest

from cryocare.errors import InputError, OutputExistsError
from cryocare.pairs import Normalization, PairSet, compute_normalization, sample_pairs


def _coordinates(shape):
    """Volume whose voxels encode their own (z, y, x) position."""
    z, y, x = np.indices(shape)
    return (z * 10_000 + y * 100 + x).astype(np.float32)


def test_normalization_uses_all_tomograms():
    # cryoCARE 0.3.0 took the statistics from the first tomogram only.
    a = np.zeros((4, 4, 4), np.float32)
    b = np.full((4, 4, 4), 2.0, np.float32)
    norm = compute_normalization([a, b])
    assert norm.mean == pytest.approx(1.0)
    assert norm.std == pytest.approx(1.0)


def test_normalization_round_trip():
    norm = Normalization(mean=3.0, std=2.0)
    x = np.array([1.0, 3.0, 7.0], np.float32)
    np.testing.assert_allclose(norm.normalize(x), [-1.0, 0.0, 2.0])
    np.testing.assert_allclose(norm.denormalize(norm.normalize(x)), x)


@pytest.mark.parametrize(("tilt_axis", "axis"), [("Y", 1), ("X", 2)])
@pytest.mark.parametrize("patch_shape", [8, (4, 8, 12)])
def test_no_training_patch_overlaps_a_validation_patch(tilt_axis, axis, patch_shape):
    shape = (20, 40, 36)
    volume = _coordinates(shape)
    norm = Normalization(mean=0.0, std=1.0)
    pairs = sample_pairs([volume], [volume], patch_shape=patch_shape, n_patches=200,
                         val_fraction=0.25, tilt_axis=tilt_axis, normalization=norm, seed=3)
    divisor = (10_000, 100, 1)[axis]
    train_pos = (pairs.x_train.astype(np.int64) // divisor) % 100
    val_pos = (pairs.x_val.astype(np.int64) // divisor) % 100
    assert train_pos.max() < val_pos.min()
    assert len(pairs.x_val) == 50


def test_pairs_are_taken_at_the_same_place_and_reproducibly():
    shape = (16, 32, 32)
    even = _coordinates(shape)
    odd = even + 0.5
    norm = Normalization(mean=0.0, std=1.0)
    a = sample_pairs([even], [odd], patch_shape=8, n_patches=30, normalization=norm, seed=5)
    b = sample_pairs([even], [odd], patch_shape=8, n_patches=30, normalization=norm, seed=5)
    np.testing.assert_array_equal(a.y_train - a.x_train, 0.5)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    c = sample_pairs([even], [odd], patch_shape=8, n_patches=30, normalization=norm, seed=6)
    assert not np.array_equal(a.x_train, c.x_train)


def test_patches_are_spread_over_tomograms_by_size():
    small = np.zeros((16, 16, 16), np.float32)
    large = np.ones((16, 32, 32), np.float32)
    pairs = sample_pairs([small, large], [small, large], patch_shape=8, n_patches=50,
                         val_fraction=0.2, normalization=Normalization(0.0, 1.0))
    from_large = (pairs.x_train == 1).all(axis=(1, 2, 3)).sum()
    assert from_large == 32  # 40 training patches split 1:4


def test_save_and_load_round_trip(tmp_path, smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even], [odd], patch_shape=8, n_patches=20, seed=1)
    path = pairs.save(tmp_path / "pairs.npz")
    loaded = PairSet.load(path)
    np.testing.assert_array_equal(loaded.x_val, pairs.x_val)
    assert loaded.normalization == pairs.normalization
    assert loaded.patch_shape == (8, 8, 8)
    with pytest.raises(OutputExistsError):
        pairs.save(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_shape": 64}, "too small"),
        ({"tilt_axis": "Z"}, "tilt_axis"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"patch_shape": (8, 8)}, "3 sizes"),
    ],
)
def test_bad_input(kwargs, message, smooth_pair):
    _, even, odd = smooth_pair
    with pytest.raises(InputError, match=message):
        sample_pairs([even], [odd], **kwargs)


def test_mismatched_pair_is_refused(smooth_pair):
    _, even, odd = smooth_pair
    with pytest.raises(InputError, match="equal shape"):
        sample_pairs([even], [odd[:, :-1]])
