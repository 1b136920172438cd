"""Compatibility with cryoCARE 0.3.0 (PyPI ``cryocare``): its JSON configs and model archives.

cryoCARE 0.3.0 is driven by three JSON files, one per script
(``cryoCARE_extract_train_data.py``, ``cryoCARE_train.py``,
``cryoCARE_predict.py``), and stores a trained model as ``<model_name>.tar.gz``
holding a folder ``<model_name>/`` with CSBDeep's ``config.json``,
``weights_best.h5``, ``weights_last.h5``, ``norm.json`` and ``history.dat``.
This module reads those configs into validated, immutable objects and reads
and writes those archives, so that pipelines written for cryoCARE (RELION 5,
CryoBoost, Scipion, nextPYP, tomotools) run unchanged on this package.

The configs are read as cryoCARE reads them, with its known bugs fixed:

- ``even``/``odd`` folders and lists are paired by file name
  (:func:`cryocare.halves.find_halves`), not by the arbitrary order of two
  directory listings or the position in two lists; files whose names do not
  pair are an error that names them;
- normalisation statistics come from all tomograms, both halves
  (``n_normalization_samples`` is accepted and not needed);
- no zero slices at the edges of sizes that are not multiples of 2**depth;
- booleans are strict: cryoCARE treated every non-empty string as true, so
  ``"overwrite": "False"`` overwrote. Here :func:`parse_bool` accepts
  ``true``/``false``, ``"true"``/``"false"``, ``"yes"``/``"no"``,
  ``"on"``/``"off"``, ``"y"``/``"n"``, ``1``/``0`` and ``"1"``/``"0"``
  (strings in any case, e.g. RELION 5's ``"True"``) and rejects anything
  else with an error that names the key.

Examples
--------
>>> config = config_from_dict({"path": "model.tar.gz", "even": ["a_half1.mrc"],
...                            "odd": ["a_half2.mrc"], "n_tiles": [2, 2, 2],
...                            "output": "denoised", "overwrite": "True", "gpu_id": [0]})
>>> type(config).__name__, config.overwrite, config.n_tiles
('PredictConfig', True, (2, 2, 2))
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import PredictOptions
from .errors import InputError, OutputExistsError

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel

__all__ = [
    "TrainDataConfig", "TrainConfig", "PredictConfig", "parse_bool", "config_from_dict",
    "is_cryocare_config", "read_config", "load_archive", "write_archive", "PAIRS_FILE",
]

log = logging.getLogger(__name__)

PAIRS_FILE = "cryocare_pairs.npz"  # what our extraction writes into the training-data folder
_TILT_AXES = ("Y", "X", "Z")  # as cryoCARE 0.3.0; "Z": tomograms never rotated after IMOD
_TRUE = ("true", "yes", "on", "y", "1")
_FALSE = ("false", "no", "off", "n", "0")


def parse_bool(value: Any, *, key: str) -> bool:
    """Read a boolean the way pipelines write them for cryoCARE, strictly.

    Parameters
    ----------
    value : bool, int or str
        ``True``/``False``, ``1``/``0``, or one of the strings true, yes, on,
        y, 1 / false, no, off, n, 0 (any case, surrounding blanks ignored).
    key : str
        Name of the config key, for the error message.

    Examples
    --------
    >>> parse_bool("True", key="overwrite"), parse_bool(0, key="overwrite")
    (True, False)
    >>> parse_bool("maybe", key="split")
    Traceback (most recent call last):
    ...
    cryocare.errors.InputError: config key 'split': expected true/false, yes/no or 1/0, got 'maybe'
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InputError(
        f"config key {key!r}: expected true/false, yes/no or 1/0, got {value!r}"
    )


# ------------------------------------------------------------------ field readers
def _int(values: Mapping, key: str, *, low: int = 1) -> int:
    value = values[key]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"config key {key!r}: expected an integer >= {low}, got {value!r}")
    return value


def _float(values: Mapping, key: str) -> float:
    value = values[key]
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"config key {key!r}: expected a number, got {value!r}") from None


def _str(values: Mapping, key: str) -> str:
    value = values[key]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"config key {key!r}: expected a non-empty string, got {value!r}")
    return value


def _paths(values: Mapping, key: str) -> tuple[str, ...]:
    """One path, or a list of paths (cryoCARE accepts both)."""
    value = values[key]
    items = [value] if isinstance(value, str) else value
    if (not isinstance(items, list | tuple) or not items
            or not all(isinstance(v, str) and v for v in items)):
        raise InputError(f"config key {key!r}: expected a path or a list of paths, got {value!r}")
    return tuple(items)


def _ints(values: Mapping, key: str, n: int) -> tuple[int, ...]:
    value = values[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * n
    if not isinstance(value, list | tuple) or len(value) != n:
        raise InputError(f"config key {key!r}: expected {n} integers, got {value!r}")
    return tuple(_int({key: v}, key) for v in value)


def _gpu_ids(values: Mapping) -> tuple[int, ...]:
    """``gpu_id`` as written: 0, [0, 1], "0" or "0,1" (recorded, never acted on)."""
    if "gpu_id" not in values or values["gpu_id"] is None:
        return ()
    value = values["gpu_id"]
    if isinstance(value, str):
        value = [v for v in value.replace(" ", ",").split(",") if v]
    if not isinstance(value, list | tuple):
        value = [value]
    return tuple(_int({"gpu_id": v}, "gpu_id", low=0) for v in value)


def _check_keys(values: Mapping, kind: str, required: Sequence[str],
                optional: Sequence[str]) -> None:
    missing = [k for k in required if k not in values]
    if missing:
        raise InputError(f"cryoCARE {kind} config: missing key(s) {', '.join(map(repr, missing))}")
    unknown = sorted(set(values) - set(required) - set(optional))
    if unknown:
        raise InputError(
            f"cryoCARE {kind} config: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are {', '.join(sorted([*required, *optional]))}"
        )


# ------------------------------------------------------------------ the three configs
@dataclass(frozen=True)
class TrainDataConfig:
    """``train_data_config.json`` of ``cryoCARE_extract_train_data.py``.

    ``num_slices`` is the number of patch pairs *per tomogram* (as in
    cryoCARE); ``split`` the training fraction; ``path`` the output folder.
    """

    even: tuple[str, ...]
    odd: tuple[str, ...]
    patch_shape: tuple[int, int, int]
    num_slices: int
    split: float
    path: str
    tilt_axis: str = "Y"  # "Y", "X" or "Z": the axis along which validation is split off
    n_normalization_samples: int | None = None
    mask: str | None = None
    overwrite: bool = False

    # Older Scipion plugins omit tilt_axis and n_normalization_samples (cryoCARE's
    # defaults: "Y" and 500), so they are optional here.
    REQUIRED = ("even", "odd", "patch_shape", "num_slices", "split", "path")
    OPTIONAL = ("tilt_axis", "n_normalization_samples", "mask", "overwrite")

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainDataConfig:
        _check_keys(values, "train_data", cls.REQUIRED, cls.OPTIONAL)
        split = _float(values, "split")
        if not 0 < split < 1:
            raise InputError(f"config key 'split': expected a training fraction between 0 and 1 "
                             f"(e.g. 0.9), got {values['split']!r}")
        tilt_axis = str(values.get("tilt_axis", "Y")).strip().upper()
        if tilt_axis not in _TILT_AXES:  # cryoCARE 0.3.0 accepts these three; Scipion offers Z
            raise InputError(f"config key 'tilt_axis': expected 'Y', 'X' or 'Z', got "
                             f"{values['tilt_axis']!r}")
        mask = values.get("mask")
        if mask is not None and not isinstance(mask, str):
            raise InputError(f"config key 'mask': expected a path or null, got {mask!r}")
        n_norm = values.get("n_normalization_samples")
        return cls(
            even=_paths(values, "even"), odd=_paths(values, "odd"),
            patch_shape=_ints(values, "patch_shape", 3), num_slices=_int(values, "num_slices"),
            split=split, tilt_axis=tilt_axis, path=_str(values, "path"),
            n_normalization_samples=None if n_norm is None
            else _int(values, "n_normalization_samples"),
            mask=mask or None,
            overwrite=parse_bool(values.get("overwrite", False), key="overwrite"),
        )


@dataclass(frozen=True)
class TrainConfig:
    """``train_config.json`` of ``cryoCARE_train.py``.

    The model archive is written to ``<path>/<model_name>.tar.gz``.
    ``gpu_id`` is recorded but never acted on: choose devices with
    ``CUDA_VISIBLE_DEVICES``.
    """

    train_data: str
    epochs: int
    batch_size: int
    unet_kern_size: int
    unet_n_depth: int
    unet_n_first: int
    learning_rate: float
    model_name: str
    path: str
    steps_per_epoch: int = 200
    gpu_id: tuple[int, ...] = ()
    overwrite: bool = False

    # Older Scipion plugins omit steps_per_epoch; 200 is what RELION 5 writes.
    REQUIRED = ("train_data", "epochs", "batch_size", "unet_kern_size",
                "unet_n_depth", "unet_n_first", "learning_rate", "model_name", "path")
    OPTIONAL = ("steps_per_epoch", "gpu_id", "overwrite")

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        _check_keys(values, "train", cls.REQUIRED, cls.OPTIONAL)
        name = _str(values, "model_name")
        if "/" in name or name in (".", ".."):
            raise InputError(f"config key 'model_name': expected a plain name, got {name!r}")
        return cls(
            train_data=_str(values, "train_data"),
            **{k: _int(values, k) for k in ("epochs", "batch_size",
                                            "unet_kern_size", "unet_n_depth", "unet_n_first")},
            steps_per_epoch=_int({"steps_per_epoch": 200, **values}, "steps_per_epoch"),
            learning_rate=_float(values, "learning_rate"), model_name=name,
            path=_str(values, "path"), gpu_id=_gpu_ids(values),
            overwrite=parse_bool(values.get("overwrite", False), key="overwrite"),
        )

    def care_config(self):
        """The matching :class:`cryocare.config.CareConfig` (validated)."""
        from .config import CareConfig

        return CareConfig(n_dim=3, unet_n_depth=self.unet_n_depth,
                          unet_kern_size=self.unet_kern_size, unet_n_first=self.unet_n_first,
                          train_epochs=self.epochs, train_steps_per_epoch=self.steps_per_epoch,
                          train_batch_size=self.batch_size,
                          train_learning_rate=self.learning_rate)


@dataclass(frozen=True)
class PredictConfig:
    """``predict_config.json`` of ``cryoCARE_predict.py``.

    ``path`` is a model archive (``.tar.gz``) or an unpacked model folder;
    denoised tomograms go to ``<output>/<file name of the even tomogram>``.
    """

    path: str
    even: tuple[str, ...]
    odd: tuple[str, ...]
    output: str
    n_tiles: tuple[int, int, int] = (1, 1, 1)
    overwrite: bool = False
    gpu_id: tuple[int, ...] = ()

    REQUIRED = ("path", "even", "odd", "output")
    OPTIONAL = ("n_tiles", "overwrite", "gpu_id", "model_name", "output_name")

    @classmethod
    def from_dict(cls, values: Mapping) -> PredictConfig:
        _check_keys(values, "predict", cls.REQUIRED, cls.OPTIONAL)
        if "output_name" in values:
            raise InputError("config key 'output_name': the cryoCARE 0.1 config format is not "
                             "supported; give 'path' to a model archive and an 'output' folder")
        return cls(
            path=_str(values, "path"), even=_paths(values, "even"), odd=_paths(values, "odd"),
            output=_str(values, "output"),
            n_tiles=_ints(values, "n_tiles", 3) if "n_tiles" in values else (1, 1, 1),
            overwrite=parse_bool(values.get("overwrite", False), key="overwrite"),
            gpu_id=_gpu_ids(values),
        )

    def options(self, base: PredictOptions | None = None) -> PredictOptions:
        """The prediction options this config asks for, over ``base`` (defaults if None).

        ``n_tiles`` is not needed (tiles are sized to the device's memory and
        overlap by the receptive field, so the result does not depend on
        them); ``gpu_id`` names the device (its first card); test-time
        augmentation stays off, as in cryoCARE.

        >>> config = PredictConfig(path="m.tar.gz", even=("e.mrc",), odd=("o.mrc",),
        ...                        output="out", n_tiles=(2, 2, 2), gpu_id=(1,))
        >>> config.options().device
        'gpu:1'
        """
        base = PredictOptions() if base is None else base
        return base.replace(device=f"gpu:{self.gpu_id[0]}") if self.gpu_id else base


_KINDS = (("train_data", TrainDataConfig, "num_slices"), ("train", TrainConfig, "train_data"),
          ("predict", PredictConfig, "output"))


def config_from_dict(values: Mapping) -> TrainDataConfig | TrainConfig | PredictConfig:
    """Recognise which cryoCARE config ``values`` is (by its keys) and validate it."""
    if not isinstance(values, Mapping):
        raise InputError(f"cryoCARE config: expected a JSON object, got {values!r}")
    for _, cls, marker in _KINDS:
        if marker in values:
            return cls.from_dict(values)
    raise InputError("not a cryoCARE config: expected the keys of a train_data config "
                     "(num_slices), a train config (train_data) or a predict config (output)")


def is_cryocare_config(values: Any) -> bool:
    """True if ``values`` (a parsed JSON object) looks like one of cryoCARE's configs."""
    return isinstance(values, Mapping) and any(marker in values for _, _, marker in _KINDS)


def read_config(path: str | os.PathLike) -> TrainDataConfig | TrainConfig | PredictConfig:
    """Read and validate a cryoCARE JSON config file (any of the three kinds)."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except OSError as error:
        raise InputError(f"{path}: cannot read the config ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    try:
        return config_from_dict(values)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


# ------------------------------------------------------------------ model archives
_CSBDEEP_LOSSES = ("mse", "mae")  # what csbdeep.models.Config.is_valid accepts (not probabilistic)


def _csbdeep_config(care) -> dict[str, Any]:
    """CSBDeep ``Config`` dictionary for a :class:`~cryocare.config.CareConfig`.

    Made by CSBDeep's own :class:`csbdeep.models.Config` — the class cryoCARE
    builds and validates its configs with — so an archive carries exactly
    the keys and defaults of the installed CSBDeep. CSBDeep runs on the
    TensorFlow backend only; on the others the same keys are written from
    :func:`_csbdeep_values` (checked against ``Config`` in tests/test_compat.py).
    """
    values = _csbdeep_values(care)
    import keras

    if keras.backend.backend() != "tensorflow":
        return values
    try:
        from csbdeep.models import Config
    except Exception as error:  # noqa: BLE001 - csbdeep refuses some installs
        log.debug("csbdeep.models unavailable (%s); writing the config keys directly", error)
        return values
    given = {k: v for k, v in values.items()
             if k not in ("n_dim", "axes", "n_channel_in", "n_channel_out", "probabilistic")}
    config = Config(values["axes"][:-1], n_channel_in=1, n_channel_out=1, probabilistic=False,
                    **given)
    valid, invalid = config.is_valid(return_invalid=True)
    if not valid:  # pragma: no cover - our values are CSBDeep's own kinds
        raise InputError(f"CSBDeep refuses this network's config keys {invalid}")
    return json.loads(json.dumps(vars(config)))


def _csbdeep_values(care) -> dict[str, Any]:
    """The keys of :func:`_csbdeep_config`, written without CSBDeep."""
    if care.train_loss not in _CSBDEEP_LOSSES:
        log.info("train_loss %r is recorded as 'mse' in the archive's config.json: CSBDeep "
                 "(cryoCARE) accepts only %s", care.train_loss, ", ".join(_CSBDEEP_LOSSES))
    axes = "ZYXC" if care.n_dim == 3 else "YXC"
    return {
        "n_dim": care.n_dim, "axes": axes, "n_channel_in": 1, "n_channel_out": 1,
        "train_checkpoint": "weights_best.h5", "train_checkpoint_last": "weights_last.h5",
        "train_checkpoint_epoch": "weights_now.h5", "probabilistic": False,
        "unet_residual": care.unet_residual, "unet_n_depth": care.unet_n_depth,
        "unet_kern_size": care.unet_kern_size, "unet_n_first": care.unet_n_first,
        "unet_last_activation": "linear", "unet_input_shape": [None] * care.n_dim + [1],
        # CSBDeep (so cryoCARE) refuses to load a config with another loss; the loss plays
        # no part in prediction, so a network trained with "fsc" is recorded as "mse".
        "train_loss": care.train_loss if care.train_loss in _CSBDEEP_LOSSES else "mse",
        "train_epochs": care.train_epochs,
        "train_steps_per_epoch": care.train_steps_per_epoch,
        "train_learning_rate": care.train_learning_rate,
        "train_batch_size": care.train_batch_size, "train_tensorboard": False,
        "train_reduce_lr": {"factor": 0.5, "patience": care.train_reduce_lr_patience,
                            "min_delta": 0},
    }


def _care_config(csb: Mapping, source: Path):
    from .config import CareConfig

    def bad(what: str):
        return InputError(f"{source}: {what}; only CSBDeep CARE U-Nets of one channel with a "
                          f"linear last activation can be loaded")

    if csb.get("probabilistic"):
        raise bad("a probabilistic CSBDeep model")
    if csb.get("n_channel_in", 1) != 1 or csb.get("n_channel_out", 1) != 1:
        raise bad("more than one channel")
    if csb.get("unet_last_activation", "linear") != "linear":
        raise bad(f"last activation {csb.get('unet_last_activation')!r}")
    reduce_lr = csb.get("train_reduce_lr") or {}
    n_dim = csb.get("n_dim", 3)
    # Missing keys take CSBDeep's own defaults (csbdeep.models.Config; checked against it
    # in tests/test_compat.py): its 3-D kernel is 3, its loss "mae", 100 x 400 steps.
    values = {
        "n_dim": n_dim, "unet_n_depth": csb.get("unet_n_depth", 2),
        "unet_kern_size": csb.get("unet_kern_size", 5 if n_dim == 2 else 3),
        "unet_n_first": csb.get("unet_n_first", 32),
        "unet_residual": bool(csb.get("unet_residual", True)),
        "unet_n_conv_per_depth": csb.get("unet_n_conv_per_depth", 2),
        "train_loss": csb.get("train_loss", "mae"),
        "train_epochs": csb.get("train_epochs", 100),
        "train_steps_per_epoch": csb.get("train_steps_per_epoch", 400),
        "train_batch_size": csb.get("train_batch_size", 16),
        "train_learning_rate": float(csb.get("train_learning_rate", 4e-4)),
        "train_reduce_lr_patience": int(reduce_lr.get("patience", 10)),
    }
    try:
        return CareConfig(**values)
    except InputError as error:
        raise InputError(f"{source}: CSBDeep config.json: {error}") from None


def _model_folder(root: Path) -> Path:
    """The one ``<model_name>/`` folder of an unpacked archive (or ``root`` itself)."""
    if (root / "config.json").is_file():
        return root
    folders = [p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    if len(folders) != 1:
        raise InputError(f"{root}: expected one model folder with config.json, found "
                         f"{len(folders)}")
    return folders[0]


def load_archive(path: str | os.PathLike, *, weights: str = "best") -> CAREModel:
    """Load a cryoCARE 0.3.0 model (``<model_name>.tar.gz`` or its unpacked folder).

    Parameters
    ----------
    path : path
        The archive written by ``cryoCARE_train.py``, or the folder
        ``<path>/<model_name>/`` it was made from.
    weights : {"best", "last"}
        ``weights_best.h5`` (as cryoCARE predicts) or ``weights_last.h5``.

    Returns
    -------
    CAREModel
        With CSBDeep's network configuration and cryoCARE's ``norm.json``.

    Examples
    --------
    Needs a trained archive, so shown, not run::

        model = load_archive("denoising_model.tar.gz")
        denoised = model.denoise(even, odd)
    """
    from .model import CAREModel
    from .normalize import Normalization

    path = Path(path)
    if weights not in ("best", "last"):
        raise InputError(f"weights: expected 'best' or 'last', got {weights!r}")
    if not path.exists():
        raise InputError(f"{path}: no such cryoCARE model archive or folder")
    with tempfile.TemporaryDirectory(prefix="cryocare-archive-") as tmp:
        if path.is_file():
            try:
                with tarfile.open(path, "r:*") as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError) as error:
                raise InputError(f"{path}: not a readable cryoCARE model archive "
                                 f"(.tar.gz: {error})") from None
            folder = _model_folder(Path(tmp))
        else:
            folder = _model_folder(path)
        try:
            csb = json.loads((folder / "config.json").read_text())
            norm = json.loads((folder / "norm.json").read_text())
        except FileNotFoundError as error:
            raise InputError(f"{path}: incomplete cryoCARE model, {Path(error.filename).name} "
                             f"is missing") from None
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: unreadable cryoCARE model files ({error})") from None
        model = CAREModel(_care_config(csb, path), Normalization.from_dict(norm))
        h5 = folder / csb.get(f"train_checkpoint{'_last' if weights == 'last' else ''}",
                              f"weights_{weights}.h5")
        if not h5.is_file():
            raise InputError(f"{path}: the weights file {h5.name} is missing")
        try:
            model.keras_model.load_weights(h5)
        except (ValueError, OSError, KeyError) as error:
            raise InputError(f"{path}: weights {h5.name} do not fit the U-Net of its "
                             f"config.json ({error})") from None
        history = folder / "history.dat"
        if history.is_file():
            try:  # written by cryoCARE with pickle; only numbers are kept
                with open(history, "rb") as f:
                    raw = pickle.load(f)  # noqa: S301 - the user's own model archive
                model.history = {k: [float(v) for v in raw[k]] for k in ("loss", "val_loss")
                                 if k in raw}
            except Exception as error:  # noqa: BLE001 - history is informative only
                log.warning("%s: history.dat unreadable (%s); ignored", path, error)
    log.info("loaded cryoCARE model %s (%s weights)", path, weights)
    return model


def _write_h5(path: Path, keras_model, n_dim: int) -> None:
    """Weights in the Keras 2 HDF5 layout that CSBDeep/cryoCARE load (by layer order)."""
    import h5py
    import numpy as np

    from .nets.unet import FINAL_LAYER

    csbdeep_names = {FINAL_LAYER: f"conv{n_dim}d"}
    layers = [layer for layer in keras_model.layers if layer.weights]
    names = [csbdeep_names.get(layer.name, layer.name) for layer in layers]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.4.0"
        for layer, name in zip(layers, names, strict=True):
            group = f.create_group(name)
            weight_names = []
            for variable in layer.weights:
                short = variable.path.split("/")[-1]
                weight_name = f"{name}/{short}:0"
                group.create_dataset(weight_name, data=np.asarray(variable.numpy()))
                weight_names.append(weight_name.encode())
            group.attrs["weight_names"] = np.array(weight_names)


def write_archive(model: CAREModel, path: str | os.PathLike, *, model_name: str | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``model`` as a cryoCARE 0.3.0 model archive (``.tar.gz``) that cryoCARE loads.

    Parameters
    ----------
    model : CAREModel
        A 3-D ``unet`` model.
    path : path
        The archive, conventionally ``<folder>/<model_name>.tar.gz``.
    model_name : str, optional
        Name of the folder inside the archive; defaults to the archive's name
        without ``.tar.gz``.
    overwrite : bool
        Replace an existing archive.

    Examples
    --------
    Needs a trained model, so shown, not run::

        write_archive(model, "model/denoising_model.tar.gz")
    """
    path = Path(path)
    if model.config.network != "unet" or model.config.unet_n_conv_per_depth != 2:
        raise InputError(
            f"cryoCARE 0.3.0 (CSBDeep) models are 'unet' networks with 2 convolutions per "
            f"level; this one is {model.config.network!r} with "
            f"{model.config.unet_n_conv_per_depth}"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists already (pass overwrite=True to replace it)")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: folder for the model archive does not exist")
    name = model_name or path.name.removesuffix(".gz").removesuffix(".tar")
    with tempfile.TemporaryDirectory(prefix=".cryocare-archive-", dir=path.parent) as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(_csbdeep_config(model.config)))
        (folder / "norm.json").write_text(json.dumps(model.normalization.to_dict()))
        history = {k: list(v) for k, v in model.history.items()}
        with open(folder / "history.dat", "wb") as f:
            pickle.dump(history, f)
        _write_h5(folder / "weights_best.h5", model.keras_model, model.config.n_dim)
        last = model.last_weights
        if last is not None:
            best = model.keras_model.get_weights()
            model.keras_model.set_weights(last)
            try:
                _write_h5(folder / "weights_last.h5", model.keras_model, model.config.n_dim)
            finally:
                model.keras_model.set_weights(best)
        else:
            shutil.copyfile(folder / "weights_best.h5", folder / "weights_last.h5")
        staged = Path(tmp) / "archive.tar.gz"
        with tarfile.open(staged, "w:gz") as tar:
            tar.add(folder, arcname=name)
        os.replace(staged, path)
    log.info("wrote cryoCARE model archive %s", path)
    return path
