"""The network registry and its networks (U-Net, RED-Net): shapes, halos, structure."""

import keras
import numpy as np
import pytest

from cryocare import nets
from cryocare.config import CareConfig
from cryocare.errors import InputError

pytestmark = pytest.mark.backend  # run on every Keras backend (make test)

RED = CareConfig(network="rednet", rednet_n_layers=4, rednet_n_filters=4, seed=2)


def _impulse_radius(network, shape, n_dim):
    """Largest distance from an impulse at the centre at which the output changes."""
    image = np.zeros((1, *shape, 1), np.float32)
    base = keras.ops.convert_to_numpy(network(image))
    centre = tuple(s // 2 for s in shape)
    image[(0, *centre, 0)] = 100.0
    changed = np.abs(keras.ops.convert_to_numpy(network(image)) - base)[0, ..., 0] > 0
    return int(np.abs(np.argwhere(changed) - np.array(centre)).max())


@pytest.mark.parametrize(("depth", "kernel", "n_conv"), [(1, 3, 2), (2, 3, 2), (3, 3, 2),
                                                      (2, 5, 2), (2, 3, 1)])
def test_unet_halo_is_its_exact_receptive_field(depth, kernel, n_conv):
    config = CareConfig(n_dim=2, unet_n_depth=depth, unet_kern_size=kernel,
                        unet_n_conv_per_depth=n_conv, unet_n_first=4, seed=1)
    network = nets.build(config)
    # Positive weights: every path from the impulse adds, nothing cancels.
    network.set_weights([np.abs(w) + 0.01 for w in network.get_weights()])
    n = (2 * nets.halo(config) // 2**depth + 4) * 2**depth  # a multiple of the pooling
    base = keras.ops.convert_to_numpy(network(np.zeros((1, n, n, 1), np.float32)))[0, ..., 0]
    reach = 0
    for offset in range(2**depth):  # every position in a pooling cell
        centre = n // 2 + offset
        image = np.zeros((1, n, n, 1), np.float32)
        image[0, centre, centre, 0] = 1.0
        out = keras.ops.convert_to_numpy(network(image))[0, ..., 0]
        rows = np.nonzero(np.abs(out - base).max(axis=1) > 0)[0]
        reach = max(reach, centre - rows.min(), rows.max() - centre)
    assert reach == nets.halo(config)


def test_registry_lists_both_networks():
    assert {"unet", "rednet"} <= set(nets.names())


@pytest.mark.parametrize("n_dim", [2, 3])
def test_rednet_keeps_any_size_and_reaches_exactly_its_halo(n_dim):
    config = RED.replace(n_dim=n_dim)
    network = nets.build(config)
    assert nets.multiple_of(config) == 1  # stride 1 everywhere: no size constraint
    shape = (23, 29, 31)[-n_dim:] if n_dim == 3 else (45, 37)
    out = keras.ops.convert_to_numpy(network(np.ones((1, *shape, 1), np.float32)))
    assert out.shape == (1, *shape, 1)
    # 4 convolutions and 4 transposed convolutions of kernel 3: radius 8 exactly
    # (random non-zero weights: every layer widens the field by its full radius).
    assert nets.halo(config) == 8
    assert _impulse_radius(network, (21,) * n_dim, n_dim) == 8


def test_rednet_has_the_papers_symmetric_structure():
    network = nets.build(RED.replace(rednet_n_layers=6))
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds.count("Conv3D") == 6 and kinds.count("Conv3DTranspose") == 6
    # skips every second layer (conv 2 and 4 feed the mirrored deconvolutions), plus the input
    names = {layer.name for layer in network.layers}
    assert {"skip_2", "skip_4", "residual"} <= names and "skip_6" not in names
    assert network.get_layer("deconv_6").filters == 1


def test_rednet_is_residual():
    # With the last deconvolution zeroed, the network is the identity.
    network = nets.build(RED)
    layer = network.get_layer("deconv_4")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    image = np.random.default_rng(0).normal(size=(1, 9, 10, 11, 1)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(network(image)), image)


def test_building_is_reproducible_with_the_seed():
    a, b = nets.build(RED), nets.build(RED)
    c = nets.build(RED.replace(seed=5))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize("network", ["unet", "rednet"])
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_precision_and_outputs_float32(network, precision):
    config = CareConfig(network=network, n_dim=2, unet_n_first=4, rednet_n_layers=2,
                        rednet_n_filters=4, train_precision=precision)
    model = nets.build(config)
    hidden = [layer for layer in model.layers if layer.weights][0]
    assert hidden.compute_dtype == precision.removeprefix("mixed_")
    assert hidden.variable_dtype == "float32"
    # The output layer computes in float32 (read from the graph: a CPU without AVX-512 has
    # no bfloat16 convolution kernels to run it with; see test_recipe for the fallback).
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


def test_a_network_is_one_registered_function():
    @nets.register("test_identity", halo=lambda config: 0)
    def identity(config):
        inputs = keras.Input(shape=(None,) * config.n_dim + (1,))
        return keras.Model(inputs, keras.layers.Identity()(inputs))

    try:
        config = CareConfig(network="test_identity")
        assert nets.halo(config) == 0 and nets.multiple_of(config) == 1
        assert isinstance(nets.build(config), keras.Model)
    finally:
        nets.registry._REGISTRY.pop("test_identity")


def test_unknown_network_is_named_with_the_known_ones():
    with pytest.raises(InputError, match="'resnet'.*rednet, unet"):
        nets.build(CareConfig(network="resnet"))


def test_every_network_estimates_its_prediction_memory():
    from cryocare.nets.unet import unet_bytes_per_voxel

    unet = CareConfig(unet_n_first=16, unet_n_depth=2)
    assert nets.bytes_per_voxel(unet) == unet_bytes_per_voxel(n_dim=3, n_first=16, depth=2)
    small = CareConfig(network="diffusion", diffusion_filters=8)
    assert nets.bytes_per_voxel(small) < nets.bytes_per_voxel(small.replace(diffusion_filters=24))
    red = CareConfig(network="rednet", rednet_n_layers=10, rednet_n_filters=64)
    # ten 64-channel float32 tensors at least: the skips kept for the way back and work space
    assert nets.bytes_per_voxel(red) >= 10 * 64 * 4

    @nets.register("test_plain", halo=lambda config: 0)
    def plain(config):
        inputs = keras.Input(shape=(None,) * config.n_dim + (1,))
        return keras.Model(inputs, keras.layers.Identity()(inputs))

    try:
        assert nets.bytes_per_voxel(CareConfig(network="test_plain")) == \
            nets.DEFAULT_BYTES_PER_VOXEL
    finally:
        nets.registry._REGISTRY.pop("test_plain")


def test_the_registry_knows_halos_and_memory_without_importing_keras():
    import subprocess
    import sys

    code = ("import sys; from cryocare import nets; from cryocare.config import CareConfig; "
            "c = CareConfig(); print(nets.halo(c), nets.multiple_of(c), nets.bytes_per_voxel(c), "
            "'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["23", "4", "425", "False"]
