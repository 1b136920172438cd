"""A U-Net run level by level in chunks gives the network's own output in less memory."""

import keras
import numpy as np
import pytest

from cryocare import backends, nets
from cryocare.config import CareConfig, PredictOptions
from cryocare.model import CAREModel
from cryocare.nets.unet import unet_bytes_per_voxel
from cryocare.nets.unet_streamed import (
    StreamedUNet,
    _boxes,
    streamable,
    streamed_bytes_per_voxel,
)
from cryocare.normalize import Normalization
from cryocare.predict import Device, plan_prediction


def _whole_graph(model, batch):
    return keras.ops.convert_to_numpy(model.predict_on_batch(batch[..., None]))[..., 0]


# JAX compiles every new shape of every part: one case runs again on PyTorch and JAX
_ON_EVERY_BACKEND = {(3, 2, False)}


@pytest.mark.parametrize(("n_dim", "depth", "shape", "residual", "keep_first_skip"), [
    pytest.param(n_dim, depth, shape, residual, keep,
                 marks=[pytest.mark.backend] if (n_dim, depth, keep) in _ON_EVERY_BACKEND else [])
    for n_dim, depth, shape, residual in [(3, 2, (24, 40, 32), True), (3, 3, (32, 48, 40), False),
                                          (2, 2, (64, 96), True), (2, 3, (48, 80), False)]
    for keep in (False, True)
])
def test_streamed_unet_equals_the_whole_graph(n_dim, depth, shape, residual, keep_first_skip):
    config = CareConfig(n_dim=n_dim, unet_n_depth=depth, unet_n_first=4, unet_residual=residual,
                        seed=3)
    model = nets.build(config)
    batch = np.random.default_rng(4).normal(size=(2, *shape)).astype(np.float32)
    # ~1/12 of the image per chunk at the first level: boxes in the middle of an axis, too
    voxels = int(np.prod(shape)) // 12
    chunk_bytes = 2 * 32 * 4 * voxels
    assert len(list(_boxes(shape, voxels))) >= 12
    streamed = StreamedUNet(model, config, chunk_bytes=chunk_bytes,
                            keep_first_skip=keep_first_skip)(batch)
    whole = _whole_graph(model, batch)
    assert streamed.dtype == np.float32 and streamed.shape == batch.shape
    assert np.abs(streamed - whole).max() <= 1e-5 * np.ptp(whole)


def test_one_streamed_unet_serves_batches_of_other_shapes_in_turn():
    # The inputs of its parts go through buffers kept from call to call: a smaller batch
    # after a larger one, and a larger one again, must not see stale or misshapen buffers.
    config = CareConfig(unet_n_depth=2, unet_n_first=4, seed=3)
    model = nets.build(config)
    stream = StreamedUNet(model, config, chunk_bytes=32 * 4 * 2000)
    rng = np.random.default_rng(6)
    for shape in [(1, 24, 40, 32), (2, 16, 16, 24), (1, 32, 40, 40)]:
        batch = rng.normal(size=shape).astype(np.float32)
        whole = _whole_graph(model, batch)
        assert np.abs(stream(batch) - whole).max() <= 1e-5 * np.ptp(whole)


@pytest.mark.skipif(not backends.precision_runs("mixed_bfloat16"),
                    reason="this CPU has no bfloat16 convolution")
def test_a_bfloat16_unet_streams_too():
    # Fields between the parts are then bfloat16 (which DLPack cannot share: sent as uint16).
    config = CareConfig(unet_n_depth=2, unet_n_first=4, seed=3, train_precision="mixed_bfloat16")
    model = nets.build(config)
    batch = np.random.default_rng(7).normal(size=(1, 24, 40, 32)).astype(np.float32)
    streamed = StreamedUNet(model, config, chunk_bytes=32 * 4 * 2000)(batch)
    whole = _whole_graph(model, batch).astype(np.float32)
    assert streamed.dtype == np.float32
    assert np.abs(streamed - whole).max() <= 3e-2 * np.ptp(whole)


def test_chunks_without_their_context_would_differ():
    # The test above can fail: chunks that ignore their neighbours' voxels are visibly wrong.
    config = CareConfig(unet_n_depth=2, unet_n_first=4, seed=3)
    model = nets.build(config)
    batch = np.random.default_rng(5).normal(size=(1, 24, 40, 32)).astype(np.float32)
    blind = StreamedUNet(model, config, chunk_bytes=32 * 4 * 300)
    blind.context = 0
    whole = _whole_graph(model, batch)
    assert np.abs(blind(batch) - whole).max() > 1e-2 * np.ptp(whole)


@pytest.mark.parametrize(("shape", "voxels"), [((37, 64, 50), 1000), ((8, 8, 8), 10**6),
                                               ((130, 6), 50), ((3, 5, 7), 1)])
def test_chunks_tile_the_field_with_even_sides(shape, voxels):
    count = np.zeros(shape, np.int32)
    boxes = list(_boxes(shape, voxels))
    for box in boxes:
        count[tuple(slice(a, b) for a, b in box)] += 1
        for (a, b), n in zip(box, shape, strict=True):
            assert a % 2 == 0 and ((b - a) % 2 == 0 or b == n)
    assert (count == 1).all()
    if voxels >= 8:
        assert all(np.prod([b - a for a, b in box]) <= voxels for box in boxes)


def test_only_unets_of_the_builder_are_streamed():
    assert streamable(nets.build(CareConfig(unet_n_first=4)), CareConfig(unet_n_first=4))
    rednet = CareConfig(network="rednet", rednet_n_layers=10)
    assert not streamable(nets.build(rednet), rednet)
    with pytest.raises(ValueError, match="not a U-Net"):
        StreamedUNet(nets.build(rednet), rednet)


def test_a_streamed_pass_needs_a_fraction_of_the_memory_per_voxel():
    for depth in (2, 3):
        whole = unet_bytes_per_voxel(n_dim=3, n_first=16, depth=depth)
        kept = streamed_bytes_per_voxel(n_dim=3, n_first=16, depth=depth, keep_first_skip=True)
        streamed = streamed_bytes_per_voxel(n_dim=3, n_first=16, depth=depth)
        assert streamed < kept < whole / 3
        assert streamed < whole / 7


def test_the_model_streams_on_the_cpu_and_plans_larger_tiles_for_the_same_memory():
    config = CareConfig(unet_n_depth=3, unet_n_first=16)
    model = CAREModel(config, Normalization(mean=0.0, std=1.0))
    cpu = Device("cpu", free_memory=64 * 2**30)
    shape = (256, 512, 512)  # one half of a pair, 256 MiB
    # 6 GB: the streamed U-Net takes the half whole; the whole graph reads every voxel 3x
    streamed = plan_prediction(shape, model.spec(), PredictOptions(memory="6G"), device=cpu)
    whole = plan_prediction(shape, model.spec(), PredictOptions(memory="6G", streaming=False),
                            device=cpu)
    assert streamed.streamed and streamed.read_factor == 1
    assert streamed.memory <= 6 * 2**30 and streamed.chunk_bytes <= 6 * 2**30 // 4
    assert not whole.streamed and whole.read_factor > 2.5
    assert isinstance(model._forward(streamed), StreamedUNet)
    # Other engines run the exported graph whole
    assert model.spec("onnxruntime").streamed_bytes_per_voxel is None
    assert model.spec().streamed_bytes_per_voxel == streamed_bytes_per_voxel(
        n_dim=3, n_first=16, depth=3)


def test_model_prediction_equals_the_whole_graph_on_the_whole_image(caplog):
    config = CareConfig(unet_n_depth=1, unet_n_first=4, seed=7)  # a halo of 9: tiles pay here
    model = CAREModel(config, Normalization(mean=1.0, std=2.0))
    image = np.random.default_rng(6).normal(size=(29, 37, 45)).astype(np.float32)
    padded = np.pad(image, [(0, -n % 2) for n in image.shape], mode="symmetric")  # as the tiles
    whole = 2 * _whole_graph(model.keras_model, (padded[None] - 1) / 2)[0] + 1
    whole = whole[tuple(slice(n) for n in image.shape)]
    for memory, several in (("1M", True), ("16M", False), (None, False)):
        with caplog.at_level("INFO", logger="cryocare.predict"):
            restored = model.predict(image, memory=memory)
        assert (": 1 tile(s)" not in caplog.text) == several  # small budgets cut tiles, too
        caplog.clear()
        assert np.abs(restored - whole).max() <= 1e-5 * np.ptp(whole)


def test_the_plan_streams_large_tiles_on_a_cpu_and_runs_one_graph_on_a_gpu():
    spec = CAREModel(CareConfig(unet_n_depth=3, unet_n_first=16),
                     Normalization(mean=0.0, std=1.0)).spec()
    cpu, gpu = Device("cpu", free_memory=64 * 2**30), Device("gpu", free_memory=64 * 2**30)
    # level by level costs the same per voxel at any size; one graph less on small passes,
    # more on large ones (predict.PASS_COST, measured): a large tomogram streams, a small one
    # does not
    assert plan_prediction((256, 512, 512), spec, PredictOptions(), device=cpu).streamed
    assert not plan_prediction((32, 64, 64), spec, PredictOptions(), device=cpu).streamed
    for shape in ((256, 512, 512), (32, 64, 64)):
        assert not plan_prediction(shape, spec, PredictOptions(streaming=False),
                                   device=cpu).streamed
        assert plan_prediction(shape, spec, PredictOptions(streaming=True), device=cpu).streamed
        # a GPU runs the graph whole (the level-by-level runner is for CPUs)
        assert not plan_prediction(shape, spec, PredictOptions(streaming=True),
                                   device=gpu).streamed
    # the default budget bounds the plan; the plan takes what the fastest pass needs
    small = plan_prediction((64, 128, 128), spec, PredictOptions(), images=2, device=cpu)
    assert small.memory < cpu.budget() / 4
