"""The CARE model: Noise2Noise training, tiled prediction, save and load.

A :class:`CAREModel` couples a Keras network (see :mod:`cryocare.nets`) with
the intensity normalisation it was trained with. It learns the Noise2Noise
way from pairs of independently noisy images of the same content: each
training sample maps the even half to the odd half or, chosen at random,
the odd half to the even half. The best weights by validation loss are kept.

Training can write checkpoints after every epoch (``checkpoint_dir``) and
continue from the last of them after an interruption (``resume=True``)::

    checkpoints/
      checkpoint.json         state: epochs done, history, learning rate, file names
      last-e0007.weights.h5   weights after the last finished epoch
      best-e0005.weights.h5   weights with the lowest validation loss so far
      optimizer-e0007.npz     Adam's moments and step counter
      history.png             learning curve so far

A model is saved as a self-describing folder::

    model/
      config.json            format version, CareConfig, normalisation, versions
      weights.weights.h5     best weights (by validation loss)
      weights_last.weights.h5
      history.json           loss, val_loss and learning_rate per epoch
      history.png            learning curve

Weights are stored in Keras' backend-neutral format: a model trained on one
Keras backend loads and predicts on any other.

Examples
--------
Training takes minutes, so this is shown, not run (``docs/model.md`` has a
runnable version)::

    model = CAREModel.train(pairs, CareConfig(train_epochs=10),
                            checkpoint_dir="checkpoints", resume=True)
    denoised = model.denoise(even, odd)
    model.save("my_model")
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from . import __version__, backends, losses, nets
from . import predict as engine
from .config import CareConfig
from .errors import InputError, OutputExistsError
from .pairs import Normalization, PairSet

__all__ = ["CAREModel", "DEFAULT_TILE", "cosine_rate", "plot_history"]

log = logging.getLogger(__name__)

FORMAT = "cryocare-model"
FORMAT_VERSION = 1
CHECKPOINT_FORMAT = "cryocare-checkpoint"
CHECKPOINT_VERSION = 1
DEFAULT_TILE = 128  # core size per axis of a prediction tile (3-D); 2-D uses 4x that
_WEIGHTS = "weights.weights.h5"
_WEIGHTS_LAST = "weights_last.weights.h5"
_HISTORY_KEYS = ("loss", "val_loss", "learning_rate")
PREDICT_PRECISIONS = ("float32", "bfloat16")


class _PairBatches(keras.utils.PyDataset):
    """An endless stream of random batches of pairs, each pair in a random direction.

    Batch ``i`` of epoch ``e`` (counted from ``epoch``, the first epoch of
    this run) depends only on ``(seed, e, i)``, so training is reproducible
    and a resumed run sees the batches an uninterrupted run would have seen.
    The stream has no end (``num_batches`` is None) and ``fit`` is given
    ``steps_per_epoch``: Keras then keeps one iterator for the whole run.
    With a finite dataset it would build a new one every epoch, and on
    TensorFlow tearing down the old one waited up to ~9 s for its prefetch
    thread (measured: every other epoch of 50 steps took 20 s instead of 12).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, steps: int, seed: int,
                 epoch: int = 0, tilt_axis: str = "Y", augment: Callable | None = None,
                 workers: int = 1):
        # Several workers prefetch batches in threads; TensorFlow's tf.data
        # prefetches on its own, so one worker is enough there.
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.x, self.y = x, y
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.epoch = epoch
        self.tilt_axis = tilt_axis
        self.augment = augment

    @property
    def num_batches(self) -> None:
        return None  # endless: fit() is given steps_per_epoch

    def __getitem__(self, index: int):
        epoch, step = self.epoch + index // self.steps, index % self.steps
        rng = np.random.default_rng([self.seed, epoch, step])
        pick = rng.integers(0, len(self.x), size=self.batch_size)
        swap = _expand(rng.random(self.batch_size) < 0.5, self.x.ndim)
        xs, ys = self.x[pick], self.y[pick]
        x, y = np.where(swap, ys, xs), np.where(swap, xs, ys)
        # Every random choice of the augmentation comes from ``rng`` (seeded per
        # epoch and step), so that training stays reproducible when resumed.
        if self.augment is not None:
            x, y = self.augment(x, y, rng=rng, tilt_axis=self.tilt_axis)
        return x[..., None], y[..., None]


def _expand(flags: np.ndarray, ndim: int) -> np.ndarray:
    return flags.reshape((-1,) + (1,) * (ndim - 1))


class _Progress(keras.callbacks.Callback):
    """tqdm progress bar over all training steps, and one log line per epoch."""

    def __init__(self, total: int, enabled: bool, initial: int = 0):
        super().__init__()
        self.bar = tqdm(total=total, initial=initial, desc="training", unit="step",
                        disable=not enabled)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info("epoch %d: loss %.5f, val_loss %.5f", epoch + 1,
                 float(logs.get("loss", np.nan)), float(logs.get("val_loss", np.nan)))

    def close(self):
        self.bar.close()


class _State:
    """Everything training needs to continue where it stopped (JSON-serialisable)."""

    def __init__(self, learning_rate: float):
        self.epoch = 0  # finished epochs
        self.history: dict[str, list[float]] = {key: [] for key in _HISTORY_KEYS}
        self.best_loss = math.inf
        self.best_epoch = 0  # 1-based; 0: none yet
        self.learning_rate = float(learning_rate)
        self.plateau_wait = 0  # epochs without improvement since the last change of rate
        self.stopped_early = False
        self.steps = 0  # finished training steps
        self.elapsed = 0.0  # seconds of training so far (all runs of a resumed training)
        self.out_of_time = False
        self.best_weights: list[np.ndarray] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in (
            "epoch", "history", "best_loss", "best_epoch", "learning_rate", "plateau_wait",
            "stopped_early", "steps", "elapsed", "out_of_time")}

    def update(self, values: dict[str, Any]) -> None:
        for key, value in self.to_dict().items():
            new = values.get(key, value)  # keys added later keep their defaults
            setattr(self, key, type(value)(new) if key != "history" else new)

    @property
    def since_best(self) -> int:
        return self.epoch - self.best_epoch


class _Schedule(keras.callbacks.Callback):
    """Keep the best weights, halve the learning rate on plateaus, stop early.

    Improvement means a validation loss strictly below the best so far. The
    state lives in a :class:`_State`, so that a resumed run continues it.
    """

    def __init__(self, state: _State, *, patience: int, stop_patience: int,
                 on_epoch: Callable[[], None] | None = None, plateau: bool = True):
        super().__init__()
        self.state, self.patience, self.stop_patience = state, patience, stop_patience
        self.on_epoch, self.plateau = on_epoch, plateau

    def on_epoch_end(self, epoch, logs=None):
        logs, state = logs or {}, self.state
        loss = float(logs.get("val_loss", np.inf))
        state.epoch = epoch + 1
        state.history["loss"].append(float(logs.get("loss", np.nan)))
        state.history["val_loss"].append(loss)
        state.history["learning_rate"].append(state.learning_rate)
        if loss < state.best_loss:
            state.best_loss, state.best_epoch, state.plateau_wait = loss, epoch + 1, 0
            state.best_weights = self.model.get_weights()
        else:
            state.plateau_wait += 1
            if self.plateau and state.plateau_wait >= self.patience:
                state.learning_rate *= 0.5
                self.model.optimizer.learning_rate = state.learning_rate
                state.plateau_wait = 0
                log.info("epoch %d: learning rate halved to %.3g", epoch + 1,
                         state.learning_rate)
            if self.stop_patience and state.since_best >= self.stop_patience:
                log.info("epoch %d: no improvement for %d epochs, stopping early",
                         epoch + 1, state.since_best)
                state.stopped_early = True
                self.model.stop_training = True
        if self.on_epoch is not None:
            self.on_epoch()


class _Clock(keras.callbacks.Callback):
    """Count steps and time, stop at the time budget, and set the cosine learning rate.

    Progress through the run is the larger of the share of steps and the
    share of the time budget done, so that a cosine schedule reaches its end
    whichever limit comes first.
    """

    def __init__(self, state: _State, *, started: float, total_steps: int, budget: float,
                 peak_rate: float, warmup: float, cosine: bool):
        super().__init__()
        self.state, self.total_steps, self.budget = state, total_steps, budget
        self.peak_rate, self.warmup, self.cosine = peak_rate, warmup, cosine
        self.origin = started - state.elapsed  # time zero of a resumed run lies in the past

    def progress(self) -> float:
        done = self.state.steps / self.total_steps
        if self.budget:
            done = max(done, self.state.elapsed / self.budget)
        return min(done, 1.0)

    def on_train_batch_begin(self, batch, logs=None):
        if self.cosine:
            rate = cosine_rate(self.progress(), peak=self.peak_rate, warmup=self.warmup)
            self.model.optimizer.learning_rate = rate
            self.state.learning_rate = rate

    def on_train_batch_end(self, batch, logs=None):
        self.state.steps += 1
        self.state.elapsed = time.perf_counter() - self.origin
        if self.budget and self.state.elapsed >= self.budget:
            if not self.state.out_of_time:
                log.info("time budget of %.0f s reached after %d steps", self.budget,
                         self.state.steps)
            self.state.out_of_time = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.state.elapsed = time.perf_counter() - self.origin


def cosine_rate(progress: float, *, peak: float, warmup: float) -> float:
    """Learning rate at ``progress`` (0 to 1) of a run: linear warm-up, then cosine decay.

    Rises linearly from 1 % of ``peak`` to ``peak`` over the first ``warmup``
    share of the run, then falls along half a cosine to zero at the end.

    Examples
    --------
    >>> [round(cosine_rate(p, peak=1.0, warmup=0.1), 3) for p in (0, 0.05, 0.1, 0.55, 1)]
    [0.01, 0.5, 1.0, 0.5, 0.0]
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    return peak * 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (1.0 - warmup)))


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


class _Checkpoints:
    """Checkpoint folder: written after every epoch, each file replaced atomically.

    Weights and optimizer files carry the epoch in their names and
    ``checkpoint.json`` (replaced last) names the current ones, so an
    interruption at any moment leaves a consistent checkpoint behind.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.state_path = self.directory / "checkpoint.json"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def prepare(self, config: CareConfig, normalization: Normalization, *,
                resume: bool) -> None:
        """Check the folder (and, to resume, the checkpoint) before anything is built."""
        if not self.directory.parent.is_dir():
            raise InputError(f"{self.directory.parent}: folder for the checkpoints does not exist")
        if self.exists() and not resume:
            raise OutputExistsError(
                f"{self.directory}: holds a training checkpoint already (resume training "
                f"from it, or choose another folder)"
            )
        if resume and not self.exists():
            raise InputError(
                f"{self.directory}: no checkpoint to resume from (expected checkpoint.json)"
            )
        if resume:
            self.read(config, normalization)
        self.directory.mkdir(exist_ok=True)

    def write(self, model: CAREModel, state: _State) -> None:
        tag = f"e{state.epoch:04d}"
        files = {"last": f"last-{tag}.weights.h5", "optimizer": f"optimizer-{tag}.npz"}
        model.keras_model.save_weights(self._tmp(files["last"]))
        os.replace(self._tmp(files["last"]), self.directory / files["last"])
        optimizer = model.keras_model.optimizer
        arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in
                  enumerate(optimizer.variables)}
        with open(self._tmp(files["optimizer"]), "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(self._tmp(files["optimizer"]), self.directory / files["optimizer"])
        if state.best_epoch:
            files["best"] = f"best-e{state.best_epoch:04d}.weights.h5"
            if not (self.directory / files["best"]).exists():
                current = model.keras_model.get_weights()
                model.keras_model.set_weights(state.best_weights)
                model.keras_model.save_weights(self._tmp(files["best"]))
                model.keras_model.set_weights(current)
                os.replace(self._tmp(files["best"]), self.directory / files["best"])
        meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                "config": model.config.to_dict(),
                "normalization": model.normalization.to_dict(),
                "state": state.to_dict(), "files": files}
        self._tmp("checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(self._tmp("checkpoint.json"), self.state_path)
        for old in self.directory.iterdir():
            if re.fullmatch(r"(last|best|optimizer)-e\d+\..*", old.name) and \
                    old.name not in files.values():
                old.unlink(missing_ok=True)
        try:
            plot_history(state.history, self.directory / "history.png")
        except (OSError, ValueError) as error:  # a curve is no reason to stop training
            log.warning("could not draw the learning curve: %s", error)

    def _tmp(self, name: str) -> Path:
        # Keras insists on the ".weights.h5" ending: keep the whole name, hide it.
        return self.directory / f".tmp-{name}"

    def read(self, config: CareConfig, normalization: Normalization) -> dict[str, Any]:
        meta = _read_versioned_json(self.state_path, kind=CHECKPOINT_FORMAT,
                                    version=CHECKPOINT_VERSION, what="training checkpoint")
        free = ("train_epochs", "train_time_budget")
        saved = {k: v for k, v in meta["config"].items() if k not in free}
        given = {k: v for k, v in config.to_dict().items() if k not in free}
        changed = sorted(k for k in set(saved) | set(given)
                         if saved.get(k, given.get(k)) != given.get(k))
        if changed:
            raise InputError(
                f"{self.state_path}: cannot resume, the config differs in "
                f"{', '.join(map(repr, changed))} (only train_epochs and train_time_budget "
                f"may change)"
            )
        if Normalization.from_dict(meta["normalization"]) != normalization:
            raise InputError(
                f"{self.state_path}: cannot resume, the training pairs have another "
                f"normalisation than the checkpoint's"
            )
        for name in meta["files"].values():
            if not (self.directory / name).is_file():
                raise InputError(f"{self.directory}: incomplete checkpoint, {name} is missing")
        return meta

    def restore(self, model: CAREModel, state: _State) -> None:
        meta = self.read(model.config, model.normalization)
        state.update(meta["state"])
        files = meta["files"]
        keras_model = model.keras_model
        if "best" in files:
            keras_model.load_weights(self.directory / files["best"])
            state.best_weights = keras_model.get_weights()
        keras_model.load_weights(self.directory / files["last"])
        optimizer = keras_model.optimizer
        optimizer.build(keras_model.trainable_variables)
        with np.load(self.directory / files["optimizer"]) as data:
            values = [data[f"v{i}"] for i in range(len(data.files))]
        if len(values) != len(optimizer.variables):
            raise InputError(f"{self.directory}: the optimizer state does not fit this model")
        for variable, value in zip(optimizer.variables, values, strict=True):
            variable.assign(value)
        optimizer.learning_rate = state.learning_rate
        log.info("resuming from %s after epoch %d", self.directory, state.epoch)


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
              progress: bool = False, checkpoint_dir: str | os.PathLike | None = None,
              resume: bool = False, augment: Callable | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = ()) -> CAREModel:
        """Train a new model Noise2Noise on ``pairs`` and return it with its best weights.

        Parameters
        ----------
        pairs : PairSet
            Normalised even/odd patch pairs (see :func:`cryocare.pairs.sample_pairs`).
        config : CareConfig, optional
            Defaults to ``CareConfig(n_dim=<patch dimensionality>)``.
        progress : bool
            Show a progress bar.
        checkpoint_dir : path, optional
            Folder for a checkpoint after every epoch (created if missing; its
            parent must exist). Refused if it holds a checkpoint already,
            unless ``resume`` is set.
        resume : bool
            Continue from the checkpoint in ``checkpoint_dir`` (same config and
            pairs; ``train_epochs`` may be raised) up to ``config.train_epochs``
            epochs in all; the best weights found before the interruption are kept.
        augment : callable, optional
            ``augment(x, y, *, rng, tilt_axis) -> (x, y)`` applied to every batch;
            defaults to :func:`cryocare.pairs.augment_batch` when
            ``config.train_augment`` is set.
        callbacks : sequence of keras.callbacks.Callback
            Extra Keras callbacks (run after cryocare's own).

        Returns
        -------
        CAREModel
            With the weights of the lowest validation loss; ``history`` holds
            ``loss``, ``val_loss`` and ``learning_rate`` per epoch.

        Notes
        -----
        ``config.train_time_budget`` counts wall-clock seconds from the call
        (building the network and compiling the step included). When it runs
        out, the current step finishes, the partial epoch is validated like a
        full one, and the best weights so far are returned; a checkpoint
        written then can be resumed with a larger budget.
        """
        started = time.perf_counter()
        n_dim = len(pairs.patch_shape)
        config = CareConfig(n_dim=n_dim) if config is None else config
        if config.n_dim != n_dim:
            raise InputError(f"config.n_dim is {config.n_dim} but the patches are {n_dim}-D")
        if config.backend is not None:
            backends.check(config.backend)
        multiple = nets.multiple_of(config)
        if any(p % multiple for p in pairs.patch_shape):
            raise InputError(
                f"patch shape {pairs.patch_shape}: every size must be a multiple of "
                f"{multiple} for the {config.network} network"
            )
        if len(pairs.x_train) == 0 or len(pairs.x_val) == 0:
            raise InputError("training needs at least one training and one validation pair")
        if resume and checkpoint_dir is None:
            raise InputError("resume: expected a checkpoint_dir to resume from")
        checkpoints = None if checkpoint_dir is None else _Checkpoints(checkpoint_dir)
        if checkpoints is not None:
            checkpoints.prepare(config, pairs.normalization, resume=resume)

        model = cls(config, pairs.normalization)
        optimizer = keras.optimizers.Adam(learning_rate=config.train_learning_rate)
        if config.train_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.keras_model.compile(optimizer=optimizer,
                                  loss=losses.get(config.train_loss, shape=pairs.patch_shape))
        state = _State(config.train_learning_rate)
        if resume:
            checkpoints.restore(model, state)

        if augment is None and config.train_augment:
            from .pairs import augment_batch as augment

        batches = _PairBatches(
            pairs.x_train, pairs.y_train, batch_size=config.train_batch_size,
            steps=config.train_steps_per_epoch, seed=config.seed, epoch=state.epoch,
            tilt_axis=pairs.tilt_axis, augment=augment,
            workers=1 if keras.backend.backend() == "tensorflow" else 2)
        # One direction suffices: even→odd and odd→even have the same expected loss,
        # and validation is a sizeable share of a short CPU training run.
        x_val, y_val = pairs.x_val[..., None], pairs.y_val[..., None]
        steps = config.train_steps_per_epoch
        bar = _Progress(config.train_epochs * steps, progress, initial=state.epoch * steps)
        schedule = _Schedule(
            state, patience=config.train_reduce_lr_patience,
            stop_patience=config.train_early_stopping_patience,
            on_epoch=None if checkpoints is None else lambda: checkpoints.write(model, state),
            plateau=config.train_schedule == "plateau")
        budget = float(config.train_time_budget)
        if resume and budget and state.out_of_time and state.elapsed < budget:
            state.out_of_time = False  # the budget was raised: go on
        clock = _Clock(state, started=started, total_steps=config.train_epochs * steps,
                       budget=budget, peak_rate=config.train_learning_rate,
                       warmup=config.train_warmup, cosine=config.train_schedule == "cosine")
        todo = 0 if state.stopped_early or state.out_of_time else \
            config.train_epochs - state.epoch
        log.info("training %s on %s for %d of %d epochs of %d steps (batch %d) on %d pairs%s",
                 config.network, keras.backend.backend(), max(todo, 0), config.train_epochs,
                 steps, config.train_batch_size, len(pairs.x_train),
                 f", at most {budget:.0f} s" if budget else "")
        try:
            if todo > 0:
                model.keras_model.fit(
                    batches, initial_epoch=state.epoch, epochs=config.train_epochs,
                    steps_per_epoch=steps, shuffle=False,
                    validation_data=(x_val, y_val), validation_batch_size=config.train_batch_size,
                    callbacks=[clock, schedule, bar, *callbacks], verbose=0,
                )
        finally:
            bar.close()
        model.history = {key: list(values) for key, values in state.history.items()}
        model._last_weights = model.keras_model.get_weights()
        if state.best_weights is not None:
            model.keras_model.set_weights(state.best_weights)
        return model

    # ---------------------------------------------------------------- prediction
    def _network(self, precision: str = "float32") -> Callable[[np.ndarray], np.ndarray]:
        """The network on a normalised float32 batch, computing in ``precision``.

        When the network was built for another precision than the one asked
        for, a twin with the same weights is built once per call of
        :meth:`predict` or :meth:`denoise`.
        """
        if precision not in PREDICT_PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PREDICT_PRECISIONS)}, "
                             f"got {precision!r}")
        wanted = "float32" if precision == "float32" else "mixed_bfloat16"
        network = self.keras_model
        if self.config.train_precision != wanted:
            network = nets.build(self.config.replace(train_precision=wanted))
            network.set_weights(self.keras_model.get_weights())

        def run(batch: np.ndarray) -> np.ndarray:
            return keras.ops.convert_to_numpy(network.predict_on_batch(batch[..., None]))[..., 0]

        return run

    def _predict_options(self, precision: str = "float32") -> dict[str, Any]:
        config = self.config
        per_voxel = nets.bytes_per_voxel(config)
        if precision == "bfloat16":  # activations in 2 bytes; input and output stay float32
            per_voxel = int(math.ceil(0.6 * per_voxel))
        return {
            "normalization": self.normalization,
            "halo": nets.halo(config),
            "multiple_of": nets.multiple_of(config),
            "bytes_per_voxel": per_voxel,
        }

    def predict(self, image: np.ndarray, *, tile_shape: int | Sequence[int] | None | str = "auto",
                memory: int | float | str | None = None, batch_size: int | None = None,
                normalize: str | Normalization = "training", out: Any = None,
                progress: bool = False, tta: bool = False,
                precision: str = "float32") -> np.ndarray | None:
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
            or the image's own.
        out : ndarray or cryocare.io.SlabWriter, optional
            Where to put the result; with a slab writer it streams to disk.
        progress : bool
            Show a progress bar.
        tta : bool
            Average over the 8 (2-D: 4) flips of every tile
            (:func:`cryocare.predict.flip_averaged`); as many times slower.
        precision : {"float32", "bfloat16"}
            Arithmetic of the forward pass. ``"bfloat16"`` is about twice as
            fast on CPUs with AMX or AVX-512 BF16 (and recent GPUs) and needs
            less memory per tile; outputs differ from float32 by ~1e-3 of the
            range, and tiled from untiled by as much (float32: by rounding).

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
        return engine.predict_volume(self._network(precision), image, tile_shape=tile_shape,
                                     memory=memory, batch_size=batch_size, normalize=normalize,
                                     out=out, progress=progress, tta=tta,
                                     **self._predict_options(precision))

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
        precision = options.pop("precision", "float32")
        return engine.predict_volume(self._network(precision), even, odd, **options,
                                     **self._predict_options(precision))

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
            if self.history.get("loss"):
                plot_history(self.history, staging / "history.png")
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
        meta = _read_versioned_json(meta_path, kind=FORMAT, version=FORMAT_VERSION,
                                    what="model description")
        try:
            config = CareConfig.from_dict(meta.get("config"))
            normalization = Normalization.from_dict(meta.get("normalization"))
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
        return model


def _read_versioned_json(path: Path, *, kind: str, version: int, what: str) -> dict[str, Any]:
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
