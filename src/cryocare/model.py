"""The CARE model: a network with its normalisation; prediction, save and load.

A :class:`CAREModel` couples a Keras network (see :mod:`cryocare.nets`) with
the intensity normalisation it was trained with — or with none, for a
general (pretrained) model that normalises every image by its own
statistics. Training lives in :mod:`cryocare.training`
(:func:`cryocare.training.train`), which imports this module, not the other
way round.

A model is saved as a self-describing folder::

    model/
      config.json            format version, CareConfig, normalisation (or null), versions
      weights.weights.h5     best weights (by validation loss)
      weights_last.weights.h5
      history.json           loss, val_loss and learning_rate per epoch
      history.png            learning curve

Weights are stored in Keras' backend-neutral format: a model trained on one
Keras backend loads and predicts on any other.

Examples
--------
>>> import numpy as np
>>> from cryocare.config import CareConfig
>>> model = CAREModel(CareConfig(n_dim=2, unet_n_depth=1, unet_n_first=2), None)
>>> model.predict(np.ones((8, 8), np.float32) + np.eye(8, dtype=np.float32)).shape
(8, 8)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import __version__, backends, nets
from . import predict as predict_engine
from .config import CareConfig, PredictOptions
from .errors import InputError, OutputExistsError
from .modelformat import FORMAT, FORMAT_VERSION
from .modelformat import WEIGHTS as _WEIGHTS
from .normalize import Normalization

__all__ = ["CAREModel", "DEFAULT_TILE", "plot_history", "read_versioned_json", "staged_folder"]

log = logging.getLogger(__name__)

DEFAULT_TILE = 128  # core size per axis of a prediction tile (3-D); 2-D uses 4x that
_WEIGHTS_LAST = "weights_last.weights.h5"


def plot_history(history: dict[str, Sequence[float]], path: str | os.PathLike) -> Path:
    """Draw a learning curve (training and validation loss per epoch) as a PNG.

    Written atomically; an existing file is replaced (it is a by-product of
    training, like the history it draws). Uses Matplotlib's Agg canvas
    directly, so no global Matplotlib state changes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(5, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        values = history.get(key) or []
        axes.plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    if any(v > 0 for v in history.get("loss") or []):
        axes.set_yscale("log")
    axes.legend()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        figure.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def staged_folder(directory: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A folder built aside (the block writes into the path it yields) and renamed to
    ``directory`` when the block succeeds: a reader never sees half a folder, and a
    failure leaves ``directory`` as it was.

    Raises
    ------
    OutputExistsError
        ``directory`` exists and not ``overwrite``.
    InputError
        Its parent folder does not exist.
    """
    if directory.exists() and not overwrite:
        raise OutputExistsError(f"{directory}: exists already (pass overwrite=True to replace it)")
    if not directory.parent.is_dir():
        raise InputError(f"{directory.parent}: folder for the model does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield staging
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            staging.rename(directory)
            shutil.rmtree(old)
        else:
            staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class CAREModel:
    """A restoration network with the normalisation it was trained with.

    Parameters
    ----------
    config : CareConfig
        Network and training configuration. An untrained model of a config
        with ``train_precision="auto"`` (resolved only when training starts)
        computes in float32 and says so in its config.
    normalization : Normalization or None
        Intensity normalisation applied before and undone after the network;
        None (a general, pretrained model) normalises every image by its own
        mean and standard deviation. Saved with the model (None as JSON null).
    keras_model : keras.Model, optional
        The network; built fresh from ``config`` when not given.

    Attributes
    ----------
    history : dict of str to list of float
        ``loss``, ``val_loss`` and ``learning_rate`` per epoch of training.
    last_weights : list of ndarray or None
        The weights after the last training step, when they are not the
        best ones the network holds (saved as ``weights_last.weights.h5``).
    """

    def __init__(self, config: CareConfig, normalization: Normalization | None = None,
                 keras_model: keras.Model | None = None):
        if config.train_precision == "auto":
            config = config.replace(train_precision="float32")
        if normalization is not None and not isinstance(normalization, Normalization):
            raise InputError(f"normalization: expected a Normalization or None, "
                             f"got {normalization!r}")
        self.config = config
        self.normalization = normalization
        self.keras_model = nets.build(config) if keras_model is None else keras_model
        self.history: dict[str, list[float]] = {}
        self.last_weights: list[np.ndarray] | None = None
        #: The folder the model was loaded from (None: built here); exported graphs of
        #: :mod:`cryocare.runtime` are cached in it when it is writable.
        self.source: Path | None = None
        #: Forward passes over the model's own layers, by pass and chunk size.
        self._forwards: dict[tuple, Callable[[np.ndarray], np.ndarray]] = {}

    # ---------------------------------------------------------------- prediction
    def spec(self, engine: str = "keras") -> nets.NetworkSpec:
        """What the prediction planner needs to know of this network (halo, pooling,
        memory per voxel; level by level only where this network's runner takes it)."""
        spec = nets.spec(self.config)
        if spec.streamed_bytes_per_voxel is not None and (
                engine != "keras" or not nets.streamable(self.keras_model, self.config)):
            spec = dataclasses.replace(spec, streamed_bytes_per_voxel=None)
        return spec

    @staticmethod
    def _precision(precision: str, engine: str) -> str:
        """``precision``, or float32 where Keras has no bfloat16 kernels on this device."""
        if precision == "bfloat16" and engine == "keras" \
                and not backends.precision_runs("mixed_bfloat16"):
            log.warning("bfloat16 has no convolution kernels on this device (e.g. a CPU "
                        "without AVX-512); predicting in float32")
            return "float32"
        return precision

    def _forward(self, plan: predict_engine.PredictionPlan, engine: str = "keras",
                 ) -> Callable[[np.ndarray], np.ndarray]:
        """The network on a normalised float32 batch, run as ``plan`` says.

        A pass over the model's own layers is built once per kind of plan
        and reused (it computes with the weights as they are). With
        ``engine="keras"``, when the network was built for another precision
        than the plan's, a twin with a copy of the weights is built per
        prediction; a streamed plan runs the network's level-by-level
        runner (:func:`cryocare.nets.streamed_runner`). Other engines
        (``"auto"``, ``"onnxruntime"``, ``"openvino"``) run the exported graph
        (:func:`cryocare.runtime.compile`), cached in the model folder the
        model was loaded from.
        """
        wanted = "float32" if plan.precision == "float32" else "mixed_bfloat16"
        if engine != "keras" or self.config.train_precision != wanted:
            return self._build_forward(plan, engine)  # a copy of the weights: built anew
        # The model's own layers, so its weights as they are now: built once per kind of
        # plan (tracing the level-by-level parts costs seconds per prediction otherwise).
        key = (plan.streamed, plan.chunk_bytes)
        if key not in self._forwards:
            self._forwards[key] = self._build_forward(plan, engine)
        return self._forwards[key]

    def _build_forward(self, plan: predict_engine.PredictionPlan, engine: str,
                       ) -> Callable[[np.ndarray], np.ndarray]:
        precision = plan.precision
        if engine != "keras":
            from . import runtime

            cache = self.source if self.source is not None and os.access(self.source, os.W_OK) \
                else None
            return runtime.compile(self.keras_model, engine=engine, precision=precision,
                                   cache_dir=cache, n_dim=self.config.n_dim)
        backends.warn_slow_cpu_kernels()
        wanted = "float32" if precision == "float32" else "mixed_bfloat16"
        network = self.keras_model
        if self.config.train_precision != wanted:
            network = nets.build(self.config.replace(train_precision=wanted))
            network.set_weights(self.keras_model.get_weights())
        if plan.streamed:
            return nets.streamed_runner(self.config)(network, self.config, plan.chunk_bytes)

        def run(batch: np.ndarray) -> np.ndarray:
            return keras.ops.convert_to_numpy(network.predict_on_batch(batch[..., None]))[..., 0]

        return run

    def _restore(self, images: Sequence[np.ndarray], options: PredictOptions | None,
                 settings: dict[str, Any], out: Any) -> np.ndarray | None:
        options = PredictOptions.merged(options, **settings)
        shape = np.shape(images[0])
        if any(np.shape(image) != shape for image in images):
            raise InputError(f"even and odd halves differ in shape: {np.shape(images[0])} "
                             f"and {np.shape(images[1])}")
        if len(shape) != self.config.n_dim:
            raise InputError(f"this model restores {self.config.n_dim}-D images, got an image "
                             f"of shape {shape}")
        precision = self._precision(options.precision, options.engine)
        if precision != options.precision:
            options = options.replace(precision=precision)
        device = predict_engine.Device.current(options.device, engine=options.engine)
        return predict_engine.predict_volume(
            lambda plan: self._forward(plan, options.engine), *images,
            normalization=self.normalization, spec=self.spec(options.engine),
            options=options, device=device, out=out)

    def predict(self, image: np.ndarray, options: PredictOptions | None = None, *,
                out: Any = None, **settings: Any) -> np.ndarray | None:
        """Restore one image (2-D or 3-D), tile by tile (see :mod:`cryocare.predict`).

        Parameters
        ----------
        image : ndarray
            Raw image in the intensity scale of the training data (memory map fine).
        options : PredictOptions, optional
            How to predict (:class:`cryocare.config.PredictOptions`): tiles,
            memory budget, batch, normalisation, test-time augmentation,
            precision, engine, device, level-by-level pass, progress bar.
            None: the defaults. Tiles overlap by the network's receptive field
            and the pass runs the same arithmetic, so none of the planning
            options changes the result beyond rounding.
        out : ndarray or cryocare.io.SlabWriter, optional
            Where to put the result; with a slab writer it streams to disk.
        **settings
            Single options changed, by the names of
            :class:`~cryocare.config.PredictOptions` (``memory="2G"``,
            ``tta=4``, ``precision="bfloat16"``, ``normalize="image"``, ...);
            an unknown name is refused.

        Returns
        -------
        ndarray or None
            float32 array with the shape of ``image`` (None when ``out`` is a slab writer).
        """
        return self._restore([image], options, settings, out)

    def denoise(self, even: np.ndarray, odd: np.ndarray, options: PredictOptions | None = None,
                *, out: Any = None, **settings: Any) -> np.ndarray | None:
        """Restore both halves and return their average (the Cryo-CARE output).

        Both halves of each tile go through the network in the same forward
        pass, or in two where that lets the tiles read fewer voxels.
        ``options``, ``out`` and ``settings`` are those of :meth:`predict`.
        """
        return self._restore([even, odd], options, settings, out)

    # ------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the model folder atomically (built aside, then renamed into place)."""
        directory = Path(directory)
        with staged_folder(directory, overwrite=overwrite) as staging:
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "normalization": None if self.normalization is None else
                self.normalization.to_dict(),
                "versions": {"cryocare": __version__, "keras": keras.__version__,
                             "backend": keras.backend.backend(), "numpy": np.__version__},
            }
            (staging / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
            (staging / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")
            if self.history.get("loss"):
                plot_history(self.history, staging / "history.png")
            self.keras_model.save_weights(staging / _WEIGHTS)
            if self.last_weights is not None:
                best = self.keras_model.get_weights()
                self.keras_model.set_weights(self.last_weights)
                self.keras_model.save_weights(staging / _WEIGHTS_LAST)
                self.keras_model.set_weights(best)
        log.info("saved model to %s", directory)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, *, weights: str = "best") -> CAREModel:
        """Load a model folder written by :meth:`save`, on any Keras backend.

        Parameters
        ----------
        directory : path
            The model folder.
        weights : {"best", "last"}
            The weights with the lowest validation loss (default) or those
            after the last epoch.
        """
        directory = Path(directory)
        meta_path = directory / "config.json"
        if weights not in ("best", "last"):
            raise InputError(f"weights: expected 'best' or 'last', got {weights!r}")
        weights_path = directory / (_WEIGHTS if weights == "best" else _WEIGHTS_LAST)
        if not directory.is_dir():
            raise InputError(f"{directory}: no such model folder")
        if not meta_path.is_file() or not weights_path.is_file():
            raise InputError(
                f"{directory}: not a complete cryocare model folder "
                f"(expected config.json and {weights_path.name})"
            )
        meta = read_versioned_json(meta_path, kind=FORMAT, version=FORMAT_VERSION,
                                   what="model description")
        try:
            config = CareConfig.from_dict(meta.get("config"))
            # null: a general model that normalises every image by itself; a missing
            # key is an incomplete description, not a general model.
            stats = meta.get("normalization", {})
            normalization = None if stats is None else Normalization.from_dict(stats)
        except InputError as error:
            raise InputError(f"{meta_path}: {error}") from None
        model = cls(config, normalization)
        try:
            model.keras_model.load_weights(weights_path)
        except (OSError, ValueError, KeyError) as error:
            raise InputError(
                f"{weights_path}: weights do not fit the network in config.json ({error})"
            ) from None
        history = directory / "history.json"
        if history.is_file():
            model.history = json.loads(history.read_text())
        model.source = directory
        return model


def read_versioned_json(path: Path, *, kind: str, version: int, what: str) -> dict[str, Any]:
    """A JSON file of ``{"format": kind, "format_version": <= version, ...}``, else InputError."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable {what} ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        raise InputError(f"{path}: not a cryocare {what}")
    if meta.get("format_version", 0) > version:
        raise InputError(
            f"{path}: {what} format version {meta['format_version']} is newer than this "
            f"cryocare ({__version__}) understands ({version}); upgrade cryocare"
        )
    return meta
