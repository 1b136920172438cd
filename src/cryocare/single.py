"""Tomograms without halves: zero-shot prediction of one volume with a trained model.

Many tomograms have no even/odd split (public archives, older collections,
tomograms reconstructed by someone else). A model trained Noise2Noise on
halves — the shipped pretrained model above all, which normalises every
tomogram by its own statistics — restores such a volume directly: the
network maps a noisy volume to its expected value, and the full tomogram is
a noisy volume with less noise than either half. This is *zero-shot*: no
training on the volume itself (fine-tuning needs two halves,
:func:`cryocare.recipe.train_on_pair`).

:func:`denoise_tomogram` is the one call for one volume (an array, or an MRC
or TIFF file); :func:`denoise_tomogram_file` streams a file to a file, slab by
slab, as :func:`cryocare.predict.denoise_file` does for pairs; and
:func:`output_paths` names the outputs of ``cryocare predict TOMO [TOMO ...]``.

Examples
--------
>>> from pathlib import Path
>>> [(i.name, o.name) for i, o in output_paths([Path("a/TS_01.mrc"), Path("b/TS_02.tif")],
...                                             Path("out"))]
[('TS_01.mrc', 'TS_01_denoised.mrc'), ('TS_02.tif', 'TS_02_denoised.mrc')]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import io
from .config import PredictOptions
from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel

__all__ = ["OUTPUT_SUFFIXES", "denoise_tomogram", "denoise_tomogram_file", "output_paths"]

logger = logging.getLogger(__name__)

#: What an output file may be called: MRC, the format every output is written in.
OUTPUT_SUFFIXES = (".mrc", ".rec", ".map")


def _model(model: Any) -> CAREModel:
    """A loaded model: ``model`` itself, or what :func:`cryocare.load_model` makes of it."""
    if hasattr(model, "predict"):
        return model
    from .modelfiles import load_model

    return load_model(model)


def denoise_tomogram(
    tomogram: np.ndarray | str | os.PathLike,
    *,
    model: Any = "pretrained",
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    options: PredictOptions | None = None,
    **settings: Any,
) -> np.ndarray | Path:
    """Denoise one tomogram without halves, zero-shot.

    Parameters
    ----------
    tomogram : ndarray or path
        The volume (2-D images work with a 2-D model), or an MRC or TIFF file
        (memory-mapped).
    model : CAREModel, path or str
        A loaded model, or anything :func:`cryocare.load_model` takes: a
        cryocare model folder, a cryoCARE 0.3.0 archive, or ``"pretrained"``
        (default: the shipped general model, which normalises each tomogram
        by its own statistics).
    output : path, optional
        Write the result to this MRC file (streamed slab by slab, atomically,
        the input's header kept when the input is a file) and return its path.
        Default: return the array.
    overwrite : bool
        Replace an existing ``output``.
    options : PredictOptions, optional
        How to predict (:class:`cryocare.config.PredictOptions`); ``settings``
        change single options (``memory``, ``tta``, ``precision``,
        ``normalize``, ``progress``, ...).

    Returns
    -------
    ndarray or Path
        The denoised volume (float32), or the file written.

    Examples
    --------
    The shipped model on a small simulated volume (loading it takes seconds)::

        import cryocare
        data = cryocare.simulate_tomogram((32, 64, 64), seed=0)
        denoised = cryocare.denoise_tomogram((data.even + data.odd) / 2)
        cryocare.denoise_tomogram("tomo.mrc", output="tomo_denoised.mrc", tta=True)
    """
    if isinstance(tomogram, (str, os.PathLike)):
        if output is not None:
            return denoise_tomogram_file(_model(model), tomogram, output, options,
                                         overwrite=overwrite, **settings)
        volume = io.read(tomogram, mmap=True)
    else:
        volume = np.asarray(tomogram)
        if not np.issubdtype(volume.dtype, np.number) or np.iscomplexobj(volume):
            raise InputError(f"tomogram: expected a real-valued array, found {volume.dtype}")
    if output is not None:
        output = Path(output)
        _check_suffix(output)
        with io.open_writer(output, volume.shape, overwrite=overwrite,
                            label="CARE denoised, zero-shot") as writer:
            _model(model).predict(volume, options, out=writer, **settings)
        return output
    return _model(model).predict(volume, options, **settings)


def denoise_tomogram_file(model: Any, tomogram: str | os.PathLike,
                          output: str | os.PathLike, options: PredictOptions | None = None, *,
                          overwrite: bool = False, **settings: Any) -> Path:
    """Denoise one tomogram file into ``output``, streaming slab by slab.

    The input (MRC or TIFF) is memory-mapped; the output is an MRC file
    written with :func:`cryocare.io.open_writer` (atomically, header
    statistics complete, voxel size and origin of the input, never replacing
    an existing file unless ``overwrite``). Check the input's values first
    with :func:`cryocare.io.validate` if they may hold NaN or infinity, as the
    command line does.

    Parameters
    ----------
    model : CAREModel, path or str
        As for :func:`denoise_tomogram`.
    tomogram, output : path
        Input and output files.
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
    """
    output = Path(output)
    _check_suffix(output)
    info = io.read_info(tomogram)  # the values are not scanned here: io.validate does that
    volume = io.read(tomogram, mmap=True)
    network = _model(model)
    with io.open_writer(output, info.shape, like=info, overwrite=overwrite,
                        label=f"CARE denoised zero-shot from {Path(tomogram).name}"[:80]) as writer:
        network.predict(volume, options, out=writer, **settings)
    logger.info("wrote %s (zero-shot, from %s)", output, tomogram)
    return output


def _check_suffix(output: Path) -> None:
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{output}: expected an MRC file name ({', '.join(OUTPUT_SUFFIXES)}), "
                         f"found {output.suffix or 'no extension'!r}")


def output_paths(inputs: Sequence[Path], output: Path) -> list[tuple[Path, Path]]:
    """``(input, output)`` for single tomograms: ``output`` itself for one input if it
    names an MRC file (and is no folder), else ``output/<stem>_denoised.mrc`` for each.

    Raises
    ------
    InputError
        Several inputs and a file name as ``output``; two inputs that would be
        written to the same file.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("expected at least one tomogram")
    to_file = output.suffix.lower() in OUTPUT_SUFFIXES and not output.is_dir()
    if len(inputs) == 1 and to_file:
        return [(inputs[0], output)]
    if output.suffix and not output.is_dir():
        raise InputError(f"{output}: with {len(inputs)} tomograms, the output must be a folder"
                         if len(inputs) > 1 else
                         f"{output}: expected an MRC file name ({', '.join(OUTPUT_SUFFIXES)}) "
                         f"or a folder")
    jobs = [(path, output / f"{path.stem}_denoised.mrc") for path in inputs]
    names = [target.name for _, target in jobs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(f"several tomograms would be written to {', '.join(clashes)}")
    return jobs
