"""Training checkpoints: written after every epoch, resumed after an interruption.

A checkpoint folder::

    checkpoints/
      checkpoint.json         state: epochs done, history, learning rate, file names
      last-e0007.weights.h5   weights after the last finished epoch
      best-e0005.weights.h5   weights with the lowest validation loss so far
      optimizer-e0007.npz     Adam's moments and step counter
      history.png             learning curve so far

Weights and optimizer files carry the epoch in their names and
``checkpoint.json`` (replaced last) names the current ones, so an
interruption at any moment leaves a consistent checkpoint behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..config import CareConfig
from ..errors import InputError, OutputExistsError
from ..model import CAREModel, plot_history, read_versioned_json
from ..normalize import Normalization
from .schedule import TrainingState

__all__ = ["Checkpoints"]

log = logging.getLogger(__name__)

FORMAT = "cryocare-checkpoint"
FORMAT_VERSION = 1
#: Config keys a resumed run may change: its length, its budget, and the arithmetic
#: (weights and optimizer state are float32 whatever the precision).
RESUMABLE_CHANGES = ("train_epochs", "train_time_budget", "train_precision")


class Checkpoints:
    """The checkpoint folder of one training run."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.state_path = self.directory / "checkpoint.json"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def prepare(self, config: CareConfig, normalization: Normalization | None, *,
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

    def write(self, model: CAREModel, state: TrainingState, *,
              patch_shape: tuple[int, ...] = ()) -> None:
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
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": model.config.to_dict(),
                "normalization": None if model.normalization is None else
                model.normalization.to_dict(),
                "patch_shape": list(patch_shape),
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

    def meta(self) -> dict[str, Any]:
        """The checkpoint's description (``config``, ``patch_shape``, ``state``, ``files``)."""
        return read_versioned_json(self.state_path, kind=FORMAT, version=FORMAT_VERSION,
                                   what="training checkpoint")

    def read(self, config: CareConfig, normalization: Normalization | None) -> dict[str, Any]:
        """The checkpoint's description, after checking that ``config`` may resume it."""
        meta = self.meta()
        saved = {k: v for k, v in meta["config"].items() if k not in RESUMABLE_CHANGES}
        given = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
        changed = sorted(k for k in set(saved) | set(given)
                         if saved.get(k, given.get(k)) != given.get(k))
        if changed:
            raise InputError(
                f"{self.state_path}: cannot resume, the config differs in "
                f"{', '.join(map(repr, changed))} (only {', '.join(RESUMABLE_CHANGES)} "
                f"may change)"
            )
        stats = meta.get("normalization")
        if (None if stats is None else Normalization.from_dict(stats)) != normalization:
            raise InputError(
                f"{self.state_path}: cannot resume, the training pairs have another "
                f"normalisation than the checkpoint's"
            )
        for name in meta["files"].values():
            if not (self.directory / name).is_file():
                raise InputError(f"{self.directory}: incomplete checkpoint, {name} is missing")
        return meta

    def restore(self, model: CAREModel, state: TrainingState) -> None:
        """Load weights, optimizer state and training state into ``model`` and ``state``."""
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
