"""The prediction engine: memory plans, batching, out-of-memory retry, slab output."""

import tracemalloc

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from cryocare import io
from cryocare.config import CareConfig
from cryocare.errors import InputError
from cryocare.model import CAREModel
from cryocare.nets.unet import unet_bytes_per_voxel
from cryocare.normalize import Normalization
from cryocare.predict import (
    PROBE_VOXELS,
    OutOfMemoryError,
    denoise_file,
    is_out_of_memory,
    parse_memory,
    plan_for_memory,
    predict_volume,
)

UNIT = Normalization(mean=0.0, std=1.0)


def _local_mean(batch):
    """A 'network' with receptive-field radius 2 (5-point box filter, zero padded)."""
    return np.stack([uniform_filter(b, size=5, mode="constant") for b in batch])


@pytest.fixture(scope="module")
def model():
    # Untrained but deterministic: tiled == untiled is a property of the tiling, not of training.
    config = CareConfig(unet_n_depth=2, unet_n_first=4, seed=5)
    return CAREModel(config, Normalization(mean=1.0, std=2.0))


@pytest.mark.parametrize(("shape", "budget"), [
    ((97, 130, 131), "256M"), ((97, 130, 131), "1G"), ((13, 17, 19), "256M"),
    ((300, 1000, 1000), "2G"), ((300, 1000, 1000), "8G"), ((4099, 4097), "256M"),
    ((4099, 4097), "4G"),
])
def test_memory_plans_fit_the_budget_and_cover_every_voxel(shape, budget):
    bpv = unet_bytes_per_voxel(n_dim=len(shape), n_first=16, depth=2)
    plan, batch = plan_for_memory(shape, budget=parse_memory(budget), bytes_per_voxel=bpv,
                                  halo=26, multiple_of=4)
    reads = [t.read_shape for t in plan.tiles]
    slab = 4 * plan.tile_shape[0] * np.prod(shape[1:])
    worst = max(int(np.prod(r)) for r in reads)
    assert slab + batch * 2 * (bpv + 16) * worst <= parse_memory(budget)  # 16: engine buffers
    assert plan.shape == shape and 1 <= batch <= 8
    if np.prod(shape) < 10**6:  # counting every voxel is cheap only for small shapes
        count = np.zeros(shape, np.uint8)
        for tile in plan.tiles:
            count[tile.write] += 1
        assert (count == 1).all()


def test_a_budget_below_the_smallest_tile_is_refused():
    with pytest.raises(InputError, match="too small"):
        plan_for_memory((64, 64, 64), budget=1000, bytes_per_voxel=400, halo=8, multiple_of=4)


@pytest.mark.parametrize("shape", [(37, 41, 43), (29, 31, 17), (127, 61), (53, 47)])
@pytest.mark.parametrize("memory", ["1M", "4M"])
def test_memory_derived_tiles_equal_untiled_on_prime_shapes(shape, memory):
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    options = dict(normalization=UNIT, halo=2, multiple_of=4, bytes_per_voxel=40)
    untiled = predict_volume(_local_mean, image, tile_shape=None, memory="1G", **options)
    tiled = predict_volume(_local_mean, image, memory=memory, **options)
    # float32 rounding only (the filter sums the same values)
    np.testing.assert_allclose(tiled, untiled, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("shape", "streaming", "memory"), [
    ((29, 37, 131), False, "16M"), ((29, 37, 131), True, "5M"),
    ((13, 150, 23), False, "5M"), ((13, 150, 23), True, "2M"),
])
def test_unet_memory_tiles_equal_untiled(model, shape, streaming, memory, caplog):
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    untiled = model.predict(image, tile_shape=None, streaming=False)
    with caplog.at_level("INFO", logger="cryocare.predict"):
        tiled = model.predict(image, memory=memory, streaming=streaming)
    assert "in 1 tiles" not in caplog.text  # the budget really forces tiling
    # float32 convolutions summed in a different order: rounding level (as in test_model)
    assert np.abs(tiled - untiled).max() <= 1e-5 * np.ptp(untiled)


def test_unet_2d_memory_tiles_equal_untiled(caplog):
    config = CareConfig(n_dim=2, unet_n_depth=2, unet_n_first=4, seed=2)
    model = CAREModel(config, Normalization(mean=0.5, std=2.0))
    image = np.random.default_rng(2).normal(size=(151, 97)).astype(np.float32)
    untiled = model.predict(image, tile_shape=None)
    with caplog.at_level("INFO", logger="cryocare.predict"):
        tiled = model.predict(image, memory="700K")
    assert "in 1 tiles" not in caplog.text  # the budget really forces tiling
    assert np.abs(tiled - untiled).max() <= 1e-5 * np.ptp(untiled)


def test_even_and_odd_in_one_pass_equal_the_mean_of_two_predictions(model):
    rng = np.random.default_rng(3)
    even, odd = (rng.normal(size=(20, 24, 28)).astype(np.float32) for _ in range(2))
    both = model.denoise(even, odd, tile_shape=(8, 12, 16))
    separate = 0.5 * (model.predict(even, tile_shape=None) + model.predict(odd, tile_shape=None))
    assert np.abs(both - separate).max() <= 1e-5 * np.ptp(separate)


def test_image_normalization_uses_the_image_statistics():
    # An identity network returns its input whatever the statistics; a network that
    # zeroes its input returns the mean used, which tells the two choices apart.
    image = np.random.default_rng(4).normal(7.0, 3.0, size=(16, 16)).astype(np.float32)
    options = dict(normalization=Normalization(mean=1.0, std=2.0), halo=0, bytes_per_voxel=8)
    for normalize in ("training", "image"):
        same = predict_volume(lambda b: b, image, normalize=normalize, **options)
        np.testing.assert_allclose(same, image, rtol=0, atol=1e-5)  # float32 round trip
    training = predict_volume(np.zeros_like, image, normalize="training", **options)
    own = predict_volume(np.zeros_like, image, normalize="image", **options)
    assert np.all(training == 1.0)
    np.testing.assert_allclose(own, image.astype(np.float64).mean(), rtol=1e-6)
    with pytest.raises(InputError, match="normalize"):
        predict_volume(lambda b: b, image, normalize="dataset", **options)


class _RunsOutOfMemory:
    """A network that raises a backend-style OOM error for batches above ``limit`` voxels."""

    def __init__(self, limit, error):
        self.limit, self.error, self.calls, self.failures = limit, error, [], 0

    def __call__(self, batch):
        self.calls.append(batch.shape)
        if batch.size > self.limit:
            self.failures += 1
            raise self.error
        return _local_mean(batch)


class ResourceExhaustedError(Exception):
    """Named like TensorFlow's error class."""


@pytest.mark.parametrize("error", [ResourceExhaustedError("OOM when allocating tensor"),
                                   RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
                                   RuntimeError("RESOURCE_EXHAUSTED: Out of memory"),
                                   MemoryError()],
                         ids=["tensorflow", "torch", "jax", "numpy"])
def test_out_of_memory_retries_with_smaller_batches_then_smaller_tiles(error):
    shape = (40, 44, 36)
    image = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    options = dict(normalization=UNIT, halo=2, multiple_of=4, bytes_per_voxel=40)
    expected = predict_volume(_local_mean, image, tile_shape=None, memory="1G", **options)
    network = _RunsOutOfMemory(limit=2 * 16**3, error=error)
    result = predict_volume(network, image, image, tile_shape=(20, 24, 20), batch_size=4,
                            memory="1G", **options)
    assert network.failures > 0
    assert max(np.prod(s) for s in network.calls[-3:]) <= network.limit
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)  # float32 rounding


def test_out_of_memory_on_the_smallest_tile_is_an_error():
    network = _RunsOutOfMemory(limit=1, error=MemoryError())
    with pytest.raises(OutOfMemoryError, match="out of memory"):
        predict_volume(network, np.zeros((16, 16), np.float32), normalization=UNIT, halo=2,
                       multiple_of=4, bytes_per_voxel=8)


def test_other_errors_are_not_retried():
    def broken(batch):
        raise ValueError("a bug, not memory")

    assert not is_out_of_memory(ValueError("a bug, not memory"))
    with pytest.raises(ValueError, match="a bug"):
        predict_volume(broken, np.zeros((16, 16), np.float32), normalization=UNIT, halo=2,
                       bytes_per_voxel=8)


def test_slab_output_holds_one_slab_not_the_volume(tmp_path):
    # Structural bound: streaming a 64 MiB volume through the writer allocates about
    # one slab (plus tiles), far less than the volume. tracemalloc counts NumPy buffers.
    shape = (64, 512, 512)
    for name in ("even.mrc", "odd.mrc"):
        with io.open_writer(tmp_path / name, shape) as writer:
            for z in range(0, shape[0], 8):
                writer.write(np.full((8, *shape[1:]), z, np.float32))
    even, odd, _ = io.read_pair(tmp_path / "even.mrc", tmp_path / "odd.mrc", mmap=True)
    options = dict(normalization=UNIT, halo=2, multiple_of=4, bytes_per_voxel=40)
    budget = parse_memory("16M")
    tracemalloc.start()
    try:
        with io.open_writer(tmp_path / "out.mrc", shape) as writer:
            assert predict_volume(lambda b: b + 1, even, odd, memory=budget, out=writer,
                                  **options) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    volume = 4 * np.prod(shape)
    # Allowance beyond the plan: 4 MiB for the writer's float64 statistics chunk (2 MiB)
    # and small Python objects.
    assert peak <= budget + 4 * 2**20
    assert budget <= volume / 4
    out = io.read(tmp_path / "out.mrc", mmap=True)
    assert float(out[0].min()) == 1.0 and float(out[-1].max()) == 57.0


def test_denoise_file_streams_and_refuses_to_overwrite(model, tmp_path):
    rng = np.random.default_rng(6)
    for name in ("t_EVN.mrc", "t_ODD.mrc"):
        io.write(tmp_path / name, rng.normal(size=(21, 30, 26)), voxel_size=7.0)
    even, odd = io.read(tmp_path / "t_EVN.mrc"), io.read(tmp_path / "t_ODD.mrc")
    out = denoise_file(model, tmp_path / "t_EVN.mrc", tmp_path / "t_ODD.mrc",
                       tmp_path / "t_denoised.mrc", memory="20M")
    expected = model.denoise(even, odd, tile_shape=None)
    result = io.read(out)
    assert np.abs(result - expected).max() <= 1e-5 * np.ptp(expected)  # rounding level
    assert io.read_info(out).voxel_size == (7.0, 7.0, 7.0)
    with pytest.raises(InputError, match="exists"):
        denoise_file(model, tmp_path / "t_EVN.mrc", tmp_path / "t_ODD.mrc", out)


def test_bad_memory_values_are_refused():
    for value in ("lots", "-1G", 0, float("nan")):
        with pytest.raises(InputError, match="memory"):
            parse_memory(value)


@pytest.mark.parametrize("memory", ["3M", "5M", "20M"])
def test_every_forward_pass_fits_the_budget(memory):
    # Under a tight budget the halves may go in separate passes; either way each pass's
    # network memory (bytes_per_voxel per voxel) stays within the budget.
    calls = []

    def network(batch):
        calls.append(batch.size)
        return _local_mean(batch)

    rng = np.random.default_rng(9)
    even, odd = (rng.normal(size=(37, 41, 43)).astype(np.float32) for _ in range(2))
    options = dict(normalization=UNIT, halo=2, multiple_of=4, bytes_per_voxel=400)
    expected = predict_volume(_local_mean, even, odd, tile_shape=None, memory="1G", **options)
    result = predict_volume(network, even, odd, memory=memory, **options)
    assert max(calls) * 400 <= parse_memory(memory)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)  # float32 rounding


def test_no_forward_pass_is_larger_than_the_cap_however_much_memory_there_is():
    """Regression: a 96x256x256 pair was planned as one tile with 18 GB free, and TensorFlow's
    Eigen convolutions (oneDNN off, as on AVX2-only CPUs) aborted (std::bad_alloc)."""
    from cryocare.predict import EIGEN_PASS_VOXELS

    plan, batch = plan_for_memory((96, 256, 256), budget=64 * 2**30, bytes_per_voxel=425,
                                  halo=23, multiple_of=4, max_pass_voxels=EIGEN_PASS_VOXELS)
    largest = max(np.prod(t.read_shape) for t in plan.tiles)
    assert len(plan.tiles) > 1
    assert 2 * batch * largest <= EIGEN_PASS_VOXELS
    plan, batch = plan_for_memory((96, 256, 256), budget=64 * 2**30, bytes_per_voxel=425,
                                  halo=23, multiple_of=4)
    assert len(plan.tiles) == 1  # elsewhere the memory budget is the limit


def test_a_large_tomogram_is_not_read_many_times_over():
    """Regression: with every pass capped at 2**23 voxels, a depth-3 U-Net (51 voxels of
    context a side) read each voxel of a 256x512x512 tomogram 29 times with 10 GB allowed."""
    read_ratios = []
    for budget in (6, 10):
        reads = []
        for halves in (2, 1):  # as predict_volume: the halves in one pass or in two
            plan, _ = plan_for_memory((256, 512, 512), budget=budget * 2**30,
                                      bytes_per_voxel=434, halo=51, multiple_of=8, halves=halves)
            reads.append(sum(np.prod(t.read_shape, dtype=np.int64) for t in plan.tiles))
        read_ratios.append(min(reads) / (256 * 512 * 512))
    assert read_ratios[1] < 2.5
    assert read_ratios[0] < 3.5


@pytest.mark.parametrize(("seconds", "expected"), [(None, 8), (1e9, 8), (0.0, 1)])
def test_tta_auto_takes_as_many_flips_as_the_time_allows(seconds, expected, caplog):
    calls = []

    def network(batch):
        calls.append(batch.shape)
        return batch * 2

    image = np.random.default_rng(0).normal(size=(16, 24, 20)).astype(np.float32)
    out = predict_volume(network, image, normalization=Normalization(0.0, 1.0), halo=2,
                         multiple_of=4, bytes_per_voxel=400, tta="auto", tta_seconds=seconds)
    np.testing.assert_allclose(out, 2 * image, rtol=1e-6)
    timed = 0 if seconds is None else 2  # a warm-up pass and a timed pass
    assert len(calls) == timed + expected  # one tile, one pass per flip


def test_tta_auto_times_a_cut_of_the_first_tile_not_a_whole_pass():
    calls = []

    def network(batch):
        calls.append(batch.shape)
        return batch

    image = np.zeros((64, 256, 272), np.float32)  # one tile of 4.5 M voxels
    predict_volume(network, image, normalization=Normalization(0.0, 1.0), halo=2,
                   multiple_of=4, bytes_per_voxel=40, tile_shape=None, tta="auto",
                   tta_seconds=1e9)
    assert calls[2][1:] == (64, 256, 272)  # the prediction: one tile
    for shape in calls[:2]:  # the warm-up and the timed pass
        assert np.prod(shape[1:]) <= PROBE_VOXELS and all(n % 4 == 0 for n in shape[1:])


def test_past_the_knee_the_plan_takes_less_memory_for_about_the_same_work():
    """Of the plans reading at most READ_SLACK more than the least-reading one, the one that
    needs the least memory: a 128x256x256 pair with 10 GB allowed is read once either way,
    in one pass of both halves (7 GiB) or in two passes (3.5 GiB); the latter is chosen."""
    from cryocare.normalize import Normalization

    image = np.zeros((128, 256, 256), np.float32)
    sizes = []

    def network(batch):
        sizes.append(batch.shape)
        return batch

    predict_volume(network, image, image, normalization=Normalization(0.0, 1.0), halo=51,
                   multiple_of=8, memory="10G", bytes_per_voxel=434)
    assert sizes == [(1, 128, 256, 256)] * 2  # one tile, the halves in two passes
