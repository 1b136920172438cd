"""The network registry: builders, receptive fields, pooling factors and memory models.

Keras-free: a builder imports Keras only when it is called, so halos, pooling
factors and prediction memory can be known (and inputs checked) before the
deep-learning framework loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from ..config import CareConfig

__all__ = ["Network", "register", "get", "build", "halo", "multiple_of", "bytes_per_voxel",
           "names", "layer_dtype", "DEFAULT_BYTES_PER_VOXEL"]


@dataclass(frozen=True)
class Network:
    """A registered network: how to build it and how far it sees."""

    name: str
    build: Callable[[CareConfig], keras.Model]
    halo: Callable[[CareConfig], int]
    multiple_of: Callable[[CareConfig], int]
    bytes_per_voxel: Callable[[CareConfig], int]


_REGISTRY: dict[str, Network] = {}

#: Prediction memory per input voxel assumed for a network registered without an
#: estimate: that of a 16-filter U-Net of depth 2 (see cryocare.nets.unet.unet_bytes_per_voxel).
DEFAULT_BYTES_PER_VOXEL = 425


def register(name: str, *, halo: Callable[[CareConfig], int],
             multiple_of: Callable[[CareConfig], int] | None = None,
             bytes_per_voxel: Callable[[CareConfig], int] | None = None):
    """Decorator that registers a network builder under ``name``.

    ``halo(config)`` bounds the receptive-field radius; ``multiple_of(config)``
    is the number every spatial input size must be a multiple of (1 if None);
    ``bytes_per_voxel(config)`` estimates the peak memory of a float32
    forward pass per input voxel, from which prediction sizes its tiles
    (default :data:`DEFAULT_BYTES_PER_VOXEL`).
    """

    def decorate(build: Callable[[CareConfig], keras.Model]):
        _REGISTRY[name] = Network(
            name=name, build=build, halo=halo, multiple_of=multiple_of or (lambda config: 1),
            bytes_per_voxel=bytes_per_voxel or (lambda config: DEFAULT_BYTES_PER_VOXEL))
        return build

    return decorate


def names() -> list[str]:
    """Names of all registered networks."""
    return sorted(_REGISTRY)


def get(name: str) -> Network:
    """The registered network called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown network {name!r}; known networks are {', '.join(names())}"
        ) from None


def layer_dtype(config: CareConfig) -> str | None:
    """Dtype policy of a network's hidden layers: ``config.train_precision``, or None for float32.

    Builders give the last layer (and a residual sum) ``dtype="float32"`` so
    that outputs and the loss stay in float32 under mixed precision.
    """
    # "auto" is resolved by the training entry; a network built straight from such a
    # config (e.g. for prediction) computes in float32.
    return None if config.train_precision in ("float32", "auto") else config.train_precision


def build(config: CareConfig) -> keras.Model:
    """Build the Keras model that ``config`` describes."""
    return get(config.network).build(config)


def halo(config: CareConfig) -> int:
    """Receptive-field radius in voxels of the network that ``config`` describes."""
    return get(config.network).halo(config)


def multiple_of(config: CareConfig) -> int:
    """Every spatial input size of the network must be a multiple of this."""
    return get(config.network).multiple_of(config)


def bytes_per_voxel(config: CareConfig) -> int:
    """Estimated peak memory of a float32 forward pass per input voxel, in bytes."""
    return int(get(config.network).bytes_per_voxel(config))

