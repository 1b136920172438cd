"""Checks that run before any work: halves matching, tile sizes sane, outputs named.

Outputs are checked by :func:`cryocare.io.check_output` (``volume=False``).
Keras-free: they run before the deep-learning backend is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..halves import MRC_SUFFIXES

__all__ = ["check_pair", "check_tiles", "denoised_name", "prediction_jobs"]


def check_pair(even: Path, odd: Path):
    """Headers, shapes and voxel sizes of an even/odd pair, then a streamed finite scan.

    Returns the even half's header (:class:`cryocare.io.VolumeInfo`).
    """
    from .. import io

    return io.validate_pair(even, odd)


def check_tiles(tiles, config, n_dim: int) -> None:
    """A fixed tile size must be larger than twice the network's margin."""
    from .. import nets
    from ..tiling import aligned_margin

    if not isinstance(tiles, tuple):
        return
    if len(tiles) not in (1, n_dim):
        raise InputError(f"--tiles: expected 1 or {n_dim} sizes (a tile SIZE in voxels), got "
                         f"{','.join(map(str, tiles))}")
    margin = aligned_margin(nets.halo(config), nets.multiple_of(config))
    if min(tiles) < 2 * margin:
        raise InputError(
            f"--tiles {','.join(map(str, tiles))}: a tile SIZE of at least {2 * margin} voxels "
            f"is needed (twice the network's margin of {margin}); --tiles is a size, not "
            f"cryoCARE's n_tiles count — use 'auto' to fit the memory budget")


def denoised_name(even: Path) -> str:
    """The output name of a pair: its name without the half marker, + ``_denoised.mrc``.

    Examples
    --------
    >>> [denoised_name(Path(n)) for n in ("TS_01_EVN.mrc", "rec_TS_01_half1.mrc", "tomo.rec")]
    ['TS_01_denoised.mrc', 'rec_TS_01_denoised.mrc', 'tomo_denoised.mrc']
    """
    from ..halves import pair_stem

    return f"{pair_stem(even)}_denoised.mrc"


def prediction_jobs(even: Sequence, odd: Sequence, output: Path) -> list[tuple[Path, Path, Path]]:
    """(even, odd, output) for every pair: files, folders and globs paired by name.

    ``output`` is the file for a single pair (if it has a volume extension and
    is no folder), else a folder for ``<name>_denoised.mrc``.
    """
    from ..halves import find_halves

    pairs = find_halves(even, odd)
    to_file = len(pairs) == 1 and output.suffix.lower() in MRC_SUFFIXES \
        and not output.is_dir()
    if len(pairs) > 1 and output.suffix and not output.is_dir():
        raise InputError(f"{output}: with {len(pairs)} tomograms, --output must be a folder")
    if to_file:
        return [(pairs[0][0], pairs[0][1], output)]
    jobs = [(e, o, output / denoised_name(e)) for e, o in pairs]
    names = [target.name for _, _, target in jobs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(f"--even: several pairs would be written to {', '.join(clashes)}")
    return jobs
