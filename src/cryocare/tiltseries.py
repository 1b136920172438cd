"""Tilt series for T2T: one movie per tilt to even/odd tilt-series stacks.

Each tilt of a dose-fractionated tilt series is a movie; its even and odd
frame sums (:func:`cryocare.frames.split_frames`) become the projections of
an even and an odd tilt series. Reconstructing both
(:func:`cryocare.reconstruct.reconstruct`) gives the even/odd tomogram pair
Cryo-CARE trains on.

Tilt angles come from an IMOD ``.tlt`` or ``.rawtlt`` file: one angle in
degrees per line, in the order of the stack. Movies are given in that same
order and their number must match the number of angles.

Tilt series and tomograms already split by other tools are paired by name
with :func:`cryocare.halves.find_halves` (``_EVN``/``_ODD``,
``_even``/``_odd``, ``even/`` and ``odd/`` folders); :func:`find_tilt_file`
finds the angle file that belongs to a stack.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> movies = [rng.poisson(3.0, size=(4, 16, 16)).astype(np.float32) for _ in range(3)]
>>> series = split_tilt_movies(movies, [-3.0, 0.0, 3.0])
>>> series.even.shape, series.angles.tolist()
((3, 16, 16), [-3.0, 0.0, 3.0])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, OutputExistsError

__all__ = [
    "TiltSeriesHalves",
    "find_tilt_file",
    "read_tilt_angles",
    "split_tilt_movies",
    "write_tilt_angles",
    "write_tilt_series_halves",
]

log = logging.getLogger(__name__)

TILT_SUFFIXES = (".tlt", ".rawtlt")


@dataclass(frozen=True, eq=False)
class TiltSeriesHalves:
    """Even and odd tilt series built from one movie per tilt.

    Attributes
    ----------
    even, odd : ndarray of float32, shape (n_tilts, Y, X)
        Even and odd frame sums of every tilt, in the order of ``angles``.
    angles : ndarray of float64, shape (n_tilts,)
        Tilt angles in degrees.
    shifts : list of ndarray
        Frame shifts ``(n_frames, 2)`` of every movie (zeros without alignment).
    """

    even: np.ndarray
    odd: np.ndarray
    angles: np.ndarray
    shifts: list


def read_tilt_angles(path: str | os.PathLike) -> np.ndarray:
    """Read an IMOD ``.tlt`` / ``.rawtlt`` file: one angle (degrees) per line.

    Blank lines are ignored; anything else that is not one number is an
    error naming the line.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "ts.tlt"
    >>> _ = path.write_text("  -3.00\\n   0.00\\n   3.00\\n\\n")
    >>> read_tilt_angles(path).tolist()
    [-3.0, 0.0, 3.0]
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InputError(f"{path}: cannot read the tilt-angle file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file of tilt angles") from None
    angles = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            (value,) = line.split()
            angle = float(value)
        except ValueError:
            raise InputError(f"{path}, line {number}: expected one tilt angle in degrees, "
                             f"found {line.strip()!r}") from None
        if not np.isfinite(angle) or abs(angle) > 90:
            raise InputError(f"{path}, line {number}: expected an angle within ±90°, "
                             f"found {angle}")
        angles.append(angle)
    if not angles:
        raise InputError(f"{path}: no tilt angles in the file")
    return np.array(angles, dtype=np.float64)


def write_tilt_angles(path: str | os.PathLike, angles, *, overwrite: bool = False) -> Path:
    """Write angles as an IMOD ``.tlt`` file (atomically); returns the path.

    Examples
    --------
    >>> import tempfile
    >>> path = write_tilt_angles(Path(tempfile.mkdtemp()) / "ts.tlt", [-3, 0, 3])
    >>> read_tilt_angles(path).tolist()
    [-3.0, 0.0, 3.0]
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists already (pass overwrite=True to replace it)")
    text = "".join(f"{float(a):8.2f}\n" for a in np.ravel(angles))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def find_tilt_file(stack: str | os.PathLike) -> Path:
    """The tilt-angle file of a tilt-series stack, found next to it by name.

    Looks for ``<stem>.tlt``, then ``<stem>.rawtlt``, then the same with the
    half marker removed (``TS_01_EVN.st`` → ``TS_01.tlt``; ``even/TS_01.st``
    → ``TS_01.tlt`` in ``even/``, then in its parent folder).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "TS_01.tlt").write_text("0.0\\n")
    >>> find_tilt_file(folder / "TS_01_EVN.st").name
    'TS_01.tlt'
    """
    from .halves import half_key

    stack = Path(stack)
    stems = [stack.with_suffix("")]
    for half in ("even", "odd"):
        key = half_key(stack, half)
        if key is not None:
            key_path = Path(key)
            stem = key_path.with_suffix("")
            stem = stem.with_name(stem.name.rstrip("_-."))
            if "*" in key_path.parts:  # marker was a folder: same folder, then its parent
                stems += [stack.parent / stem.name, stack.parent.parent / stem.name]
            else:
                stems.append(stem)
    candidates = [s.with_name(s.name + suffix) for s in stems for suffix in TILT_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{stack}: no tilt-angle file found; looked for "
                     + ", ".join(str(c) for c in candidates))


def split_tilt_movies(
    movies: Sequence,
    angles,
    *,
    gain=None,
    align: bool = False,
    progress: bool = False,
) -> TiltSeriesHalves:
    """Even and odd tilt series from one movie per tilt.

    Parameters
    ----------
    movies : sequence of ndarray or path
        One movie ``(n_frames, Y, X)`` per tilt (arrays or files readable by
        :func:`cryocare.frames.read_movie`), in the order of ``angles``. All
        must have the same number of frames and frame size.
    angles : sequence of float or path
        Tilt angles in degrees, or an IMOD ``.tlt``/``.rawtlt`` file.
    gain : ndarray or path, optional
        Gain reference for all movies.
    align : bool
        Align the frames of every movie before summing.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TiltSeriesHalves
    """
    from tqdm.auto import tqdm

    from .frames import read_movie, split_frames

    if isinstance(angles, (str, os.PathLike)):
        source = str(angles)
        angles = read_tilt_angles(angles)
    else:
        source = "angles"
        angles = np.asarray(angles, dtype=np.float64).ravel()
    movies = list(movies)
    if len(movies) != angles.size:
        raise InputError(f"{source}: {angles.size} tilt angles, but {len(movies)} movies; "
                         "expected one movie per tilt")
    if not movies:
        raise InputError("split_tilt_movies: expected at least one movie")
    even, odd, shifts = [], [], []
    first = None
    for index, movie in enumerate(tqdm(movies, desc="tilts", disable=not progress)):
        name = str(movie) if isinstance(movie, (str, os.PathLike)) else f"movie {index}"
        frames = read_movie(movie) if isinstance(movie, (str, os.PathLike)) else movie
        if first is None:
            first = (name, tuple(frames.shape))
        elif tuple(frames.shape) != first[1]:
            raise InputError(f"{name}: frames of shape {tuple(frames.shape)}, but {first[0]} "
                             f"has {first[1]}; all movies must match")
        halves = split_frames(frames, gain=gain, align=align)
        even.append(halves.even)
        odd.append(halves.odd)
        shifts.append(halves.shifts)
    log.info("built even/odd tilt series of %d tilts", len(even))
    return TiltSeriesHalves(even=np.stack(even), odd=np.stack(odd), angles=angles,
                            shifts=shifts)


def write_tilt_series_halves(
    series: TiltSeriesHalves,
    output: str | os.PathLike,
    name: str,
    *,
    pixel_size: float = 0.0,
    overwrite: bool = False,
) -> tuple[Path, Path, Path]:
    """Write ``<name>_EVN.st``, ``<name>_ODD.st`` and ``<name>.tlt`` into ``output``.

    Returns the three paths. Nothing is written if any of them exists and
    ``overwrite`` is False.
    """
    from . import io

    output = Path(output)
    paths = (output / f"{name}_EVN.st", output / f"{name}_ODD.st", output / f"{name}.tlt")
    if not overwrite:
        for path in paths:
            if path.exists():
                raise OutputExistsError(f"{path}: exists already (pass overwrite=True)")
    output.mkdir(parents=True, exist_ok=True)
    io.write(paths[0], series.even, voxel_size=pixel_size, overwrite=overwrite,
             label="even frames of every tilt")
    io.write(paths[1], series.odd, voxel_size=pixel_size, overwrite=overwrite,
             label="odd frames of every tilt")
    write_tilt_angles(paths[2], series.angles, overwrite=overwrite)
    return paths
