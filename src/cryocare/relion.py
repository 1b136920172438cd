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

Restoring the missing wedge (``wedge=``) needs each tomogram's tilt range.
``wedge="star"`` reads it from the tomogram's tilt-series STAR file
(``rlnTomoTiltSeriesStarFile`` of ``tomograms.star``, relative to the project
folder; the block ``data_<rlnTomoName>``, one row per tilt): the lowest and
highest ``rlnTomoYTilt`` — the tilt angles RELION's projection model, and so
the reconstruction, used — or, before alignment wrote them,
``rlnTomoNominalStageTiltAngle``. RELION 5 tilts the specimen about the
tomogram's ``Y`` axis (its projections are ``Rz(rlnTomoZRot) Ry(rlnTomoYTilt)
Rx(rlnTomoXTilt)``), and ``Ry`` projects ``x cos θ + z sin θ`` as
:func:`cryocare.reconstruct.project` does, so the angles are used as they are,
about ``Y``. A range such as ``"-60,60"`` or a ``.tlt`` file applies to every
tomogram (:func:`tomogram_wedges`).

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
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import PredictOptions
from .errors import InputError, OutputExistsError

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel
    from .recipe import Recipe
    from .wedge import Wedge

__all__ = ["StarTomogram", "read_tomograms", "check_job_star", "denoise_star", "denoised_path",
           "is_complete", "pending_tomograms", "predict_star", "train_star", "write_denoised_star",
           "tomogram_wedges", "FROM_STAR"]

log = logging.getLogger(__name__)

NAME, HALF1, HALF2 = "rlnTomoName", "rlnTomoReconstructedTomogramHalf1", \
    "rlnTomoReconstructedTomogramHalf2"
DENOISED = "rlnTomoReconstructedTomogramDenoised"
TILT_SERIES = "rlnTomoTiltSeriesStarFile"
#: Columns of a tilt-series STAR file with the tilt angles, the one preferred first: the
#: angles after alignment (what the reconstruction used), else the stage's nominal ones.
TILT_ANGLES = ("rlnTomoYTilt", "rlnTomoNominalStageTiltAngle")
#: ``wedge=FROM_STAR`` (``--wedge star``): each tomogram's own tilt range, from its
#: tilt-series STAR file.
FROM_STAR = "star"


@dataclass(frozen=True)
class StarTomogram:
    """One row of ``tomograms.star``: its name, its two halves and its tilt-series STAR
    file (resolved paths; ``tilt_series`` None when the row names none)."""

    name: str
    half1: Path
    half2: Path
    tilt_series: Path | None = None


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
    tomograms = [StarTomogram(str(row[NAME]), root / str(row[HALF1]), root / str(row[HALF2]),
                              _tilt_series_path(row, root))
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


def _tilt_series_path(row, root: Path) -> Path | None:
    value = row.get(TILT_SERIES) if hasattr(row, "get") else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text in ("", "N/A") else root / text


def _tilt_angles(star: Path, tomogram: StarTomogram):
    """The tilt angles of ``tomogram`` (degrees) and the column they came from."""
    import numpy as np
    import starfile

    where = f"{star}, tomogram {tomogram.name}"
    path = tomogram.tilt_series
    if path is None:
        raise InputError(f"{where}: no {TILT_SERIES} (expected the tilt-series STAR file with "
                         f"the tilt angles; or give the range, e.g. --wedge=-60,60)")
    if not path.is_file():
        raise InputError(f"{where}: tilt-series STAR file {path} not found ({TILT_SERIES}, "
                         f"relative to the RELION project folder; or give the range, e.g. "
                         f"--wedge=-60,60)")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as error:  # noqa: BLE001 - starfile raises many kinds
        raise InputError(f"{where}: {path} is not a readable STAR file ({error})") from None
    tables = {key: table for key, table in blocks.items() if hasattr(table, "columns")}
    table = tables.get(tomogram.name)
    if table is None and len(tables) == 1:  # RELION names the block data_<rlnTomoName>
        table = next(iter(tables.values()))
    if table is None:
        raise InputError(f"{where}: {path} has no block data_{tomogram.name} (found "
                         f"{', '.join(f'data_{k}' for k in tables) or 'none'})")
    column = next((c for c in TILT_ANGLES if c in table.columns), None)
    if column is None:
        raise InputError(f"{where}: {path} has no column {' or '.join(TILT_ANGLES)} (expected "
                         f"the tilt angles, one row per tilt)")
    angles = np.asarray(table[column], dtype=np.float64)
    if len(angles) < 2 or not np.isfinite(angles).all():
        raise InputError(f"{where}: {path}: expected at least two finite tilt angles in "
                         f"{column}, found {angles.tolist()}")
    return angles, column


def tomogram_wedges(star: str | os.PathLike, wedge: Any = FROM_STAR, *,
                    project: str | os.PathLike | None = None,
                    names: Sequence[str] | None = None,
                    tilt_axis: str = "Y") -> dict[str, Wedge]:
    """The tilt range of each tomogram of ``star``: its own, or one for all.

    Parameters
    ----------
    star : path
        RELION 5 ``tomograms.star``.
    wedge : "star", str, path, (min, max), Wedge or mapping
        ``"star"`` (:data:`FROM_STAR`): each tomogram's lowest and highest
        tilt angle, from its tilt-series STAR file (``rlnTomoYTilt``, else
        ``rlnTomoNominalStageTiltAngle``; see the module docstring). A
        mapping by ``rlnTomoName`` (what this function returned) is taken as
        it is. Anything else is one range for every tomogram (``"-60,60"``, a
        ``.tlt`` file, :func:`cryocare.wedge.parse_wedge`).
    project : path, optional
        RELION project folder (see the module docstring).
    names : sequence of str, optional
        Only these ``rlnTomoName`` values.
    tilt_axis : {"Y", "X"}
        Axis of the tomograms the specimen was tilted about; RELION 5's is ``Y``.

    Returns
    -------
    dict of str to Wedge
        By ``rlnTomoName``, in the order of the STAR file.

    Raises
    ------
    InputError
        Naming the STAR file, the tomogram and what was expected, when a
        tilt-series STAR file, its block or its angle column is missing.

    Examples
    --------
    >>> import tempfile, pandas as pd, starfile
    >>> project = Path(tempfile.mkdtemp())
    >>> starfile.write({"TS_01": pd.DataFrame({"rlnTomoNominalStageTiltAngle": [-51.0, 0.0, 60.0],
    ...                                        "rlnTomoYTilt": [-48.5, 3.0, 63.0]})},
    ...                project / "TS_01.star")
    >>> starfile.write({"global": pd.DataFrame({
    ...     "rlnTomoName": ["TS_01"], "rlnTomoTiltSeriesStarFile": ["TS_01.star"],
    ...     "rlnTomoReconstructedTomogramHalf1": ["rec_TS_01_half1.mrc"],
    ...     "rlnTomoReconstructedTomogramHalf2": ["rec_TS_01_half2.mrc"]})},
    ...     project / "tomograms.star")
    >>> tomogram_wedges(project / "tomograms.star", project=project)
    {'TS_01': Wedge(min_angle=-48.5, max_angle=63.0, tilt_axis='Y')}
    >>> tomogram_wedges(project / "tomograms.star", "-60,60", project=project)
    {'TS_01': Wedge(min_angle=-60.0, max_angle=60.0, tilt_axis='Y')}
    """
    from .wedge import Wedge, parse_wedge

    star = Path(star)
    tomograms = read_tomograms(star, project=project, names=names)
    if isinstance(wedge, Mapping):
        missing = [t.name for t in tomograms if t.name not in wedge]
        if missing:
            raise InputError(f"wedge: no tilt range for {', '.join(missing)}")
        return {t.name: parse_wedge(wedge[t.name], tilt_axis=tilt_axis) for t in tomograms}
    if not (isinstance(wedge, str) and wedge.strip().lower() == FROM_STAR):
        one = parse_wedge(wedge, tilt_axis=tilt_axis)
        return {t.name: one for t in tomograms}
    wedges = {}
    for tomogram in tomograms:
        angles, column = _tilt_angles(star, tomogram)
        try:
            wedges[tomogram.name] = Wedge(float(angles.min()), float(angles.max()), tilt_axis)
        except InputError as error:
            raise InputError(f"{star}, tomogram {tomogram.name}: {column} of "
                             f"{tomogram.tilt_series}: {error}") from None
        log.info("%s: tilt range %g..%g° about %s (%s of %s)", tomogram.name,
                 wedges[tomogram.name].min_angle, wedges[tomogram.name].max_angle, tilt_axis,
                 column, tomogram.tilt_series)
    return wedges


def _common_wedge(wedges: Mapping[str, Wedge]) -> Wedge:
    """The directions every tomogram measured: the highest lowest and the lowest highest
    tilt. Training on a wider range would count unmeasured directions as measured."""
    from .wedge import Wedge

    ranges = list(wedges.values())
    low, high = max(w.min_angle for w in ranges), min(w.max_angle for w in ranges)
    if low >= high:
        raise InputError("wedge: the tilt ranges of " + ", ".join(
            f"{n} ({w.min_angle:g}..{w.max_angle:g})" for n, w in wedges.items())
            + " have no directions in common; train on tomograms with overlapping ranges")
    return Wedge(low, high, ranges[0].tilt_axis)


def _model_for(model: Any, wedges: Mapping[str, Wedge] | None):
    """``model`` loaded (a spec: what :func:`cryocare.load_model` takes); with ``wedges``, made
    to restore the missing wedge (:func:`cryocare.modelfiles.with_wedge`; ``"pretrained"``:
    the general model and the shipped restorer), the log's warnings about the ranges given."""
    from .modelfiles import PRETRAINED, ModelSource, for_wedge, load_model, with_wedge

    first = next(iter(wedges.values())) if wedges else None
    if isinstance(model, (str, os.PathLike, ModelSource)):
        if wedges:
            spec = model.spec if isinstance(model, ModelSource) else os.fspath(model)
            ranges = list(dict.fromkeys(wedges.values()))  # distinct, in order
            # each range checked against the pretrained model's family; another model once
            model = [for_wedge(model, w) for w in (ranges if spec == PRETRAINED
                                                    else ranges[:1])][0]
        return load_model(model, wedge=first)
    return model if first is None else with_wedge(model, first)


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
               resume: bool = False, wedge: Any = None) -> CAREModel:
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
    wedge : "star", str, path, (min, max), Wedge or None
        Restore the missing wedge too (:func:`cryocare.recipe.train_on_pair`'s
        ``wedge``): ``"star"`` reads each training tomogram's tilt range
        (:func:`tomogram_wedges`) and trains over the range all of them
        measured (the highest lowest and the lowest highest tilt), so that no
        unmeasured direction counts as measured; a range applies to all.
    """
    from . import io
    from .recipe import DEFAULT_RECIPE, train_on_pair

    tomograms = read_tomograms(star, project=project, names=names)
    common = None
    if wedge is not None:
        common = _common_wedge(tomogram_wedges(star, wedge, project=project, names=names,
                                               tilt_axis=_wedge_axis(tilt_axis)))
        log.info("training to restore the missing wedge of %g..%g° about %s",
                 common.min_angle, common.max_angle, common.tilt_axis)
    loaded = [io.read_pair(t.half1, t.half2, mmap=True) for t in tomograms]
    log.info("training on %s", ", ".join(t.name for t in tomograms))
    return train_on_pair([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                         recipe=DEFAULT_RECIPE if recipe is None else recipe, budget=budget,
                         init=init, seed=seed, tilt_axis=tilt_axis, fit=fit,
                         progress=progress, checkpoint_dir=checkpoint_dir, resume=resume,
                         wedge=common)


def _wedge_axis(tilt_axis: str) -> str:
    """The wedge's axis for a training ``tilt_axis`` ("Z", held out along Z, tilts about Y)."""
    return tilt_axis if tilt_axis in ("Y", "X") else "Y"


def predict_star(star: str | os.PathLike, model: Any, output: str | os.PathLike,
                 options: PredictOptions | None = None, *,
                 project: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                 overwrite: bool = False, wedge: Any = None, tilt_axis: str = "Y",
                 **settings: Any) -> Path:
    """Denoise the tomograms of ``star`` with ``model``; returns ``<output>/tomograms.star``.

    Each tomogram streams from its memory-mapped halves to its output file
    (:func:`cryocare.predict.denoise_file`), so memory does not grow with the
    number or the size of the tomograms. A tomogram whose output is complete
    already is skipped unless ``overwrite`` (:func:`pending_tomograms`): a
    second run continues the first. ``options`` say how to predict
    (:class:`cryocare.config.PredictOptions`; ``settings`` change single ones).

    Parameters
    ----------
    model : CAREModel, or what :func:`cryocare.load_model` takes
        The model, or its folder, archive or ``"pretrained"`` (loaded only when
        a tomogram is left to denoise).
    wedge : "star", str, path, (min, max), Wedge or None
        Restore the missing wedge too: the tilt range of every tomogram
        (:func:`tomogram_wedges`; ``"star"``: each tomogram's own, from its
        tilt-series STAR file), checked first and logged. The model denoises
        and the shipped restorer (``"pretrained:wedge"``) fills each
        tomogram's cone with its own range
        (:func:`cryocare.modelfiles.with_wedge`); the log warns about a range
        outside the restorer's training family.
    tilt_axis : {"Y", "X"}
        Axis of the tomograms the specimen was tilted about (RELION 5's: ``Y``).
    """
    from .modelfiles import with_wedge
    from .predict import denoise_file

    options = PredictOptions.merged(options, **settings)

    output = Path(output)
    tomograms = read_tomograms(star, project=project, names=names)
    wedges = None if wedge is None else tomogram_wedges(star, wedge, project=project,
                                                         names=names, tilt_axis=tilt_axis)
    targets = {t.name: denoised_path(output, t.name) for t in tomograms}
    check_job_star(output / "tomograms.star", overwrite=overwrite)
    (output / "tomograms").mkdir(parents=True, exist_ok=True)
    pending = pending_tomograms(star, output, project=project, names=names,
                                overwrite=overwrite)
    if pending:
        model = _model_for(model, wedges)
    for tomogram in pending:
        target = targets[tomogram.name]
        restoring = model if wedges is None else with_wedge(model, wedges[tomogram.name])
        # An incomplete output left by an earlier run is replaced.
        denoise_file(restoring, tomogram.half1, tomogram.half2, target, options,
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
                 wedge: Any = None, **settings: Any) -> Path:
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
    wedge : "star", str, path, (min, max), Wedge or None
        Restore the missing wedge too: ``"star"`` each tomogram's own tilt
        range from its tilt-series STAR file, or one range for all
        (:func:`tomogram_wedges`). Training fine-tunes the wedge-restoring
        model over the range every training tomogram measured
        (:func:`train_star`); every tomogram is then restored.
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
    if wedge is not None:  # every tomogram's range read (and checked) once, before training
        wedge = tomogram_wedges(star, wedge, project=project, tilt_axis=_wedge_axis(tilt_axis))
    model = train_star(star, names=train_names, project=project, recipe=recipe, budget=budget,
                       init=init, seed=seed, tilt_axis=tilt_axis, fit=fit, progress=progress,
                       wedge=wedge)
    if options is None:
        options = PredictOptions(tta=recipe.tta, progress=progress)
    return predict_star(star, model, output, options, project=project, overwrite=overwrite,
                        wedge=wedge, tilt_axis=_wedge_axis(tilt_axis), **settings)
