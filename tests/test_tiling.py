import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from cryocare.errors import InputError
from cryocare.predict import predict_tiled
from cryocare.tiling import plan_tiles


def _local_mean(batch):
    """A 'network' with receptive-field radius 2 (5-point box filter, zero padded)."""
    return np.stack([uniform_filter(b, size=5, mode="constant") for b in batch])


@pytest.mark.parametrize("shape", [(97, 130, 131), (13, 17, 19), (64, 64, 64), (101, 67)])
def test_tiles_cover_every_voxel_exactly_once(shape):
    plan = plan_tiles(shape, tile_shape=(16,) * len(shape), halo=3, multiple_of=4)
    count = np.zeros(shape, dtype=int)
    for tile in plan.tiles:
        count[tile.write] += 1
        for read, crop, write in zip(tile.read, tile.crop, tile.write, strict=True):
            assert read.start % 4 == 0 and (read.stop - read.start) % 4 == 0
            assert crop.stop - crop.start == write.stop - write.start
    assert (count == 1).all()


@pytest.mark.parametrize("shape", [(29, 31, 37), (97, 13, 41), (53, 47)])
def test_tiled_equals_untiled_for_a_local_operator(shape):
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    untiled = predict_tiled(_local_mean, image,
                            plan=plan_tiles(shape, halo=2, multiple_of=4))
    tiled = predict_tiled(_local_mean, image, batch_size=3,
                          plan=plan_tiles(shape, tile_shape=(8,) * len(shape), halo=2,
                                          multiple_of=4))
    np.testing.assert_allclose(tiled, untiled, rtol=0, atol=1e-6)  # float32 rounding only


def test_edge_voxels_get_predictions_not_zeros():
    # cryoCARE 0.3.0 left 1-3 zero slices when an axis length mod 8 was 1, 2 or 3.
    shape = (97, 130, 131)
    image = np.ones(shape, dtype=np.float32)
    out = predict_tiled(lambda b: b + 1, image,
                        plan=plan_tiles(shape, tile_shape=(64, 64, 64), halo=8, multiple_of=8))
    assert out.shape == shape
    assert (out == 2).all()


def test_image_is_not_modified():
    image = np.random.default_rng(1).normal(size=(20, 21, 22)).astype(np.float32)
    image.setflags(write=False)
    copy = image.copy()
    predict_tiled(_local_mean, image, plan=plan_tiles(image.shape, tile_shape=(8, 8, 8),
                                                      halo=2, multiple_of=4))
    np.testing.assert_array_equal(image, copy)


def test_plan_for_the_wrong_shape_is_refused():
    plan = plan_tiles((10, 10), halo=1)
    with pytest.raises(InputError, match="plan is for shape"):
        predict_tiled(lambda b: b, np.zeros((10, 11), np.float32), plan=plan)


def test_bad_tile_shape_is_refused():
    with pytest.raises(InputError, match="tile sizes"):
        plan_tiles((10, 10, 10), tile_shape=(4, 4), halo=1)


@pytest.mark.parametrize("shape", [(29, 31, 37), (53, 47)])
def test_split_tiles_cover_their_tile_and_keep_tiled_equal_untiled(shape):
    from cryocare.tiling import read_tile, split_tile

    image = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    plan = plan_tiles(shape, tile_shape=(16,) * len(shape), halo=2, multiple_of=4)
    untiled = predict_tiled(_local_mean, image, plan=plan_tiles(shape, halo=2, multiple_of=4))
    out = np.full(shape, np.nan, np.float32)
    for tile in plan.tiles:
        for half in split_tile(tile, plan):
            for read in half.read:
                assert read.start % 4 == 0 and (read.stop - read.start) % 4 == 0
            out[half.write] = _local_mean(read_tile(image, half.read)[None])[0][half.crop]
    np.testing.assert_allclose(out, untiled, rtol=0, atol=1e-6)  # float32 rounding only
