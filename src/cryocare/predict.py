"""The prediction engine: memory-budgeted tiles, batches, out-of-memory retry, slab output.

:func:`predict_volume` restores one image, or an even/odd pair in one pass
(both halves of a tile share a forward pass and are averaged), 2-D or 3-D:

1. **Plan** — :func:`plan_for_memory` picks the largest tile cores (and the
   number of tiles per forward pass) whose activations, plus one output slab,
   fit a memory budget: given in bytes or as ``"4G"``, or half of the free
   host memory (:func:`available_memory`). Tiles overlap by the network's
   receptive field, so the plan never changes the result (see
   :mod:`cryocare.tiling`).
2. **Run** — tiles are read from the input (memory maps are read tile by
   tile), normalised, batched by shape and passed to the network in float32.
   If the backend runs out of memory anyway (TensorFlow's
   ``ResourceExhaustedError``, PyTorch's ``OutOfMemoryError``, JAX's
   ``RESOURCE_EXHAUSTED``, :class:`MemoryError`), the batch is halved, then
   the tiles are cut in two, and the work is retried; the smaller size is
   kept for the rest of the image.
3. **Write** — the output is produced slab by slab along the first axis, into
   an array or straight into a :class:`cryocare.io.SlabWriter`, so the host
   memory is bounded by the plan, not by the image.

This module is NumPy-only: the network enters as a function mapping a
normalised float32 batch ``(n, *tile_shape)`` to an array of the same shape.

Examples
--------
>>> import numpy as np
>>> from cryocare.normalize import Normalization
>>> image = np.arange(24 * 20, dtype=np.float32).reshape(24, 20)
>>> out = predict_volume(lambda batch: 2 * batch, image, normalization=Normalization(0.0, 1.0),
...                      halo=2, multiple_of=4, memory="1M", bytes_per_voxel=400)
>>> bool(np.allclose(out, 2 * image))
True
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from . import io
from ._pages import copy, empty
from .config import NORMALIZE_CHOICES, PredictOptions, parse_size
from .errors import CryocareError, InputError
from .nets.registry import NetworkSpec
from .normalize import Normalization, compute_normalization
from .tiling import Tile, TilePlan, plan_tiles, read_tile, round_up, split_tile

__all__ = ["OutOfMemoryError", "Device", "PredictionPlan", "Forward", "NORMALIZE_CHOICES",
           "MAX_PASS_VOXELS", "EIGEN_PASS_VOXELS", "available_memory", "flip_averaged",
           "flip_subsets", "tta_flips", "parse_memory", "plan_for_memory", "plan_prediction",
           "is_out_of_memory", "predict_volume", "predict_tiled", "denoise_file"]

log = logging.getLogger(__name__)

MAX_BATCH = 8  # tiles per forward pass; more gains nothing measurable on CPU or GPU
#: Input voxels of one forward pass (all tiles and halves together), a sanity bound; the
#: memory budget is what limits a pass. Larger tiles pay: a depth-3 U-Net reads 51 voxels
#: of context on each side, so small tiles read every voxel many times over.
MAX_PASS_VOXELS = 2**26
#: The bound where TensorFlow computes convolutions in Eigen (oneDNN off, TensorFlow's own
#: choice on AVX2-only CPUs; see ``cryocare.backends``): Eigen aborts the process
#: (``std::bad_alloc``, which no retry can catch) on passes above ~10 M voxels — measured
#: with a depth-2 U-Net: 9.6 M voxels ran, 11.8 M, 15.9 M and 17.7 M aborted (oneDNN ran
#: 17.7 M at 402 B/voxel). A 96×256×256 pair planned as one tile had aborted there.
EIGEN_PASS_VOXELS = 2**23
#: A plan may read this share more voxels than the least-reading plan that fits, if it
#: needs less memory: past the knee, larger tiles cost memory and hardly save work.
READ_SLACK = 0.1
#: Voxels of the tile whose forward pass ``tta="auto"`` times: large enough for a rate
#: that holds for larger tiles, small enough to cost a fraction of a pass over a tomogram.
PROBE_VOXELS = 2**21
#: Working sets of a level-by-level pass tried by the planner, with the cost per voxel of each
#: relative to 1 GiB: smaller chunks compute more context twice (256 MiB: +8 % CPU time on a
#: 128×384×384 pair, docs/predict.md) but save the difference in memory.
CHUNK_CHOICES = ((2**30, 1.0), (2**28, 1.08))
#: Cost per voxel read of a pass as one graph on a CPU, relative to the level-by-level pass
#: with 1 GiB chunks, which costs the same per voxel at any tile size: (voxels of the pass,
#: relative cost) measured on one core of a Zen 5 (cryoCARE's network, 2 x 128^3 voxels:
#: 507 against 634 ns per voxel; 2 x 128x384x384: 1019 against 597). One graph is cheaper
#: on small passes and dearer on large ones: its activations of hundreds of bytes per voxel
#: leave the caches and fault pages in. Interpolated in log(voxels) between the two points.
PASS_COST = ((2 * 128**3, 0.80), (2 * 128 * 384 * 384, 1.71))


def _one_graph_cost(pass_voxels: int) -> float:
    """Relative cost per voxel of one graph on a CPU for passes of ``pass_voxels`` (PASS_COST).

    >>> round(_one_graph_cost(2 * 128**3), 2), round(_one_graph_cost(2 * 128 * 384**2), 2)
    (0.8, 1.71)
    """
    (v0, c0), (v1, c1) = PASS_COST
    t = math.log(max(pass_voxels, 1) / v0) / math.log(v1 / v0)
    return max(0.7, c0 + t * (c1 - c0))
#: What memory is worth in time: the plan that minimises ``cost × memory**MEMORY_WEIGHT`` wins,
#: so a plan may take 2 % longer for 10 % less memory, not for less. On a 256×512×512 pair
#: the 256 MiB chunks save 17 % of the memory for 8 % more time (not taken); on a
#: 128×384×384 pair 39 % (taken: 0.47 of cryoCARE's peak instead of 0.68).
MEMORY_WEIGHT = 0.2
_ENGINE_BYTES = 16  # per read voxel and image: the batch, the result and reading temporaries
_FALLBACK_MEMORY = 4 * 2**30  # used when the free memory cannot be measured

#: A forward pass: a normalised float32 batch ``(n, *spatial)`` to an array of that shape.
Forward = Callable[[np.ndarray], np.ndarray]


class OutOfMemoryError(CryocareError, MemoryError):
    """The network ran out of memory even on the smallest tiles."""


class _Sink(Protocol):
    def write(self, slab: np.ndarray) -> None: ...


def available_memory() -> int:
    """Free host memory in bytes (``MemAvailable`` on Linux), or 4 GiB if unknown.

    Examples
    --------
    >>> available_memory() > 0
    True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_MEMORY


def parse_memory(value: int | float | str | None) -> int:
    """A memory budget in bytes: a number, a text like ``"512M"`` or ``"1.5G"``, or None.

    None (or ``"auto"``) means half of :func:`available_memory`.

    Examples
    --------
    >>> parse_memory("1.5G"), parse_memory("512M"), parse_memory(1000)
    (1610612736, 536870912, 1000)
    """
    size = parse_size(value.item() if isinstance(value, np.number) else value)
    return available_memory() // 2 if size is None else size


def _read_voxels(core: Sequence[int], plan_margin: int, padded: Sequence[int]) -> int:
    return math.prod(min(c + 2 * plan_margin, p) for c, p in zip(core, padded, strict=True))


def _plan_bytes(shape: Sequence[int], core_rows, read_voxels, *, halves: int,
                bytes_per_voxel: int, batch: int = 1):
    """Memory of a plan: one output slab ``core_rows`` thick, and one pass of ``batch`` tiles
    of ``read_voxels`` each, per half. Scalars or NumPy arrays (one value per plan)."""
    slab = 4 * np.minimum(core_rows, shape[0]) * math.prod(shape[1:])
    return slab + batch * halves * (bytes_per_voxel + _ENGINE_BYTES) * read_voxels


def plan_for_memory(
    shape: Sequence[int],
    *,
    budget: int,
    bytes_per_voxel: int,
    halo: int,
    multiple_of: int = 1,
    halves: int = 2,
    tile_shape: Sequence[int] | None = None,
    max_batch: int = MAX_BATCH,
    max_pass_voxels: int = MAX_PASS_VOXELS,
) -> tuple[TilePlan, int]:
    """Tiles, and tiles per forward pass, that read the least and fit ``budget`` bytes.

    The cost counted is one output slab (float32, one tile core thick along
    the first axis) plus ``batch × halves`` tiles of ``bytes_per_voxel`` (and
    16 bytes for the engine's own buffers) per read voxel. Cores that cut each
    axis into 1, 2, 3, ... equal parts are tried. Of those that fit, the plans
    that read at most :data:`READ_SLACK` (10 %) more voxels in all than the
    least-reading one are kept, and of these the one needing the least memory
    wins (then the largest core): beyond that knee larger tiles cost memory
    and save little work. Then tiles are batched per pass while they fit (at
    most ``max_batch``, and no pass larger than the least-reading plan's). No
    forward pass takes more than ``max_pass_voxels`` input voxels. With
    ``tile_shape`` given, only the batch is chosen.

    Parameters
    ----------
    shape : sequence of int
        Image shape.
    budget : int
        Memory budget in bytes.
    bytes_per_voxel : int
        Network memory per read voxel (see :func:`cryocare.nets.bytes_per_voxel`).
    halo, multiple_of : int
        As for :func:`cryocare.tiling.plan_tiles`.
    halves : int
        Images per tile in a pass: 2 for an even/odd pair, 1 for one image.
    tile_shape : sequence of int, optional
        Fixed cores.
    max_batch : int
        Upper bound of tiles per pass.
    max_pass_voxels : int
        Upper bound of input voxels per pass (:data:`MAX_PASS_VOXELS`;
        :data:`EIGEN_PASS_VOXELS` where the convolutions run in Eigen).

    Returns
    -------
    plan : TilePlan
    batch_size : int

    Examples
    --------
    >>> plan, batch = plan_for_memory((300, 1000, 1000), budget=4 * 2**30, bytes_per_voxel=425,
    ...                               halo=26, multiple_of=4)
    >>> plan.tile_shape, batch, len(plan.tiles)
    ((100, 92, 112), 1, 297)
    """
    shape = tuple(int(n) for n in shape)
    probe = plan_tiles(shape, tile_shape=tile_shape, halo=halo, multiple_of=multiple_of)
    margin, padded = probe.halo, probe.padded_shape
    core = list(probe.tile_shape)

    def cost(core, batch=1):
        return _plan_bytes(shape, core[0], _read_voxels(core, margin, padded), halves=halves,
                           bytes_per_voxel=bytes_per_voxel, batch=batch)

    if tile_shape is None:
        # Candidate cores: each axis cut into 1, 2, 3, 4, 5, 6, 8, ... equal parts.
        def sizes(p):
            parts = {1, 2, 3, 4, 5, 6} | {int(1.25**k) for k in range(8, 40)}
            return np.array(sorted({round_up(-(-p // k), multiple_of) for k in parts
                                    if k * multiple_of <= p} | {multiple_of}), dtype=np.int64)

        grids = np.meshgrid(*(sizes(p) for p in padded), indexing="ij")
        cores = np.stack([g.ravel() for g in grids], axis=1)
        reads = np.minimum(cores + 2 * margin, np.array(padded))
        memory = _plan_bytes(shape, cores[:, 0], reads.prod(axis=1), halves=halves,
                             bytes_per_voxel=bytes_per_voxel)
        fits = memory <= budget
        smallest = halves * multiple_of ** len(shape)
        fits &= halves * reads.prod(axis=1) <= max(max_pass_voxels, smallest)
        if not fits.any():
            raise InputError(
                f"memory: a budget of {budget / 2**20:.0f} MiB is too small for the "
                f"smallest tiles of an image of shape {shape}; allow more memory"
            )
        cores, reads, memory = cores[fits], reads[fits], memory[fits]
        total_read = (-(-np.array(padded) // cores) * reads).prod(axis=1)
        # The least-reading plan (then the largest core) sets the work; of the plans that
        # read at most READ_SLACK more, the one needing the least memory wins.
        least = np.lexsort((-cores.prod(axis=1), total_read))[0]
        pass_limit = min(max_pass_voxels, halves * int(reads[least].prod()))
        near = np.flatnonzero(total_read <= (1 + READ_SLACK) * total_read[least])
        best = near[np.lexsort((-cores[near].prod(axis=1), memory[near]))[0]]
        core = [int(c) for c in cores[best]]
    else:
        pass_limit = max_pass_voxels
    plan = plan_tiles(shape, tile_shape=core, halo=halo, multiple_of=multiple_of)
    batch = 1
    pass_voxels = halves * _read_voxels(core, margin, padded)
    # More tiles per pass while they fit, but no pass larger than the least-reading plan's.
    while batch < min(max_batch, len(plan.tiles)) and cost(core, batch + 1) <= budget \
            and (batch + 1) * pass_voxels <= pass_limit:
        batch += 1
    log.debug("memory plan for %s: cores %s, halo %d, %d tiles, %d per pass, budget %d MiB",
              shape, plan.tile_shape, plan.halo, len(plan.tiles), batch, budget // 2**20)
    return plan, batch


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a backend's out-of-memory error (any Keras backend).

    Examples
    --------
    >>> is_out_of_memory(MemoryError()), is_out_of_memory(ValueError("bad shape"))
    (True, False)
    """
    if isinstance(error, MemoryError):
        return True
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"ResourceExhaustedError", "OutOfMemoryError"}:
        return True
    text = str(error)
    return any(key in text for key in ("RESOURCE_EXHAUSTED", "out of memory", "OOM when"))


class _Engine:
    """Runs a network over the tiles of a plan with batching and out-of-memory retry."""

    def __init__(self, network: Forward, plan: PredictionPlan | TilePlan,
                 normalization: Normalization, images: Sequence[np.ndarray], *,
                 batch_size: int | None = None):
        if isinstance(plan, TilePlan):  # a fixed tile plan (predict_tiled)
            plan = PredictionPlan(tiles=plan, batch_size=batch_size or 1, separate=False,
                                  streamed=False, chunk_bytes=0, precision="float32",
                                  memory=0, cost=0.0)
        self.network, self.plan, self.batch_size = network, plan.tiles, plan.batch_size
        self.mean, self.std = np.float32(normalization.mean), np.float32(normalization.std)
        self.images = images
        self.separate = plan.separate  # run the halves of a tile in separate passes
        self.splits = 0  # times every tile is cut in two after running out of memory

    def _cut(self, tiles: Sequence[Tile], times: int) -> list[Tile]:
        for _ in range(times):
            tiles = [half for tile in tiles for half in split_tile(tile, self.plan)]
        return list(tiles)

    def _call(self, batch: np.ndarray) -> np.ndarray:
        result = np.asarray(self.network(batch), dtype=np.float32)
        if result.shape != batch.shape:
            raise ValueError(f"network returned shape {result.shape} for input {batch.shape}")
        return result

    def _forward(self, tiles: Sequence[Tile]) -> np.ndarray:
        n = len(self.images)
        if self.separate and n > 1:  # one pass per half: half the network memory
            result = self._call(self._read(tiles, self.images[:1]))
            for image in self.images[1:]:  # each half read only when its pass comes
                result += self._call(self._read(tiles, [image]))
            result /= np.float32(n)
        else:
            batch = self._read(tiles, self.images)
            both = self._call(batch).reshape((len(tiles), n) + batch.shape[1:])
            result = both[:, 0]  # the mean over the halves, in place
            for index in range(1, n):
                result += both[:, index]
            if n > 1:
                result /= np.float32(n)
        result *= self.std
        result += self.mean
        return result

    def _read(self, tiles: Sequence[Tile], images: Sequence[np.ndarray]) -> np.ndarray:
        """The normalised batch of ``tiles`` of ``images`` (tile by tile, image by image)."""
        # read straight into one batch array on plain pages (see cryocare._pages)
        batch = empty((len(tiles) * len(images), *tiles[0].read_shape), np.float32)
        for index, (tile, image) in enumerate((t, i) for t in tiles for i in images):
            read_tile(image, tile.read, out=batch[index])
        batch -= self.mean
        batch /= self.std
        return batch

    def run(self, tiles: Sequence[Tile], slab: np.ndarray, offset: int) -> None:
        """Predict ``tiles`` into ``slab``, whose first row is row ``offset`` of the image."""
        splits = self.splits
        pending = self._cut(tiles, splits)
        while pending:
            if self.splits != splits:  # ran out of memory: cut what is left, too
                pending = self._cut(pending, self.splits - splits)
                splits = self.splits
            shape = pending[0].read_shape  # tiles of equal shape share a pass
            chunk = [t for t in pending if t.read_shape == shape][:self.batch_size]
            try:
                result = self._forward(chunk)
            except Exception as error:  # noqa: BLE001  (only out-of-memory is handled)
                if not is_out_of_memory(error):
                    raise
                self._shrink(chunk, error)
                continue
            for tile, pred in zip(chunk, result, strict=True):
                write = (slice(tile.write[0].start - offset, tile.write[0].stop - offset),)
                copy(slab[write + tile.write[1:]], pred[tile.crop])
            done = {id(t) for t in chunk}
            pending = [t for t in pending if id(t) not in done]

    def _shrink(self, chunk: Sequence[Tile], error: BaseException) -> None:
        if self.batch_size > 1:
            self.batch_size = max(1, self.batch_size // 2)
            log.warning("out of memory; retrying with %d tile(s) per pass", self.batch_size)
            return
        if all(len(split_tile(t, self.plan)) == 1 for t in chunk):
            raise OutOfMemoryError(
                f"out of memory even on tiles of {chunk[0].read_shape} voxels ({error}); "
                "free memory on the device or lower the memory budget"
            ) from None
        self.splits += 1
        log.warning("out of memory; retrying with tiles cut in two (%d time(s))", self.splits)


@dataclass(frozen=True)
class Device:
    """Where a prediction runs and how much memory it may take there.

    On a CPU the tiles live in host memory; on a GPU in the card's, which
    is what sizes them there (the host only holds the output slab).

    Attributes
    ----------
    kind : {"cpu", "gpu"}
    free_memory : int
        Free bytes of the memory the forward passes use.
    eigen : bool
        TensorFlow computes its CPU convolutions in Eigen (which aborts on
        passes above :data:`EIGEN_PASS_VOXELS`).

    Examples
    --------
    >>> Device("gpu", free_memory=16 * 2**30).budget() / 2**30
    12.0
    """

    kind: str = "cpu"
    free_memory: int = _FALLBACK_MEMORY
    eigen: bool = False

    def budget(self) -> int:
        """The default memory budget: half of the free host memory, or 3/4 of a GPU's
        (a card runs nothing else of ours, but its framework keeps a reserve)."""
        return self.free_memory * 3 // 4 if self.kind == "gpu" else self.free_memory // 2

    @classmethod
    def current(cls, device: str | None = None, *, engine: str = "keras") -> Device:
        """The device that Keras computes on (asks the backend), or the host CPU."""
        from . import backends

        if engine == "keras" and (device or "gpu").startswith("gpu") \
                and backends.computes_on_gpu():
            free = backends.gpu_free_memory()
            if free is not None:
                return cls("gpu", int(free))
            log.warning("the GPU's free memory is unknown; planning for %d GiB",
                        _FALLBACK_MEMORY // 2**30)
            return cls("gpu", _FALLBACK_MEMORY)
        eigen = engine == "keras" and backends.current() == "tensorflow" \
            and backends.tensorflow_onednn() is False
        return cls("cpu", available_memory(), eigen=eigen)


@dataclass(frozen=True)
class PredictionPlan:
    """A prediction planned as data: which pass, on which tiles, in how much memory.

    Attributes
    ----------
    tiles : TilePlan
        The tiles (cores, halo, reads) of one image.
    batch_size : int
        Tiles per forward pass.
    separate : bool
        The halves of a pair go through the network in separate passes
        (half the network memory; the same voxels).
    streamed : bool
        The network runs level by level (:mod:`cryocare.nets.unet_streamed`).
    chunk_bytes : int
        Working set of a level-by-level pass (0 for one graph).
    precision : {"float32", "bfloat16"}
    memory : int
        Estimated bytes of the plan: the passes, their working set and one output slab.
    cost : float
        Estimated relative time: voxels read times the pass's cost per voxel.
    """

    tiles: TilePlan
    batch_size: int
    separate: bool
    streamed: bool
    chunk_bytes: int
    precision: str
    memory: int
    cost: float

    @property
    def read_factor(self) -> float:
        """Voxels the network reads per voxel of output (1.0: every voxel once)."""
        return (sum(math.prod(t.read_shape) for t in self.tiles.tiles)
                / math.prod(self.tiles.shape))

    def describe(self) -> str:
        """One line for the log."""
        how = (f"level by level in chunks of {self.chunk_bytes // 2**20} MiB" if self.streamed
               else "as one graph")
        return (f"{len(self.tiles.tiles)} tile(s) of {self.tiles.tile_shape} (halo "
                f"{self.tiles.halo} between tiles), {self.read_factor:.2f} voxels read per "
                f"voxel, {self.batch_size} per pass, {how}, "
                f"{'halves in separate passes, ' if self.separate else ''}{self.precision}, "
                f"about {self.memory / 2**20:.0f} MiB")


def plan_prediction(shape: Sequence[int], spec: NetworkSpec, options: PredictOptions, *,
                    images: int = 1, device: Device | None = None) -> PredictionPlan:
    """The fastest plan for ``images`` images of ``shape`` (then the one needing least memory).

    The candidates: the network as one graph, or level by level (where the
    network has such a runner, on a CPU, in Keras) with a working set of
    :data:`CHUNK_CHOICES`; the halves of a pair in one pass or in two; and
    for each, the tiles and batch of :func:`plan_for_memory` in the memory
    budget (``options.memory``, else :meth:`Device.budget`). Each is costed
    as the voxels it reads times its pass's cost per voxel
    (:data:`PASS_COST`, measured: one graph is cheaper than the level-by-level
    pass on small passes and dearer on large ones), and the plan that minimises cost times
    memory to the power :data:`MEMORY_WEIGHT` wins (10 % less memory is
    worth 2 % more time) — so the default budget is an upper bound, and the
    plan takes what the fastest plans need, not the whole budget.

    Examples
    --------
    >>> from cryocare.config import PredictOptions
    >>> from cryocare.nets import NetworkSpec
    >>> unet = NetworkSpec(halo=51, multiple_of=8, bytes_per_voxel=434,
    ...                    streamed_bytes_per_voxel=49)
    >>> plan = plan_prediction((128, 384, 384), unet, PredictOptions(), images=2,
    ...                        device=Device("cpu", free_memory=16 * 2**30))
    >>> plan.streamed, plan.read_factor, len(plan.tiles.tiles)
    (True, 1.0, 1)
    >>> gpu = plan_prediction((128, 384, 384), unet, PredictOptions(), images=2,
    ...                       device=Device("gpu", free_memory=4 * 2**30))
    >>> gpu.streamed, gpu.memory <= Device("gpu", free_memory=4 * 2**30).budget()
    (False, True)
    """
    shape = tuple(int(n) for n in shape)
    device = Device("cpu", available_memory()) if device is None else device
    budget = device.budget() if options.memory is None else options.memory
    tile_shape = options.tile_shape
    if tile_shape is None:
        tile_shape = shape
    elif isinstance(tile_shape, int):
        tile_shape = (tile_shape,) * len(shape)
    elif tile_shape != "auto" and len(tile_shape) != len(shape):
        raise InputError(f"tile_shape: expected {len(shape)} sizes for an image of shape "
                         f"{shape}, got {tile_shape}")
    can_stream = spec.streamed_bytes_per_voxel is not None and device.kind == "cpu" \
        and options.engine == "keras"
    if options.streaming and not can_stream:
        log.info("streaming: this network runs as one graph here (level by level needs a "
                 "U-Net in Keras on a CPU)")
    modes = []  # (streamed, chunk bytes, bytes per voxel, cost per voxel)
    if can_stream and options.streaming is not False:
        chunks = {max(2**16, min(chunk, budget // 4)): cost for chunk, cost in CHUNK_CHOICES[::-1]}
        for chunk, cost in chunks.items():  # a working set of at most a quarter of the budget
            modes.append((True, chunk, spec.streamed_bytes_per_voxel, cost))
    if not modes or options.streaming is not True:
        modes.append((False, 0, spec.bytes_per_voxel, None))  # costed by its pass size
    candidates, refusal = [], None
    for streamed, chunk, per_voxel, per_read in modes:
        if options.precision == "bfloat16":  # activations in 2 bytes; input and output float32
            per_voxel = int(math.ceil(0.6 * per_voxel))
        cap = EIGEN_PASS_VOXELS if device.eigen and not streamed else MAX_PASS_VOXELS
        for halves in sorted({images, 1}, reverse=True):
            if budget - chunk <= 0:
                continue
            try:
                tiles, batch = plan_for_memory(
                    shape, budget=budget - chunk, bytes_per_voxel=per_voxel, halo=spec.halo,
                    multiple_of=spec.multiple_of, halves=halves,
                    tile_shape=None if tile_shape == "auto" else tile_shape,
                    max_batch=MAX_BATCH if options.batch_size is None else options.batch_size,
                    max_pass_voxels=cap)
            except InputError as error:
                refusal = error
                continue
            if options.batch_size is not None:
                batch = options.batch_size
            read = sum(math.prod(t.read_shape) for t in tiles.tiles)
            largest = max(math.prod(t.read_shape) for t in tiles.tiles)
            memory = chunk + int(_plan_bytes(shape, tiles.tile_shape[0], largest, halves=halves,
                                             bytes_per_voxel=per_voxel, batch=batch))
            if per_read is None:  # one graph: on a CPU its cost per voxel grows with the pass
                per_read = 1.0 if device.kind == "gpu" else _one_graph_cost(
                    batch * halves * largest)
            candidates.append(PredictionPlan(
                tiles=tiles, batch_size=batch, separate=halves < images, streamed=streamed,
                chunk_bytes=chunk, precision=options.precision, memory=memory,
                cost=read * per_read))
    if not candidates:
        raise refusal or InputError(f"memory: a budget of {budget / 2**20:.0f} MiB is too small "
                                    f"for an image of shape {shape}; allow more memory")
    plan = min(candidates, key=lambda p: (p.cost * p.memory ** MEMORY_WEIGHT, p.memory))
    log.debug("prediction plan for %d image(s) of %s on the %s (budget %d MiB): %s", images,
              shape, device.kind, budget // 2**20, plan.describe())
    return plan


def predict_volume(
    network: Forward | Callable[[PredictionPlan], Forward],
    image: np.ndarray,
    odd: np.ndarray | None = None,
    *,
    normalization: Normalization | None,
    spec: NetworkSpec | None = None,
    halo: int | None = None,
    multiple_of: int = 1,
    bytes_per_voxel: int | None = None,
    options: PredictOptions | None = None,
    device: Device | None = None,
    out: np.ndarray | _Sink | None = None,
    **settings: Any,
) -> np.ndarray | None:
    """Restore ``image`` (or average the restorations of ``image`` and ``odd``), tile by tile.

    Parameters
    ----------
    network : callable
        Maps a normalised float32 batch ``(n, *read_shape)`` to the same
        shape; or, with ``spec``, a function of the :class:`PredictionPlan`
        that returns such a callable for it (the model's, which builds the
        pass the plan chose).
    image : ndarray
        2-D or 3-D image (the even half for a pair); a memory map is read
        tile by tile and never modified.
    odd : ndarray, optional
        The other half; both go through the same forward passes and the
        result is their mean.
    normalization : Normalization or None
        The training normalisation of the network; None for a network that
        normalises every image by its own statistics (e.g. a pretrained model).
    spec : NetworkSpec, optional
        What the planner knows of the network (:func:`cryocare.nets.spec`);
        or give ``halo``, ``multiple_of`` and ``bytes_per_voxel`` for a plain
        callable (never streamed).
    options : PredictOptions, optional
        How to predict (:class:`cryocare.config.PredictOptions`; defaults if
        None); ``settings`` change single options (``memory="2G"``, ``tta=4``;
        unknown names are refused).
    device : Device, optional
        Where the passes run and its free memory (default: the host CPU).
    out : ndarray or SlabWriter, optional
        Float32 array of the image's shape to fill, or an object whose
        ``write(slab)`` takes consecutive slabs along the first axis (then
        None is returned).

    Returns
    -------
    ndarray or None
        float32 array of ``image.shape``, or None when writing to a slab writer.
    """
    options = PredictOptions.merged(options, **settings)
    if spec is None:
        if halo is None or bytes_per_voxel is None:
            raise InputError("predict_volume: expected spec, or halo and bytes_per_voxel")
        spec = NetworkSpec(halo=int(halo), multiple_of=int(multiple_of),
                           bytes_per_voxel=int(bytes_per_voxel))
        forward_for = None
    else:
        forward_for = network
    flips = None if options.tta == "auto" else tta_flips(options.tta, np.ndim(image))
    images = [image] if odd is None else [image, odd]
    for item in images:
        if np.ndim(item) not in (2, 3):
            raise InputError(f"expected a 2-D or 3-D image, got shape {np.shape(item)}")
    if odd is not None and odd.shape != image.shape:
        raise InputError(f"even and odd halves differ in shape: {image.shape} and {odd.shape}")
    normalize = options.normalize
    if isinstance(normalize, Normalization):
        scale = normalize
    elif normalize == "training" and normalization is not None:
        scale = normalization
    else:  # "image", or a model normalised per image
        scale = compute_normalization(images)
    if out is not None and isinstance(out, np.ndarray) and out.shape != image.shape:
        raise InputError(f"out: expected shape {image.shape}, got {out.shape}")
    plan = plan_prediction(image.shape, spec, options, images=len(images), device=device)
    forward = network if forward_for is None else forward_for(plan)
    if flips is None:
        flips = _affordable_flips(_Engine(forward, plan, scale, images),
                                  seconds=options.tta_seconds)
    if flips > 1:
        forward = flip_averaged(forward, flips)
    engine = _Engine(forward, plan, scale, images)
    sink = None
    if out is None:
        result = empty(image.shape, np.float32)
    elif isinstance(out, np.ndarray):
        result = out
    else:
        result, sink = None, out
    log.info("predicting %s: %s", image.shape, plan.describe())
    _run(engine, result, sink, progress=options.progress)
    return result


def _affordable_flips(engine: _Engine, *, seconds: float | None) -> int:
    """The most flips (8, 4, 2 or 1) whose prediction fits ``seconds``, by timing one pass."""
    n_dim = len(engine.plan.shape)
    flips = [f for f in (8, 4, 2, 1) if f <= 2**n_dim]
    if seconds is None:
        return flips[0]
    probe = _probe_tile(engine.plan)
    engine._forward([probe])  # warm-up: the first call may compile
    start = time.perf_counter()
    engine._forward([probe])
    per_voxel = (time.perf_counter() - start) / math.prod(probe.read_shape)
    one_pass = per_voxel * sum(math.prod(t.read_shape) for t in engine.plan.tiles)
    chosen = next((f for f in flips if f * one_pass <= seconds), 1)
    log.info("test-time augmentation: %d flip(s); one pass over the volume takes about %.0f s, "
             "%.0f s allowed", chosen, one_pass, seconds)
    return chosen


def _probe_tile(plan: TilePlan) -> Tile:
    """The first tile, cut to at most :data:`PROBE_VOXELS` (sides multiples of the pooling)."""
    first = plan.tiles[0]
    sides = list(first.read_shape)
    while math.prod(sides) > PROBE_VOXELS and max(sides) > plan.multiple_of:
        axis = sides.index(max(sides))
        sides[axis] = max(plan.multiple_of, round_up(sides[axis] // 2, plan.multiple_of))
    read = tuple(slice(s.start, s.start + n) for s, n in zip(first.read, sides, strict=True))
    return Tile(read=read, crop=read, write=read)


def _run(engine: _Engine, result: np.ndarray | None, sink: _Sink | None, *,
         progress: bool) -> None:
    """Run every tile of the engine's plan, slab by slab along the first axis."""
    plan = engine.plan
    rows: dict[int, list[Tile]] = {}
    for tile in plan.tiles:
        rows.setdefault(tile.write[0].start, []).append(tile)
    with tqdm(total=plan.shape[0], desc="predicting", unit="slice",
              disable=not progress) as bar:
        for start, tiles in rows.items():
            stop = tiles[0].write[0].stop
            slab = (result[start:stop] if result is not None
                    else empty((stop - start, *plan.shape[1:]), np.float32))
            engine.run(tiles, slab, start)
            if sink is not None:
                sink.write(slab)
            bar.update(stop - start)


def predict_tiled(
    network: Forward,
    image: np.ndarray,
    *,
    plan: TilePlan,
    batch_size: int = 1,
    out: np.ndarray | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Apply ``network`` to ``image`` along a given tile plan and stitch the result.

    The engine of :func:`predict_volume` without normalisation or memory
    planning: for a fixed :class:`~cryocare.tiling.TilePlan`.

    Parameters
    ----------
    network : callable
        Maps a float32 batch ``(n, *read_shape)`` to an array of the same shape.
    image : ndarray
        The image (may be a read-only memory map; it is never modified).
    plan : TilePlan
        From :func:`cryocare.tiling.plan_tiles` for ``image.shape``.
    batch_size : int
        Tiles of equal shape passed to ``network`` at once.
    out : ndarray, optional
        Float32 array of ``image.shape`` to write into (e.g. a memory map).
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray
        float32 prediction, shape of ``image``.

    Examples
    --------
    >>> from cryocare.tiling import plan_tiles
    >>> plan = plan_tiles((100, 70), tile_shape=(64, 64), halo=8, multiple_of=4)
    >>> out = predict_tiled(lambda batch: 2 * batch, np.ones((100, 70), np.float32), plan=plan)
    >>> float(out.min()), float(out.max())
    (2.0, 2.0)
    """
    if tuple(image.shape) != plan.shape:
        raise InputError(f"tiling: plan is for shape {plan.shape}, image has shape {image.shape}")
    if out is None:
        out = empty(plan.shape, np.float32)
    elif out.shape != plan.shape:
        raise InputError(f"tiling: output has shape {out.shape}, expected {plan.shape}")
    engine = _Engine(network, plan, Normalization(0.0, 1.0), [image],
                     batch_size=max(1, int(batch_size)))
    _run(engine, out, None, progress=progress)
    return out


def flip_subsets(n_dim: int, flips: int) -> list[tuple[int, ...]]:
    """The spatial axes flipped for each of ``flips`` test-time augmentations (0-based).

    The subsets are taken in a fixed order: none, the last axis (X), the one
    before (Y), both, then the same with the first axis (Z) flipped too; so
    2 flips average over X mirrors, 4 over X and Y mirrors, 8 (3-D) over all.

    Examples
    --------
    >>> flip_subsets(3, 4)
    [(), (2,), (1,), (1, 2)]
    >>> len(flip_subsets(2, 4)), flip_subsets(3, 1)
    (4, [()])
    """
    everything = 2**n_dim
    if flips not in (1, 2, 4, 8) or flips > everything:
        raise InputError(f"tta: expected 1, 2, 4 or {everything} flips for {n_dim}-D images, "
                         f"got {flips!r}")
    order = itertools.product((0, 1), repeat=n_dim)  # X varies fastest
    subsets = [tuple(axis for axis, bit in enumerate(bits) if bit) for bits in order]
    return subsets[:flips]


def tta_flips(tta: bool | int, n_dim: int) -> int:
    """Number of flips that ``tta`` asks for: False/0/1 none, True all, else 2, 4 or 8.

    Examples
    --------
    >>> tta_flips(True, 3), tta_flips(False, 3), tta_flips(4, 3), tta_flips(True, 2)
    (8, 1, 4, 4)
    """
    if tta is True:
        return 2**n_dim
    if tta is False or tta in (0, 1):
        return 1
    flips = int(tta)
    flip_subsets(n_dim, flips)  # validates
    return flips


def flip_averaged(network: Forward, flips: int | None = None) -> Forward:
    """``network`` averaged over flips of its input along the spatial axes.

    Flips keep the geometry of a tomogram: the missing wedge is symmetric
    under them (unlike 90° rotations, which would turn it), so each flipped
    copy looks like training data and the average of the un-flipped outputs
    has less variance. The batch axis (the first) is never flipped.

    Parameters
    ----------
    network : callable
        Batch ``(n, *spatial)`` to the same shape.
    flips : int, optional
        How many of the flips (see :func:`flip_subsets`); None: all of them.

    Examples
    --------
    >>> import numpy as np
    >>> ramp = lambda batch: batch + np.arange(batch.shape[-1])  # not flip-symmetric
    >>> flip_averaged(ramp)(np.zeros((1, 2, 4), np.float32))[0, 0].tolist()
    [1.5, 1.5, 1.5, 1.5]
    """
    def averaged(batch: np.ndarray) -> np.ndarray:
        n_dim = batch.ndim - 1
        subsets = flip_subsets(n_dim, 2**n_dim if flips is None else flips)
        total = np.zeros(batch.shape, np.float32)
        for spatial in subsets:
            axes = tuple(axis + 1 for axis in spatial)
            flipped = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
            result = network(flipped)
            total += np.flip(result, axes) if axes else result
        return total / len(subsets)

    return averaged


def denoise_file(
    model,
    even: str | os.PathLike,
    odd: str | os.PathLike,
    output: str | os.PathLike,
    options: PredictOptions | None = None,
    *,
    overwrite: bool = False,
    **settings: Any,
) -> Path:
    """Denoise an even/odd pair of MRC files into ``output``, streaming slab by slab.

    The inputs are memory-mapped and the output is written with
    :func:`cryocare.io.open_writer`: atomically, header statistics complete,
    never replacing an existing file unless ``overwrite``. Peak host memory
    is that of the tile plan, not of the tomogram.

    Parameters
    ----------
    model : CAREModel
        A trained model (anything with a ``denoise(even, odd, options, out=...)``).
    even, odd, output : path
        Input halves and the output file.
    options : PredictOptions, optional
        How to predict (:class:`cryocare.config.PredictOptions`).
    overwrite : bool
        Replace an existing output.
    **settings
        Single options changed (``memory="2G"``, ``tta=4``, ...).

    Returns
    -------
    Path
        The file written.

    Examples
    --------
    With a trained model (training takes a while, so this is not run)::

        denoise_file(model, "TS_01_EVN.mrc", "TS_01_ODD.mrc", "TS_01_denoised.mrc",
                     memory="2G")
    """
    options = PredictOptions.merged(options, **settings)
    even_data, odd_data, info = io.read_pair(even, odd, mmap=True)
    with io.open_writer(output, info.shape, like=info, overwrite=overwrite,
                        label=f"CARE denoised from {Path(even).name}") as writer:
        model.denoise(even_data, odd_data, options, out=writer)
    return Path(output)
