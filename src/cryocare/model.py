"""The CARE model: Noise2Noise training, tiled prediction, save and load.

A :class:`CAREModel` couples a Keras network (see :mod:`cryocare.nets`) with
the intensity normalisation it was trained with. It learns the Noise2Noise
way from pairs of independently noisy images of the same content: each
training sample maps the even half to the odd half or, chosen at random,
the odd half to the even half. The best weights by validation loss are kept.

A model is saved as a self-describing folder::

    model/
      config.json            format version, CareConfig, normalisation, versions
      weights.weights.h5     best weights (by validation loss)
      weights_last.weights.h5
      history.json           loss and val_loss per epoch

Weights are stored in Keras' backend-neutral format.

Examples
--------
Training takes minutes, so this is shown, not run (``docs/model.md`` has a
runnable version)::

    model = CAREModel.train(pairs, CareConfig(train_epochs=10))
    denoised = model.denoise(even, odd)
    model.save("my_model")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from . import __version__, nets
from .config import CareConfig
from .errors import InputError, OutputExistsError
from .pairs import Normalization, PairSet
from .tiling import plan_tiles, predict_tiled

__all__ = ["CAREModel", "DEFAULT_TILE"]

log = logging.getLogger(__name__)

FORMAT = "cryocare-model"
FORMAT_VERSION = 1
DEFAULT_TILE = 128  # core size per axis of a prediction tile (3-D); 2-D uses 4x that
_WEIGHTS = "weights.weights.h5"
_WEIGHTS_LAST = "weights_last.weights.h5"


class _PairBatches(keras.utils.PyDataset):
    """Random batches of pairs, each pair in a random direction (even→odd or odd→even)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, steps: int, seed: int):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pick = rng.integers(0, len(self.x), size=self.batch_size)
        swap = rng.random(self.batch_size) < 0.5
        x = np.where(_expand(swap, self.x.ndim), self.y[pick], self.x[pick])
        y = np.where(_expand(swap, self.x.ndim), self.x[pick], self.y[pick])
        return x[..., None], y[..., None]

    def on_epoch_end(self) -> None:
        self.epoch += 1


def _expand(flags: np.ndarray, ndim: int) -> np.ndarray:
    return flags.reshape((-1,) + (1,) * (ndim - 1))


class _Progress(keras.callbacks.Callback):
    """tqdm progress bar over all training steps, and one log line per epoch."""

    def __init__(self, total: int, enabled: bool):
        super().__init__()
        self.bar = tqdm(total=total, desc="training", unit="step", disable=not enabled)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info("epoch %d: loss %.5f, val_loss %.5f", epoch + 1,
                 float(logs.get("loss", np.nan)), float(logs.get("val_loss", np.nan)))

    def on_train_end(self, logs=None):
        self.bar.close()


class _KeepBest(keras.callbacks.Callback):
    """Remember the weights with the lowest validation loss."""

    def __init__(self):
        super().__init__()
        self.best_loss = np.inf
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("val_loss", np.inf))
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_weights = self.model.get_weights()


class CAREModel:
    """A restoration network with the normalisation it was trained with.

    Parameters
    ----------
    config : CareConfig
        Network and training configuration.
    normalization : Normalization
        Intensity normalisation applied before and undone after the network.
    keras_model : keras.Model, optional
        The network; built fresh from ``config`` when not given.
    """

    def __init__(self, config: CareConfig, normalization: Normalization,
                 keras_model: keras.Model | None = None):
        self.config = config
        self.normalization = normalization
        self.keras_model = nets.build(config) if keras_model is None else keras_model
        self.history: dict[str, list[float]] = {}
        self._last_weights: list[np.ndarray] | None = None

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, pairs: PairSet, config: CareConfig | None = None, *,
              progress: bool = False) -> CAREModel:
        """Train a new model Noise2Noise on ``pairs`` and return it with its best weights.

        Parameters
        ----------
        pairs : PairSet
            Normalised even/odd patch pairs (see :func:`cryocare.pairs.sample_pairs`).
        config : CareConfig, optional
            Defaults to ``CareConfig(n_dim=<patch dimensionality>)``.
        progress : bool
            Show a progress bar.
        """
        n_dim = len(pairs.patch_shape)
        config = CareConfig(n_dim=n_dim) if config is None else config
        if config.n_dim != n_dim:
            raise InputError(f"config.n_dim is {config.n_dim} but the patches are {n_dim}-D")
        multiple = nets.multiple_of(config)
        if any(p % multiple for p in pairs.patch_shape):
            raise InputError(
                f"patch shape {pairs.patch_shape}: every size must be a multiple of "
                f"{multiple} for the {config.network} network"
            )
        if len(pairs.x_train) == 0 or len(pairs.x_val) == 0:
            raise InputError("training needs at least one training and one validation pair")
        model = cls(config, pairs.normalization)
        model.keras_model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=config.train_learning_rate),
            loss=config.train_loss,
        )
        batches = _PairBatches(pairs.x_train, pairs.y_train, batch_size=config.train_batch_size,
                               steps=config.train_steps_per_epoch, seed=config.seed)
        # One direction suffices: even→odd and odd→even have the same expected loss,
        # and validation is a sizeable share of a short CPU training run.
        x_val, y_val = pairs.x_val[..., None], pairs.y_val[..., None]
        keep_best = _KeepBest()
        callbacks = [
            keep_best,
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                              patience=config.train_reduce_lr_patience,
                                              verbose=0),
            _Progress(config.train_epochs * config.train_steps_per_epoch, progress),
        ]
        log.info("training %s for %d epochs of %d steps (batch %d) on %d pairs",
                 config.network, config.train_epochs, config.train_steps_per_epoch,
                 config.train_batch_size, len(pairs.x_train))
        result = model.keras_model.fit(
            batches, epochs=config.train_epochs, validation_data=(x_val, y_val),
            validation_batch_size=config.train_batch_size, callbacks=callbacks, verbose=0,
        )
        model.history = {k: [float(v) for v in vals] for k, vals in result.history.items()
                         if k in ("loss", "val_loss")}
        model._last_weights = model.keras_model.get_weights()
        if keep_best.best_weights is not None:
            model.keras_model.set_weights(keep_best.best_weights)
        return model

    # ---------------------------------------------------------------- prediction
    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        x = self.normalization.normalize(batch)[..., None]
        y = keras.ops.convert_to_numpy(self.keras_model.predict_on_batch(x))[..., 0]
        return self.normalization.denormalize(y)

    def predict(self, image: np.ndarray, *, tile_shape: int | Sequence[int] | None | str = "auto",
                batch_size: int = 1, progress: bool = False) -> np.ndarray:
        """Restore one image (2-D or 3-D), tile by tile.

        Parameters
        ----------
        image : ndarray
            Raw image in the intensity scale of the training data (memory map fine).
        tile_shape : "auto", int, sequence of int or None
            Core size of the tiles; ``"auto"`` uses cores of at most
            ``DEFAULT_TILE`` voxels per axis (3-D) or 4× that (2-D); None
            predicts the whole image at once. Tiles overlap by the network's
            receptive field, so the result does not depend on this choice.
        batch_size : int
            Tiles per forward pass.
        progress : bool
            Show a progress bar over tiles.

        Returns
        -------
        ndarray
            float32 array with the shape of ``image``.
        """
        if image.ndim != self.config.n_dim:
            raise InputError(
                f"this model restores {self.config.n_dim}-D images, got an image of shape "
                f"{image.shape}"
            )
        if isinstance(tile_shape, str):
            if tile_shape != "auto":
                raise InputError(f"tile_shape: expected 'auto', sizes or None, got {tile_shape!r}")
            core = DEFAULT_TILE if image.ndim == 3 else 4 * DEFAULT_TILE
            tile_shape = tuple(min(n, core) for n in image.shape)
        elif isinstance(tile_shape, int | np.integer):
            tile_shape = (int(tile_shape),) * image.ndim
        plan = plan_tiles(image.shape, tile_shape=tile_shape, halo=nets.halo(self.config),
                          multiple_of=nets.multiple_of(self.config))
        return predict_tiled(self._predict_batch, image, plan=plan, batch_size=batch_size,
                             progress=progress)

    def denoise(self, even: np.ndarray, odd: np.ndarray, **options: Any) -> np.ndarray:
        """Restore both halves and return their average (the Cryo-CARE output).

        ``options`` are passed on to :meth:`predict`.
        """
        if even.shape != odd.shape:
            raise InputError(
                f"even and odd halves differ in shape: {even.shape} and {odd.shape}"
            )
        result = self.predict(even, **options)
        result += self.predict(odd, **options)
        result *= np.float32(0.5)
        return result

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
                "normalization": self.normalization.to_dict(),
                "versions": {"cryocare": __version__, "keras": keras.__version__,
                             "backend": keras.backend.backend(), "numpy": np.__version__},
            }
            (staging / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
            (staging / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")
            self.keras_model.save_weights(staging / _WEIGHTS)
            if self._last_weights is not None:
                best = self.keras_model.get_weights()
                self.keras_model.set_weights(self._last_weights)
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
    def load(cls, directory: str | os.PathLike) -> CAREModel:
        """Load a model folder written by :meth:`save`."""
        directory = Path(directory)
        meta_path = directory / "config.json"
        if not directory.is_dir():
            raise InputError(f"{directory}: no such model folder")
        if not meta_path.is_file() or not (directory / _WEIGHTS).is_file():
            raise InputError(
                f"{directory}: not a complete cryocare model folder "
                f"(expected config.json and {_WEIGHTS})"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{meta_path}: unreadable model description ({error})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{meta_path}: not a cryocare model description")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise InputError(
                f"{directory}: model format version {meta['format_version']} is newer than "
                f"this cryocare ({__version__}) understands ({FORMAT_VERSION}); upgrade cryocare"
            )
        model = cls(CareConfig.from_dict(meta["config"]),
                    Normalization.from_dict(meta["normalization"]))
        model.keras_model.load_weights(directory / _WEIGHTS)
        history = directory / "history.json"
        if history.is_file():
            model.history = json.loads(history.read_text())
        return model
