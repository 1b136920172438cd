"""Validated, immutable model configuration, saved next to the weights.

Field names follow CSBDeep's :class:`csbdeep.models.Config` (``unet_n_depth``,
``train_batch_size``, ...) so that users of CSBDeep and cryoCARE recognise
them. Unknown keys, wrong types and out-of-range values are rejected with an
:class:`~cryocare.errors.InputError` that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import BACKENDS
from .errors import InputError

__all__ = ["CareConfig", "PredictOptions", "parse_size", "PREDICT_PRECISIONS",
           "PREDICT_ENGINES", "NORMALIZE_CHOICES"]

# name -> (lowest, highest) allowed value, both inclusive
_INT_BOUNDS = {
    "n_dim": (2, 3),
    "unet_n_depth": (1, 6),
    "unet_kern_size": (1, 9),
    "unet_n_first": (1, 512),
    "unet_n_conv_per_depth": (1, 4),
    "train_epochs": (1, 100_000),
    "train_steps_per_epoch": (1, 1_000_000),
    "train_batch_size": (1, 4096),
    "train_reduce_lr_patience": (1, 10_000),
    "train_early_stopping_patience": (0, 100_000),
    "rednet_n_layers": (1, 50),
    "rednet_n_filters": (1, 512),
    "rednet_kern_size": (1, 9),
    "diffusion_stages": (1, 30),
    "diffusion_filters": (1, 256),
    "diffusion_kernel_size": (3, 7),
    "diffusion_n_rbf": (3, 255),
    "seed": (0, 2**32 - 1),
    "wedge_binning": (1, 8),
}
_LOSSES = ("mse", "mae", "fsc")
_SCHEDULES = ("plateau", "cosine")
_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
#: Training objectives (:mod:`cryocare.training.objectives`; the registry checks the name).
_OBJECTIVES = ("n2n", "supervised", "wedge", "blindspot")
#: Keys that are not part of a network's architecture: training settings and bookkeeping.
_NOT_ARCHITECTURE = ("seed", "backend", "wedge_binning")


@dataclass(frozen=True)
class CareConfig:
    """Configuration of a CARE network and of its Noise2Noise training.

    Parameters
    ----------
    n_dim : int
        2 for micrographs/projections, 3 for tomograms.
    network : str
        Name of a network registered in :mod:`cryocare.nets` (``"unet"``).
    unet_n_depth : int
        Number of resolution levels of the U-Net.
    unet_kern_size : int
        Odd convolution kernel size in every dimension.
    unet_n_first : int
        Filters in the first level; doubled at each level below.
    unet_residual : bool
        Predict the residual to the input (CSBDeep's default).
    unet_n_conv_per_depth : int
        Convolutions per level.
    rednet_n_layers : int
        Convolutions (and as many transposed convolutions) of the ``"rednet"``
        network (Mao et al. 2016: 10, 15, 20 or 30).
    rednet_n_filters : int
        Filters of every ``"rednet"`` layer but the last (the paper uses 64).
    rednet_kern_size : int
        Odd kernel size of the ``"rednet"`` layers.
    diffusion_stages : int
        Gradient steps (stages) of the ``"diffusion"`` network (learned
        reaction-diffusion, Chen & Pock 2017).
    diffusion_filters : int
        Zero-mean filters per ``"diffusion"`` stage.
    diffusion_kernel_size : int
        Odd filter size of the ``"diffusion"`` network: 3, 5 or 7.
    diffusion_n_rbf : int
        Gaussian radial basis functions of each learned influence function.
    diffusion_guide_sigma : float
        Width (voxels, 0 to 10) of the Gaussian that smooths the guide before
        its gradient sets the edge weights; 0 does not smooth.
    train_loss : str
        ``"mse"`` (Noise2Noise's loss for zero-mean noise), ``"mae"``, or
        ``"fsc"``: MSE plus one minus the mean Fourier shell correlation of
        prediction and target (:func:`cryocare.losses.fsc_loss`).
    train_epochs, train_steps_per_epoch, train_batch_size : int
        Length of training and batch size. ``train_epochs ×
        train_steps_per_epoch`` caps the run; with a time budget, training
        ends at the budget or at that cap, whichever comes first.
    train_learning_rate : float
        Initial (``"plateau"``) or peak (``"cosine"``) learning rate of Adam.
    train_schedule : str
        ``"plateau"``: halve the rate when the validation loss stalls
        (CSBDeep's schedule); ``"cosine"``: linear warm-up, then cosine decay
        to zero at the end of the run (the end is the time budget or the last
        step, whichever comes first) — better for short budgets.
    train_warmup : float
        Share of the run (0 to 0.5) spent warming up under ``"cosine"``.
    train_time_budget : float
        Wall-clock limit of training in seconds (0, the default: none),
        used when :func:`cryocare.training.train` is given no ``budget``. The
        run stops cleanly after the step that crosses it, validates, and
        keeps the best weights. A trained model's config records the budget
        its run actually had.
    train_reduce_lr_patience : int
        Epochs without improvement of the validation loss before the learning
        rate is halved (``"plateau"`` only).
    train_early_stopping_patience : int
        Stop after this many epochs without improvement of the validation
        loss; 0 (default) never stops early.
    train_augment : bool
        Random 90° rotations and flips in the plane normal to the tilt axis and
        random even/odd swaps of every training batch
        (:func:`cryocare.pairs.augment_batch`). Off by default until measured
        to help at short training budgets.
    train_precision : str
        ``"float32"`` (default); ``"auto"``: chosen when training starts by
        the device that trains (a GPU by its compute capability, a CPU by a
        quick measurement), and the choice recorded in the trained model's
        config; ``"mixed_bfloat16"``: compute in bfloat16
        with float32 weights, 2.5 times faster training on CPUs with AMX or
        AVX-512 BF16 and on recent GPUs; ``"mixed_float16"``: float16 with
        loss scaling, for GPUs with tensor cores. Prediction always computes
        in float32. (Configs saved with the earlier boolean
        ``train_mixed_precision`` still load: true is ``"mixed_float16"``.)
    train_objective : str
        What training minimises (:mod:`cryocare.training.objectives`):
        ``"n2n"`` (default), Noise2Noise between the even and the odd
        half; ``"supervised"``, the pairs' second volume is a clean target;
        ``"wedge"``, self-supervised missing-wedge restoration (random 3-D
        rotations of the pairs, the wedge imposed on the input, a loss in
        Fourier space where the rotated target was measured), which needs
        ``train_tilt_range``; ``"blindspot"``, Noise2Void-style training on
        one noisy volume without halves (a blind spot shaped for a
        reconstruction's correlated noise, ``train_tilt_axis`` orienting it).
    train_tilt_range : tuple of 2 float or None
        Lowest and highest tilt angle (degrees) of the training data's tilt
        series, for ``train_objective="wedge"``; None otherwise.
    train_tilt_axis : str
        ``"Y"`` or ``"X"``: the axis the specimen was tilted about (``"wedge"`` and
        ``"blindspot"`` only).
    wedge_binning : int
        For a network that restores the missing wedge at a coarser scale
        (:mod:`cryocare.isotropic`): the factor the data are binned by
        before it sees them (it was trained on data binned so); 1 (default)
        for every other network.
    backend : str or None
        Keras backend the model must be trained on (``"tensorflow"``,
        ``"torch"`` or ``"jax"``); None (default) takes the one Keras runs on.
        Keras picks its backend when it is first imported (``KERAS_BACKEND``),
        so a mismatch is an error, never a silent switch. Saved weights are
        backend-neutral: a model loads and predicts on any backend.
    seed : int
        Seed of weight initialisation and batch sampling.

    Examples
    --------
    >>> config = CareConfig(unet_n_depth=2, train_epochs=5)
    >>> CareConfig.from_dict(config.to_dict()) == config
    True
    """

    n_dim: int = 3
    network: str = "unet"
    unet_n_depth: int = 2
    unet_kern_size: int = 3
    unet_n_first: int = 16
    unet_residual: bool = True
    unet_n_conv_per_depth: int = 2
    rednet_n_layers: int = 10
    rednet_n_filters: int = 64
    rednet_kern_size: int = 3
    diffusion_stages: int = 5
    diffusion_filters: int = 24
    diffusion_kernel_size: int = 3
    diffusion_n_rbf: int = 31
    diffusion_guide_sigma: float = 1.0
    train_loss: str = "mse"
    train_epochs: int = 20
    train_steps_per_epoch: int = 50
    train_batch_size: int = 16
    train_learning_rate: float = 4e-4
    train_schedule: str = "plateau"
    train_warmup: float = 0.05
    train_time_budget: float = 0.0
    train_reduce_lr_patience: int = 5
    train_early_stopping_patience: int = 0
    train_augment: bool = False
    train_precision: str = "float32"
    train_objective: str = "n2n"
    train_tilt_range: tuple[float, float] | None = None
    train_tilt_axis: str = "Y"
    wedge_binning: int = 1
    backend: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, (low, high) in _INT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"config key {name!r}: expected an integer, got {value!r}")
            if not low <= value <= high:
                raise InputError(
                    f"config key {name!r}: expected a value in [{low}, {high}], got {value}"
                )
        for name in ("unet_kern_size", "rednet_kern_size", "diffusion_kernel_size"):
            if getattr(self, name) % 2 == 0:
                raise InputError(
                    f"config key {name!r}: expected an odd number, got {getattr(self, name)}"
                )
        for name in ("unet_residual", "train_augment"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"config key {name!r}: expected true or false, got {getattr(self, name)!r}"
                )
        if self.backend is not None and self.backend not in BACKENDS:
            raise InputError(
                f"config key 'backend': expected one of {', '.join(BACKENDS)} or null, "
                f"got {self.backend!r}"
            )
        sigma = self.diffusion_guide_sigma
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or \
                not math.isfinite(sigma) or not 0 <= sigma <= 10:
            raise InputError(
                f"config key 'diffusion_guide_sigma': expected a number in [0, 10], got {sigma!r}"
            )
        rate = self.train_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise InputError(f"config key 'train_learning_rate': expected a number, got {rate!r}")
        if not 0 < rate < 1:
            raise InputError(f"config key 'train_learning_rate': expected 0 < rate < 1, got {rate}")
        for name, low, high in (("train_warmup", 0.0, 0.5),
                                ("train_time_budget", 0.0, 1e7)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value) or not low <= value <= high:
                raise InputError(
                    f"config key {name!r}: expected a number in [{low:g}, {high:g}], got {value!r}"
                )
        if self.train_precision not in _PRECISIONS:
            raise InputError(
                f"config key 'train_precision': expected one of {', '.join(_PRECISIONS)}, "
                f"got {self.train_precision!r}"
            )
        self._check_objective()
        if self.train_schedule not in _SCHEDULES:
            raise InputError(
                f"config key 'train_schedule': expected one of {', '.join(_SCHEDULES)}, "
                f"got {self.train_schedule!r}"
            )
        if self.train_loss not in _LOSSES:
            raise InputError(
                f"config key 'train_loss': expected one of {', '.join(_LOSSES)}, "
                f"got {self.train_loss!r}"
            )
        if not isinstance(self.network, str) or not self.network.isidentifier():
            # Whether the name is registered is checked when the network is built.
            raise InputError(
                f"config key 'network': expected a network name, got {self.network!r}"
            )

    def _check_objective(self) -> None:
        if self.train_objective not in _OBJECTIVES:
            raise InputError(f"config key 'train_objective': expected one of "
                             f"{', '.join(_OBJECTIVES)}, got {self.train_objective!r}")
        if self.train_tilt_axis not in ("Y", "X"):
            raise InputError(f"config key 'train_tilt_axis': expected 'Y' or 'X', got "
                             f"{self.train_tilt_axis!r}")
        tilts = self.train_tilt_range
        if tilts is not None:
            try:
                low, high = (float(t) for t in tilts)
                valid = not any(isinstance(t, bool) for t in tilts) and -90 <= low < high <= 90
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise InputError(f"config key 'train_tilt_range': expected [MIN, MAX] degrees "
                                 f"with -90 <= MIN < MAX <= 90, got {tilts!r}")
            object.__setattr__(self, "train_tilt_range", (low, high))  # JSON gives a list
        elif self.train_objective == "wedge":
            raise InputError("config key 'train_tilt_range': the 'wedge' objective needs the "
                             "tilt range [MIN, MAX] of the training data")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dictionary of all fields."""
        values = dataclasses.asdict(self)
        if self.train_tilt_range is not None:
            values["train_tilt_range"] = list(self.train_tilt_range)
        return values

    def architecture(self) -> dict[str, Any]:
        """The keys that define the network's weights: two configs with equal
        architectures have interchangeable weights.

        ``n_dim``, ``network`` and the keys of that network (``unet_*``,
        ``rednet_*``, ``diffusion_*``); for a network registered without keys
        of its own, every key that is not a training setting.

        Examples
        --------
        >>> a = CareConfig(unet_n_first=16, train_learning_rate=1e-3)
        >>> b = CareConfig(unet_n_first=8, rednet_n_layers=20)
        >>> sorted(k for k, v in a.architecture().items() if b.architecture()[k] != v)
        ['unet_n_first']
        """
        values = self.to_dict()
        own = [k for k in values if k.startswith(f"{self.network}_")]
        keys = ["n_dim", "network", *own] if own else [
            k for k in values if not k.startswith("train_") and k not in _NOT_ARCHITECTURE]
        return {k: values[k] for k in keys}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CareConfig:
        """Build a config from a dictionary, rejecting unknown keys."""
        if not isinstance(values, dict):
            raise InputError(f"config: expected a mapping of keys to values, got {values!r}")
        if "train_mixed_precision" in values and "train_precision" not in values:
            # Written by cryocare-ng 0.1 (a boolean for float16).
            values = dict(values)
            legacy = values.pop("train_mixed_precision")
            if not isinstance(legacy, bool):
                raise InputError(f"config key 'train_mixed_precision': expected true or false, "
                                 f"got {legacy!r}")
            values["train_precision"] = "mixed_float16" if legacy else "float32"
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"config: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> CareConfig:
        """Copy of this config with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})


# ---------------------------------------------------------------- prediction options
#: Arithmetic of a forward pass.
PREDICT_PRECISIONS = ("float32", "bfloat16")
#: What runs the network (:mod:`cryocare.runtime` for the exported graphs).
PREDICT_ENGINES = ("keras", "auto", "onnxruntime", "openvino")
#: Intensity statistics of prediction: the training data's, or each image's own.
NORMALIZE_CHOICES = ("training", "image")
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: int | float | str | None, *, name: str = "memory") -> int | None:
    """Bytes from a number or a text like ``"512M"``/``"1.5G"``; None and ``"auto"`` stay None.

    Examples
    --------
    >>> parse_size("1.5G"), parse_size("512M"), parse_size(1000), parse_size("auto")
    (1610612736, 536870912, 1000, None)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", value.lower())
        if not match:
            raise InputError(f"{name}: expected a size like 512M or 2G, got {value!r}")
        value = float(match[1]) * _UNITS[match[2]]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: expected a positive size, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PredictOptions:
    """How to run a prediction: one validated, immutable object for every face.

    The command line, cryoCARE's predict config, RELION's STAR jobs and
    Python all build one of these (:meth:`from_dict`, :meth:`replace`), and
    the prediction engine (:mod:`cryocare.predict`) plans from it. None of the
    options changes the result beyond floating-point rounding, except
    ``normalize``, ``tta`` and ``precision``.

    Attributes
    ----------
    tile_shape : "auto", int, tuple of int or None
        Core size of the tiles: ``"auto"`` the plan's choice, None the whole
        image at once, or sizes.
    memory : int or None
        Memory budget in bytes (``"4G"`` is accepted); None: what the
        fastest plan needs, within half of the device's free memory.
    batch_size : int or None
        Tiles per forward pass; None: as many as fit (at most 8).
    normalize : {"training", "image"} or Normalization
        Intensity statistics: the training data's (as cryoCARE) or the image's own.
    tta : bool, int or "auto"
        Test-time augmentation: average over 2, 4 or 8 flips (True: all);
        ``"auto"`` as many as fit ``tta_seconds``.
    tta_seconds : float or None
        Time that ``tta="auto"`` may spend; None: no limit.
    precision : {"float32", "bfloat16"}
        Arithmetic of the forward pass.
    engine : {"keras", "auto", "onnxruntime", "openvino"}
        What runs the network.
    device : str or None
        ``"cpu"``, ``"gpu"`` or ``"gpu:N"``; None: the backend's choice. The
        plan sizes tiles to this device's free memory.
    streaming : bool or None
        Run a U-Net level by level on a CPU (True), as one graph (False), or
        as the plan finds faster (None).
    progress : bool
        Show a progress bar.

    Examples
    --------
    >>> options = PredictOptions.from_dict({"memory": "2G", "tta": 4})
    >>> options.memory, options.tta, options.precision
    (2147483648, 4, 'float32')
    >>> PredictOptions(precision="float16")
    Traceback (most recent call last):
    ...
    cryocare.errors.InputError: precision: expected one of float32, bfloat16, got 'float16'
    """

    tile_shape: Any = "auto"
    memory: int | None = None
    batch_size: int | None = None
    normalize: Any = "training"
    tta: bool | int | str = False
    tta_seconds: float | None = None
    precision: str = "float32"
    engine: str = "keras"
    device: str | None = None
    streaming: bool | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        tiles = self.tile_shape
        if isinstance(tiles, str):
            if tiles.strip().lower() not in ("auto", "none"):
                raise InputError(f"tile_shape: expected 'auto', sizes or None, got {tiles!r}")
            set_(self, "tile_shape", None if tiles.strip().lower() == "none" else "auto")
        elif tiles is not None:
            sizes = (tiles,) if isinstance(tiles, int | np.integer) else tuple(tiles)
            if not sizes or any(isinstance(s, bool) or int(s) != s or s < 1 for s in sizes):
                raise InputError(f"tile_shape: expected positive sizes, got {tiles!r}")
            set_(self, "tile_shape", int(sizes[0]) if len(sizes) == 1 and
                 isinstance(tiles, int | np.integer) else tuple(int(s) for s in sizes))
        set_(self, "memory", parse_size(self.memory))
        batch = self.batch_size
        if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
            raise InputError(f"batch_size: expected a positive integer, got {batch!r}")
        set_(self, "batch_size", None if batch is None else int(batch))
        if isinstance(self.normalize, str) and self.normalize not in NORMALIZE_CHOICES:
            raise InputError(f"normalize: expected one of {', '.join(NORMALIZE_CHOICES)} or a "
                             f"Normalization, got {self.normalize!r}")
        if not isinstance(self.normalize, str) and not hasattr(self.normalize, "mean"):
            raise InputError(f"normalize: expected one of {', '.join(NORMALIZE_CHOICES)} or a "
                             f"Normalization, got {self.normalize!r}")
        tta = self.tta
        if isinstance(tta, str):
            if tta != "auto":
                raise InputError(f"tta: expected True, False, 2, 4, 8 or 'auto', got {tta!r}")
        elif not isinstance(tta, bool) and tta not in (0, 1, 2, 4, 8):
            raise InputError(f"tta: expected True, False, 2, 4, 8 or 'auto', got {tta!r}")
        seconds = self.tta_seconds
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(
                seconds, int | float) or not math.isfinite(seconds) or seconds < 0):
            raise InputError(f"tta_seconds: expected a number of seconds >= 0, got "
                             f"{seconds!r}")
        for name, choices in (("precision", PREDICT_PRECISIONS), ("engine", PREDICT_ENGINES)):
            if getattr(self, name) not in choices:
                raise InputError(f"{name}: expected one of {', '.join(choices)}, got "
                                 f"{getattr(self, name)!r}")
        device = self.device
        if device is not None and not (isinstance(device, str) and re.fullmatch(
                r"cpu|gpu(:[0-9]+)?", device.strip().lower())):
            raise InputError(f"device: expected cpu, gpu or gpu:N, got {device!r}")
        set_(self, "device", None if device is None else device.strip().lower())
        for name in ("streaming",):
            if getattr(self, name) not in (None, True, False):
                raise InputError(f"{name}: expected true, false or none, got "
                                 f"{getattr(self, name)!r}")
        if not isinstance(self.progress, bool):
            raise InputError(f"progress: expected true or false, got {self.progress!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, **more: Any) -> PredictOptions:
        """Options from a mapping (and keywords), rejecting unknown keys.

        >>> PredictOptions.from_dict({"memry": "2G"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cryocare.errors.InputError: prediction options: unknown key(s) 'memry'; known keys ...
        """
        values = {**(values or {}), **more}
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"prediction options: unknown key(s) "
                             f"{', '.join(map(repr, unknown))}; known keys are "
                             f"{', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> PredictOptions:
        """A copy with some options changed (validated again; unknown keys refused)."""
        return self.from_dict({**self.to_dict(), **changes})

    @classmethod
    def merged(cls, options: PredictOptions | None = None, **settings: Any) -> PredictOptions:
        """``options`` (the defaults if None) with single ``settings`` changed by name.

        The one way every face turns its ``options`` argument and keyword settings
        into the object it passes on.

        >>> PredictOptions.merged(PredictOptions(tta=4), memory="1G").memory
        1073741824
        >>> PredictOptions.merged() == PredictOptions()
        True
        """
        options = cls() if options is None else options
        return options.replace(**settings) if settings else options

    def to_dict(self) -> dict[str, Any]:
        """The options as a mapping (field name to value)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
