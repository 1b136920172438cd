"""Dose-fractionated movies to even and odd frame sums (P2P pairs).

A movie is a stack of frames ``(n_frames, Y, X)``: an MRC stack (``.mrc``,
``.mrcs``) or a TIFF file. Frames are optionally multiplied by a gain
reference, optionally aligned by a rigid whole-frame shift, and summed into
two halves: the even-indexed frames (0, 2, 4, …) and the odd-indexed frames
(1, 3, 5, …). Each frame goes into exactly one half, so the shot noise of the
two sums is independent and the pair is a Noise2Noise training pair.

Alignment (:func:`estimate_shifts`) uses all frames: every frame is
cross-correlated with the sum of all *other* aligned frames (so its own noise
never correlates with itself), after a Gaussian low-pass that keeps the
correlation peak smooth; the peak is located to sub-pixel precision by
upsampled DFT around it (Guizar-Sicairos et al. 2008, as in
:func:`skimage.registration.phase_cross_correlation`). Three rounds refine
the reference. Shifts are applied in Fourier space (edges wrap around by the
shift, a few pixels for a typical drift), the same for both halves.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> movie = rng.poisson(5.0, size=(6, 32, 32)).astype(np.float32)
>>> halves = split_frames(movie)
>>> halves.even.shape, halves.n_even, halves.n_odd
((32, 32), 3, 3)
>>> bool(np.allclose(halves.even + halves.odd, movie.sum(axis=0)))
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.ndimage

from .errors import InputError, OutputExistsError

__all__ = [
    "FrameHalves",
    "apply_shifts",
    "estimate_shifts",
    "read_movie",
    "split_frames",
    "split_movies",
]

log = logging.getLogger(__name__)

MOVIE_SUFFIXES = (".mrc", ".mrcs", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class FrameHalves:
    """Even and odd frame sums of one movie.

    Attributes
    ----------
    even, odd : ndarray of float32, shape (Y, X)
        Sum of the even-indexed (0, 2, …) and of the odd-indexed frames.
    shifts : ndarray of float64, shape (n_frames, 2)
        ``(dy, dx)`` shift applied to each frame (zeros without alignment).
    n_even, n_odd : int
        Number of frames in each sum.
    """

    even: np.ndarray
    odd: np.ndarray
    shifts: np.ndarray
    n_even: int
    n_odd: int


def read_movie(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Read a movie as a ``(n_frames, Y, X)`` stack.

    MRC files (``.mrc``, ``.mrcs``) are memory-mapped (``mmap=True``) or
    read as float32; TIFF files (one page per frame) are read whole with
    :mod:`tifffile`. A single 2-D image counts as a one-frame movie.

    Raises
    ------
    InputError
        Unknown suffix, unreadable file, or data that is not 2-D or 3-D.
    """
    from . import io

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _TIFF:
        import tifffile

        if not path.is_file():
            raise InputError(f"{path}: no such movie file")
        try:
            data = tifffile.imread(path)
        except (OSError, ValueError, tifffile.TiffFileError) as error:
            raise InputError(f"{path}: not a readable TIFF movie ({error})") from None
    elif suffix in (".mrc", ".mrcs", ".st"):
        data = io.read(path, mmap=mmap)
    else:
        raise InputError(f"{path}: expected a movie with suffix {', '.join(MOVIE_SUFFIXES)}, "
                         f"got {suffix or 'none'}")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or 0 in data.shape:
        raise InputError(f"{path}: expected a stack of frames (n, Y, X), got shape {data.shape}")
    return data


def _read_gain(gain, shape: tuple[int, int]) -> np.ndarray | None:
    if gain is None:
        return None
    if isinstance(gain, (str, os.PathLike)):
        name = str(gain)
        frames = read_movie(gain, mmap=False)
        if frames.shape[0] != 1:
            raise InputError(f"{name}: a gain reference is one image, got {frames.shape[0]}")
        gain = frames[0]
    else:
        name = "gain"
    gain = np.asarray(gain, dtype=np.float32)
    if gain.shape != tuple(shape):
        raise InputError(f"{name}: gain reference of shape {gain.shape} does not match frames "
                         f"of shape {tuple(shape)}")
    if not np.isfinite(gain).all():
        raise InputError(f"{name}: gain reference has NaN or infinite values")
    return gain


def _lowpass_spectrum(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Fourier transform of a Gaussian of ``sigma`` pixels, for ``rfft2`` of ``shape``."""
    fy = scipy.fft.fftfreq(shape[0])[:, None]
    fx = scipy.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))


def _peak(correlation: np.ndarray) -> np.ndarray:
    """Integer position of the maximum, as a signed shift."""
    index = np.array(np.unravel_index(np.argmax(correlation), correlation.shape), float)
    size = np.array(correlation.shape)
    index[index > size // 2] -= size[index > size // 2]
    return index


def _refine(spectrum: np.ndarray, coarse: np.ndarray, upsample: int) -> np.ndarray:
    """Sub-pixel peak near ``coarse`` of the correlation whose 2-D DFT is ``spectrum``.

    The correlation is evaluated on a ``1 / upsample`` grid of ±0.75 pixel
    around ``coarse`` by a matrix-multiply DFT (Guizar-Sicairos et al. 2008).
    """
    ny, nx = spectrum.shape
    region = int(np.ceil(upsample * 1.5)) | 1
    steps = (np.arange(region) - region // 2) / upsample
    ry, rx = coarse[0] + steps, coarse[1] + steps
    ey = np.exp(2j * np.pi * ry[:, None] * scipy.fft.fftfreq(ny)[None, :])
    ex = np.exp(2j * np.pi * scipy.fft.fftfreq(nx)[:, None] * rx[None, :])
    local = (ey @ spectrum @ ex).real
    iy, ix = np.unravel_index(np.argmax(local), local.shape)
    return np.array([ry[iy], rx[ix]])


def estimate_shifts(
    frames: np.ndarray,
    *,
    gain: np.ndarray | None = None,
    sigma: float = 2.0,
    upsample: int = 50,
    iterations: int = 3,
    max_shift: float | None = None,
) -> np.ndarray:
    """Rigid shift of every frame that aligns it with the others.

    Parameters
    ----------
    frames : ndarray, shape (n_frames, Y, X)
        The movie (a memory map is read once).
    gain : ndarray, shape (Y, X), optional
        Gain reference the frames are multiplied by first.
    sigma : float
        Gaussian low-pass (pixels) applied before correlating.
    upsample : int
        Sub-pixel precision is ``1 / upsample`` pixel.
    iterations : int
        Rounds of re-building the reference from the aligned frames.
    max_shift : float, optional
        Largest shift searched, in pixels (default: a quarter of the frame).

    Returns
    -------
    ndarray of float64, shape (n_frames, 2)
        ``(dy, dx)`` per frame, to be applied with :func:`apply_shifts`;
        their mean is zero (the aligned sum stays where the movie was on
        average).

    Examples
    --------
    >>> import numpy as np, scipy.ndimage
    >>> rng = np.random.default_rng(1)
    >>> image = scipy.ndimage.gaussian_filter(rng.normal(size=(64, 64)), 3)
    >>> true = np.array([[0.0, 0.0], [1.5, -2.25], [3.0, -4.5]])
    >>> frames = apply_shifts(np.stack([image] * 3), true)  # frame i moved by true[i]
    >>> found = estimate_shifts(frames)
    >>> bool(np.allclose(found - found.mean(0), -(true - true.mean(0)), atol=0.1))
    True
    """
    stack = _as_frames(frames)
    if gain is not None:
        gain = _read_gain(gain, stack.shape[1:])
    n, ny, nx = stack.shape
    if n == 1:
        return np.zeros((1, 2))
    limit = max_shift if max_shift is not None else min(ny, nx) / 4
    filt = _lowpass_spectrum((ny, nx), sigma)
    spectra = np.empty((n, ny, nx // 2 + 1), np.complex128)
    for i in range(n):
        frame = np.asarray(stack[i], dtype=np.float64)
        if gain is not None:
            frame = frame * gain
        spectra[i] = scipy.fft.rfft2(frame - frame.mean()) * filt
    ky = scipy.fft.fftfreq(ny)[:, None]
    kx = scipy.fft.rfftfreq(nx)[None, :]
    shifts = np.zeros((n, 2))
    for _ in range(max(1, iterations)):
        phases = np.exp(-2j * np.pi * (ky[None] * shifts[:, 0, None, None]
                                       + kx[None] * shifts[:, 1, None, None]))
        aligned = spectra * phases
        total = aligned.sum(axis=0)
        new = np.empty_like(shifts)
        for i in range(n):
            cross = (total - aligned[i]) * spectra[i].conj()  # reference ⋆ frame
            correlation = scipy.fft.irfft2(cross, s=(ny, nx))
            coarse = _peak(_window(correlation, limit))
            new[i] = _refine(scipy.fft.fft2(correlation), coarse, upsample)
        # new[i] = mean of the others' (drift + applied shift) - drift[i]; solve for the
        # drifts so that small movies converge in one round (no leave-one-out bias).
        others = (shifts.sum(axis=0) - shifts) / (n - 1)
        d = new - others
        shifts = (n - 1) / n * (d - d.mean(axis=0))
    log.debug("frame shifts (dy, dx): %s", np.round(shifts, 2).tolist())
    return shifts


def _window(correlation: np.ndarray, limit: float) -> np.ndarray:
    """Correlation with shifts beyond ``limit`` pixels set to its minimum."""
    ny, nx = correlation.shape
    dy = np.minimum(np.arange(ny), ny - np.arange(ny))[:, None]
    dx = np.minimum(np.arange(nx), nx - np.arange(nx))[None, :]
    return np.where((dy <= limit) & (dx <= limit), correlation, correlation.min())


def apply_shifts(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift every frame by its ``(dy, dx)`` in Fourier space; returns float32 frames.

    Examples
    --------
    >>> import numpy as np
    >>> frames = np.zeros((1, 8, 8), np.float32); frames[0, 2, 3] = 1
    >>> moved = apply_shifts(frames, np.array([[1.0, 2.0]]))
    >>> np.unravel_index(int(np.argmax(moved[0])), (8, 8))
    (np.int64(3), np.int64(5))
    """
    stack = _as_frames(frames)
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.shape != (stack.shape[0], 2):
        raise InputError(f"shifts: expected shape ({stack.shape[0]}, 2), got {shifts.shape}")
    out = np.empty(stack.shape, np.float32)
    for i in range(stack.shape[0]):
        out[i] = _shift(np.asarray(stack[i], np.float64), shifts[i])
    return out


def _shift(frame: np.ndarray, shift: np.ndarray) -> np.ndarray:
    if not np.any(shift):
        return frame.astype(np.float32)
    spectrum = scipy.ndimage.fourier_shift(scipy.fft.rfft2(frame), shift, n=frame.shape[1])
    return scipy.fft.irfft2(spectrum, s=frame.shape).astype(np.float32)


def _as_frames(frames) -> np.ndarray:
    if not hasattr(frames, "ndim"):
        frames = np.asarray(frames)
    if frames.ndim != 3 or 0 in frames.shape:
        raise InputError(f"frames: expected a stack (n_frames, Y, X), got shape {frames.shape}")
    if not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise InputError(f"frames: expected real numbers, got dtype {frames.dtype}")
    return frames


def split_frames(
    frames: np.ndarray,
    *,
    gain: np.ndarray | str | os.PathLike | None = None,
    align: bool = False,
    max_shift: float | None = None,
) -> FrameHalves:
    """Sum the even- and the odd-indexed frames of a movie.

    Parameters
    ----------
    frames : ndarray, shape (n_frames, Y, X)
        The movie, at least two frames (memory maps are read frame by frame).
    gain : ndarray or path, optional
        Gain reference (an image of the frame size) the frames are
        multiplied by.
    align : bool
        Estimate rigid shifts on all frames (:func:`estimate_shifts`) and
        apply them before summing.
    max_shift : float, optional
        Largest shift searched when aligning, in pixels.

    Returns
    -------
    FrameHalves
    """
    stack = _as_frames(frames)
    if stack.shape[0] < 2:
        raise InputError(f"frames: expected at least 2 frames to split, got {stack.shape[0]}")
    gain_image = _read_gain(gain, stack.shape[1:])
    if align:
        shifts = estimate_shifts(stack, gain=gain_image, max_shift=max_shift)
    else:
        shifts = np.zeros((stack.shape[0], 2))
    sums = np.zeros((2, *stack.shape[1:]), np.float64)
    for i in range(stack.shape[0]):
        frame = np.asarray(stack[i], dtype=np.float64)
        if gain_image is not None:
            frame = frame * gain_image
        sums[i % 2] += _shift(frame, shifts[i]) if align else frame
    n = stack.shape[0]
    return FrameHalves(even=sums[0].astype(np.float32), odd=sums[1].astype(np.float32),
                       shifts=shifts, n_even=(n + 1) // 2, n_odd=n // 2)


def _movie_shape(path: Path) -> tuple[int, ...]:
    """Shape of a movie from its header, without reading the frames."""
    from . import io

    if path.suffix.lower() in _TIFF:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.series[0].shape)
        except (OSError, ValueError, tifffile.TiffFileError) as error:
            raise InputError(f"{path}: not a readable TIFF movie ({error})") from None
    else:
        shape = io.read_info(path).shape
    return shape if len(shape) == 3 else (1, *shape)


def _pixel_size(path: Path) -> float:
    from . import io

    if path.suffix.lower() in _TIFF:
        return 0.0
    return float(io.read_info(path).voxel_size[-1])


def split_movies(
    movies: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    gain: str | os.PathLike | np.ndarray | None = None,
    align: bool = False,
    pixel_size: float | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[tuple[Path, Path]]:
    """Split many movies into ``<stem>_EVN.mrc`` and ``<stem>_ODD.mrc`` in ``output``.

    All movies must have the same number of frames and frame size (checked
    from their headers before any work). The names carry the ``_EVN`` /
    ``_ODD`` markers that :func:`cryocare.halves.match_halves` recognises.

    Parameters
    ----------
    movies : sequence of path
        Movie files (MRC stacks or TIFF).
    output : path
        Folder for the sums (created if needed).
    gain : path or ndarray, optional
        Gain reference for all movies.
    align : bool
        Align the frames of each movie first.
    pixel_size : float, optional
        Pixel size in Å written to the sums; default: from each MRC header
        (0, unknown, for TIFF).
    overwrite : bool
        Replace existing outputs.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of (Path, Path)
        The even and odd file of every movie, in input order.

    Examples
    --------
    ::

        from cryocare.frames import split_movies
        split_movies(sorted(Path("movies").glob("*.tif")), "halves", gain="gain.mrc",
                     align=True, progress=True)
    """
    from tqdm.auto import tqdm

    from . import io

    paths = [Path(m) for m in movies]
    if not paths:
        raise InputError("split_movies: expected at least one movie")
    shapes = [_movie_shape(p) for p in paths]
    for path, shape in zip(paths, shapes, strict=True):
        if shape != shapes[0]:
            raise InputError(f"{path}: {shape[0]} frames of {shape[1]} x {shape[2]}, but "
                             f"{paths[0]} has {shapes[0][0]} frames of "
                             f"{shapes[0][1]} x {shapes[0][2]}; all movies must match")
    output = Path(output)
    targets = [(output / f"{p.stem}_EVN.mrc", output / f"{p.stem}_ODD.mrc") for p in paths]
    names = [t for pair in targets for t in pair]
    if len(set(names)) != len(names):
        raise InputError("split_movies: two movies have the same file name stem")
    if not overwrite:
        for target in names:
            if target.exists():
                raise OutputExistsError(f"{target}: exists already (pass overwrite=True)")
    gain_image = None if gain is None else _read_gain(gain, shapes[0][1:])
    output.mkdir(parents=True, exist_ok=True)
    for path, (even_path, odd_path) in tqdm(list(zip(paths, targets, strict=True)),
                                            desc="split frames", disable=not progress):
        halves = split_frames(read_movie(path), gain=gain_image, align=align)
        size = _pixel_size(path) if pixel_size is None else float(pixel_size)
        for target, image, which in ((even_path, halves.even, "even"),
                                     (odd_path, halves.odd, "odd")):
            io.write(target, image, voxel_size=size, overwrite=overwrite,
                     label=f"{which} frames of {path.name}"[:80])
        log.info("%s: %d + %d frames -> %s, %s", path, halves.n_even, halves.n_odd,
                 even_path.name, odd_path.name)
    return targets
