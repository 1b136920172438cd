"""Read and write tomograms: MRC (read and write) and TIFF (read), and even/odd pairs.

Layers, from the bottom up: the header is read with :mod:`mrcfile` or
:mod:`tifffile` (:func:`read_info`), the data block is mapped with
:class:`numpy.memmap` at the header's data offset (``read(..., mmap=True)``)
or copied from it as float32 (:func:`read`), and MRC files are written
through :mod:`mrcfile` to a temporary file that atomically replaces the
target (:func:`write`). Volumes larger than memory are written slab by slab
with :func:`open_writer`. Inputs are checked before any work with
:func:`validate`, :func:`validate_pair` and :func:`check_inputs`: headers
first, then a streamed scan for NaN and infinite values
(:func:`check_finite`) that never holds a whole volume in memory.

Arrays are indexed (Z, Y, X), as in :mod:`mrcfile`. Voxel sizes and origins
are given in (Z, Y, X) order, in Å; the MRC header stores them as (x, y, z).
Bad input raises :class:`~cryocare.errors.InputError` with a one-line message
naming the file; a write that fails (no space, no permission) raises
:class:`~cryocare.errors.OutputError` naming the file and leaves nothing
behind; no :mod:`warnings` are emitted.

Temporary files are named ``.<name>.cryocare-<host>-<pid>-<token>.tmp``
beside the target; one left by a process that was killed is removed by the
next write to the same target on the same host.
"""

from __future__ import annotations

# The code lives in private submodules, from the bottom up: _common (VolumeInfo, the
# data layout), _files (temporary files, output checks), _mrc and _tiff (headers of each
# format), _read (reading, memory maps), _validate (input checks, finite scans) and _write
# (write, SlabWriter). Import from cryocare.io, not from them.
from ._common import VolumeInfo
from ._files import check_output, remove_stale_temporaries, temporary_path
from ._read import read, read_info, read_pair, read_region, release_pages
from ._validate import check_finite, check_inputs, validate, validate_pair
from ._write import SlabWriter, open_writer, write

__all__ = ["VolumeInfo", "SlabWriter", "read_info", "read", "read_pair", "write", "open_writer",
           "read_region", "release_pages", "check_finite", "validate", "validate_pair",
           "check_inputs", "check_output", "temporary_path", "remove_stale_temporaries"]
