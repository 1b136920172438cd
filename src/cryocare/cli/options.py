"""The command line's options, and the one mapping from them to library settings.

Every command that trains, predicts or samples pairs adds the same option
groups (same names, same choices, same defaults) and turns them into
library settings with the same functions: :func:`recipe_from_args`,
:func:`budget_from_args` and :func:`predict_options`. The defaults are
those of the training recipe (:data:`cryocare.recipe.DEFAULT_RECIPE`); a
``--config`` JSON file of :class:`~cryocare.config.CareConfig` keys changes
them, and explicit options change them again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import PredictOptions
from ..errors import InputError

__all__ = [
    "HelpFormatter", "add_common", "add_output", "add_sampling_options", "add_training_options",
    "add_prediction_options", "add_star_options", "recipe_from_args", "budget_from_args",
    "predict_options", "PRECISIONS",
]

#: Arithmetic choices, the same for every command.
PRECISIONS = ("auto", "float32", "bfloat16")
_TRAIN_PRECISION = {"float32": "float32", "bfloat16": "mixed_bfloat16", "auto": "auto"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Shows every option's default; flags (on/off) and open defaults say so in their help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or action.required \
                or not action.option_strings \
                or isinstance(action, argparse._StoreConstAction | argparse._HelpAction
                              | argparse._VersionAction | argparse.BooleanOptionalAction):
            return text
        return text + (" (default: none)" if action.default is None
                       else " (default: %(default)s)")


# ------------------------------------------------------------------ value types
def shape_type(text: str) -> tuple[int, ...]:
    """Sizes like ``64,128,128`` or ``64x128x128`` (``32``: the same on every axis)."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 64,128,128, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return values


def duration_type(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``12m``, ``1.5h``; ``none`` or ``0``: no time limit (0.0)."""
    if text.strip().lower() in ("none", "0", "off"):
        return 0.0
    from ..recipe import parse_duration

    try:
        return parse_duration(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def tiles_type(text: str) -> str | tuple[int, ...] | None:
    """``auto``, ``none`` (one tile) or tile core sizes."""
    return None if text == "none" else "auto" if text == "auto" else shape_type(text)


def memory_type(text: str) -> str | None:
    """A memory budget such as ``4G``, checked now; ``auto``: the plan's choice (None)."""
    if text == "auto":
        return None
    from ..predict import parse_memory

    try:
        parse_memory(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def device_type(text: str) -> str:
    """``cpu``, ``gpu`` or ``gpu:N``."""
    value = text.strip().lower()
    kind, _, index = value.partition(":")
    if kind == "cpu" and not index or kind == "gpu" and (not index or index.isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"expected cpu, gpu or gpu:N, got {text!r}")


def tta_type(text: str) -> bool | int:
    """``off`` (or 0, 1), ``on`` (all flips), or a number of flips: 2, 4 or 8."""
    value = text.strip().lower()
    if value in ("off", "no", "0", "1"):
        return False
    if value in ("on", "yes", "all"):
        return True
    if value in ("2", "4", "8"):
        return int(value)
    raise argparse.ArgumentTypeError(f"expected off, 2, 4 or 8 flips, got {text!r}")


def names_type(text: str) -> list[str]:
    """Comma- or colon-separated names."""
    return [n.strip() for n in text.replace(":", ",").split(",") if n.strip()]


def _defaults() -> dict[str, Any]:
    from ..recipe import DEFAULT_RECIPE, DEFAULT_TIME_BUDGET

    config = DEFAULT_RECIPE.config
    return {"config": config, "recipe": DEFAULT_RECIPE, "budget": DEFAULT_TIME_BUDGET}


# ------------------------------------------------------------------ option groups
def add_common(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``, ``-q``, ``-v``: every command has them."""
    group = parser.add_argument_group("general")
    group.add_argument("--overwrite", action="store_true",
                       help="replace existing outputs (never done otherwise)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="debug log, including the deep-learning backend's start-up lines")


def add_output(parser: argparse.ArgumentParser, help: str, *, required: bool = True,
               default: Any = None) -> None:
    """``-o/--output``."""
    parser.add_argument("-o", "--output", type=Path, required=required, default=default,
                        help=help)


def add_sampling_options(parser: argparse.ArgumentParser, *, recipe_defaults: bool) -> None:
    """How training pairs are sampled from even/odd tomograms."""
    recipe = _defaults()["recipe"]
    group = parser.add_argument_group("training pairs")
    if recipe_defaults:
        group.add_argument("--patch-shape", type=shape_type, metavar="SIZE",
                           help=f"patch size, e.g. 32 or 16,32,32 (default: the recipe's, "
                                f"{recipe.patch_shape[0]})")
        group.add_argument("--n-patches", type=int,
                           help=f"training + validation pairs (default: the recipe's, "
                                f"{recipe.n_patches})")
    else:
        group.add_argument("--patch-shape", type=shape_type, default=(recipe.patch_shape[0],),
                           metavar="SIZE", help="patch size, e.g. 32 or 16,32,32")
        group.add_argument("--n-patches", type=int, default=recipe.n_patches,
                           help="training + validation pairs")
    group.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of the pairs held out for validation")
    group.add_argument("--tilt-axis", choices=("Y", "X", "Z"), default="Y",
                       help="validation pairs are held out along this axis (cryoCARE's tilt_axis)")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Network, schedule, budget, initial weights, checkpoints."""
    defaults = _defaults()
    config = defaults["config"]
    group = parser.add_argument_group(
        "network and training (defaults: the recipe, cryocare.recipe.DEFAULT_RECIPE; "
        "see docs/recipe.md)")
    group.add_argument("--config", type=Path,
                       help="JSON file of CareConfig keys, applied over the recipe (a cryoCARE "
                            "train/predict config runs as the cryoCARE scripts do)")
    group.add_argument("--init", default="pretrained", metavar="pretrained|none|MODEL",
                       help="initial weights: the shipped pretrained model (used when its "
                            "network is the one trained, else random weights), none (random), "
                            "or a model folder to fine-tune")
    group.add_argument("--time-budget", type=duration_type, metavar="DURATION",
                       help=f"training time, e.g. 12m or 1.5h; 'none' for no limit (default: "
                            f"{defaults['budget'] / 60:g}m; the best weights are kept)")
    group.add_argument("--epochs", type=int,
                       help=f"cap on epochs (default: {config.train_epochs})")
    group.add_argument("--steps", type=int,
                       help=f"steps per epoch (default: {config.train_steps_per_epoch})")
    group.add_argument("--batch-size", type=int,
                       help=f"pairs per step (default: {config.train_batch_size})")
    group.add_argument("--network", help=f"registered network: unet, rednet or diffusion "
                                         f"(default: {config.network})")
    group.add_argument("--depth", type=int, help=f"U-Net depth (default: {config.unet_n_depth})")
    group.add_argument("--kernel-size", type=int,
                       help=f"convolution size (default: {config.unet_kern_size})")
    group.add_argument("--n-first", type=int, help=f"filters in the first U-Net level "
                                                   f"(default: {config.unet_n_first})")
    group.add_argument("--learning-rate", type=float,
                       help=f"peak learning rate (default: {config.train_learning_rate:g})")
    group.add_argument("--loss", choices=("mse", "mae", "fsc"),
                       help=f"fsc: MSE + (1 - mean Fourier shell correlation) "
                            f"(default: {config.train_loss})")
    group.add_argument("--schedule", choices=("plateau", "cosine"),
                       help=f"learning rate: halve on plateaus, or warm-up + cosine decay "
                            f"(default: {config.train_schedule})")
    group.add_argument("--early-stopping", type=int, metavar="EPOCHS",
                       help=f"stop after this many epochs without a better validation loss, "
                            f"0: never (default: {config.train_early_stopping_patience})")
    group.add_argument("--augment", action="store_true", default=None,
                       help="random 90° rotations/flips normal to the tilt axis and even/odd "
                            "swaps of the training batches (default: off)")
    group.add_argument("--seed", type=int, default=0, help="seed of sampling and training")
    group.add_argument("--backend", choices=("tensorflow", "torch", "jax"),
                       help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    group.add_argument("--checkpoint-dir", type=Path,
                       help="write a checkpoint after every epoch into this folder "
                            "(default: none)")
    group.add_argument("--resume", action="store_true",
                       help="continue an interrupted training from --checkpoint-dir")


def add_prediction_options(parser: argparse.ArgumentParser, *, tta_default: bool | None) -> None:
    """Tiles, memory, batch, normalisation, test-time augmentation."""
    group = parser.add_argument_group("prediction")
    group.add_argument("--tiles", type=tiles_type, default="auto", metavar="auto|none|Z,Y,X",
                       help="tile core SIZE in voxels (not cryoCARE's n_tiles count): 'auto' "
                            "the largest that fit --memory, 'none' the whole volume at once")
    group.add_argument("--memory", type=memory_type, default="auto",
                       help="memory budget, e.g. 4G; 'auto': what the fastest plan needs, "
                            "within half the free memory (3/4 of a GPU's)")
    group.add_argument("--batch", dest="predict_batch", type=int,
                       help="tiles per forward pass (default: as many as fit, at most 8)")
    group.add_argument("--normalize", choices=("training", "image"), default="training",
                       help="intensity statistics: the training data's, or each tomogram's own "
                            "(models that normalise per image always use their own)")
    group.add_argument("--tta", type=tta_type, nargs="?", const=True, default=tta_default,
                       metavar="off|2|4|8",
                       help="test-time augmentation: average over 2, 4 or 8 flips of every tile "
                            "(as many times the prediction time); --tta alone: all flips "
                            "(default: " + ("as many flips as take at most a quarter of the "
                                            "training budget, timed on the first tiles"
                                            if tta_default is None else
                                            "all" if tta_default else "off") + ")")
    group.add_argument("--no-tta", dest="tta", action="store_const", const=False,
                       help="no test-time augmentation (same as --tta off)")


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--device``: the same choices in every command."""
    group = parser.add_argument_group("device")
    group.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="arithmetic: 'auto' picks bfloat16 for training where the device "
                            "computes it natively (AMX/AVX-512 BF16 CPUs, GPUs from compute "
                            "capability 8.0) and predicts in float32; bfloat16 prediction is "
                            "~2x faster there and differs by ~1e-3 of the range")
    group.add_argument("--engine", choices=("keras", "auto", "onnxruntime", "openvino"),
                       default="keras",
                       help="what runs the network in prediction: Keras, or its exported graph "
                            "in ONNX Runtime or OpenVINO (pip install 'cryocare-ng[fast]'; same "
                            "output, less memory; 'auto': OpenVINO when installed; see "
                            "docs/runtime.md)")
    group.add_argument("--device", type=device_type, metavar="cpu|gpu|gpu:N",
                       help="device of this process (default: the backend's choice, the first "
                            "GPU if any)")


def add_star_options(parser: argparse.ArgumentParser, *, train: bool) -> None:
    """``--star``: the tomograms of a RELION 5 ``tomograms.star`` instead of files."""
    group = parser.add_argument_group("RELION 5 (instead of even/odd files)")
    group.add_argument("--star", type=Path,
                       help="RELION 5 tomograms.star: its rlnTomoReconstructedTomogramHalf1/2 "
                            "columns are the halves; denoised tomograms go to "
                            "OUTPUT/tomograms/, the updated STAR file to OUTPUT/tomograms.star")
    group.add_argument("--project", type=Path,
                       help="RELION project folder that relative paths start from (default: the "
                            "folder above the STAR file holding default_pipeline.star, else .)")
    if train:
        group.add_argument("--train-on", type=names_type, metavar="NAMES",
                           help="rlnTomoName values to train on, comma-separated (default: all)")


# ------------------------------------------------------------------ the mapping
_CONFIG_OPTIONS = (
    ("epochs", "train_epochs"), ("steps", "train_steps_per_epoch"),
    ("batch_size", "train_batch_size"), ("network", "network"), ("depth", "unet_n_depth"),
    ("kernel_size", "unet_kern_size"), ("n_first", "unet_n_first"),
    ("learning_rate", "train_learning_rate"), ("loss", "train_loss"),
    ("schedule", "train_schedule"), ("early_stopping", "train_early_stopping_patience"),
    ("augment", "train_augment"), ("backend", "backend"),
)
#: Options that change what the recipe trains: when one is given, the recipe is not
#: fitted to the machine (the user's choice wins).
ARCHITECTURE_OPTIONS = ("batch_size", "network", "depth", "kernel_size", "n_first",
                        "patch_shape")


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (an InputError naming the file otherwise)."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the JSON config ({error})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a JSON object of CareConfig keys")
    return values


def recipe_from_args(args: argparse.Namespace, n_dim: int):
    """The recipe with the command line's changes: ``--config`` file, then explicit options."""
    from ..config import CareConfig
    from ..recipe import DEFAULT_RECIPE

    values = DEFAULT_RECIPE.config.to_dict()
    if getattr(args, "config", None) is not None:
        values.update(read_config_file(args.config))
    values["n_dim"] = n_dim
    values["seed"] = getattr(args, "seed", 0) or 0
    for option, key in _CONFIG_OPTIONS:
        if getattr(args, option, None) is not None:
            values[key] = getattr(args, option)
    precision = getattr(args, "precision", None)
    if precision is not None:
        values["train_precision"] = _TRAIN_PRECISION[precision]
    config = CareConfig.from_dict(values)
    patch = getattr(args, "patch_shape", None)
    return DEFAULT_RECIPE.override(config=config, patch_shape=patch,
                                   n_patches=getattr(args, "n_patches", None),
                                   tta=getattr(args, "tta", None))


def budget_from_args(args: argparse.Namespace) -> float | None:
    """Training seconds: ``--time-budget``, else the recipe's default; None for no limit."""
    budget = getattr(args, "time_budget", None)
    if budget is None:
        budget = _defaults()["budget"]
    return budget or None


def fit_to_machine(args: argparse.Namespace) -> bool:
    """Whether the recipe may adapt its network and batches to the machine's speed."""
    return not any(getattr(args, name, None) is not None for name in ARCHITECTURE_OPTIONS) \
        and getattr(args, "config", None) is None


def predict_options(args: argparse.Namespace, *, budget: float | None = None,
                    default_tta: bool | int | str = False) -> PredictOptions:
    """The :class:`~cryocare.config.PredictOptions` that the command's options ask for.

    Without ``--tta``, ``default_tta`` applies; ``"auto"`` takes as many flips as
    fit a quarter of the training ``budget`` (all of them without a budget).
    ``--precision auto`` predicts in float32 (bfloat16 only when asked for).
    """
    precision = getattr(args, "precision", "auto")
    tta = getattr(args, "tta", None)
    tta = default_tta if tta is None else tta
    return PredictOptions(
        tile_shape=getattr(args, "tiles", "auto"), memory=getattr(args, "memory", None),
        batch_size=getattr(args, "predict_batch", None),
        normalize=getattr(args, "normalize", "training"), tta=tta,
        tta_seconds=(None if not budget else budget / 4) if tta == "auto" else None,
        precision="bfloat16" if precision == "bfloat16" else "float32",
        engine=getattr(args, "engine", "keras"), device=getattr(args, "device", None),
        progress=not getattr(args, "quiet", False))


def add_heldout_options(parser: argparse.ArgumentParser) -> None:
    """The quality estimate from the halves (:mod:`cryocare.heldout`): report and override."""
    group = parser.add_argument_group("quality estimate from the halves")
    group.add_argument("--report", type=Path, metavar="FILE.json",
                       help="write the estimated gains over the raw average (model, Gaussian, "
                            "NAD, blends) and the choice made to this JSON file (default: "
                            "none; the log has one line)")
    group.add_argument("--force-model", action="store_true",
                       help="write the model's output even when a filter is estimated better "
                            "on the halves (by default the better filter, or its measured "
                            "blend with the model, is written)")
