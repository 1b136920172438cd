"""Registry of restoration networks.

A network is registered with a builder, which turns a
:class:`~cryocare.config.CareConfig` into a Keras model with one input and one
output channel (channels last, spatial sizes left open), and a ``halo``
function, which gives the radius of the network's receptive field in voxels.
Tiled prediction overlaps tiles by the halo, so tiled and untiled outputs
are equal.

Only the builders (and :mod:`cryocare.model`) import Keras, when they are called,
and only through ``keras.layers`` / ``keras.ops``, so every Keras backend works;
the registry itself (:mod:`cryocare.nets.registry`) is Keras-free.

Examples
--------
>>> from cryocare.config import CareConfig
>>> from cryocare import nets
>>> nets.names()
['diffusion', 'rednet', 'unet']
>>> nets.halo(CareConfig(unet_n_depth=2))
23
>>> nets.halo(CareConfig(network="rednet", rednet_n_layers=10)), nets.multiple_of(
...     CareConfig(network="rednet"))
(20, 1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import rednet, unet  # noqa: F401  (register "rednet" and "unet")
from .registry import (
    DEFAULT_BYTES_PER_VOXEL,
    NetworkEntry,
    NetworkSpec,
    add_streamed,
    build,
    bytes_per_voxel,
    get,
    halo,
    layer_dtype,
    multiple_of,
    names,
    register,
    spec,
    streamable,
    streamed_runner,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..config import CareConfig

__all__ = ["NetworkEntry", "NetworkSpec", "register", "get", "build", "halo", "multiple_of",
           "bytes_per_voxel", "spec", "streamed_runner", "streamable", "names", "layer_dtype",
           "DEFAULT_BYTES_PER_VOXEL"]


def _diffusion(name: str):
    """A function of the diffusion network's module, imported (with Keras) when first used."""

    def call(config: CareConfig):
        from . import diffusion

        return getattr(diffusion, name)(config)

    return call


# The learned diffusion network defines Keras layers at module level: register it
# lazily, so that importing the registry never imports Keras.
register("diffusion", halo=_diffusion("diffusion_halo"),
         bytes_per_voxel=_diffusion("diffusion_bytes"))(_diffusion("diffusion"))


def _unet_streamed(name: str):
    """A function of the U-Net's level-by-level runner (:mod:`cryocare.nets.unet_streamed`),
    imported when first used."""

    def call(*args, **kwargs):
        from . import unet_streamed

        return getattr(unet_streamed, name)(*args, **kwargs)

    return call


# The U-Net also runs level by level on a CPU, in a fraction of the memory.
add_streamed("unet", streamed=_unet_streamed("runner"),
             streamed_bytes_per_voxel=_unet_streamed("config_bytes_per_voxel"),
             streamable=_unet_streamed("streamable"))
