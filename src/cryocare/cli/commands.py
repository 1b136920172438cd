"""The subcommands of ``cryocare``: check everything first, then load the backend, then work.

Each ``cmd_*`` function takes the parsed arguments and returns an exit
status. Inputs (headers, shapes, models, output paths) are checked before
the deep-learning backend is imported (:func:`cryocare.cli.app.load_backend`),
so a bad input fails in a fraction of a second with one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..io import check_output
from .app import load_backend
from .checks import check_pair, check_tiles, prediction_jobs
from .options import (
    budget_from_args,
    fit_to_machine,
    predict_options,
    read_config_file,
    recipe_from_args,
)

log = logging.getLogger("cryocare")


def _model_config_check(source, args) -> None:
    """Compare what the model restores with the inputs' dimensionality (no Keras)."""
    from ..config import CareConfig

    if source.kind != "cryoCARE-0.3.0" and isinstance(args.tiles, tuple):
        try:
            config = CareConfig.from_dict(source.config)
        except InputError as error:
            raise InputError(f"{source.path}: {error}") from None
        check_tiles(args.tiles, config, source.n_dim)


# ------------------------------------------------------------------ commands
def cmd_simulate(args: argparse.Namespace) -> int:
    from .. import io
    from ..simulate import simulate_tomogram

    names = ("even", "odd", "clean", "isotropic", "mask")
    for name in names:
        check_output(args.output / f"{args.prefix}{name}.mrc", overwrite=args.overwrite,
                     volume=False)
    args.output.mkdir(parents=True, exist_ok=True)
    data = simulate_tomogram(tuple(args.shape), seed=args.seed, voxel_size=args.voxel_size)
    for name in names:
        volume = data.mask.astype("float32") if name == "mask" else getattr(data, name)
        labels = {"mask": "simulated object mask",
                  "isotropic": "simulated noiseless, no missing wedge"}
        label = labels.get(name, f"simulated {name}")
        print(io.write(args.output / f"{args.prefix}{name}.mrc", volume,
                       voxel_size=data.voxel_size, overwrite=args.overwrite, label=label))
    return 0


def sample_from_files(evens: Sequence, odds: Sequence, args: argparse.Namespace, *,
                      masks=None, patch_shape, n_patches: int, normalize: str = "global"):
    """Training pairs from even/odd files paired by name (memory-mapped)."""
    from .. import io
    from ..halves import find_halves
    from ..pairs import sample_pairs

    matched = find_halves(evens, odds)
    for even, odd in matched:
        check_pair(even, odd)
    loaded = [io.read_pair(e, o, mmap=True) for e, o in matched]
    return sample_pairs([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                        patch_shape=patch_shape, n_patches=n_patches,
                        val_fraction=args.val_fraction, tilt_axis=args.tilt_axis, masks=masks,
                        normalize=normalize, seed=args.seed)


def cmd_extract(args: argparse.Namespace) -> int:
    if args.config is not None:
        return _run_cryocare_config(args, "extract")
    if not args.even or not args.odd:
        raise InputError("expected --even and --odd tomograms (or --config with a cryoCARE "
                         "train_data config)")
    check_output(args.output, overwrite=args.overwrite, volume=False)
    masks = _masks(args)
    patch = args.patch_shape[0] if len(args.patch_shape) == 1 else args.patch_shape
    pairs = sample_from_files(args.even, args.odd, args, masks=masks, patch_shape=patch,
                              n_patches=args.n_patches,
                              normalize=args.normalize.replace("-", "_"))
    pairs.save(args.output, overwrite=args.overwrite)
    print(f"{args.output}: {len(pairs.x_train)} training and {len(pairs.x_val)} "
          f"validation pairs of {pairs.patch_shape}")
    return 0


def _masks(args: argparse.Namespace):
    """Masks in the order of the matched pairs, 'auto', or None."""
    from .. import io
    from ..halves import find_halves

    if args.mask is None:
        return None
    if args.mask == ["auto"]:
        return "auto"
    if len(args.mask) != len(args.even):
        raise InputError(f"--mask: got {len(args.mask)} masks for {len(args.even)} even files; "
                         "give one mask per even file, or 'auto'")
    mask_of = {Path(e): Path(m) for e, m in zip(args.even, args.mask, strict=True)}
    matched = find_halves(args.even, args.odd)
    missing = [str(e) for e, _ in matched if e not in mask_of]
    if missing:
        raise InputError("--mask: with folders or patterns in --even, give --mask auto; no mask "
                         "for " + ", ".join(missing))
    return [io.read(mask_of[e], mmap=True) for e, _ in matched]


def train_model(pairs, recipe, args: argparse.Namespace):
    """The one training call of the command line (``cryocare.training.train``), planned by
    :func:`cryocare.recipe.plan_run` as every face plans: the starting model loaded once,
    its fine-tuning rate, and (with a budget) batch and width fitted to this machine."""
    from ..recipe import plan_run
    from ..training import Budget, train

    clock = Budget.start(budget_from_args(args) or 0.0)
    from ..training.checkpoints import RESUMABLE_CHANGES, Checkpoints

    checkpoints = None if args.checkpoint_dir is None else Checkpoints(args.checkpoint_dir)
    if args.resume and checkpoints is not None and checkpoints.exists():
        # the checkpoint's config as fitted then; the options may change a few keys
        from ..config import CareConfig

        saved = checkpoints.meta()["config"]
        run_config = CareConfig.from_dict({**saved, **{
            key: getattr(recipe.config, key) for key in RESUMABLE_CHANGES}})
        start = None
    elif args.resume:  # nothing to resume: training says so
        run_config, start = recipe.config, None
    else:
        run = plan_run(recipe.replace(patch_shape=tuple(pairs.patch_shape)), init=args.init,
                       budget=clock, fit=fit_to_machine(args), keep_patches=True)
        run_config, start = run.config, run.start
    return train(pairs, run_config, budget=clock, init=start, progress=not args.quiet,
                 checkpoint_dir=args.checkpoint_dir, resume=args.resume)


def _check_checkpoints(args: argparse.Namespace) -> None:
    if args.resume and args.checkpoint_dir is None:
        raise InputError("--resume: expected --checkpoint-dir, the folder to resume from")


def cmd_train(args: argparse.Namespace) -> int:
    if args.star is not None:
        from .star import train_star

        return train_star(args)
    if args.config is not None and _is_cryocare_config(args.config):
        return _run_cryocare_config(args, "train")
    if args.pairs is None:
        raise InputError("expected a pair file from 'cryocare extract' (or --star)")
    from ..pairs import PairSet

    check_output(args.output, overwrite=args.overwrite, volume=False)
    _check_checkpoints(args)
    pairs = PairSet.load(args.pairs)
    recipe = recipe_from_args(args, len(pairs.patch_shape))
    load_backend(device=args.device)
    model = train_model(pairs, recipe, args)
    model.save(args.output, overwrite=args.overwrite)
    best = min(model.history.get("val_loss", [float("nan")]))
    print(f"{args.output}: trained, best validation loss {best:.5f}")
    return 0


def _is_cryocare_config(path: Path) -> bool:
    from ..compat import is_cryocare_config

    return is_cryocare_config(read_config_file(path))


def _run_cryocare_config(args: argparse.Namespace, kind: str) -> int:
    from .scripts import run_config_args

    return run_config_args(kind, args)


#: Why a report has no held-out estimate (cryocare.heldout), by whether it was checked.
_NO_CHECK = {True: "no measurable signal in the halves",
             False: "the missing wedge is restored, which the halves lack"}


def _check_wedge_star(args: argparse.Namespace) -> None:
    """``--wedge star`` reads each tomogram's tilt range from the STAR files: only with --star."""
    from ..relion import FROM_STAR

    if args.star is None and isinstance(args.wedge, str) and \
            args.wedge.strip().lower() == FROM_STAR:
        raise InputError("--wedge star: reads each tomogram's tilt range from its RELION "
                         "tilt-series STAR file; give --star tomograms.star, or the range "
                         "(e.g. --wedge=-60,60)")


def cmd_predict(args: argparse.Namespace) -> int:
    _check_wedge_star(args)
    if args.star is not None:
        from .star import predict_star

        return predict_star(args)
    if args.config is not None:
        return _run_cryocare_config(args, "predict")
    if args.tomograms:
        return predict_single(args, args.model if args.wedge is None else
                              _wedge_source(args.model, args.wedge).spec)
    if bool(args.even) != bool(args.odd):
        given, missing = ("--even", "--odd") if args.even else ("--odd", "--even")
        raise InputError(f"{given} without {missing}: give both halves, or a tomogram without "
                         f"halves without either (cryocare predict --model M TOMO -o OUT)")
    from ..modelfiles import inspect_model

    if args.model is None or not args.even or not args.odd or args.output is None:
        raise InputError("expected --model, --even, --odd and --output, or --model, tomograms "
                         "without halves and --output (or --star, or --config with a cryoCARE "
                         "predict config)")
    source = inspect_model(args.model)
    if args.wedge is not None:  # checks the range; load_model pairs it with the restorer
        source = _wedge_source(source, args.wedge)
    jobs = prediction_jobs(args.even, args.odd, args.output)
    infos = [check_pair(even, odd) for even, odd, _ in jobs]
    for _, _, target in jobs:
        check_output(target, overwrite=args.overwrite, volume=False)
    if args.report is not None:
        check_output(args.report, overwrite=args.overwrite, volume=False)
    _model_config_check(source, args)
    n_dim = len(infos[0].shape)
    if source.n_dim != n_dim:
        raise InputError(f"{args.model}: restores {source.n_dim}-D images, the inputs are "
                         f"{n_dim}-D")
    if len(jobs) > 1 or jobs[0][2].parent == args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    options = predict_options(args)
    if args.scheduler is not None:
        if args.wedge is not None:
            raise InputError("--scheduler with --wedge: restoring the missing wedge merges the "
                             "whole tomogram in Fourier space, which chunks cannot; leave out "
                             "--scheduler")
        return _predict_on_cluster(args, source, jobs, options)
    load_backend(device=args.device)
    from ..heldout import denoise_file as checked_denoise_file  # model, or a better filter
    from ..heldout import report_entry, write_report
    from ..modelfiles import RESTORER, load_model

    model = load_model(source, wedge=_wedge_of(args))
    # the halves are no reference for what a wedge restoration (or a saved one) fills in
    reports, check = [], args.wedge is None and source.kind != RESTORER
    for even, odd, target in jobs:
        path, assessment = checked_denoise_file(model, even, odd, target, options,
                                                overwrite=args.overwrite, check=check,
                                                force_model=args.force_model)
        reports.append(report_entry(even, odd, path, assessment, reason=_NO_CHECK[check]))
        print(path)
    if args.report is not None:
        write_report(args.report, {"tomograms": reports}, overwrite=args.overwrite)
    return 0


def _wedge_of(args: argparse.Namespace):
    """``--wedge`` as a Wedge about ``--tilt-axis`` (Y for Z, or where there is none)."""
    if args.wedge is None:
        return None
    from ..wedge import parse_wedge

    axis = getattr(args, "tilt_axis", "Y")
    return parse_wedge(args.wedge, tilt_axis=axis if axis in ("Y", "X") else "Y")


def _wedge_source(model, wedge):
    from ..modelfiles import for_wedge

    return for_wedge("pretrained" if model is None else model, wedge)


def predict_single(args: argparse.Namespace, model) -> int:
    """Tomograms without halves (files, folders, globs), zero-shot with ``model``."""
    from .. import io
    from ..halves import expand_paths
    from ..modelfiles import inspect_model
    from ..single import output_paths

    if args.even or args.odd:
        raise InputError("expected tomograms without halves or --even/--odd, found both")
    if model is None or args.output is None:
        raise InputError("expected --model and --output with tomograms without halves")
    if getattr(args, "scheduler", None) is not None:
        raise InputError("--scheduler: takes even/odd pairs; tomograms without halves run in "
                         "this process")
    source = inspect_model(model)
    jobs = output_paths(expand_paths(args.tomograms), args.output)
    infos = [io.validate(path) for path, _ in jobs]
    for _, target in jobs:
        check_output(target, overwrite=args.overwrite, volume=False)
    _model_config_check(source, args)
    wrong = [f"{path} ({len(info.shape)}-D)" for (path, _), info in zip(jobs, infos, strict=True)
             if len(info.shape) != source.n_dim]
    if wrong:
        raise InputError(f"{model}: restores {source.n_dim}-D images, found "
                         + ", ".join(wrong))
    if len(jobs) > 1 or jobs[0][1].parent == args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    options = predict_options(args)
    load_backend(device=args.device)
    from ..modelfiles import load_model
    from ..single import denoise_tomogram_file

    network = load_model(source, wedge=_wedge_of(args))
    for path, target in jobs:
        print(denoise_tomogram_file(network, path, target, options, overwrite=args.overwrite))
    return 0


def _predict_on_cluster(args, source, jobs, options) -> int:
    from .. import distributed

    if source.kind == "cryoCARE-0.3.0":
        raise InputError(f"{source.path}: --scheduler needs a cryocare model folder (convert "
                         f"the archive first: cryocare.compat.load_archive(...).save(...))")
    scheduler = None if args.scheduler == "local" else args.scheduler
    if len(jobs) == 1:
        even, odd, target = jobs[0]
        print(distributed.predict_chunked(source.path, even, odd, target, chunk=args.chunk,
                                          scheduler=scheduler, n_workers=args.workers,
                                          overwrite=args.overwrite, progress=not args.quiet,
                                          options=options))
        return 0
    for path in distributed.predict_files(source.path, [(e, o) for e, o, _ in jobs],
                                          [t for _, _, t in jobs], scheduler=scheduler,
                                          n_workers=args.workers, overwrite=args.overwrite,
                                          progress=not args.quiet, options=options):
        print(path)
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    _check_wedge_star(args)
    if args.star is not None:
        from .star import denoise_star

        return denoise_star(args)
    if args.tomograms:
        # Fine-tuning is Noise2Noise on two halves; without them, the start model predicts.
        model = "pretrained" if args.init in (None, "pretrained") else args.init
        if args.wedge is not None and model != "none":
            model = _wedge_source(model, args.wedge).spec
        if model == "none":
            raise InputError("--init none: tomograms without halves cannot be trained on; "
                             "give --init pretrained or a model folder to predict with")
        if args.save_model is not None:
            raise InputError("--save-model: nothing is trained on tomograms without halves; "
                             "the model used is --init's")
        log.warning("no even/odd halves: fine-tuning needs two independently noisy halves of "
                    "each tomogram (Noise2Noise), and blind-spot training on one volume made "
                    "the result worse than none, by 1.6 dB on a simulated tomogram "
                    "(docs/cli.md); so these are denoised zero-shot with the %s model, "
                    "without training", model)
        return predict_single(args, model)
    if args.even is None or args.odd is None or args.output is None:
        raise InputError("expected --even, --odd and --output (or --star, or tomograms "
                         "without halves)")
    from ..halves import find_halves

    (even_path, odd_path), = find_halves([args.even], [args.odd])
    info = check_pair(even_path, odd_path)
    check_output(args.output, overwrite=args.overwrite, volume=False)
    if args.save_model is not None:
        check_output(args.save_model, overwrite=args.overwrite, volume=False)
    if args.report is not None:
        check_output(args.report, overwrite=args.overwrite, volume=False)
    _check_checkpoints(args)
    recipe = recipe_from_args(args, len(info.shape))
    check_tiles(args.tiles, recipe.config, len(info.shape))
    load_backend(device=args.device)
    from .. import io
    from ..heldout import denoise_file as checked_denoise_file  # model, or a better filter
    from ..recipe import train_on_pair

    even, odd, _ = io.read_pair(even_path, odd_path, mmap=True)
    model = train_on_pair(even, odd, recipe=recipe, budget=budget_from_args(args),
                          init=args.init, seed=args.seed, tilt_axis=args.tilt_axis,
                          fit=fit_to_machine(args), progress=not args.quiet,
                          checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                          wedge=args.wedge)
    if args.save_model is not None:
        model.save(args.save_model, overwrite=args.overwrite)
    from ..heldout import report_entry, representative_region, validation_region, write_report

    # Scored where training held its pairs out (the model never saw that noise as a target).
    region = representative_region(info.shape, within=validation_region(
        info.shape, tilt_axis=args.tilt_axis))
    check = args.wedge is None  # the halves are no reference for the wedge
    options = predict_options(args, budget=budget_from_args(args),
                              default_tta="auto" if recipe.tta else False)
    path, assessment = checked_denoise_file(
        model, even_path, odd_path, args.output, options, overwrite=args.overwrite,
        region=region, force_model=args.force_model, check=check)
    if args.report is not None:
        write_report(args.report, {"tomograms": [report_entry(
            even_path, odd_path, path, assessment, reason=_NO_CHECK[check])]},
            overwrite=args.overwrite)
    print(path)
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import io
    from ..metrics import dice
    from ..segment import segment_otsu

    io.read_info(args.input)
    check_output(args.output, overwrite=args.overwrite, volume=False)
    volume = io.read(args.input, mmap=False)
    mask = segment_otsu(volume, sigma=args.sigma, foreground=args.foreground)
    io.write(args.output, mask.astype(np.float32), like=io.read_info(args.input),
             overwrite=args.overwrite, label=f"Otsu segmentation of {args.input.name}")
    line = f"{args.output}: {mask.mean():.1%} of voxels segmented"
    if args.reference is not None:
        reference = io.read(args.reference) > 0.5
        line += f", Dice {dice(mask, reference):.4f} against {args.reference.name}"
    print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    load_backend(device=args.device)
    from ..demo import run_demo

    result = run_demo(args.output, overwrite=args.overwrite, progress=not args.quiet)
    print(f"cryocare demo: files in {result.output}/ (figure: {result.files['figure'].name})")
    print(f"{'method':<12}{'PSNR [dB]':>10}{'SSIM':>8}{'Otsu Dice':>11}{'Dice/mask':>11}"
          f"{'in-cone r':>11}{'Z/X':>7}")
    for name, score in result.scores.items():
        wedge = (f"{score['cone_r']:>11.3f}{score['z_ratio']:>7.1f}" if "cone_r" in score
                 else f"{'-':>11}{'-':>7}")
        print(f"{name:<12}{score['psnr']:>10.2f}{score['ssim']:>8.3f}{score['dice']:>11.3f}"
              f"{score['dice_mask']:>11.3f}{wedge}")
    print("PSNR/SSIM against the noiseless tomogram (SSIM after an affine fit); Otsu Dice "
          "against the Otsu segmentation of the noiseless tomogram, Dice/mask against the "
          "simulator's object mask; in-cone r (Fourier correlation inside the missing wedge) "
          "and Z/X (resolution along the beam over that across the tilt axis, FSC 0.5; a "
          "lower bound when Z is the box's depth) against the wedge-free truth. CARE wedge: "
          "CARE's result, its missing wedge filled by the shipped restorer and refiner (zero-shot)")
    for name, settings in result.settings.items():
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in settings.items())
              + " (tuned on the even and odd halves)")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
    print(f"time: {sum(result.timings.values()):.0f} s ({timings})")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import io
    from ..filters import FILTERS, apply_filter, filter_halves
    from ..filters import bm4d as _bm4d

    info = io.validate(args.input) if args.odd is None else check_pair(args.input, args.odd)
    check_output(args.output, overwrite=args.overwrite, volume=False)
    if args.method == "bm4d" and "bm4d" not in FILTERS:
        _bm4d(np.zeros((2, 2)))  # raises: the optional package is not installed
    options = {name: getattr(args, name) for name in ("size", "sigma", "iterations", "k",
                                                      "time_step")
               if getattr(args, name) is not None}
    if args.method == "nad":
        options["progress"] = not args.quiet
    volume = io.read(args.input, mmap=True)
    if args.odd is not None:  # the average of the halves, strength tuned on them
        filtered, options = filter_halves(volume, io.read(args.odd, mmap=True), args.method,
                                          **options)
        what = f"average of {args.input.name} and {args.odd.name}"
    else:
        filtered = apply_filter(volume, args.method, **options)
        what = args.input.name
    described = ", ".join(f"{k}={v}" for k, v in options.items() if k != "progress")
    io.write(args.output, filtered, like=info, overwrite=args.overwrite,
             label=f"{args.method} filter ({described or 'defaults'}) of {what}"[:80])
    print(f"{args.output}: {args.method} filter ({described or 'defaults'}) of {what}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .. import io
    from ..report import REPORT_FILES

    if not args.overwrite:
        for name in REPORT_FILES.values():
            check_output(args.output / name, overwrite=False, volume=False)
    clean = mask = isotropic = wedge = None
    if args.simulate is not None:
        if args.even or args.odd or args.clean or args.mask or args.isotropic or args.wedge:
            raise InputError("--simulate: expected no --even/--odd/--clean/--mask/--isotropic/"
                             "--wedge with it (it scores against its own wedge-free truth)")
        if len(args.simulate) != 3:
            raise InputError(f"--simulate: expected Z,Y,X, found {args.simulate}")
        n_dim = 3
    else:
        if args.even is None or args.odd is None:
            raise InputError("expected --even and --odd tomograms (or --simulate Z,Y,X)")
        n_dim = len(check_pair(args.even, args.odd).shape)
        for path in (args.clean, args.mask, args.isotropic):
            if path is not None:
                io.read_info(path)
        if (args.isotropic is None) != (args.wedge is None):
            raise InputError("--isotropic and --wedge: expected both (the wedge-free truth and "
                             "the tilt range of the halves, e.g. --wedge=-60,60) or neither")
        if args.wedge is not None:
            from ..wedge import parse_wedge

            wedge = parse_wedge(args.wedge, tilt_axis=args.tilt_axis)
    recipe = recipe_from_args(args, n_dim)
    if args.simulate is not None:
        from ..simulate import simulate_tomogram

        data = simulate_tomogram(tuple(args.simulate), seed=args.data_seed)
        # The reference mask is the Otsu segmentation of the noiseless volume (evaluate's
        # default), not the simulator's object mask: against the object mask, Otsu of the
        # noiseless volume itself scores below NAD's, so that Dice rewards blur, not restoration.
        even, odd, clean, isotropic = data.even, data.odd, data.clean, data.isotropic
        from ..wedge import Wedge

        wedge = Wedge(float(data.angles.min()), float(data.angles.max()), data.tilt_axis)
        voxel_size = data.voxel_size
        title = f"cryocare evaluate: simulated {'x'.join(map(str, args.simulate))}, " \
                f"seed {args.data_seed}"
    else:
        even, odd, info = io.read_pair(args.even, args.odd, mmap=False)
        voxel_size = float(info.voxel_size[-1]) or 1.0
        if args.clean is not None:
            clean = io.read(args.clean, mmap=False)
        if args.mask is not None:
            mask = io.read(args.mask, mmap=False) > 0.5
        if args.isotropic is not None:
            isotropic = io.read(args.isotropic, mmap=False)
        title = f"cryocare evaluate: {args.even.name} / {args.odd.name}"
    if args.voxel_size is not None:
        voxel_size = args.voxel_size
    if args.methods is None or "CARE" in args.methods:
        load_backend(device=args.device)
    from ..evaluate import evaluate
    from ..report import write_report

    result = evaluate(even, odd, clean=clean, mask=mask, isotropic=isotropic, wedge=wedge,
                      voxel_size=voxel_size,
                      methods=args.methods, recipe=recipe, budget=budget_from_args(args),
                      init=args.init, fit=fit_to_machine(args),
                      segment_sigma=args.segment_sigma, seed=args.data_seed,
                      progress=not args.quiet)
    files = write_report(result, args.output, title=title, overwrite=args.overwrite)
    keys = [k for k in ("psnr", "ssim", "dice", "halves_r", "psnr_isotropic", "cone_r") if
            any(k in v for v in result.scores.values())]
    widths = [max(10, len(k) + 1) for k in keys]
    print(f"{'method':<10}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths, strict=True)))
    for name, score in result.scores.items():
        print(f"{name:<10}" + "".join(f"{score[k]:>{w}.3f}"
                                      for k, w in zip(keys, widths, strict=True)))
    print(f"report: {files['markdown']}")
    return 0


def cmd_split_frames(args: argparse.Namespace) -> int:
    from ..frames import split_movies

    if args.tilts is None:
        written = split_movies(args.movies, args.output, gain=args.gain, align=args.align,
                               pixel_size=args.pixel_size, overwrite=args.overwrite,
                               progress=not args.quiet)
        for even, odd in written:
            print(f"{even}\n{odd}")
        return 0
    from .. import io
    from ..tiltseries import split_tilt_movies, write_tilt_series_halves

    name = args.name or args.tilts.stem
    for target in (f"{name}_EVN.st", f"{name}_ODD.st", f"{name}.tlt"):
        check_output(args.output / target, overwrite=args.overwrite, volume=False)
    series = split_tilt_movies(args.movies, args.tilts, gain=args.gain, align=args.align,
                               progress=not args.quiet)
    size = args.pixel_size
    if size is None:  # from the first movie's MRC header; TIFF has none
        first = args.movies[0]
        size = 0.0 if first.suffix.lower() in (".tif", ".tiff") else io.read_info(
            first).voxel_size[-1]
    for path in write_tilt_series_halves(series, args.output, name, pixel_size=size,
                                         overwrite=args.overwrite):
        print(path)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .. import io
    from ..reconstruct import reconstruct
    from ..tiltseries import find_tilt_file, read_tilt_angles

    if len(args.stacks) > 1 and args.output.suffix:
        raise InputError(f"{args.output}: with several tilt series, --output must be a folder")
    single = len(args.stacks) == 1 and args.output.suffix
    targets = [args.output if single else args.output / f"{stack.stem}_rec.mrc"
               for stack in args.stacks]
    for stack, target in zip(args.stacks, targets, strict=True):
        io.read_info(stack)
        check_output(target, overwrite=args.overwrite, volume=False)
    for stack, target in zip(args.stacks, targets, strict=True):
        tilt_file = args.angles or find_tilt_file(stack)
        info = io.read_info(stack)
        size = info.voxel_size[-1] if args.pixel_size is None else args.pixel_size
        rec = reconstruct(io.read(stack, mmap=True), read_tilt_angles(tilt_file),
                          thickness=args.thickness, tilt_axis=args.tilt_axis,
                          lowpass=args.lowpass, binning=args.binning, pixel_size=size)
        target.parent.mkdir(parents=True, exist_ok=True)
        print(io.write(target, rec.volume, voxel_size=rec.voxel_size, overwrite=args.overwrite,
                       label=f"WBP of {stack.name} ({tilt_file.name}), bin {args.binning}"[:80]))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..modelfiles import inspect_model

    source = inspect_model(args.model)
    if source.config.get("network") != "diffusion":
        raise InputError(f"{args.model}: expected a model of the 'diffusion' network, found "
                         f"{source.config.get('network', 'a U-Net')!r}")
    output = Path(source.path) / "inspect" if args.output is None else args.output
    load_backend(device=None)
    from ..modelfiles import load_model
    from ..nets.diffusion import write_inspection

    model = load_model(source)
    for path in write_inspection(model.keras_model, output, overwrite=args.overwrite):
        print(path)
    return 0
