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

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import __version__, backends, nets, streaming
from . import predict as predict_engine
from .config import CareConfig
from .errors import InputError, OutputExistsError
from .normalize import Normalization

__all__ = ["CAREModel", "DEFAULT_TILE", "plot_history", "read_versioned_json"]

log = logging.getLogger(__name__)

FORMAT = "cryocare-model"
FORMAT_VERSION = 1
DEFAULT_TILE = 128  # core size per axis of a prediction tile (3-D); 2-D uses 4x that
_WEIGHTS = "weights.weights.h5"
_WEIGHTS_LAST = "weights_last.weights.h5"
PREDICT_PRECISIONS = ("float32", "bfloat16")
#: A U-Net runs level by level (:mod:`cryocare.streaming`) when that lets the memory plan
#: read this many times fewer voxels: per voxel it is slower than the whole graph by about
#: this much on the CPUs measured (docs/predict.md).
STREAM_GAIN = 1.3


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

    # ---------------------------------------------------------------- prediction
    @staticmethod
    def _precision(precision: str, engine: str) -> str:
        """``precision``, or float32 where Keras has no bfloat16 kernels on this device."""
        if precision not in PREDICT_PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PREDICT_PRECISIONS)}, "
                             f"got {precision!r}")
        if precision == "bfloat16" and engine == "keras" \
                and not backends.precision_runs("mixed_bfloat16"):
            log.warning("bfloat16 has no convolution kernels on this device (e.g. a CPU "
                        "without AVX-512); predicting in float32")
            return "float32"
        return precision

    def _prediction(self, precision: str, engine: str, memory: int | float | str | None,
                    stream: bool | None = None, shape: Sequence[int] | None = None,
                    ) -> tuple[Callable, dict[str, Any]]:
        """The network and the options of :func:`cryocare.predict.predict_volume` for it.

        ``stream`` None: the U-Net runs level by level when, for an image of
        ``shape``, the memory budget would make the whole graph's tiles read
        more than :data:`STREAM_GAIN` times as many voxels.
        """
        precision = self._precision(precision, engine)
        budget = predict_engine.parse_memory(memory)
        chunk = None
        if stream is not False and self._streamed(engine):  # working set ≤ 1/4 of the budget
            chunk = max(2**16, min(streaming.CHUNK_BYTES, budget // 4))
            if stream is None and shape is not None:
                whole, streamed = (self._read_factor(shape, budget, precision, engine, size)
                                   for size in (None, chunk))
                if whole <= STREAM_GAIN * streamed:
                    chunk = None
                log.debug("voxels read per voxel: %.2f as one graph, %.2f level by level; %s",
                          whole, streamed, "one graph" if chunk is None else "level by level")
        return (self._network(precision, engine, chunk_bytes=chunk),
                self._predict_options(precision, engine, chunk_bytes=chunk))

    def _read_factor(self, shape: Sequence[int], budget: int, precision: str, engine: str,
                     chunk_bytes: int | None) -> float:
        """Voxels that the memory plan for one image of ``shape`` reads per voxel (inf: none)."""
        options = self._predict_options(precision, engine, chunk_bytes=chunk_bytes)
        try:
            plan, _ = predict_engine.plan_for_memory(
                shape, budget=budget - options["reserved_bytes"], halves=1,
                bytes_per_voxel=options["bytes_per_voxel"], halo=options["halo"],
                multiple_of=options["multiple_of"], max_pass_voxels=options["max_pass_voxels"])
        except InputError:
            return math.inf
        return sum(math.prod(t.read_shape) for t in plan.tiles) / math.prod(shape)

    def _network(self, precision: str = "float32", engine: str = "keras", *,
                 chunk_bytes: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """The network on a normalised float32 batch, computing in ``precision``.

        With ``engine="keras"``, when the network was built for another
        precision than the one asked for, a twin with the same weights is
        built once per call of :meth:`predict` or :meth:`denoise`. With
        ``chunk_bytes`` (which :meth:`_prediction` gives only for a U-Net in
        Keras on a CPU) the U-Net runs level by level in chunks of that
        working set (:mod:`cryocare.streaming`: the same output in about a
        seventh of the memory). Other
        engines (``"auto"``, ``"onnxruntime"``, ``"openvino"``) run the
        exported graph (:func:`cryocare.runtime.compile`), cached in the model
        folder the model was loaded from.
        """
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
        if chunk_bytes is not None:  # set by _prediction only where _streamed(engine)
            return streaming.StreamedUNet(network, self.config, chunk_bytes=chunk_bytes)

        def run(batch: np.ndarray) -> np.ndarray:
            return keras.ops.convert_to_numpy(network.predict_on_batch(batch[..., None]))[..., 0]

        return run

    def _streamed(self, engine: str) -> bool:
        """Whether prediction runs the network level by level (a U-Net in Keras on a CPU)."""
        return engine == "keras" and streaming.streamable(self.keras_model, self.config) \
            and not backends.computes_on_gpu()

    def _predict_options(self, precision: str = "float32", engine: str = "keras", *,
                         chunk_bytes: int | None = None) -> dict[str, Any]:
        config = self.config
        streamed = chunk_bytes is not None  # set by _prediction only where _streamed(engine)
        # Eigen's convolutions abort on large passes (see predict.EIGEN_PASS_VOXELS); a
        # streamed pass gives them chunks of a few million voxels
        eigen = engine == "keras" and backends.tensorflow_onednn() is False and not streamed
        if streamed:
            per_voxel = streaming.streamed_bytes_per_voxel(
                n_dim=config.n_dim, n_first=config.unet_n_first, depth=config.unet_n_depth)
        else:
            per_voxel = nets.bytes_per_voxel(config)
        if precision == "bfloat16":  # activations in 2 bytes; input and output stay float32
            per_voxel = int(math.ceil(0.6 * per_voxel))
        return {
            "normalization": self.normalization,
            "halo": nets.halo(config),
            "multiple_of": nets.multiple_of(config),
            "bytes_per_voxel": per_voxel,
            "reserved_bytes": chunk_bytes if streamed else 0,
            "max_pass_voxels": predict_engine.EIGEN_PASS_VOXELS if eigen
            else predict_engine.MAX_PASS_VOXELS,
        }

    def predict(self, image: np.ndarray, *, tile_shape: int | Sequence[int] | None | str = "auto",
                memory: int | float | str | None = None, batch_size: int | None = None,
                normalize: str | Normalization = "training", out: Any = None,
                progress: bool = False, tta: bool | int | str = False,
                precision: str = "float32", engine: str = "keras",
                streaming: bool | None = None, **options: Any) -> np.ndarray | None:
        """Restore one image (2-D or 3-D), tile by tile (see :mod:`cryocare.predict`).

        Parameters
        ----------
        image : ndarray
            Raw image in the intensity scale of the training data (memory map fine).
        tile_shape : "auto", int, sequence of int or None
            Core size of the tiles; ``"auto"`` (default) the largest that fit
            ``memory``; None predicts the whole image at once. Tiles overlap by
            the network's receptive field, so the result does not depend on
            this choice.
        memory : int, float, str or None
            Memory budget in bytes or as ``"4G"``; None is half the free host memory.
        batch_size : int, optional
            Tiles per forward pass; default as many as fit ``memory`` (at most 8).
        normalize : {"training", "image"} or Normalization
            Intensity statistics: the training data's (default, as cryoCARE)
            or the image's own. A model without training statistics
            (``normalization`` None) always uses the image's own.
        out : ndarray or cryocare.io.SlabWriter, optional
            Where to put the result; with a slab writer it streams to disk.
        progress : bool
            Show a progress bar.
        tta : bool, int or "auto"
            Average over the 8 (2-D: 4) flips of every tile, or 2 or 4 of them
            (:func:`cryocare.predict.flip_averaged`), as many times slower;
            ``"auto"``: as many as fit ``tta_seconds`` (an option of
            :func:`cryocare.predict.predict_volume`).
        precision : {"float32", "bfloat16"}
            Arithmetic of the forward pass. ``"bfloat16"`` is about twice as
            fast on CPUs with AMX or AVX-512 BF16 (and recent GPUs) and needs
            less memory per tile; outputs differ from float32 by ~1e-3 of the
            range, and tiled from untiled by as much (float32: by rounding).
        engine : {"keras", "auto", "onnxruntime", "openvino"}
            What runs the network: Keras (default), or its exported graph in
            ONNX Runtime or OpenVINO (``pip install "cryocare-ng[fast]"``; see
            ``docs/runtime.md``: same output to ~1e-6, less memory, and on the
            CPUs measured no faster than TensorFlow); ``"auto"`` OpenVINO when
            installed, else Keras.
        streaming : bool or None
            With the Keras engine on a CPU, run a U-Net level by level in
            chunks (:mod:`cryocare.streaming`: the same output, ~7× less
            memory per voxel, so larger tiles that read fewer voxels twice)
            or as one graph (False). None (default): level by level where the
            memory budget would otherwise cut the image into tiles that read
            much more (:data:`STREAM_GAIN`).
        **options
            Further options of :func:`cryocare.predict.predict_volume`
            (``tta_seconds``).

        Returns
        -------
        ndarray or None
            float32 array with the shape of ``image`` (None when ``out`` is a slab writer).
        """
        if np.ndim(image) != self.config.n_dim:
            raise InputError(
                f"this model restores {self.config.n_dim}-D images, got an image of shape "
                f"{np.shape(image)}"
            )
        network, settings = self._prediction(precision, engine, memory, streaming,
                                             np.shape(image))
        return predict_engine.predict_volume(
            network, image, tile_shape=tile_shape, memory=memory, batch_size=batch_size,
            normalize=normalize, out=out, progress=progress, tta=tta, **options, **settings)

    def denoise(self, even: np.ndarray, odd: np.ndarray, **options: Any) -> np.ndarray | None:
        """Restore both halves and return their average (the Cryo-CARE output).

        Both halves of each tile go through the network in the same forward
        pass. ``options`` are those of :meth:`predict`.
        """
        if np.shape(even) != np.shape(odd):
            raise InputError(
                f"even and odd halves differ in shape: {np.shape(even)} and {np.shape(odd)}"
            )
        if np.ndim(even) != self.config.n_dim:
            raise InputError(
                f"this model restores {self.config.n_dim}-D images, got an image of shape "
                f"{np.shape(even)}"
            )
        network, settings = self._prediction(options.pop("precision", "float32"),
                                             options.pop("engine", "keras"),
                                             options.get("memory"), options.pop("streaming", None),
                                             np.shape(even))
        return predict_engine.predict_volume(network, even, odd, **options, **settings)

    # ------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the model folder atomically (built aside, then renamed into place)."""
        directory = Path(directory)
        if directory.exists() and not overwrite:
            raise OutputExistsError(
                f"{directory}: exists already (pass overwrite=True to replace it)"
            )
        if not directory.parent.is_dir():
            raise InputError(f"{directory.parent}: folder for the model does not exist")
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
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
