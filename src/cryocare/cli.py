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
    from .pairs import sample_pairs

    _out_path(args.output, args.overwrite)
    loaded = _read_pairs(args.even, args.odd)
    pairs = sample_pairs([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                         patch_shape=args.patch_shape, n_patches=args.n_patches,
                         val_fraction=args.val_fraction, tilt_axis=args.tilt_axis,
                         seed=args.seed)
    pairs.save(args.output, overwrite=args.overwrite)
    print(f"{args.output}: {len(pairs.x_train)} training and {len(pairs.x_val)} "
          f"validation pairs of {pairs.patch_shape}")
    return 0


def _config_from_args(args, n_dim: int):
    from .config import CareConfig

    values = {}
    if args.config is not None:
        try:
            values = json.loads(Path(args.config).read_text())
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
    return CareConfig.from_dict(values)


def _cmd_train(args) -> int:
    from .model import CAREModel
    from .pairs import PairSet

    _out_path(args.output, args.overwrite)
    pairs = PairSet.load(args.pairs)
    config = _config_from_args(args, len(pairs.patch_shape))
    model = CAREModel.train(pairs, config, progress=not args.quiet)
    model.save(args.output, overwrite=args.overwrite)
    best = min(model.history.get("val_loss", [float("nan")]))
    print(f"{args.output}: trained, best validation loss {best:.5f}")
    return 0


def _predict_to(model, even_path: Path, odd_path: Path, output: Path, args) -> Path:
    from . import io

    _out_path(output, args.overwrite)
    even, odd, info = io.read_pair(even_path, odd_path, mmap=True)
    denoised = model.denoise(even, odd, tile_shape=args.tiles, progress=not args.quiet)
    return io.write(output, denoised, like=info, overwrite=args.overwrite,
                    label=f"CARE denoised from {even_path.name} and {odd_path.name}")


def _cmd_predict(args) -> int:
    from .model import CAREModel

    if len(args.even) != len(args.odd):
        raise InputError(f"got {len(args.even)} even and {len(args.odd)} odd tomograms")
    if len(args.even) > 1 and args.output.suffix:
        raise InputError(f"{args.output}: with several tomograms, --output must be a folder")
    model = CAREModel.load(args.model)
    for even, odd in zip(args.even, args.odd, strict=True):
        if len(args.even) > 1 or args.output.is_dir():
            args.output.mkdir(parents=True, exist_ok=True)
            target = args.output / f"{even.stem}_denoised.mrc"
        else:
            target = args.output
        print(_predict_to(model, even, odd, target, args))
    return 0


def _cmd_denoise(args) -> int:
    from .model import CAREModel
    from .pairs import sample_pairs

    _out_path(args.output, args.overwrite)
    if args.save_model is not None:
        _out_path(args.save_model, args.overwrite)
    loaded = _read_pairs([args.even], [args.odd])
    pairs = sample_pairs([loaded[0][0]], [loaded[0][1]], patch_shape=args.patch_shape,
                         n_patches=args.n_patches, tilt_axis=args.tilt_axis, seed=args.seed or 0)
    model = CAREModel.train(pairs, _config_from_args(args, 3), progress=not args.quiet)
    if args.save_model is not None:
        model.save(args.save_model, overwrite=args.overwrite)
    print(_predict_to(model, args.even, args.odd, args.output, args))
    return 0


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
    print(f"{'method':<10}{'PSNR [dB]':>12}{'Otsu Dice':>12}")
    for name, score in result.scores.items():
        print(f"{name:<10}{score['psnr']:>12.2f}{score['dice']:>12.3f}")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
    print(f"time: {sum(result.timings.values()):.0f} s ({timings})")
    return 0


# ----------------------------------------------------------------- parser
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
    group.add_argument("--loss", choices=("mse", "mae"))
    group.add_argument("--seed", type=int)


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
    p.add_argument("--even", type=Path, nargs="+", required=True)
    p.add_argument("--odd", type=Path, nargs="+", required=True)
    p.add_argument("--output", type=Path, required=True, help="pair file (.npz)")
    p.add_argument("--patch-shape", type=_shape, default=(32,), help="e.g. 32 or 16,32,32")
    p.add_argument("--n-patches", type=int, default=1200)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--tilt-axis", choices=("Y", "X"), default="Y")
    p.add_argument("--seed", type=int, default=0)
    _add_common(p)
    p.set_defaults(run=_cmd_extract)

    p = sub.add_parser("train", help="train a CARE model on a pair file")
    p.add_argument("pairs", type=Path, help="pair file from 'cryocare extract'")
    p.add_argument("--output", type=Path, required=True, help="model folder")
    _add_train_options(p)
    _add_common(p)
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("predict", help="denoise even/odd tomograms with a trained model")
    p.add_argument("--model", type=Path, required=True, help="model folder")
    p.add_argument("--even", type=Path, nargs="+", required=True)
    p.add_argument("--odd", type=Path, nargs="+", required=True)
    p.add_argument("--output", type=Path, required=True,
                   help="output file, or folder for <even stem>_denoised.mrc")
    p.add_argument("--tiles", type=_tiles, default="auto",
                   help="tile core size Z,Y,X, 'auto' (default) or 'none'")
    _add_common(p)
    p.set_defaults(run=_cmd_predict)

    p = sub.add_parser("denoise", help="extract + train + predict on one even/odd pair")
    p.add_argument("--even", type=Path, required=True)
    p.add_argument("--odd", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="denoised MRC file")
    p.add_argument("--save-model", type=Path, help="also keep the model in this folder")
    p.add_argument("--patch-shape", type=_shape, default=(32,))
    p.add_argument("--n-patches", type=int, default=1200)
    p.add_argument("--tilt-axis", choices=("Y", "X"), default="Y")
    p.add_argument("--tiles", type=_tiles, default="auto")
    _add_train_options(p)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # The command line is an application: quieten TensorFlow's C++ start-up chatter
    # unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("patch_shape",):
        if getattr(args, name, None) is not None and len(getattr(args, name)) == 1:
            setattr(args, name, getattr(args, name)[0])
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
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
