"""RELION 5 tomogram STAR files: denoise the tomograms a ``tomograms.star`` lists.

RELION 5 keeps one row per tomogram in the ``global`` block of
``tomograms.star``; the columns used here are ``rlnTomoName``,
``rlnTomoReconstructedTomogramHalf1`` and ``rlnTomoReconstructedTomogramHalf2``
(the even and odd half tomograms). Relative paths are relative to the RELION
project folder, as RELION resolves them: the ``project`` argument, else the
nearest folder above the STAR file holding ``default_pipeline.star``, else
the current folder.

Denoising writes ``<output>/tomograms/rec_<rlnTomoName>.mrc`` (RELION's own
naming) and ``<output>/tomograms.star``: the input table with the column
``rlnTomoReconstructedTomogramDenoised`` added (paths relative to the
project, as RELION writes them, when the output lies inside it), every other
column of the input (pixel size, voltage, tilt-series STAR files, ...) kept as
it is.

Running a job again continues it, as RELION's *Continue* does: a tomogram
whose output is there and complete (:func:`is_complete`: a readable MRC file
of the tomogram's shape, not truncated) is skipped unless
``overwrite``; one that is partial or unreadable is denoised again (logged).
The job's ``tomograms.star`` is rewritten on every run, but an existing one
that is not a denoising job's (no ``rlnTomoReconstructedTomogramDenoised``
column) is never replaced unless ``overwrite``.

Examples
--------
>>> import tempfile, pandas as pd, starfile
>>> project = Path(tempfile.mkdtemp())
>>> table = pd.DataFrame({"rlnTomoName": ["TS_01"],
...                       "rlnTomoReconstructedTomogramHalf1": ["Tomograms/rec_TS_01_half1.mrc"],
...                       "rlnTomoReconstructedTomogramHalf2": ["Tomograms/rec_TS_01_half2.mrc"]})
>>> starfile.write({"global": table}, project / "tomograms.star")
>>> [(t.name, t.half1 == project / "Tomograms" / "rec_TS_01_half1.mrc")
...  for t in read_tomograms(project / "tomograms.star", project=project)]
[('TS_01', True)]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import PredictOptions
from .errors import InputError, OutputExistsError

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel
    from .recipe import Recipe

__all__ = ["StarTomogram", "read_tomograms", "check_job_star", "denoise_star", "denoised_path",
           "is_complete", "pending_tomograms", "predict_star", "train_star", "write_denoised_star"]

log = logging.getLogger(__name__)

NAME, HALF1, HALF2 = "rlnTomoName", "rlnTomoReconstructedTomogramHalf1", \
    "rlnTomoReconstructedTomogramHalf2"
DENOISED = "rlnTomoReconstructedTomogramDenoised"


@dataclass(frozen=True)
class StarTomogram:
    """One row of ``tomograms.star``: its name and its two halves (resolved paths)."""

    name: str
    half1: Path
    half2: Path


def _project(star: Path, project: str | os.PathLike | None) -> Path:
    if project is not None:
        return Path(project)
    for folder in star.resolve().parents:
        if (folder / "default_pipeline.star").is_file():
            return folder
    return Path.cwd()


def _read_table(star: Path):
    import starfile

    if not star.is_file():
        raise InputError(f"{star}: no such STAR file")
    try:
        blocks = starfile.read(star, always_dict=True)
    except Exception as error:  # noqa: BLE001 - starfile raises many kinds
        raise InputError(f"{star}: not a readable STAR file ({error})") from None
    for key in ("global", *blocks):
        table = blocks.get(key)
        if hasattr(table, "columns") and NAME in table.columns:
            break
    else:
        raise InputError(f"{star}: no data block with a {NAME} column (expected RELION 5's "
                         f"tomograms.star)")
    missing = [c for c in (HALF1, HALF2) if c not in table.columns]
    if missing:
        raise InputError(f"{star}: column(s) {', '.join(missing)} missing; reconstruct the "
                         f"tomograms with half tomograms for denoising first")
    return blocks, key, table


def read_tomograms(star: str | os.PathLike, *, project: str | os.PathLike | None = None,
                   names: Sequence[str] | None = None) -> list[StarTomogram]:
    """Tomograms listed in a RELION 5 ``tomograms.star``, with resolved half paths.

    Parameters
    ----------
    star : path
        The STAR file.
    project : path, optional
        RELION project folder that relative paths start from (see the module
        docstring for the default).
    names : sequence of str, optional
        Only these ``rlnTomoName`` values (every name must exist).
    """
    star = Path(star)
    _, _, table = _read_table(star)
    root = _project(star, project)
    tomograms = [StarTomogram(str(row[NAME]), root / str(row[HALF1]), root / str(row[HALF2]))
                 for _, row in table.iterrows()]
    if names is not None:
        known = {t.name for t in tomograms}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(f"{star}: no tomogram named {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        tomograms = [t for t in tomograms if t.name in set(names)]
    if not tomograms:
        raise InputError(f"{star}: lists no tomograms")
    return tomograms


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def check_job_star(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``path`` may be written as a job's ``tomograms.star``: absent, ``overwrite``, or a
    denoising job's own (it has the ``rlnTomoReconstructedTomogramDenoised`` column).

    Raises
    ------
    OutputExistsError
        For any other existing file.
    """
    path = Path(path)
    if not path.exists() or overwrite:
        return path
    try:
        ours = DENOISED in _read_table(path)[2].columns
    except InputError:
        ours = False
    if not ours:
        raise OutputExistsError(f"{path}: exists already and is not the tomograms.star of a "
                                f"denoising job (use --overwrite to replace it)")
    return path


def is_complete(path: str | os.PathLike, shape: Sequence[int]) -> bool:
    """Whether ``path`` is a finished output of ``shape``: a readable MRC header of that
    shape and the whole data block that it announces (not truncated).

    Outputs are written to a temporary file and renamed when complete, so a
    file in place is partial only if something else cut it (a copy, a full
    disk); its header and length tell.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cryocare import io
    >>> path = Path(tempfile.mkdtemp()) / "rec_TS_01.mrc"
    >>> _ = io.write(path, np.ones((4, 6, 8), np.float32))
    >>> is_complete(path, (4, 6, 8)), is_complete(path, (4, 6, 9))
    (True, False)
    >>> _ = path.write_bytes(path.read_bytes()[:-10])  # truncated
    >>> is_complete(path, (4, 6, 8))
    False
    """
    from . import io

    path = Path(path)
    if not path.is_file():
        return False
    try:
        return tuple(io.validate(path, finite=False).shape) == tuple(shape)
    except InputError:
        return False


def pending_tomograms(star: str | os.PathLike, output: str | os.PathLike, *,
                      project: str | os.PathLike | None = None,
                      names: Sequence[str] | None = None,
                      overwrite: bool = False) -> list[StarTomogram]:
    """The tomograms of ``star`` still to denoise into the job folder ``output``.

    Every tomogram with ``overwrite``; else those whose output is missing or
    not complete (:func:`is_complete`, against the shape of the first half).
    A complete output is logged as skipped, an incomplete one as redone.
    """
    from . import io

    tomograms = read_tomograms(star, project=project, names=names)
    if overwrite:
        return tomograms
    pending = []
    for tomogram in tomograms:
        target = denoised_path(output, tomogram.name)
        if not target.exists():
            pending.append(tomogram)
        elif is_complete(target, io.read_info(tomogram.half1).shape):
            log.info("%s: complete already, skipped (overwrite to redo it)", target)
        else:
            log.warning("%s: incomplete or unreadable, denoised again", target)
            pending.append(tomogram)
    return pending


def write_denoised_star(star: str | os.PathLike, output: str | os.PathLike,
                        denoised: dict[str, Path], *, project: str | os.PathLike | None = None,
                        overwrite: bool = False) -> Path:
    """Copy ``star`` to ``output`` with ``rlnTomoReconstructedTomogramDenoised`` set.

    ``denoised`` maps ``rlnTomoName`` to the denoised file; rows not in it keep
    their previous value (or ``N/A``, as RELION writes); every other column is
    kept as it is. Written atomically; an existing ``output`` is replaced only
    if it is a denoising job's own (:func:`check_job_star`) or with ``overwrite``.
    """
    import starfile

    star, output = Path(star), Path(output)
    check_job_star(output, overwrite=overwrite)
    blocks, key, table = _read_table(star)
    root = _project(star, project)
    table = table.copy()  # the caller's data is never modified
    previous = table[DENOISED] if DENOISED in table.columns else ["N/A"] * len(table)
    table[DENOISED] = [_relative(denoised[name], root) if name in denoised else old
                       for name, old in zip(table[NAME].astype(str), previous, strict=True)]
    blocks = {**blocks, key: table}
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        starfile.write(blocks, tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


def denoised_path(output: str | os.PathLike, name: str) -> Path:
    """Where the denoised tomogram ``name`` goes in the job folder ``output`` (RELION's naming)."""
    return Path(output) / "tomograms" / f"rec_{name}.mrc"


def train_star(star: str | os.PathLike, *, names: Sequence[str] | None = None,
               project: str | os.PathLike | None = None, recipe: Recipe | None = None,
               budget: float | None = None, init: Any = "pretrained", seed: int = 0,
               tilt_axis: str = "Y", fit: bool = True, progress: bool = False,
               checkpoint_dir: str | os.PathLike | None = None,
               resume: bool = False) -> CAREModel:
    """Train a model on (a subset of) the tomograms of ``star`` with the training recipe.

    The halves are memory-mapped and sampled together (statistics from all
    of them), then trained by :func:`cryocare.recipe.train_on_pair` — the
    same path as ``cryocare denoise`` — so the options mean the same.

    Parameters
    ----------
    star : path
        RELION 5 ``tomograms.star``.
    names : sequence of str, optional
        ``rlnTomoName`` values to train on (default: all).
    project : path, optional
        RELION project folder (see the module docstring).
    recipe, budget, init, seed, tilt_axis, fit, progress, checkpoint_dir, resume
        As for :func:`cryocare.recipe.train_on_pair`.
    """
    from . import io
    from .recipe import DEFAULT_RECIPE, train_on_pair

    tomograms = read_tomograms(star, project=project, names=names)
    loaded = [io.read_pair(t.half1, t.half2, mmap=True) for t in tomograms]
    log.info("training on %s", ", ".join(t.name for t in tomograms))
    return train_on_pair([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                         recipe=DEFAULT_RECIPE if recipe is None else recipe, budget=budget,
                         init=init, seed=seed, tilt_axis=tilt_axis, fit=fit,
                         progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)


def predict_star(star: str | os.PathLike, model: CAREModel, output: str | os.PathLike,
                 options: PredictOptions | None = None, *,
                 project: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                 overwrite: bool = False, **settings: Any) -> Path:
    """Denoise the tomograms of ``star`` with ``model``; returns ``<output>/tomograms.star``.

    Each tomogram streams from its memory-mapped halves to its output file
    (:func:`cryocare.predict.denoise_file`), so memory does not grow with the
    number or the size of the tomograms. A tomogram whose output is complete
    already is skipped unless ``overwrite`` (:func:`pending_tomograms`): a
    second run continues the first. ``options`` say how to predict
    (:class:`cryocare.config.PredictOptions`; ``settings`` change single ones).
    """
    from .predict import denoise_file

    options = PredictOptions.merged(options, **settings)

    output = Path(output)
    tomograms = read_tomograms(star, project=project, names=names)
    targets = {t.name: denoised_path(output, t.name) for t in tomograms}
    check_job_star(output / "tomograms.star", overwrite=overwrite)
    (output / "tomograms").mkdir(parents=True, exist_ok=True)
    for tomogram in pending_tomograms(star, output, project=project, names=names,
                                      overwrite=overwrite):
        target = targets[tomogram.name]
        # An incomplete output left by an earlier run is replaced.
        denoise_file(model, tomogram.half1, tomogram.half2, target, options,
                     overwrite=overwrite or target.exists())
        log.info("wrote %s", target)
    return write_denoised_star(star, output / "tomograms.star", targets, project=project,
                               overwrite=overwrite)


def denoise_star(star: str | os.PathLike, output: str | os.PathLike, *,
                 train_names: Sequence[str] | None = None,
                 project: str | os.PathLike | None = None, overwrite: bool = False,
                 progress: bool = False, recipe: Recipe | None = None,
                 budget: float | None = None, init: Any = "pretrained", seed: int = 0,
                 tilt_axis: str = "Y", fit: bool = True, options: PredictOptions | None = None,
                 **settings: Any) -> Path:
    """Train on (a subset of) the tomograms of ``star``, then denoise all of them.

    Parameters
    ----------
    star : path
        RELION 5 ``tomograms.star``.
    output : path
        Job folder: ``tomograms/rec_<name>.mrc`` and ``tomograms.star`` go here.
    train_names : sequence of str, optional
        ``rlnTomoName`` values to train on (default: all).
    recipe, budget, init, seed, tilt_axis, fit
        As for :func:`train_star`.
    options, **settings
        Prediction options of :func:`predict_star`; without them, ``tta`` is the recipe's.

    Returns
    -------
    Path
        The updated ``tomograms.star``.

    Notes
    -----
    When every output is complete already (a finished job run again), nothing
    is trained: only ``tomograms.star`` is written.
    """
    from .recipe import DEFAULT_RECIPE

    recipe = DEFAULT_RECIPE if recipe is None else recipe
    output = Path(output)
    check_job_star(output / "tomograms.star", overwrite=overwrite)
    if not pending_tomograms(star, output, project=project, overwrite=overwrite):
        log.info("every tomogram of %s is denoised already in %s; nothing trained", star,
                 output)
        return write_denoised_star(
            star, output / "tomograms.star",
            {t.name: denoised_path(output, t.name)
             for t in read_tomograms(star, project=project)}, project=project,
            overwrite=overwrite)
    model = train_star(star, names=train_names, project=project, recipe=recipe, budget=budget,
                       init=init, seed=seed, tilt_axis=tilt_axis, fit=fit, progress=progress)
    if options is None:
        options = PredictOptions(tta=recipe.tta, progress=progress)
    return predict_star(star, model, output, options, project=project, overwrite=overwrite,
                        **settings)
