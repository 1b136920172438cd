import numpy as np
import pytest

from cryocare.errors import InputError, OutputExistsError
from cryocare.normalize import Normalization, compute_normalization
from cryocare.pairs import (
    PairPlan,
    PairSet,
    augment_batch,
    plan_pairs,
    sample_pairs,
)


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


@pytest.mark.parametrize(("tilt_axis", "axis"), [("Y", 1), ("X", 2), ("Z", 0)])
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
        ({"tilt_axis": "W"}, "tilt_axis"),
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


# ------------------------------------------------------------ 2-D and 3-D pairs
def _coordinates_2d(shape):
    y, x = np.indices(shape)
    return (y * 100 + x).astype(np.float32)


@pytest.mark.parametrize(("tilt_axis", "axis"), [("Y", 0), ("X", 1)])
@pytest.mark.parametrize("patch_shape", [8, (4, 12)])
def test_no_2d_training_patch_overlaps_a_validation_patch(tilt_axis, axis, patch_shape):
    image = _coordinates_2d((40, 36))
    pairs = sample_pairs([image], [image], patch_shape=patch_shape, n_patches=100,
                         val_fraction=0.25, tilt_axis=tilt_axis,
                         normalization=Normalization(0.0, 1.0), seed=3)
    divisor = (100, 1)[axis]
    train_pos = (pairs.x_train.astype(np.int64) // divisor) % 100
    val_pos = (pairs.x_val.astype(np.int64) // divisor) % 100
    assert pairs.x_train.ndim == 3
    assert train_pos.max() < val_pos.min()


def test_thin_tomogram_with_non_cubic_patches():
    # Z = 12 is less than twice a 32-cube (cryoCARE's limit); (8, 32, 32) patches work.
    volume = _coordinates((12, 96, 80))
    pairs = sample_pairs([volume], [volume], patch_shape=(8, 32, 32), n_patches=40,
                         normalization=Normalization(0.0, 1.0), seed=0)
    assert pairs.x_train.shape[1:] == (8, 32, 32)
    assert (pairs.x_train // 10_000).max() <= 11


def test_mixed_2d_and_3d_data_is_refused(smooth_pair):
    _, even, odd = smooth_pair
    with pytest.raises(InputError, match="all pairs 2-D or all 3-D"):
        sample_pairs([even, even[0]], [odd, odd[0]], patch_shape=8)


def test_per_dataset_normalization():
    rng = np.random.default_rng(0)
    a = rng.normal(10.0, 2.0, size=(2, 16, 32, 32)).astype(np.float32)
    b = rng.normal(-5.0, 0.5, size=(2, 16, 32, 32)).astype(np.float32)
    pairs = sample_pairs([a[0], b[0]], [a[1], b[1]], patch_shape=8, n_patches=400,
                         normalize="per_dataset", seed=0)
    na, nb = pairs.dataset_normalizations
    # Statistics of 2 * 16384 samples: mean within 0.05, std within 2 %.
    assert na.mean == pytest.approx(10.0, abs=0.05) and na.std == pytest.approx(2.0, rel=0.02)
    assert nb.mean == pytest.approx(-5.0, abs=0.05) and nb.std == pytest.approx(0.5, rel=0.02)
    # Both datasets land on zero mean, unit variance (patches of 512 voxels each, 360 of them).
    assert abs(pairs.x_train.mean()) < 0.05
    assert pairs.x_train.std() == pytest.approx(1.0, rel=0.05)
    glob = sample_pairs([a[0], b[0]], [a[1], b[1]], patch_shape=8, n_patches=400, seed=0)
    assert glob.dataset_normalizations == () and glob.normalize == "global"
    # Per dataset, every patch of 512 unit-variance voxels has a std near 1 (1 ± 0.1 is
    # 3 sigma); globally, patches of the narrow dataset b have std 0.5 / 7.6 ≈ 0.07.
    assert pairs.x_train.std(axis=(1, 2, 3)).min() > 0.7
    assert glob.x_train.std(axis=(1, 2, 3)).min() < 0.2


def test_save_and_load_keeps_per_dataset_statistics(tmp_path, smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even, even[:, :32]], [odd, odd[:, :32]], patch_shape=8,
                         n_patches=20, normalize="per_dataset", seed=1)
    loaded = PairSet.load(pairs.save(tmp_path / "pairs.npz"))
    assert loaded.normalize == "per_dataset"
    assert loaded.dataset_normalizations == pairs.dataset_normalizations


def test_sampling_from_memory_maps(tmp_path, smooth_pair):
    from cryocare import io

    _, even, odd = smooth_pair
    e, o, _ = io.read_pair(io.write(tmp_path / "e.mrc", even), io.write(tmp_path / "o.mrc", odd),
                           mmap=True)
    from_maps = sample_pairs([e], [o], patch_shape=8, n_patches=20, seed=2)
    in_memory = sample_pairs([even], [odd], patch_shape=8, n_patches=20, seed=2)
    np.testing.assert_allclose(from_maps.x_train, in_memory.x_train, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------ masks
@pytest.mark.parametrize("ndim", [2, 3])
def test_patch_centres_lie_inside_the_mask(ndim):
    shape = (40, 48) if ndim == 2 else (16, 40, 48)
    volume = _coordinates_2d(shape) if ndim == 2 else _coordinates(shape)
    mask = np.zeros(shape, bool)
    mask[..., 10:30] = True  # a band along X
    pairs = sample_pairs([volume], [volume], patch_shape=8, n_patches=60, masks=[mask],
                         normalization=Normalization(0.0, 1.0), seed=4)
    for patches in (pairs.x_train, pairs.x_val):
        centre_x = patches[(slice(None),) + (4,) * ndim].astype(np.int64) % 100
        assert centre_x.min() >= 10 and centre_x.max() < 30


def test_automatic_mask_keeps_patches_in_the_lamella():
    rng = np.random.default_rng(5)
    volume = rng.normal(scale=0.1, size=(48, 48, 48)).astype(np.float32)
    volume[16:32] += rng.normal(size=(16, 48, 48)).astype(np.float32)  # the lamella
    z = np.indices(volume.shape)[0].astype(np.float32)
    pairs = sample_pairs([volume], [z], patch_shape=8, n_patches=100, masks="auto",
                         normalization=Normalization(0.0, 1.0), seed=0)
    centre_z = pairs.y_train[:, 4, 4, 4]
    # The variance window (9 voxels) blurs the lamella edges by up to 4 voxels.
    assert centre_z.min() >= 12 and centre_z.max() < 36


def test_mask_of_the_wrong_shape_is_refused(smooth_pair):
    _, even, odd = smooth_pair
    with pytest.raises(InputError, match=r"mask 0: expected the shape"):
        sample_pairs([even], [odd], patch_shape=8, masks=[np.ones((3, 3, 3), bool)])


def test_an_empty_mask_is_refused(smooth_pair):
    _, even, odd = smooth_pair
    with pytest.raises(InputError, match="too few places"):
        sample_pairs([even], [odd], patch_shape=8, masks=[np.zeros(even.shape, bool)])


def test_patch_larger_than_an_image_is_refused():
    with pytest.raises(InputError, match="too small"):
        sample_pairs([np.ones((16, 16))], [np.ones((16, 16))], patch_shape=32)


# ----------------------------------------------------------------- augmentation
@pytest.mark.parametrize(("tilt_axis", "kept"), [("Y", 1), ("X", 2)])
@pytest.mark.parametrize(("patch", "n_transforms"), [((6, 5, 6), 8), ((4, 6, 4), 8),
                                                      ((4, 6, 6), 4)])
def test_augmentation_keeps_the_tilt_axis_and_uses_the_plane_group(tilt_axis, kept, patch,
                                                                  n_transforms):
    if tilt_axis == "X":
        patch = (patch[0], patch[2], patch[1])
    if patch[0] != patch[2 if tilt_axis == "Y" else 1]:
        n_transforms = 4  # only 180° rotations and flips when the plane is not square
    x = np.broadcast_to(_coordinates(patch), (200, *patch))
    x_before = x.copy()
    ax, ay = augment_batch(x, x + 0.5, rng=np.random.default_rng(0), tilt_axis=tilt_axis)
    np.testing.assert_array_equal(x, x_before)  # inputs untouched
    swapped = ax > ay
    assert 60 < swapped[:, 0, 0, 0].sum() < 140  # even/odd swapped about half the time
    assert np.all(np.abs(ax - ay) == 0.5)
    base = np.minimum(ax, ay)
    divisor = (10_000, 100, 1)[kept]
    position = np.indices(patch)[kept]
    np.testing.assert_array_equal((base.astype(np.int64) // divisor) % 100,
                                  np.broadcast_to(position, base.shape))
    assert len({b.tobytes() for b in base}) == n_transforms


def test_augmentation_with_tilt_axis_z_turns_the_yx_plane_as_cryocare_does():
    # cryoCARE 0.3.0's "Z": the validation split runs along Z, rotations in the Y-X plane.
    x = np.broadcast_to(_coordinates((4, 6, 6)), (200, 4, 6, 6))
    ax, ay = augment_batch(x, x + 0.5, rng=np.random.default_rng(0), tilt_axis="Z")
    base = np.minimum(ax, ay)
    z = (base.astype(np.int64) // 10_000) % 100
    np.testing.assert_array_equal(z, np.broadcast_to(np.indices((4, 6, 6))[0], z.shape))
    assert len({b.tobytes() for b in base}) == 8  # the square Y-X plane: 4 turns x 2 flips


def test_tilt_axis_z_is_refused_for_images():
    with pytest.raises(InputError, match="tilt_axis must be one of 'Y', 'X' for 2-D"):
        sample_pairs([np.ones((32, 32))], [np.ones((32, 32))], patch_shape=8, tilt_axis="Z")


def test_augmentation_of_images_flips_each_axis():
    x = np.broadcast_to(_coordinates_2d((4, 6)), (100, 4, 6))
    ax, ay = augment_batch(x, x, rng=np.random.default_rng(1), tilt_axis="Y")
    assert len({a.tobytes() for a in ax}) == 4  # identity, two flips, both
    assert ax.shape == (100, 4, 6)


def test_cli_extract_with_mask_and_2d_micrographs(tmp_path):
    from cryocare import io
    from cryocare.cli import main

    image = _coordinates_2d((48, 64))
    even = io.write(tmp_path / "mic_EVN.mrc", image)
    odd = io.write(tmp_path / "mic_ODD.mrc", image + 1)
    mask = np.zeros(image.shape, np.float32)
    mask[:, 20:40] = 1
    mask_path = io.write(tmp_path / "mask.mrc", mask)
    out = tmp_path / "pairs.npz"
    assert main(["extract", "--even", str(even), "--odd", str(odd), "--output", str(out),
                 "--patch-shape", "8", "--n-patches", "40", "--mask", str(mask_path),
                 "--normalize", "per-dataset", "-q"]) == 0
    pairs = PairSet.load(out)
    assert pairs.patch_shape == (8, 8) and pairs.normalize == "per_dataset"
    centre_x = pairs.dataset_normalizations[0].denormalize(pairs.x_train[:, 4, 4]) % 100
    assert centre_x.min() >= 20 - 1e-3 and centre_x.max() < 40
    assert main(["extract", "--even", str(even), "--odd", str(odd), "--output",
                 str(tmp_path / "p2.npz"), "--patch-shape", "8", "--mask", str(mask_path),
                 str(mask_path), "-q"]) == 2


# --------------------------------------------------------------- lazy pair plans
def test_a_plan_cuts_the_same_pairs_as_sample_pairs_and_round_trips(tmp_path, smooth_pair):
    _, even, odd = smooth_pair
    kwargs = {"patch_shape": (8, 16, 8), "n_patches": 30, "normalize": "per_dataset",
              "seed": 7}
    data = ([even, even[:, :40]], [odd, odd[:, :40]])
    plan = plan_pairs(*data, **kwargs)
    pairs = sample_pairs(*data, **kwargs)
    loaded = PairPlan.load(plan.save(tmp_path / "plan.npz"))
    x, y = loaded.patches(*data, "val")
    np.testing.assert_array_equal(x, pairs.x_val)
    np.testing.assert_array_equal(y, pairs.y_val)
    x, _ = loaded.patches(*data, "train", [3, 20])
    np.testing.assert_array_equal(x, pairs.x_train[[3, 20]])
    assert loaded.dataset_normalizations == pairs.dataset_normalizations
    with pytest.raises(InputError, match="plan is for data of shapes"):
        loaded.patches([even], [odd])
    with pytest.raises(InputError, match="not a cryocare pair-plan"):
        PairPlan.load(pairs.save(tmp_path / "pairs.npz"))
