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
project, as RELION writes them, when the output lies inside it).

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

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CryocareError, InputError, OutputExistsError

__all__ = ["StarTomogram", "read_tomograms", "denoise_star", "predict_star", "train_star",
           "write_denoised_star", "main"]

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


def train_star(star: str | os.PathLike, *, names: Sequence[str] | None = None,
               project: str | os.PathLike | None = None, config: Any = None,
               patch_shape: int | Sequence[int] = 32, n_patches: int = 1200,
               tilt_axis: str = "Y", seed: int = 0, progress: bool = False):
    """Train a :class:`~cryocare.model.CAREModel` on (a subset of) the tomograms of ``star``."""
    from . import io
    from .model import CAREModel
    from .pairs import sample_pairs

    tomograms = read_tomograms(star, project=project, names=names)
    loaded = [io.read_pair(t.half1, t.half2, mmap=True) for t in tomograms]
    pairs = sample_pairs([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                         patch_shape=patch_shape, n_patches=n_patches, tilt_axis=tilt_axis,
                         seed=seed)
    log.info("training on %s", ", ".join(t.name for t in tomograms))
    return CAREModel.train(pairs, config, progress=progress)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def write_denoised_star(star: str | os.PathLike, output: str | os.PathLike,
                        denoised: dict[str, Path], *, project: str | os.PathLike | None = None,
                        overwrite: bool = False) -> Path:
    """Copy ``star`` to ``output`` with ``rlnTomoReconstructedTomogramDenoised`` set.

    ``denoised`` maps ``rlnTomoName`` to the denoised file; rows not in it keep
    their previous value (or ``N/A``, as RELION writes). Written atomically.
    """
    import starfile

    star, output = Path(star), Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: exists already (use --overwrite to replace it)")
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


def predict_star(star: str | os.PathLike, model, output: str | os.PathLike, *,
                 project: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                 overwrite: bool = False, tile_shape: Any = "auto",
                 progress: bool = False) -> Path:
    """Denoise the tomograms of ``star`` with ``model``; returns ``<output>/tomograms.star``."""
    from . import io

    output = Path(output)
    tomograms = read_tomograms(star, project=project, names=names)
    folder = output / "tomograms"
    targets = {t.name: folder / f"rec_{t.name}.mrc" for t in tomograms}
    for path in [output / "tomograms.star", *targets.values()]:
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: exists already (use --overwrite to replace it)")
    folder.mkdir(parents=True, exist_ok=True)
    for tomogram in tomograms:
        even, odd, info = io.read_pair(tomogram.half1, tomogram.half2, mmap=True)
        denoised = model.denoise(even, odd, tile_shape=tile_shape, progress=progress)
        io.write(targets[tomogram.name], denoised, like=info, overwrite=overwrite,
                 label=f"CARE denoised {tomogram.name}")
        log.info("wrote %s", targets[tomogram.name])
    return write_denoised_star(star, output / "tomograms.star", targets, project=project,
                               overwrite=overwrite)


def denoise_star(star: str | os.PathLike, output: str | os.PathLike, *,
                 train_names: Sequence[str] | None = None,
                 project: str | os.PathLike | None = None, overwrite: bool = False,
                 progress: bool = False, tile_shape: Any = "auto", **train_options: Any) -> Path:
    """Train on (a subset of) the tomograms of ``star``, then denoise all of them.

    Parameters
    ----------
    star : path
        RELION 5 ``tomograms.star``.
    output : path
        Job folder: ``tomograms/rec_<name>.mrc`` and ``tomograms.star`` go here.
    train_names : sequence of str, optional
        ``rlnTomoName`` values to train on (default: all).
    train_options
        ``config``, ``patch_shape``, ``n_patches``, ``tilt_axis``, ``seed``
        of :func:`train_star`.

    Returns
    -------
    Path
        The updated ``tomograms.star``.
    """
    output = Path(output)
    if (output / "tomograms.star").exists() and not overwrite:
        raise OutputExistsError(f"{output / 'tomograms.star'}: exists already "
                                f"(use --overwrite to replace it)")
    model = train_star(star, names=train_names, project=project, progress=progress,
                       **train_options)
    return predict_star(star, model, output, project=project, overwrite=overwrite,
                        tile_shape=tile_shape, progress=progress)


# --------------------------------------------------------------------- command line
def _names(text: str) -> list[str]:
    return [n for n in text.replace(":", ",").split(",") if n.strip()]


def build_parser(command: str) -> argparse.ArgumentParser:
    from .cli import _add_common, _add_train_options, _shape, _tiles

    parser = argparse.ArgumentParser(
        prog=f"cryocare {command} --star",
        description=f"{command} the tomograms of a RELION 5 tomograms.star",
    )
    parser.add_argument("command", choices=(command,), help=argparse.SUPPRESS)
    parser.add_argument("--star", type=Path, required=True, help="RELION 5 tomograms.star")
    parser.add_argument("--project", type=Path,
                        help="RELION project folder (default: found from the STAR file, else .)")
    if command == "predict":
        parser.add_argument("--model", type=Path, required=True,
                            help="cryocare model folder or cryoCARE .tar.gz archive")
    parser.add_argument("--output", type=Path, required=True,
                        help="model folder (train) or job folder for tomograms/ and "
                             "tomograms.star")
    if command in ("train", "denoise"):
        parser.add_argument("--train-on", type=_names,
                            help="rlnTomoName values to train on, comma- or colon-separated "
                                 "(default: all)")
        parser.add_argument("--patch-shape", type=_shape, default=(32,))
        parser.add_argument("--n-patches", type=int, default=1200)
        parser.add_argument("--tilt-axis", choices=("Y", "X"), default="Y")
        _add_train_options(parser)
    if command == "denoise":
        parser.add_argument("--save-model", type=Path, help="also keep the model here")
    if command in ("predict", "denoise"):
        parser.add_argument("--tiles", type=_tiles, default="auto")
    _add_common(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    """``cryocare denoise|train|predict --star tomograms.star ...``; returns the exit status."""
    from .cli import _config_from_args

    command = argv[0] if argv else ""
    if command not in ("denoise", "train", "predict"):
        print("cryocare: --star works with denoise, train and predict", file=sys.stderr)
        return 2
    args = build_parser(command).parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    progress = not args.quiet
    try:
        if command == "predict":
            from .legacy_cli import _load_any_model

            model = _load_any_model(args.model)
            print(predict_star(args.star, model, args.output, project=args.project,
                               overwrite=args.overwrite, tile_shape=args.tiles,
                               progress=progress))
            return 0
        patch = args.patch_shape[0] if len(args.patch_shape) == 1 else args.patch_shape
        options = dict(names=args.train_on, project=args.project,
                       config=_config_from_args(args, 3), patch_shape=patch,
                       n_patches=args.n_patches, tilt_axis=args.tilt_axis,
                       seed=args.seed or 0, progress=progress)
        save_to = args.output if command == "train" else args.save_model
        if save_to is not None and save_to.exists() and not args.overwrite:
            raise OutputExistsError(f"{save_to}: exists already (use --overwrite to replace it)")
        if command == "denoise" and (args.output / "tomograms.star").exists() \
                and not args.overwrite:
            raise OutputExistsError(f"{args.output / 'tomograms.star'}: exists already "
                                    f"(use --overwrite to replace it)")
        model = train_star(args.star, **options)
        if save_to is not None:
            save_to.parent.mkdir(parents=True, exist_ok=True)
            model.save(save_to, overwrite=args.overwrite)
            print(save_to)
        if command == "denoise":
            print(predict_star(args.star, model, args.output, project=args.project,
                               overwrite=args.overwrite, tile_shape=args.tiles,
                               progress=progress))
    except CryocareError as error:
        print(f"cryocare {command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cryocare {command}: error: {error}", file=sys.stderr)
        return 1
    return 0
