"""``cryocare <command> ...``: the parser and the entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .app import configure_logging, run
from .commands import (
    cmd_demo,
    cmd_denoise,
    cmd_evaluate,
    cmd_extract,
    cmd_filter,
    cmd_inspect,
    cmd_predict,
    cmd_reconstruct,
    cmd_segment,
    cmd_simulate,
    cmd_split_frames,
    cmd_train,
)
from .options import (
    HelpFormatter,
    add_common,
    add_heldout_options,
    add_output,
    add_precision_option,
    add_prediction_options,
    add_sampling_options,
    add_star_options,
    add_training_options,
    device_type,
    shape_type,
)

__all__ = ["build_parser", "main"]


def _sub(sub, name: str, help: str, run, description: str | None = None):
    parser = sub.add_parser(name, help=help, description=description or help,
                            formatter_class=HelpFormatter)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``cryocare`` with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="cryocare", formatter_class=HelpFormatter,
        description="Noise2Noise (Cryo-CARE) restoration of cryo-electron tomograms.",
    )
    parser.add_argument("--version", action="version", version=f"cryocare {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = _sub(sub, "simulate", "write simulated even/odd/clean/isotropic tomograms", cmd_simulate)
    p.add_argument("output", type=Path, help="folder for the MRC files")
    p.add_argument("--shape", type=shape_type, default=(64, 128, 128), help="Z,Y,X")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    p.add_argument("--voxel-size", type=float, default=10.0, help="Å per voxel")
    p.add_argument("--prefix", default="", help="prefix of the file names")
    add_common(p)

    p = _sub(sub, "extract", "sample training pairs from even/odd tomograms", cmd_extract)
    p.add_argument("--even", nargs="+",
                   help="even halves: files, folders or patterns (paired with --odd by name)")
    p.add_argument("--odd", nargs="+", help="odd halves, as --even")
    add_output(p, "pair file (.npz)", required=False)
    p.add_argument("--config", type=Path,
                   help="a cryoCARE train_data config: run it as cryoCARE_extract_train_data.py")
    add_sampling_options(p, recipe_defaults=False)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument("--mask", nargs="+",
                   help="mask files (one per --even, same order; non-zero = sample), or 'auto' "
                        "for masks from the local variance (default: sample everywhere)")
    p.add_argument("--normalize", choices=("global", "per-dataset"), default="global",
                   help="statistics of all data, or of each even/odd pair")
    add_common(p)

    p = _sub(sub, "split-frames", "movies -> even/odd frame sums (P2P), or even/odd tilt "
                                  "series (T2T)", cmd_split_frames)
    p.add_argument("movies", type=Path, nargs="+", help="MRC (.mrc/.mrcs) or TIFF movies")
    add_output(p, "output folder")
    p.add_argument("--gain", type=Path, help="gain reference, MRC or TIFF (default: none)")
    p.add_argument("--align", action="store_true", help="rigid whole-frame alignment first")
    p.add_argument("--pixel-size", type=float,
                   help="Å per pixel (default: from the movies)")
    p.add_argument("--tilts", type=Path,
                   help="IMOD .tlt/.rawtlt file: the movies are the tilts of one series, in the "
                        "order of this file; writes NAME_EVN.st, NAME_ODD.st, NAME.tlt "
                        "(default: independent movies, P2P)")
    p.add_argument("--name", help="name of the tilt series (default: stem of --tilts)")
    add_common(p)

    p = _sub(sub, "reconstruct", "weighted back-projection of tilt series", cmd_reconstruct)
    p.add_argument("stacks", type=Path, nargs="+", help="tilt-series stacks (.st/.mrc)")
    add_output(p, "tomogram file (one stack) or folder for <stem>_rec.mrc")
    p.add_argument("--thickness", type=int, required=True, help="in unbinned pixels (required)")
    p.add_argument("--angles", type=Path,
                   help="IMOD .tlt/.rawtlt file (default: found next to each stack by name)")
    p.add_argument("--binning", type=int, default=1, help="binning of the output")
    p.add_argument("--lowpass", type=float,
                   help="Hann taper of the ramp filter, fraction of Nyquist in (0, 1] "
                        "(default: none)")
    p.add_argument("--tilt-axis", choices=("Y", "X"), default="Y", help="tilt axis of the stack")
    p.add_argument("--pixel-size", type=float, help="Å per pixel (default: from the stack)")
    add_common(p)

    p = _sub(sub, "train", "train a CARE model on a pair file (or on the tomograms of a "
                           "tomograms.star)", cmd_train)
    p.add_argument("pairs", type=Path, nargs="?",
                   help="pair file from 'cryocare extract' (or give --star)")
    add_output(p, "model folder", required=False)
    add_star_options(p, train=True)
    add_sampling_options(p, recipe_defaults=True)
    add_training_options(p)
    add_precision_option(p)
    add_common(p)

    p = _sub(sub, "predict", "denoise even/odd tomograms, or tomograms without halves "
                             "(zero-shot), with a model in any format (cryocare folder, "
                             "cryoCARE .tar.gz, 'pretrained')", cmd_predict)
    p.add_argument("--model",
                   help="cryocare model folder, cryoCARE 0.3.0 .tar.gz archive or folder, or "
                        "'pretrained' (the shipped general model, normalising per tomogram)")
    p.add_argument("--wedge", metavar="MIN,MAX|FILE|star",
                   help="tilt range of the data in degrees (e.g. --wedge=-60,60) or an IMOD "
                        ".tlt/.rawtlt file: restore the missing wedge too (the model denoises, "
                        "the shipped restorer fills the cone on the halves binned by 2); with "
                        "--star, 'star' reads each tomogram's own range from its tilt-series "
                        "STAR file (default: denoise only)")
    p.add_argument("tomograms", nargs="*", metavar="TOMO",
                   help="tomograms without halves (MRC or TIFF files, folders or globs), "
                        "denoised zero-shot; or give --even and --odd")
    p.add_argument("--even", nargs="+",
                   help="even halves: files, folders or globs (paired with --odd by name)")
    p.add_argument("--odd", nargs="+", help="odd halves, as --even")
    add_output(p, "output file for one pair, or folder for <name>_denoised.mrc (the even "
                  "file's name without its _EVN/_even/_half1 marker)", required=False)
    p.add_argument("--config", type=Path,
                   help="a cryoCARE predict config: run it as cryoCARE_predict.py")
    add_star_options(p, train=False)
    add_prediction_options(p, tta_default=False)
    add_precision_option(p)
    add_heldout_options(p)
    group = p.add_argument_group("cluster (Dask)")
    group.add_argument("--scheduler", help="run on a Dask cluster: 'local' or a scheduler "
                                           "address such as tcp://node:8786 (default: this "
                                           "process)")
    group.add_argument("--workers", type=int, default=2, help="workers of a 'local' cluster")
    group.add_argument("--chunk", type=int, default=64,
                       help="slices per task when one tomogram is spread over the cluster")
    add_common(p)

    p = _sub(sub, "denoise", "train on even/odd halves and denoise them (extract + train + "
                             "predict with the measured recipe)", cmd_denoise)
    p.add_argument("tomograms", nargs="*", metavar="TOMO",
                   help="tomograms without halves (files, folders or globs): no fine-tuning "
                        "(it needs two halves), denoised zero-shot with --init's model")
    p.add_argument("--even", type=Path, help="even half (or give --star)")
    p.add_argument("--odd", type=Path, help="odd half")
    add_output(p, "denoised MRC file (with --star: the job folder)", required=False)
    p.add_argument("--save-model", type=Path, help="also keep the model in this folder "
                                                   "(default: not kept)")
    p.add_argument("--wedge", metavar="MIN,MAX|FILE|star",
                   help="tilt range of the halves in degrees (e.g. --wedge=-60,60) or an IMOD "
                        ".tlt/.rawtlt file: restore the missing wedge too (the model is "
                        "fine-tuned as without it, the shipped restorer and refiner fill the "
                        "cone; --save-model keeps all); with --star, 'star' reads each tomogram's "
                        "own range from its tilt-series STAR file (default: denoise only)")
    add_star_options(p, train=True)
    add_sampling_options(p, recipe_defaults=True)
    add_training_options(p)
    add_prediction_options(p, tta_default=None)
    add_precision_option(p)
    add_heldout_options(p)
    add_common(p)

    p = _sub(sub, "segment", "Otsu segmentation of a volume", cmd_segment)
    p.add_argument("input", type=Path, help="volume (MRC)")
    add_output(p, "mask (MRC, 0/1)")
    p.add_argument("--sigma", type=float, default=1.0, help="Gaussian pre-smoothing (voxels)")
    p.add_argument("--foreground", choices=("dark", "bright"), default="dark",
                   help="which side of the threshold is material")
    p.add_argument("--reference", type=Path,
                   help="reference mask: report the Dice score (default: none)")
    add_common(p)

    p = _sub(sub, "demo", "simulate, train, denoise and segment a demo tomogram; figure and "
                          "scores", cmd_demo)
    add_output(p, "output folder", required=False, default=Path("demo_output"))
    p.add_argument("--device", type=device_type,
                   help="device of this process: cpu, gpu or gpu:N (default: the backend's "
                        "choice)")
    add_common(p)

    p = _sub(sub, "filter", "denoise a volume with a classical filter (baseline); with --odd "
                            "the average of two halves, its strength tuned on them",
             cmd_filter)
    p.add_argument("input", type=Path, help="volume, or the even half (MRC or TIFF)")
    p.add_argument("--odd", type=Path,
                   help="the odd half: filter the average of INPUT and ODD, with the strength "
                        "(iterations, sigma, size) that the two independent halves say is best")
    add_output(p, "filtered volume (MRC)")
    p.add_argument("--method", choices=("median", "gaussian", "nad", "bm4d"), required=True,
                   help="bm4d needs the optional package: pip install 'cryocare-ng[bm4d]' "
                        "(required)")
    p.add_argument("--size", type=int,
                   help="median: window edge, odd (default: tuned with --odd, else 3)")
    p.add_argument("--sigma", type=float,
                   help="gaussian: std in voxels (default: tuned with --odd, else 1); nad: "
                        "gradient smoothing (default: 1); bm4d: noise std (default: estimated)")
    p.add_argument("--iterations", type=int,
                   help="nad: iterations (default: tuned with --odd, else 5)")
    p.add_argument("--k", type=float, help="nad: contrast parameter K (default: 90th "
                                           "percentile of the gradient magnitude)")
    p.add_argument("--time-step", type=float, help="nad: time step (default: 0.1)")
    add_common(p)

    p = _sub(sub, "evaluate", "compare raw, median, Gaussian, NAD, (BM4D) and CARE; write a "
                              "report with figures", cmd_evaluate)
    p.add_argument("--even", type=Path, help="even half")
    p.add_argument("--odd", type=Path, help="odd half")
    p.add_argument("--clean", type=Path, help="noise-free reference, if known (default: none)")
    p.add_argument("--mask", type=Path,
                   help="reference segmentation (default: Otsu of --clean)")
    p.add_argument("--isotropic", type=Path,
                   help="wedge-free noise-free truth, if known (cryocare simulate's "
                        "isotropic.mrc); adds the missing-wedge scores; needs --wedge "
                        "(default: none)")
    p.add_argument("--wedge", metavar="MIN,MAX|FILE",
                   help="tilt range of the halves in degrees (e.g. --wedge=-60,60) or an IMOD "
                        ".tlt/.rawtlt file; about --tilt-axis (default: none)")
    p.add_argument("--simulate", type=shape_type, metavar="Z,Y,X",
                   help="evaluate on a simulated tomogram of this shape instead, with its "
                        "clean and wedge-free truths (default: off)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the simulation and of the patch sampling")
    add_output(p, "report folder")
    p.add_argument("--methods", type=lambda text: [m.strip() for m in text.split(",")],
                   help="comma-separated, from raw,median,gaussian,nad,bm4d,CARE "
                        "(default: all installed)")
    p.add_argument("--voxel-size", type=float, help="Å per voxel (default: from the header)")
    p.add_argument("--segment-sigma", type=float, default=1.0,
                   help="Gaussian pre-smoothing of the Otsu segmentations (voxels)")
    add_sampling_options(p, recipe_defaults=True)
    add_training_options(p)
    add_prediction_options(p, tta_default=None)
    add_precision_option(p)
    add_common(p)

    p = _sub(sub, "inspect", "draw the learned influence functions and filters of a diffusion "
                             "model (PNG)", cmd_inspect)
    p.add_argument("model", type=Path, help="model folder (network 'diffusion')")
    add_output(p, "folder for the figures (default: MODEL/inspect)", required=False)
    add_common(p)
    return parser


#: Options whose value may start with a minus sign (argparse would take ``-60,60`` for an option).
_SIGNED_VALUES = ("--wedge",)


def _join_signed_values(argv: list[str]) -> list[str]:
    """``--wedge -60,60`` -> ``--wedge=-60,60``, so that a tilt range may start with ``-``."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in _SIGNED_VALUES and len(token) > 1 and token[0] == "-" and (
                token[1].isdigit() or token[1] == "."):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (never raises for user errors)."""
    args = build_parser().parse_args(
        _join_signed_values(sys.argv[1:] if argv is None else list(argv)))
    configure_logging(verbose=args.verbose, quiet=args.quiet)

    def work() -> int:
        if getattr(args, "backend", None) is not None:
            from ..backends import select

            select(args.backend)  # sets KERAS_BACKEND if Keras is not imported yet
        return args.run(args)

    return run(f"cryocare {args.command}", work)
