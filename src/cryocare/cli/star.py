"""``cryocare denoise|train|predict --star tomograms.star``: the RELION 5 face.

The same options as the file-based commands, mapped by the same functions
(:mod:`cryocare.cli.options`), on the same training path and prediction
engine: the tomograms of the STAR file take the place of ``--even/--odd``.
"""

from __future__ import annotations

import argparse
import logging

from ..errors import InputError
from ..io import check_output
from .app import load_backend
from .checks import check_pair, check_tiles
from .options import budget_from_args, fit_to_machine, predict_options, recipe_from_args

__all__ = ["denoise_star", "train_star", "predict_star"]

log = logging.getLogger("cryocare")


def _tomograms(args: argparse.Namespace, names=None):
    from ..relion import read_tomograms

    tomograms = read_tomograms(args.star, project=args.project, names=names)
    for tomogram in tomograms:
        check_pair(tomogram.half1, tomogram.half2)
    return tomograms


def _wedges(args: argparse.Namespace):
    """``--wedge``: every tomogram's tilt range (``star``: from its tilt-series STAR file),
    read and checked before anything heavy; None without it."""
    if args.wedge is None:
        return None
    from ..relion import tomogram_wedges

    axis = getattr(args, "tilt_axis", "Y")  # --tilt-axis Z holds out along Z; tilts about Y
    return tomogram_wedges(args.star, args.wedge, project=args.project,
                           tilt_axis=axis if axis in ("Y", "X") else "Y")


def _outputs(args: argparse.Namespace) -> list:
    """The tomograms still to denoise (a complete output is skipped unless --overwrite, an
    incomplete one redone); their outputs and the job's tomograms.star may be written."""
    from ..relion import check_job_star, denoised_path, pending_tomograms

    check_job_star(args.output / "tomograms.star", overwrite=args.overwrite)
    pending = pending_tomograms(args.star, args.output, project=args.project,
                                overwrite=args.overwrite)
    for tomogram in pending:
        target = denoised_path(args.output, tomogram.name)
        # An incomplete output is redone.
        check_output(target, overwrite=args.overwrite or target.exists(), volume=False)
    return pending


def _finished(args: argparse.Namespace) -> int:
    """Every tomogram is denoised already: only the job's tomograms.star is written."""
    from ..relion import denoised_path, read_tomograms, write_denoised_star

    targets = {t.name: denoised_path(args.output, t.name)
               for t in read_tomograms(args.star, project=args.project)}
    print(write_denoised_star(args.star, args.output / "tomograms.star", targets,
                              project=args.project, overwrite=args.overwrite))
    log.info("every tomogram is denoised already in %s (--overwrite redoes them)", args.output)
    return 0


def _train(args: argparse.Namespace, save_to, *, checked: bool = False, wedges=None):
    """Check what training needs; returns (recipe, start).

    ``checked``: every tomogram's halves were checked already; only the names
    to train on are (no second scan of the data).
    """
    from ..relion import read_tomograms
    from ..relion import train_star as train

    if checked:
        read_tomograms(args.star, project=args.project, names=args.train_on)
    else:
        _tomograms(args, args.train_on)
    if save_to is not None:
        check_output(save_to, overwrite=args.overwrite, volume=False)
    if args.resume and args.checkpoint_dir is None:
        raise InputError("--resume: expected --checkpoint-dir, the folder to resume from")
    recipe = recipe_from_args(args, 3)
    check_tiles(getattr(args, "tiles", None), recipe.config, 3)
    return recipe, lambda: train(
        args.star, names=args.train_on, project=args.project, recipe=recipe,
        budget=budget_from_args(args), init=args.init, seed=args.seed,
        tilt_axis=args.tilt_axis, fit=fit_to_machine(args), progress=not args.quiet,
        checkpoint_dir=args.checkpoint_dir, resume=args.resume, wedge=wedges)


def train_star(args: argparse.Namespace) -> int:
    """``cryocare train --star``: train on (some of) the tomograms; save the model."""
    if args.output is None:
        raise InputError("--output: expected the model folder")
    _, start = _train(args, args.output)
    load_backend(device=args.device)
    model = start()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    print(model.save(args.output, overwrite=args.overwrite))
    return 0


def denoise_star(args: argparse.Namespace) -> int:
    """``cryocare denoise --star``: train, then denoise every tomogram of the STAR file."""
    from ..relion import predict_star as predict

    if args.output is None:
        raise InputError("--output: expected the job folder")
    _tomograms(args)  # every tomogram, those trained on among them
    wedges = _wedges(args)
    if not _outputs(args):
        return _finished(args)
    recipe, start = _train(args, args.save_model, checked=True, wedges=wedges)
    load_backend(device=args.device)
    model = start()
    if args.save_model is not None:
        args.save_model.parent.mkdir(parents=True, exist_ok=True)
        print(model.save(args.save_model, overwrite=args.overwrite))
    print(predict(args.star, model, args.output,
                  predict_options(args, budget=budget_from_args(args),
                                  default_tta="auto" if recipe.tta else False),
                  project=args.project, overwrite=args.overwrite, wedge=wedges))
    return 0


def predict_star(args: argparse.Namespace) -> int:
    """``cryocare predict --star``: denoise every tomogram with a model in any format."""
    from ..modelfiles import inspect_model
    from ..relion import predict_star as predict

    if args.model is None or args.output is None:
        raise InputError("expected --model and --output (the job folder) with --star")
    _tomograms(args)
    wedges = _wedges(args)
    source = inspect_model(args.model)
    if not _outputs(args):
        return _finished(args)
    load_backend(device=args.device)
    # loaded there (with --wedge: paired with the shipped restorer)
    print(predict(args.star, source, args.output, predict_options(args),
                  project=args.project, overwrite=args.overwrite, wedge=wedges))
    return 0
