"""Command line: ``cryocare <command> ...``.

A thin layer over the library. Heavy modules (Keras) are imported only by
the commands that need them. Bad input ends with one line on stderr and
exit status 2; ``main`` never raises for user errors, so it can be called
from tests and other programs: ``main(["predict", "--help"])``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import CryocareError, InputError

__all__ = ["main"]

log = logging.getLogger("cryocare")


def _shape(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 64,128,128, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return values


def _duration(text: str) -> float:
    from .recipe import parse_duration

    try:
        return parse_duration(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _tiles(text: str):
    return None if text == "none" else "auto" if text == "auto" else _shape(text)


def _out_path(path: Path, overwrite: bool) -> Path:
    from .errors import OutputExistsError

    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists already (use --overwrite to replace it)")
    return path


# ---------------------------------------------------------------- commands
def _cmd_simulate(args) -> int:
    from . import io
    from .simulate import simulate_tomogram

    args.output.mkdir(parents=True, exist_ok=True)
    data = simulate_tomogram(tuple(args.shape), seed=args.seed, voxel_size=args.voxel_size)
    for name in ("even", "odd", "clean"):
        path = io.write(args.output / f"{args.prefix}{name}.mrc", getattr(data, name),
                        voxel_size=data.voxel_size, overwrite=args.overwrite,
                        label=f"simulated {name}")
        print(path)
    path = io.write(args.output / f"{args.prefix}mask.mrc", data.mask.astype("float32"),
                    voxel_size=data.voxel_size, overwrite=args.overwrite,
                    label="simulated object mask")
    print(path)
    return 0


def _read_pairs(evens: list[Path], odds: list[Path], *, mmap: bool = True):
    from . import io

    if len(evens) != len(odds):
        raise InputError(f"got {len(evens)} even and {len(odds)} odd tomograms; "
                         "give one odd file for each even file, in the same order")
    return [io.read_pair(e, o, mmap=mmap) for e, o in zip(evens, odds, strict=True)]


def _cmd_extract(args) -> int:
    from . import io
    from .pairing import find_halves
    from .pairs import sample_pairs

    _out_path(args.output, args.overwrite)
    masks = getattr(args, "mask", None)
    mask_of = {}
    if masks is not None and masks != ["auto"]:
        if len(masks) != len(args.even):
            raise InputError(f"--mask: got {len(masks)} masks for {len(args.even)} "
                             "even files; give one mask per even file, or 'auto'")
        mask_of = dict(zip(args.even, masks, strict=True))
    # Halves are paired by name (_EVN/_ODD, even/ and odd/ folders ...), not by order.
    matched = find_halves(args.even, args.odd)
    loaded = [io.read_pair(e, o, mmap=True) for e, o in matched]
    if mask_of:
        missing = [str(e) for e, _ in matched if e not in mask_of]
        if missing:
            raise InputError("--mask: with folders or patterns in --even, give --mask auto; "
                             "no mask for " + ", ".join(missing))
        masks = [io.read(mask_of[e], mmap=True) for e, _ in matched]
    elif masks == ["auto"]:
        masks = "auto"
    pairs = sample_pairs([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                         patch_shape=args.patch_shape, n_patches=args.n_patches,
                         val_fraction=args.val_fraction, tilt_axis=args.tilt_axis,
                         masks=masks,
                         normalize=getattr(args, "normalize", "global").replace("-", "_"),
                         seed=args.seed)
    pairs.save(args.output, overwrite=args.overwrite)
    print(f"{args.output}: {len(pairs.x_train)} training and {len(pairs.x_val)} "
          f"validation pairs of {pairs.patch_shape}")
    return 0


def _config_from_args(args, n_dim: int, base=None):
    from .config import CareConfig

    values = {} if base is None else base.to_dict()
    if args.config is not None:
        try:
            values.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{args.config}: cannot read the JSON config ({error})") from None
    values.setdefault("n_dim", n_dim)
    for option, key in (("epochs", "train_epochs"), ("steps", "train_steps_per_epoch"),
                        ("batch_size", "train_batch_size"), ("depth", "unet_n_depth"),
                        ("kernel_size", "unet_kern_size"), ("n_first", "unet_n_first"),
                        ("learning_rate", "train_learning_rate"), ("loss", "train_loss"),
                        ("seed", "seed")):
        if getattr(args, option) is not None:
            values[key] = getattr(args, option)
    for option, key in (("network", "network"), ("backend", "backend"),
                        ("early_stopping", "train_early_stopping_patience"),
                        ("precision", "train_precision"),
                        ("augment", "train_augment"), ("schedule", "train_schedule"),
                        ("time_budget", "train_time_budget")):
        if getattr(args, option, None) is not None:
            values[key] = getattr(args, option)
    if getattr(args, "time_budget", None) is not None and args.epochs is None:
        values["train_epochs"] = 100_000  # the budget decides
    return CareConfig.from_dict(values)


def _cmd_train(args) -> int:
    from .pairs import PairSet

    _out_path(args.output, args.overwrite)
    pairs = PairSet.load(args.pairs)
    config = _config_from_args(args, len(pairs.patch_shape))
    model = _train(pairs, config, args)
    model.save(args.output, overwrite=args.overwrite)
    best = min(model.history.get("val_loss", [float("nan")]))
    print(f"{args.output}: trained, best validation loss {best:.5f}")
    return 0


def _train(pairs, config, args):
    """Train as the network asks: the diffusion network stage by stage, then jointly."""
    options = {"progress": not args.quiet, "checkpoint_dir": args.checkpoint_dir,
               "resume": args.resume}
    if config.network == "diffusion":
        from .nets.diffusion import train_stagewise

        return train_stagewise(pairs, config, **options)
    from .model import CAREModel

    return CAREModel.train(pairs, config, **options)


def _predict_options(args) -> dict:
    """Prediction options of CAREModel.predict from the command line."""
    return {"tile_shape": args.tiles, "memory": getattr(args, "memory", None),
            "batch_size": getattr(args, "predict_batch", None),
            "normalize": getattr(args, "normalize", "training"), "progress": not args.quiet,
            "tta": getattr(args, "tta", False),
            "precision": getattr(args, "predict_precision", "float32")}


def _predict_to(model, even_path: Path, odd_path: Path, output: Path, args) -> Path:
    from .predict import denoise_file

    _out_path(output, args.overwrite)
    return denoise_file(model, even_path, odd_path, output, overwrite=args.overwrite,
                        **_predict_options(args))


def _predict_jobs(even: Sequence, odd: Sequence, output: Path) -> list[tuple[Path, Path, Path]]:
    """(even, odd, output) for every pair: files, folders and globs paired by name.

    ``output`` is the file for a single pair (if it has an MRC extension and is
    no folder), else a folder for ``<even stem>_denoised.mrc``.
    """
    from .pairing import find_halves

    pairs = find_halves(even, odd)
    to_file = len(pairs) == 1 and output.suffix.lower() in (".mrc", ".rec", ".map") \
        and not output.is_dir()
    if len(pairs) > 1 and output.suffix and not output.is_dir():
        raise InputError(f"{output}: with {len(pairs)} tomograms, --output must be a folder")
    if to_file:
        return [(pairs[0][0], pairs[0][1], output)]
    return [(e, o, output / f"{e.stem}_denoised.mrc") for e, o in pairs]


def _cmd_predict(args) -> int:
    if not args.model.is_dir():
        raise InputError(f"{args.model}: no such model folder")
    jobs = _predict_jobs(args.even, args.odd, args.output)
    for _, _, target in jobs:
        _out_path(target, args.overwrite)
    if len(jobs) > 1 or jobs[0][2].parent == args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    if args.scheduler is not None:
        from . import distributed

        options = {k: v for k, v in _predict_options(args).items() if k != "progress"}
        cluster = {"scheduler": None if args.scheduler == "local" else args.scheduler,
                   "n_workers": args.workers, "overwrite": args.overwrite,
                   "progress": not args.quiet}
        if len(jobs) == 1:
            even, odd, target = jobs[0]
            print(distributed.predict_chunked(args.model, even, odd, target, chunk=args.chunk,
                                              **cluster, **options))
        else:
            for path in distributed.predict_files(args.model, [(e, o) for e, o, _ in jobs],
                                                  [t for _, _, t in jobs], **cluster, **options):
                print(path)
        return 0
    from .model import CAREModel

    model = CAREModel.load(args.model)
    for even, odd, target in jobs:
        print(_predict_to(model, even, odd, target, args))
    return 0


def _cmd_denoise(args) -> int:
    from .recipe import DEFAULT_TIME_BUDGET, train_on_pair

    _out_path(args.output, args.overwrite)
    if args.save_model is not None:
        _out_path(args.save_model, args.overwrite)
    (even, odd, _), = _read_pairs([args.even], [args.odd])
    recipe = _recipe_from_args(args, even.ndim)
    budget = DEFAULT_TIME_BUDGET if args.time_budget is None else args.time_budget
    model = train_on_pair(even, odd, recipe=recipe, time_budget=budget, seed=args.seed or 0,
                          tilt_axis=args.tilt_axis, progress=not args.quiet,
                          checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    if args.save_model is not None:
        model.save(args.save_model, overwrite=args.overwrite)
    args.tta = recipe.tta
    print(_predict_to(model, args.even, args.odd, args.output, args))
    return 0


def _recipe_from_args(args, n_dim: int):
    """The default recipe with the command line's changes (config, patches, TTA)."""
    from .recipe import DEFAULT_RECIPE

    config = _config_from_args(args, n_dim, base=DEFAULT_RECIPE.config)
    return DEFAULT_RECIPE.override(config=config.replace(train_time_budget=0.0),
                                   patch_shape=args.patch_shape, n_patches=args.n_patches,
                                   tta=args.tta)


def _cmd_segment(args) -> int:
    import numpy as np

    from . import io
    from .segment import dice, segment_otsu

    _out_path(args.output, args.overwrite)
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


def _cmd_demo(args) -> int:
    from .demo import run_demo

    result = run_demo(args.output, overwrite=args.overwrite, progress=not args.quiet)
    print(f"cryocare demo: files in {result.output}/ (figure: {result.files['figure'].name})")
    print(f"{'method':<10}{'PSNR [dB]':>12}{'SSIM':>8}{'Otsu Dice':>12}{'Dice/mask':>12}")
    for name, score in result.scores.items():
        print(f"{name:<10}{score['psnr']:>12.2f}{score['ssim']:>8.3f}{score['dice']:>12.3f}"
              f"{score['dice_mask']:>12.3f}")
    print("PSNR/SSIM against the noiseless tomogram (SSIM after an affine fit); Otsu Dice "
          "against the Otsu segmentation of the noiseless tomogram, Dice/mask against the "
          "simulator's object mask")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
    print(f"time: {sum(result.timings.values()):.0f} s ({timings})")
    return 0


def _cmd_filter(args) -> int:
    import numpy as np

    from . import io
    from .filters import FILTERS, apply_filter
    from .filters import bm4d as _bm4d

    _out_path(args.output, args.overwrite)
    if args.method == "bm4d" and "bm4d" not in FILTERS:
        _bm4d(np.zeros((2, 2)))  # raises: the optional package is not installed
    options = {name: getattr(args, name) for name in ("size", "sigma", "iterations", "k",
                                                      "time_step")
               if getattr(args, name) is not None}
    if args.method == "nad":
        options["progress"] = not args.quiet
    volume = io.read(args.input, mmap=True)
    filtered = apply_filter(volume, args.method, **options)
    described = ", ".join(f"{k}={v}" for k, v in options.items() if k != "progress")
    io.write(args.output, filtered, like=io.read_info(args.input), overwrite=args.overwrite,
             label=f"{args.method} filter ({described or 'defaults'}) of {args.input.name}")
    print(f"{args.output}: {args.method} filter ({described or 'defaults'})")
    return 0


def _cmd_evaluate(args) -> int:
    from . import io
    from .evaluate import evaluate
    from .report import REPORT_FILES, write_report

    if not args.overwrite:
        existing = [n for n in REPORT_FILES.values() if (args.output / n).exists()]
        if existing:
            _out_path(args.output / existing[0], False)
    clean = mask = None
    if args.simulate is not None:
        if args.even or args.odd or args.clean or args.mask:
            raise InputError("--simulate: expected no --even/--odd/--clean/--mask with it")
        from .simulate import simulate_tomogram

        if len(args.simulate) != 3:
            raise InputError(f"--simulate: expected Z,Y,X, found {args.simulate}")
        data = simulate_tomogram(tuple(args.simulate), seed=args.data_seed)
        # The reference mask is the Otsu segmentation of the noiseless volume (evaluate's
        # default), not the simulator's object mask: against the object mask, Otsu of the
        # noiseless volume itself scores below NAD's, so that Dice rewards blur, not restoration.
        even, odd, clean = data.even, data.odd, data.clean
        voxel_size = data.voxel_size
        title = f"cryocare evaluate: simulated {'x'.join(map(str, args.simulate))}, " \
                f"seed {args.data_seed}"
    else:
        if args.even is None or args.odd is None:
            raise InputError("expected --even and --odd tomograms (or --simulate Z,Y,X)")
        even, odd, info = io.read_pair(args.even, args.odd, mmap=False)
        voxel_size = float(info.voxel_size[-1]) or 1.0
        if args.clean is not None:
            clean = io.read(args.clean, mmap=False)
        if args.mask is not None:
            mask = io.read(args.mask, mmap=False) > 0.5
        title = f"cryocare evaluate: {args.even.name} / {args.odd.name}"
    if args.voxel_size is not None:
        voxel_size = args.voxel_size
    from .recipe import DEFAULT_TIME_BUDGET

    recipe = _recipe_from_args(args, even.ndim)
    budget = DEFAULT_TIME_BUDGET if args.time_budget is None else args.time_budget
    result = evaluate(even, odd, clean=clean, mask=mask, voxel_size=voxel_size,
                      methods=args.methods, config=recipe.config, n_patches=recipe.n_patches,
                      patch_shape=recipe.patch_shape, time_budget=budget,
                      tta=recipe.tta, segment_sigma=args.segment_sigma, seed=args.data_seed,
                      progress=not args.quiet)
    files = write_report(result, args.output, title=title, overwrite=args.overwrite)
    keys = [k for k in ("psnr", "ssim", "dice", "halves_r") if
            any(k in v for v in result.scores.values())]
    print(f"{'method':<10}" + "".join(f"{k:>10}" for k in keys))
    for name, score in result.scores.items():
        print(f"{name:<10}" + "".join(f"{score[k]:>10.3f}" for k in keys))
    print(f"report: {files['markdown']}")
    return 0


def _cmd_split_frames(args) -> int:
    from .frames import split_movies

    if args.tilts is None:
        written = split_movies(args.movies, args.output, gain=args.gain, align=args.align,
                               pixel_size=args.pixel_size, overwrite=args.overwrite,
                               progress=not args.quiet)
        for even, odd in written:
            print(f"{even}\n{odd}")
        return 0
    from . import io
    from .tiltseries import split_tilt_movies, write_tilt_series_halves

    name = args.name or args.tilts.stem
    for target in (f"{name}_EVN.st", f"{name}_ODD.st", f"{name}.tlt"):
        _out_path(args.output / target, args.overwrite)
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


def _cmd_reconstruct(args) -> int:
    from . import io
    from .reconstruct import reconstruct
    from .tiltseries import find_tilt_file, read_tilt_angles

    if len(args.stacks) > 1 and args.output.suffix:
        raise InputError(f"{args.output}: with several tilt series, --output must be a folder")
    single = len(args.stacks) == 1 and args.output.suffix
    targets = [args.output if single else args.output / f"{stack.stem}_rec.mrc"
               for stack in args.stacks]
    for target in targets:
        _out_path(target, args.overwrite)
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


# ----------------------------------------------------------------- parser
def _cmd_inspect(args) -> int:
    from .model import CAREModel
    from .nets.diffusion import write_inspection

    model = CAREModel.load(args.model)
    output = args.model / "inspect" if args.output is None else args.output
    for path in write_inspection(model.keras_model, output, overwrite=args.overwrite):
        print(path)
    return 0


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("network and training (defaults: cryocare.CareConfig)")
    group.add_argument("--config", type=Path, help="JSON file with CareConfig keys")
    group.add_argument("--epochs", type=int)
    group.add_argument("--steps", type=int, help="steps per epoch")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--depth", type=int, help="U-Net depth")
    group.add_argument("--kernel-size", type=int)
    group.add_argument("--n-first", type=int, help="filters in the first U-Net level")
    group.add_argument("--learning-rate", type=float)
    group.add_argument("--loss", choices=("mse", "mae", "fsc"),
                       help="fsc: MSE + (1 - mean Fourier shell correlation)")
    group.add_argument("--schedule", choices=("plateau", "cosine"),
                       help="learning rate: halve on plateaus, or warm-up + cosine decay")
    group.add_argument("--time-budget", type=_duration, metavar="DURATION",
                       help="stop training after this long (e.g. 12m, 1.5h), keeping the best "
                            "weights; without --epochs the budget alone decides")
    group.add_argument("--seed", type=int)
    group.add_argument("--network",
                       help="registered network: unet (default), rednet or diffusion "
                            "(trained stage by stage, then jointly)")
    group.add_argument("--augment", action="store_true", default=None,
                       help="random 90° rotations/flips normal to the tilt axis and "
                            "even/odd swaps of the training batches")
    group.add_argument("--backend", choices=("tensorflow", "torch", "jax"),
                       help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    group.add_argument("--early-stopping", type=int, metavar="EPOCHS",
                       help="stop after this many epochs without a better validation loss")
    group.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                       help="mixed_bfloat16: 2.5x faster training on CPUs with AMX/AVX-512 BF16 "
                            "and recent GPUs; mixed_float16: GPUs with tensor cores")


def _add_tta_option(parser: argparse.ArgumentParser, default: bool | None = False) -> None:
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=default,
                        help="test-time augmentation: average over the 8 flips of every tile "
                             "(8x the prediction time)" +
                             ("; default: the recipe's (on)" if default is None else ""))


def _add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint-dir", type=Path,
                       help="write a checkpoint after every epoch into this folder")
    group.add_argument("--resume", action="store_true",
                       help="continue an interrupted training from --checkpoint-dir")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryocare",
        description="Noise2Noise (Cryo-CARE) restoration of cryo-electron tomograms.",
    )
    parser.add_argument("--version", action="version", version=f"cryocare {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("simulate", help="write a simulated even/odd/clean tomogram set")
    p.add_argument("output", type=Path, help="folder for the MRC files")
    p.add_argument("--shape", type=_shape, default=(64, 128, 128), help="Z,Y,X")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voxel-size", type=float, default=10.0, help="Å per voxel")
    p.add_argument("--prefix", default="", help="prefix of the file names")
    _add_common(p)
    p.set_defaults(run=_cmd_simulate)

    p = sub.add_parser("extract", help="sample training pairs from even/odd tomograms")
    p.add_argument("--even", type=Path, nargs="+", required=True,
                   help="even halves: files, folders or patterns (paired with --odd by name)")
    p.add_argument("--odd", type=Path, nargs="+", required=True)
    p.add_argument("--output", type=Path, required=True, help="pair file (.npz)")
    p.add_argument("--patch-shape", type=_shape, default=(32,), help="e.g. 32 or 16,32,32")
    p.add_argument("--n-patches", type=int, default=1200)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--tilt-axis", choices=("Y", "X"), default="Y")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask", nargs="+",
                   help="mask files (one per --even, same order; non-zero = sample), "
                        "or 'auto' for masks from the local variance")
    p.add_argument("--normalize", choices=("global", "per-dataset"), default="global",
                   help="statistics of all data (default) or of each even/odd pair")
    _add_common(p)
    p.set_defaults(run=_cmd_extract)

    p = sub.add_parser("split-frames",
                       help="movies -> even/odd frame sums (P2P), or even/odd tilt series (T2T)")
    p.add_argument("movies", type=Path, nargs="+", help="MRC (.mrc/.mrcs) or TIFF movies")
    p.add_argument("--output", type=Path, required=True, help="output folder")
    p.add_argument("--gain", type=Path, help="gain reference (MRC or TIFF image)")
    p.add_argument("--align", action="store_true", help="rigid whole-frame alignment first")
    p.add_argument("--pixel-size", type=float, help="Å per pixel (default: from the movies)")
    p.add_argument("--tilts", type=Path,
                   help="IMOD .tlt/.rawtlt file: the movies are the tilts of one series, "
                        "in the order of this file; writes NAME_EVN.st, NAME_ODD.st, NAME.tlt")
    p.add_argument("--name", help="name of the tilt series (default: stem of --tilts)")
    _add_common(p)
    p.set_defaults(run=_cmd_split_frames)

    p = sub.add_parser("reconstruct", help="weighted back-projection of tilt series")
    p.add_argument("stacks", type=Path, nargs="+", help="tilt-series stacks (.st/.mrc)")
    p.add_argument("--output", type=Path, required=True,
                   help="tomogram file (one stack) or folder for <stem>_rec.mrc")
    p.add_argument("--thickness", type=int, required=True, help="in unbinned pixels")
    p.add_argument("--angles", type=Path,
                   help="IMOD .tlt/.rawtlt file (default: found next to each stack by name)")
    p.add_argument("--binning", type=int, default=1)
    p.add_argument("--lowpass", type=float,
                   help="Hann taper of the ramp filter, fraction of Nyquist in (0, 1]")
    p.add_argument("--tilt-axis", choices=("Y", "X"), default="Y")
    p.add_argument("--pixel-size", type=float, help="Å per pixel (default: from the stack)")
    _add_common(p)
    p.set_defaults(run=_cmd_reconstruct)

    p = sub.add_parser("train", help="train a CARE model on a pair file")
    p.add_argument("pairs", type=Path, help="pair file from 'cryocare extract'")
    p.add_argument("--output", type=Path, required=True, help="model folder")
    _add_train_options(p)
    _add_checkpoint_options(p)
    _add_common(p)
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("predict", help="denoise even/odd tomograms with a trained model")
    p.add_argument("--model", type=Path, required=True, help="model folder")
    p.add_argument("--even", nargs="+", required=True,
                   help="even halves: files, folders or globs (paired with --odd by name)")
    p.add_argument("--odd", nargs="+", required=True, help="odd halves, as --even")
    p.add_argument("--output", type=Path, required=True,
                   help="output file for one pair, or folder for <even stem>_denoised.mrc")
    p.add_argument("--tiles", type=_tiles, default="auto",
                   help="tile core size Z,Y,X (Y,X in 2-D), 'auto' (default: the largest "
                        "that fit --memory) or 'none'")
    p.add_argument("--memory", help="memory budget, e.g. 4G (default: half the free memory)")
    p.add_argument("--batch", dest="predict_batch", type=int,
                   help="tiles per forward pass (default: as many as fit, at most 8)")
    p.add_argument("--normalize", choices=("training", "image"), default="training",
                   help="intensity statistics: the training data's (default) or each "
                        "tomogram's own")
    p.add_argument("--scheduler", help="run on a Dask cluster: 'local' or a scheduler "
                   "address such as tcp://node:8786")
    p.add_argument("--workers", type=int, default=2, help="workers of a 'local' cluster")
    p.add_argument("--chunk", type=int, default=64,
                   help="slices per task when one tomogram is spread over the cluster")
    _add_tta_option(p)
    p.add_argument("--precision", dest="predict_precision", choices=("float32", "bfloat16"),
                   default="float32",
                   help="bfloat16: about twice as fast on CPUs with AMX/AVX-512 BF16, outputs "
                        "differ by ~1e-3 of the range")
    _add_common(p)
    p.set_defaults(run=_cmd_predict)

    p = sub.add_parser("denoise", help="extract + train + predict on one even/odd pair")
    p.add_argument("--even", type=Path, required=True)
    p.add_argument("--odd", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="denoised MRC file")
    p.add_argument("--save-model", type=Path, help="also keep the model in this folder")
    p.add_argument("--patch-shape", type=_shape, help="default: the recipe's (32)")
    p.add_argument("--n-patches", type=int, help="default: the recipe's (1200)")
    p.add_argument("--tilt-axis", choices=("Y", "X"), default="Y")
    p.add_argument("--tiles", type=_tiles, default="auto")
    _add_tta_option(p, default=None)
    _add_train_options(p)
    _add_checkpoint_options(p)
    _add_common(p)
    p.set_defaults(run=_cmd_denoise)

    p = sub.add_parser("segment", help="Otsu segmentation of a volume")
    p.add_argument("input", type=Path)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--sigma", type=float, default=1.0, help="Gaussian pre-smoothing (voxels)")
    p.add_argument("--foreground", choices=("dark", "bright"), default="dark")
    p.add_argument("--reference", type=Path, help="reference mask: report the Dice score")
    _add_common(p)
    p.set_defaults(run=_cmd_segment)

    p = sub.add_parser("demo", help="simulate, train, denoise and segment a demo tomogram")
    p.add_argument("--output", type=Path, default=Path("demo_output"))
    _add_common(p)
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("filter", help="denoise a volume with a classical filter (baseline)")
    p.add_argument("input", type=Path)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--method", choices=("median", "gaussian", "nad", "bm4d"), required=True,
                   help="bm4d needs the optional package: pip install 'cryocare-ng[bm4d]'")
    p.add_argument("--size", type=int, help="median: window edge (odd, default 3)")
    p.add_argument("--sigma", type=float,
                   help="gaussian: std in voxels (default 1); nad: gradient smoothing "
                        "(default 1); bm4d: noise std (default: estimated)")
    p.add_argument("--iterations", type=int, help="nad: iterations (default 20)")
    p.add_argument("--k", type=float, help="nad: contrast parameter K (default: 90th "
                                           "percentile of the gradient magnitude)")
    p.add_argument("--time-step", type=float, help="nad: time step (default 0.1)")
    _add_common(p)
    p.set_defaults(run=_cmd_filter)

    p = sub.add_parser("evaluate", help="compare raw, median, Gaussian, NAD, (BM4D) and "
                                        "CARE; write a report with figures")
    p.add_argument("--even", type=Path)
    p.add_argument("--odd", type=Path)
    p.add_argument("--clean", type=Path, help="noise-free reference (if known)")
    p.add_argument("--mask", type=Path, help="reference segmentation (default: Otsu of --clean)")
    p.add_argument("--simulate", type=_shape, metavar="Z,Y,X",
                   help="evaluate on a simulated tomogram of this shape instead")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the simulation and of the patch sampling")
    p.add_argument("--output", type=Path, required=True, help="report folder")
    p.add_argument("--methods", type=lambda text: [m.strip() for m in text.split(",")],
                   help="comma-separated, from raw,median,gaussian,nad,bm4d,CARE "
                        "(default: all installed)")
    p.add_argument("--voxel-size", type=float, help="Å per voxel (default: from the header)")
    p.add_argument("--segment-sigma", type=float, default=1.0,
                   help="Gaussian pre-smoothing of the Otsu segmentations (voxels)")
    p.add_argument("--patch-shape", type=_shape, help="default: the recipe's (32)")
    p.add_argument("--n-patches", type=int, help="default: the recipe's (1200)")
    _add_tta_option(p, default=None)
    _add_train_options(p)
    _add_common(p)
    p.set_defaults(run=_cmd_evaluate)

    p = sub.add_parser("inspect", help="draw the learned influence functions and filters "
                                       "of a diffusion model (PNG)")
    p.add_argument("model", type=Path, help="model folder (network 'diffusion')")
    p.add_argument("--output", type=Path, help="folder for the figures (default: MODEL/inspect)")
    _add_common(p)
    p.set_defaults(run=_cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # The command line is an application: quieten TensorFlow's C++ start-up chatter
    # unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # cryoCARE JSON configs (--config) and RELION 5 STAR files (--star): see legacy_cli.
    from .legacy_cli import dispatch

    status = dispatch(sys.argv[1:] if argv is None else argv)
    if status is not None:
        return status
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("patch_shape",):
        if getattr(args, name, None) is not None and len(getattr(args, name)) == 1:
            setattr(args, name, getattr(args, name)[0])
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "backend", None) is not None:
            from .backends import select

            select(args.backend)  # sets KERAS_BACKEND if Keras is not imported yet
        return args.run(args)
    except CryocareError as error:
        print(f"cryocare {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cryocare {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cryocare {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
