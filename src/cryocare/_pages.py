"""Large arrays on plain pages.

NumPy asks the kernel for transparent huge pages on every array of 4 MiB or
more (``madvise(MADV_HUGEPAGE)``). Where the kernel then compacts memory to
find free 2 MiB pages (``/sys/kernel/mm/transparent_hugepage/defrag`` set to
``madvise``, a common default), the first touch of such an array can stall
in the kernel for a long time: on the project's machine, the fresh arrays of
one level-by-level U-Net pass over 128×256×256 voxels cost 2.0 s of system
time, against 0.3 s on plain pages, for a pass of 4 s. :func:`empty` gives
arrays in their own anonymous memory map instead: plain pages, page-aligned
(so TensorFlow can share them through DLPack, which needs 64-byte alignment),
unmapped when the array is freed. Nothing global changes.
"""

from __future__ import annotations

import concurrent.futures
import math
import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backends import cpu_count

__all__ = ["copy", "empty"]

#: Arrays smaller than this come from NumPy as usual.
MIN_BYTES = 4 * 2**20
#: Bytes to which every array's data are aligned.
ALIGNMENT = 64


def empty(shape: int | Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array, 64-byte aligned; in its own memory map when large.

    >>> a, b = empty((3, 1024, 1024)), empty(5, np.int16)
    >>> a.shape, a.dtype, a.flags.c_contiguous, a.ctypes.data % 64, b.ctypes.data % 64
    ((3, 1024, 1024), dtype('float32'), True, 0, 0)
    """
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes < MIN_BYTES:  # NumPy's own memory, 64-byte aligned as TensorFlow wants it
        raw = np.empty(nbytes + ALIGNMENT, np.uint8)
        start = -raw.ctypes.data % ALIGNMENT
        return raw[start:start + nbytes].view(dtype).reshape(shape)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype, count=count).reshape(shape)


#: Copies smaller than this run in the calling thread.
PARALLEL_BYTES = 16 * 2**20


def copy(destination: np.ndarray, source: np.ndarray) -> None:
    """``destination[...] = source``, in slices over the CPUs this process may use.

    NumPy copies in one thread (and releases the GIL meanwhile); between the
    forward passes of :mod:`cryocare.streaming` these copies were a tenth of
    the time with the other cores idle.

    >>> a, b = np.arange(24.0).reshape(2, 3, 4), np.zeros((2, 3, 4))
    >>> copy(b, a); bool((a == b).all())
    True
    """
    source = np.broadcast_to(source, destination.shape)
    axis = next((a for a, n in enumerate(destination.shape) if n > 1), None)
    workers = 1 if axis is None else min(cpu_count(), destination.shape[axis])
    if destination.nbytes < PARALLEL_BYTES or workers < 2:
        np.copyto(destination, source)
        return
    bounds = np.linspace(0, destination.shape[axis], workers + 1).astype(int)
    parts = [(destination[(slice(None),) * axis + (slice(a, b),)],
              source[(slice(None),) * axis + (slice(a, b),)])
             for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    for future in [_pool().submit(np.copyto, *pair) for pair in parts]:
        future.result()


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=cpu_count(),
                                                      thread_name_prefix="cryocare-copy")
    return _POOL
