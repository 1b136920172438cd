"""Run a U-Net level by level in chunks: the same output in a fraction of the memory.

A framework runs a U-Net on a tile as one graph: at the full resolution it
holds the skip connection, the up-sampled features, their concatenation and
the convolution outputs of every voxel of the tile at once (≈ 350–400 bytes
per voxel in float32 for 16 filters). :class:`StreamedUNet` runs the same
layers with the same weights one level at a time: at each level the
convolutions see boxes of the level's field (a few million voxels) with the
few voxels of context their kernels need, and only what the next step reads
is kept for the whole tile — the deeper levels' skip connections, the pooled
fields and each level's output; the first level's skip connection is computed
again, chunk by chunk, on the way up (49 bytes per voxel at 16 filters, depth
3). The per-voxel memory of a forward pass falls about 7×, so a memory budget
buys tiles about 7× larger, which read far fewer voxels twice: a depth-3 U-Net
needs 56 voxels of context on each side of a tile.

The output equals the whole-graph forward pass up to float rounding (every
output voxel sees exactly the same inputs; only the order of the sums in a
convolution kernel may differ): ``tests/test_streaming.py``.

Only networks built by :func:`cryocare.nets.unet.unet` are streamed (layer
names identify the parts); :func:`streamable` says whether a model is one.

Examples
--------
>>> from cryocare.nets.unet_streamed import streamed_bytes_per_voxel
>>> streamed_bytes_per_voxel(n_dim=3, n_first=16, depth=3)
49
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backends
from .._pages import copy, empty
from .unet import layer_names

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from ..config import CareConfig

__all__ = ["StreamedUNet", "streamable", "streamed_bytes_per_voxel", "config_bytes_per_voxel",
           "runner", "CHUNK_BYTES",
           "WORKING_BYTES_PER_VOXEL"]

#: Bytes of the working set of one chunk (its convolutions' inputs and outputs): a chunk
#: of about 2 M voxels at 16 filters, large enough that the few voxels of context around
#: it cost ~10 % more arithmetic, small enough to be a fraction of any memory budget.
CHUNK_BYTES = 2**30
#: Working bytes per voxel and filter of the first level in float32 (the up-sampled features,
#: the skip, their concatenation, two convolution outputs and the framework's temporaries);
#: half as many where the network computes in bfloat16.
WORKING_BYTES_PER_VOXEL = 32


def streamed_bytes_per_voxel(*, n_dim: int, n_first: int, depth: int,
                             keep_first_skip: bool = False) -> int:
    """Bytes per tile voxel that a streamed forward pass keeps for the whole tile (float32).

    Per level ``l`` (a share ``2**(-n_dim l)`` of the voxels, ``n_first 2**l``
    filters): the skip connection (not at the first level unless
    ``keep_first_skip``), the pooled field and the level's output
    (``n_first 2**(l-1)`` filters; one channel at the first level), plus the
    input, 4 bytes each. The working set of a chunk, :data:`CHUNK_BYTES`,
    comes on top, once per pass.

    >>> streamed_bytes_per_voxel(n_dim=3, n_first=16, depth=3, keep_first_skip=True)
    113
    """
    total = 4.0  # the input
    for level in range(depth):
        share = 2.0 ** (-n_dim * level)
        filters = n_first * 2**level
        out = 1 if level == 0 else n_first * 2 ** (level - 1)
        skip = filters if level > 0 or keep_first_skip else 0
        total += 4 * share * (skip + filters / 2**n_dim + out)
    return int(math.ceil(total))


def _layer(model: keras.Model, name: str) -> Any:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def streamable(model: keras.Model, config: CareConfig) -> bool:
    """Whether ``model`` is a U-Net of :func:`cryocare.nets.unet.unet` with every layer in place."""
    if config.network != "unet":
        return False
    names = layer_names(config.unet_n_depth, config.unet_n_conv_per_depth)
    return all(_layer(model, name) is not None for group in names.values() for name in group)


def _boxes(shape: Sequence[int], voxels: int) -> Iterator[tuple[tuple[int, int], ...]]:
    """Boxes of even sides (but at an odd end) covering ``shape``, each at most ~``voxels``."""
    parts = [1] * len(shape)

    def side(axis: int) -> int:
        size = -(-shape[axis] // parts[axis])
        return min(shape[axis], size + size % 2)

    while math.prod(side(a) for a in range(len(shape))) > voxels:
        axis = max(range(len(shape)), key=side)
        if side(axis) <= 2:
            break
        parts[axis] += 1
    sides = [side(a) for a in range(len(shape))]
    for corner in np.ndindex(*(-(-n // s) for n, s in zip(shape, sides, strict=True))):
        yield tuple((c * s, min(n, (c + 1) * s))
                    for c, s, n in zip(corner, sides, shape, strict=True))


def _grow(box: Sequence[tuple[int, int]], by: int, shape: Sequence[int], *,
          even: bool = False) -> tuple[tuple[int, int], ...]:
    """``box`` widened by ``by`` on each side, within ``shape`` (ends on even positions)."""
    grown = []
    for (start, stop), n in zip(box, shape, strict=True):
        start, stop = max(0, start - by), min(n, stop + by)
        if even:
            start, stop = start - start % 2, min(n, stop + stop % 2)
        grown.append((start, stop))
    return tuple(grown)


def _index(box: Sequence[tuple[int, int]], scale: int = 1) -> tuple[slice, ...]:
    return (slice(None),) + tuple(slice(a // scale, b // scale) for a, b in box)


def _inner(box: Sequence[tuple[int, int]], within: Sequence[tuple[int, int]]) -> tuple[slice, ...]:
    """Where ``box`` lies inside the array of box ``within``."""
    return (slice(None),) + tuple(slice(a - w, b - w)
                                  for (a, b), (w, _) in zip(box, within, strict=True))


class StreamedUNet:
    """A U-Net's forward pass, level by level in chunks (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        A network built by :func:`cryocare.nets.unet.unet` (:func:`streamable`).
    config : CareConfig
        Its configuration.
    chunk_bytes : int
        Working memory of one chunk (default :data:`CHUNK_BYTES`).
    keep_first_skip : bool
        Keep the first level's skip connection (``n_first`` values per voxel)
        for the whole tile; False (default) computes it again, chunk by chunk,
        when the way up needs it: the first level's two encoder convolutions
        once more (about 15 % more arithmetic) for ~60 % less memory.

    Calling it on a float32 batch ``(n, *spatial)`` whose sides are multiples of
    ``2**depth`` gives the network's output, float32, of the same shape.
    """

    def __init__(self, model: keras.Model, config: CareConfig, *,
                 chunk_bytes: int = CHUNK_BYTES, keep_first_skip: bool = False):
        if not streamable(model, config):
            raise ValueError("not a U-Net of cryocare.nets.unet with all its layers")
        self.model, self.config = model, config
        self.depth, self.n_dim = config.unet_n_depth, config.n_dim
        self.context = config.unet_n_conv_per_depth * (config.unet_kern_size // 2)
        self.chunk_bytes = int(chunk_bytes)
        self.layers = {key: [model.get_layer(name) for name in names]
                       for key, names in layer_names(self.depth,
                                                     config.unet_n_conv_per_depth).items()}
        self.residual = config.unet_residual
        self.keep_first_skip = bool(keep_first_skip)
        # the type of the fields between the parts: float32, or bfloat16 for a mixed network
        self.dtype = self.layers["down_0"][0].compute_dtype
        self.parts = self._build()
        self._calls: dict[str, Any] = {}
        self._buffers: dict[int, np.ndarray] = {}  # a part's inputs, kept from call to call
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the parts
    def _build(self) -> dict[str, Any]:
        """Graphs of the parts, sharing the model's layers (and so its weights)."""
        import keras

        def width(level: int) -> int:
            return self.config.unet_n_first * 2**level

        dtype = self.dtype

        def field(channels: int, name: str, kind: str = dtype) -> Any:
            return keras.Input(shape=(None,) * self.n_dim + (channels,), dtype=kind, name=name)

        parts = {}
        for level in range(self.depth):
            x = field(1 if level == 0 else width(level - 1), "field",
                      "float32" if level == 0 else dtype)
            skip = self._apply(self.layers[f"down_{level}"], x)
            pooled = self.layers[f"pool_{level}"][0](skip)
            parts[f"encode_{level}"] = keras.Model(x, [skip, pooled])
            parts[f"skip_{level}"] = keras.Model(x, skip)
            below, beside = field(width(level), "below"), field(width(level), "skip")
            up = self.layers[f"upsample_{level}"][0](below)
            out = self._apply(self.layers[f"up_{level}"],
                              keras.layers.Concatenate(axis=-1, dtype=dtype)([up, beside]))
            inputs = [below, beside]
            if level == 0:
                out = self.layers["final"][0](out)
                if self.residual:
                    x0 = field(1, "input", "float32")
                    out = keras.layers.Add(dtype="float32")([out, x0])
                    inputs.append(x0)
            parts[f"decode_{level}"] = keras.Model(inputs, out)
        x = field(width(self.depth - 1), "bottom")
        parts["bottom"] = keras.Model(x, self._apply(self.layers["middle"], x))
        return parts

    def _chunk_voxels(self, level: int, n: int) -> int:
        filters = self.config.unet_n_first * 2**level
        # a bfloat16 network's chunks hold twice the voxels in the same working memory
        itemsize = 2 if self.dtype == "bfloat16" else 4
        per_voxel = WORKING_BYTES_PER_VOXEL * itemsize // 4 * filters * n
        return max(2**self.n_dim, self.chunk_bytes // per_voxel)

    @staticmethod
    def _apply(layers: Sequence[Any], tensor: Any) -> Any:
        for layer in layers:
            tensor = layer(tensor)
        return tensor

    def _run(self, part: str, *arrays: np.ndarray) -> Any:
        """The part's output(s) as NumPy arrays.

        The inputs are copied into buffers kept from call to call, and with
        TensorFlow the outputs stay in TensorFlow's own (pooled) memory: a
        pass then allocates no fresh memory per chunk. Fresh allocations of
        hundreds of MiB per chunk cost page faults each time, and huge-page
        compaction made single chunks take several times as long.
        """
        inputs = [self._stage(slot, array) for slot, array in enumerate(arrays)]
        call = self._calls.get(part)
        if call is None:
            call = self._calls[part] = backends.compiled_inference(self.parts[part])
        return call(inputs)

    def _stage(self, slot: int, array: np.ndarray) -> np.ndarray:
        """``array`` copied into the pass's reusable buffer ``slot`` (grown when too small)."""
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.dtype != array.dtype or buffer.size < array.size:
            buffer = self._buffers[slot] = empty(array.size, array.dtype)
        staged = buffer[:array.size].reshape(array.shape)
        copy(staged, array)
        return staged

    # ------------------------------------------------------------------ the pass
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        spatial = batch.shape[1:]
        if len(spatial) != self.n_dim or any(n % 2**self.depth for n in spatial):
            raise ValueError(f"expected a batch (n, *spatial) of {self.n_dim}-D images with "
                             f"sides that are multiples of {2**self.depth}, got {batch.shape}")
        # one pass at a time: the staging buffers are this object's (a model shared by
        # threads, e.g. the workers of a Dask cluster, runs its passes in turn)
        with self._lock, backends.no_grad():
            out = self._level([batch[..., None]], 0)
        return np.asarray(out[..., 0], dtype=np.float32)

    def _level(self, given: list[np.ndarray], level: int) -> np.ndarray:
        """The U-Net from ``level`` down and back up, on the field ``(n, *spatial, channels)``
        in the one-element list ``given``, which it empties: a field that the way up does
        not need (it does at the first level) is freed as soon as it is encoded."""
        field = given.pop()
        if level == self.depth:  # the bottom: a share 2**(-n_dim depth) of the voxels, at once
            return np.asarray(self._run("bottom", field))
        keep = level > 0 or self.keep_first_skip
        skip, pooled = self._encode(field, level, keep=keep)
        if level > 0:
            field = None  # pooled and skip hold what the way up needs
        handed = [pooled]  # the level below frees it once encoded
        del pooled
        below = self._level(handed, level + 1)
        return self._decode(below, skip, field, level)

    def _encode(self, field: np.ndarray, level: int, *,
                keep: bool) -> tuple[np.ndarray | None, np.ndarray]:
        shape, n = field.shape[1:-1], field.shape[0]
        skip = pooled = None
        for box in _boxes(shape, self._chunk_voxels(level, n)):
            # an even start keeps the pooling cells of the box those of the whole field
            around = _grow(box, self.context, shape, even=True)
            out, small = (np.asarray(a) for a in self._run(f"encode_{level}",
                                                           field[_index(around)]))
            if pooled is None:
                pooled = empty((n, *(s // 2 for s in shape), small.shape[-1]), small.dtype)
                if keep:
                    skip = empty((n, *shape, out.shape[-1]), out.dtype)
            if keep:
                copy(skip[_index(box)], out[_inner(box, around)])
            copy(pooled[_index(box, 2)], small[_inner(_half(box), _half(around))])
        return skip, pooled

    def _decode(self, below: np.ndarray, skip: np.ndarray | None, field: np.ndarray | None,
                level: int) -> np.ndarray:
        """The way up at ``level``; ``skip`` None: computed again from the level's ``field``
        (which is None above the first level, where the way up does not need it)."""
        known = skip if skip is not None else field
        shape, n = known.shape[1:-1], known.shape[0]
        result = None
        for box in _boxes(shape, self._chunk_voxels(level, n)):
            around = _grow(box, self.context, shape, even=True)
            if skip is not None:
                beside = skip[_index(around)]
            else:
                wide = _grow(around, self.context, shape)
                beside = np.asarray(self._run(f"skip_{level}", field[_index(wide)]))
                beside = beside[_inner(around, wide)]
            inputs = [below[_index(around, 2)], beside]
            if level == 0 and self.residual:
                inputs.append(field[_index(around)])
            out = np.asarray(self._run(f"decode_{level}", *inputs))
            del inputs, beside
            if result is None:
                result = empty((n, *shape, out.shape[-1]), out.dtype)
            copy(result[_index(box)], out[_inner(box, around)])
        return result


def _half(box: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a // 2, b // 2) for a, b in box)


def config_bytes_per_voxel(config: CareConfig) -> int:
    """:func:`streamed_bytes_per_voxel` of the U-Net that ``config`` describes."""
    return streamed_bytes_per_voxel(n_dim=config.n_dim, n_first=config.unet_n_first,
                                    depth=config.unet_n_depth)


def runner(model: keras.Model, config: CareConfig, chunk_bytes: int) -> StreamedUNet:
    """The registry's runner: ``model`` level by level in chunks of ``chunk_bytes``."""
    return StreamedUNet(model, config, chunk_bytes=chunk_bytes)
