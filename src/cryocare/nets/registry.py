"""The network registry: builders, receptive fields, pooling factors and memory models.

Keras-free: a builder imports Keras only when it is called, so halos, pooling
factors and prediction memory can be known (and inputs checked) before the
deep-learning framework loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from ..config import CareConfig

__all__ = ["NetworkEntry", "NetworkSpec", "register", "add_streamed", "get", "build", "halo",
           "multiple_of", "bytes_per_voxel", "spec", "streamed_runner", "streamable", "names",
           "layer_dtype", "DEFAULT_BYTES_PER_VOXEL"]

#: ``runner(keras_model, config, chunk_bytes)``: the network run level by level on a CPU.
StreamedRunner = Callable[["keras.Model", "CareConfig", int], Callable]


@dataclass(frozen=True)
class NetworkEntry:
    """A registered network: how to build it, how far it sees, what a forward pass costs,
    and (optionally) how to run it level by level in a fraction of the memory."""

    name: str
    build: Callable[[CareConfig], keras.Model]
    halo: Callable[[CareConfig], int]
    multiple_of: Callable[[CareConfig], int]
    bytes_per_voxel: Callable[[CareConfig], int]
    streamed_bytes_per_voxel: Callable[[CareConfig], int] | None = None
    streamed: StreamedRunner | None = None
    streamable: Callable[[keras.Model, CareConfig], bool] | None = None


@dataclass(frozen=True)
class NetworkSpec:
    """What the prediction planner knows of a network, without building it.

    Attributes
    ----------
    halo : int
        Receptive-field radius in voxels.
    multiple_of : int
        Every spatial input size must be a multiple of this.
    bytes_per_voxel : int
        Peak memory of a float32 forward pass as one graph, per input voxel.
    streamed_bytes_per_voxel : int or None
        The same, run level by level (plus a fixed working set); None: the
        network has no level-by-level runner.
    """

    halo: int
    multiple_of: int
    bytes_per_voxel: int
    streamed_bytes_per_voxel: int | None = None


_REGISTRY: dict[str, NetworkEntry] = {}

#: Prediction memory per input voxel assumed for a network registered without an
#: estimate: that of a 16-filter U-Net of depth 2 (see cryocare.nets.unet.unet_bytes_per_voxel).
DEFAULT_BYTES_PER_VOXEL = 425


def register(name: str, *, halo: Callable[[CareConfig], int],
             multiple_of: Callable[[CareConfig], int] | None = None,
             bytes_per_voxel: Callable[[CareConfig], int] | None = None,
             streamed_bytes_per_voxel: Callable[[CareConfig], int] | None = None,
             streamed: StreamedRunner | None = None,
             streamable: Callable[[keras.Model, CareConfig], bool] | None = None):
    """Decorator that registers a network builder under ``name``.

    ``halo(config)`` bounds the receptive-field radius; ``multiple_of(config)``
    is the number every spatial input size must be a multiple of (1 if None);
    ``bytes_per_voxel(config)`` estimates the peak memory of a float32
    forward pass per input voxel, from which prediction sizes its tiles
    (default :data:`DEFAULT_BYTES_PER_VOXEL`). A network that can run level by
    level gives ``streamed(keras_model, config, chunk_bytes)``, which returns
    that runner (a function of a batch, as the model), its memory per voxel
    ``streamed_bytes_per_voxel(config)``, and ``streamable(keras_model, config)``,
    whether a given model (loaded, say, from another program's file) has what
    the runner needs.
    """

    def decorate(build: Callable[[CareConfig], keras.Model]):
        _REGISTRY[name] = NetworkEntry(
            name=name, build=build, halo=halo, multiple_of=multiple_of or (lambda config: 1),
            bytes_per_voxel=bytes_per_voxel or (lambda config: DEFAULT_BYTES_PER_VOXEL),
            streamed_bytes_per_voxel=streamed_bytes_per_voxel, streamed=streamed,
            streamable=streamable)
        return build

    return decorate


def add_streamed(name: str, *, streamed: StreamedRunner,
                 streamed_bytes_per_voxel: Callable[[CareConfig], int],
                 streamable: Callable[[keras.Model, CareConfig], bool] | None = None) -> None:
    """Give the registered network ``name`` a level-by-level runner (see :func:`register`)."""
    _REGISTRY[name] = dataclasses.replace(get(name), streamed=streamed, streamable=streamable,
                                          streamed_bytes_per_voxel=streamed_bytes_per_voxel)


def names() -> list[str]:
    """Names of all registered networks."""
    return sorted(_REGISTRY)


def get(name: str) -> NetworkEntry:
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



def spec(config: CareConfig) -> NetworkSpec:
    """What prediction needs to know of the network that ``config`` describes.

    >>> from cryocare.config import CareConfig
    >>> spec(CareConfig(unet_n_depth=3))
    NetworkSpec(halo=51, multiple_of=8, bytes_per_voxel=434, streamed_bytes_per_voxel=49)
    """
    entry = get(config.network)
    streamed = entry.streamed_bytes_per_voxel
    return NetworkSpec(halo=int(entry.halo(config)), multiple_of=int(entry.multiple_of(config)),
                       bytes_per_voxel=int(entry.bytes_per_voxel(config)),
                       streamed_bytes_per_voxel=None if streamed is None or entry.streamed is None
                       else int(streamed(config)))


def streamed_runner(config: CareConfig) -> StreamedRunner | None:
    """The level-by-level runner of the network that ``config`` describes, or None."""
    return get(config.network).streamed


def streamable(model: keras.Model, config: CareConfig) -> bool:
    """Whether ``model`` (of ``config``'s network) can run level by level."""
    entry = get(config.network)
    return entry.streamed is not None and (entry.streamable is None
                                           or bool(entry.streamable(model, config)))
