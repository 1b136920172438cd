"""CSBDeep-style residual U-Net, written in plain Keras 3.

The architecture, layer names and defaults follow CSBDeep's ``common_unet``
(Weigert et al., Nat. Methods 2018), which cryoCARE uses: per level
``unet_n_conv_per_depth`` ReLU convolutions, max-pooling by 2, nearest-neighbour
up-sampling with skip connections, a 1×1 linear output convolution and, when
``unet_residual`` is set, the input added to the output.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .registry import layer_dtype, register

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from ..config import CareConfig

__all__ = ["unet", "unet_halo", "unet_bytes_per_voxel", "layer_names", "FINAL_LAYER"]

#: Name of the U-Net's last (1×1, linear) convolution; CSBDeep calls it ``conv{n_dim}d``.
FINAL_LAYER = "final_conv"


def layer_names(depth: int, n_conv: int) -> dict[str, list[str]]:
    """The names of the U-Net's layers, by part: ``down_{l}``, ``pool_{l}``, ``middle``,
    ``upsample_{l}``, ``up_{l}`` and ``final`` (the builder names its layers by this, and
    the level-by-level runner of :mod:`cryocare.nets.unet_streamed` finds them by it).

    >>> layer_names(1, 2)["down_0"], layer_names(1, 2)["middle"]
    (['down_level_0_no_0', 'down_level_0_no_1'], ['middle_0', 'middle_2'])
    """
    names = {"middle": [f"middle_{i}" for i in range(n_conv - 1)] + [f"middle_{n_conv}"]}
    for level in range(depth):
        names[f"down_{level}"] = [f"down_level_{level}_no_{i}" for i in range(n_conv)]
        names[f"up_{level}"] = ([f"up_level_{level}_no_{i}" for i in range(n_conv - 1)]
                                + [f"up_level_{level}_no_{n_conv}"])
        names[f"pool_{level}"] = [f"max_{level}"]
        names[f"upsample_{level}"] = [f"up_{level}"]
    names["final"] = [FINAL_LAYER]
    return names


def unet_halo(config: CareConfig) -> int:
    """The U-Net's receptive-field radius, in voxels (exact for tiles on its pooling grid).

    At level ``l`` (scale ``s = 2**l``) every convolution widens the field by
    ``(k // 2) * s`` on each side; a max-pooling and the nearest-neighbour
    up-sampling that undoes it widen it by ``s`` together, on the side that
    the voxel's position in its pooling cell decides. Over all positions the
    radius is therefore ``n_conv (k // 2) 2**depth + sum_l (2 n_conv (k // 2)
    + 1) 2**l`` (depth 2, kernel 3: 23; depth 3: 51), reached exactly
    (``tests/test_nets.py`` puts an impulse at every position of a pooling
    cell). Tiles are read from positions on the pooling grid (the margin is
    rounded up to a multiple of ``2**depth``), so this is enough for tiled
    prediction to equal untiled.
    """
    k, n_conv, depth = config.unet_kern_size, config.unet_n_conv_per_depth, config.unet_n_depth
    radius = n_conv * (k // 2) * 2**depth  # bottom level
    for level in range(depth):
        scale = 2**level
        radius += 2 * n_conv * (k // 2) * scale  # convolutions on the way down and up
        radius += scale  # pooling and up-sampling
    return radius


def unet_bytes_per_voxel(*, n_dim: int, n_first: int, depth: int, n_conv: int = 2) -> int:
    """Peak bytes per input voxel of a U-Net forward pass in float32 (an upper estimate).

    Level ``l`` holds ``n_first * 2**l`` channels on ``2**(-n_dim * l)`` of the
    voxels; a forward pass keeps the skip connections of every level plus
    about three tensors of the current level alive. TensorFlow 2.21 on the CPU
    measured 350 bytes per voxel for the default U-Net (16 filters, depth 2),
    where this estimate gives 425 (4 bytes per value plus a 25 % margin).

    Examples
    --------
    >>> unet_bytes_per_voxel(n_dim=3, n_first=16, depth=2)
    425
    """
    per_voxel = 2.0  # input and output
    for level in range(depth + 1):
        channels = n_first * 2**level / 2 ** (n_dim * level)
        per_voxel += (1 + 3) * channels if level < depth else (n_conv + 1) * channels
    return int(math.ceil(1.25 * 4 * per_voxel))


def unet_bytes(config: CareConfig) -> int:
    """Prediction memory per voxel of the U-Net that ``config`` describes."""
    return unet_bytes_per_voxel(n_dim=config.n_dim, n_first=config.unet_n_first,
                                depth=config.unet_n_depth, n_conv=config.unet_n_conv_per_depth)


@register("unet", halo=unet_halo, multiple_of=lambda config: 2**config.unet_n_depth,
          bytes_per_voxel=unet_bytes)
def unet(config: CareConfig) -> keras.Model:
    """Build the U-Net that ``config`` describes (input and output: one channel)."""
    import keras

    n_dim, depth = config.n_dim, config.unet_n_depth
    conv = keras.layers.Conv2D if n_dim == 2 else keras.layers.Conv3D
    pool = keras.layers.MaxPooling2D if n_dim == 2 else keras.layers.MaxPooling3D
    upsample = keras.layers.UpSampling2D if n_dim == 2 else keras.layers.UpSampling3D
    kernel = (config.unet_kern_size,) * n_dim
    dtype = layer_dtype(config)
    seeds = iter(range(config.seed * 1000, config.seed * 1000 + 1000))

    def block(filters: int, name: str, activation: str = "relu"):
        init = keras.initializers.GlorotUniform(seed=next(seeds))
        return conv(filters, kernel, padding="same", activation=activation,
                    kernel_initializer=init, dtype=dtype, name=name)

    def width(level: int) -> int:
        return config.unet_n_first * 2**level

    n_conv = config.unet_n_conv_per_depth
    names = layer_names(depth, n_conv)
    inputs = keras.Input(shape=(None,) * n_dim + (1,), name="input")
    layer = inputs
    skips = []
    for level in range(depth):
        for name in names[f"down_{level}"]:
            layer = block(width(level), name)(layer)
        skips.append(layer)
        layer = pool((2,) * n_dim, dtype=dtype, name=names[f"pool_{level}"][0])(layer)
    *inner, last = names["middle"]
    for name in inner:
        layer = block(width(depth), name)(layer)
    layer = block(width(max(0, depth - 1)), last)(layer)
    for level in reversed(range(depth)):
        up = upsample((2,) * n_dim, dtype=dtype, name=names[f"upsample_{level}"][0])(layer)
        layer = keras.layers.Concatenate(axis=-1, dtype=dtype,
                                         name=f"concat_{level}")([up, skips[level]])
        *inner, last = names[f"up_{level}"]
        for name in inner:
            layer = block(width(level), name)(layer)
        layer = block(width(max(0, level - 1)), last)(layer)
    init = keras.initializers.GlorotUniform(seed=next(seeds))
    outputs = conv(1, (1,) * n_dim, activation="linear", kernel_initializer=init,
                   dtype="float32", name=FINAL_LAYER)(layer)
    if config.unet_residual:
        outputs = keras.layers.Add(dtype="float32", name="residual")([outputs, inputs])
    return keras.Model(inputs, outputs, name=f"unet{n_dim}d")
