"""RED-Net: very deep residual encoder-decoder with symmetric skips (Mao et al. 2016).

``rednet_n_layers`` ReLU convolutions are followed by as many transposed
convolutions ("deconvolutions"), all with stride 1 and ``rednet_n_filters``
filters, so the image size never changes and no size constraint applies.
Every second convolution passes its feature maps to the mirrored
deconvolution, where they are added before the ReLU; the input is added to
the (linear, one-channel) output, so the network learns the residual.

References
----------
X.-J. Mao, C. Shen and Y.-B. Yang, "Image restoration using very deep
convolutional encoder-decoder networks with symmetric skip connections",
NIPS 2016.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import layer_dtype, register

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from ..config import CareConfig

__all__ = ["rednet", "rednet_halo"]

SKIP_STEP = 2  # the paper's choice: a skip connection every two layers


def rednet_halo(config: CareConfig) -> int:
    """Receptive-field radius of RED-Net: ``k // 2`` per layer, ``2 n`` layers."""
    return 2 * config.rednet_n_layers * (config.rednet_kern_size // 2)


def rednet_bytes(config: CareConfig) -> int:
    """Prediction memory per voxel: the skip tensors kept for the way back, plus three
    working tensors of ``rednet_n_filters`` float32 channels, plus input and output; 25 %
    margin."""
    kept = config.rednet_n_layers // SKIP_STEP + 3
    return int(1.25 * 4 * (kept * config.rednet_n_filters + 2))


@register("rednet", halo=rednet_halo, bytes_per_voxel=rednet_bytes)
def rednet(config: CareConfig) -> keras.Model:
    """Build the RED-Net that ``config`` describes (input and output: one channel)."""
    import keras

    n_dim, n_layers = config.n_dim, config.rednet_n_layers
    conv = keras.layers.Conv2D if n_dim == 2 else keras.layers.Conv3D
    deconv = keras.layers.Conv2DTranspose if n_dim == 2 else keras.layers.Conv3DTranspose
    kernel = (config.rednet_kern_size,) * n_dim
    dtype = layer_dtype(config)
    seeds = iter(range(config.seed * 1000, config.seed * 1000 + 1000))

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    inputs = keras.Input(shape=(None,) * n_dim + (1,), name="input")
    layer = inputs
    skips = {}
    for i in range(1, n_layers + 1):
        layer = conv(config.rednet_n_filters, kernel, padding="same", activation="relu",
                     kernel_initializer=init(), dtype=dtype, name=f"conv_{i}")(layer)
        if i % SKIP_STEP == 0 and i < n_layers:
            skips[i] = layer
    for j in range(1, n_layers + 1):
        last = j == n_layers
        layer = deconv(1 if last else config.rednet_n_filters, kernel, padding="same",
                       kernel_initializer=init(), dtype="float32" if last else dtype,
                       name=f"deconv_{j}")(layer)
        mirror = n_layers - j  # the convolution whose output has this layer's place
        if mirror in skips:
            layer = keras.layers.Add(dtype=dtype, name=f"skip_{mirror}")([layer, skips[mirror]])
        if not last:
            layer = keras.layers.ReLU(dtype=dtype, name=f"relu_{j}")(layer)
    outputs = keras.layers.Add(dtype="float32", name="residual")([layer, inputs])
    return keras.Model(inputs, outputs, name=f"rednet{n_dim}d")
