"""Time and state of a training run: budget, clock, learning-rate schedules, progress.

* :class:`Budget` — the wall-clock budget of one run, counted from when the
  run started (sampling pairs and measuring the machine included, when the
  caller started the budget before them).
* :class:`TrainingState` — everything needed to continue a run where it
  stopped (saved in checkpoints).
* :class:`Schedule` — keeps the best weights, halves the rate on plateaus,
  stops early; :class:`Clock` — counts steps and time, stops at the budget
  and sets the cosine rate of every step (:func:`cosine_rate`);
  :class:`Progress` — the progress bar and one log line per epoch.

Examples
--------
>>> [round(cosine_rate(p, peak=1.0, warmup=0.1), 3) for p in (0, 0.05, 0.1, 0.55, 1)]
[0.01, 0.5, 1.0, 0.5, 0.0]
>>> budget = Budget(60.0, started=100.0)
>>> budget.left(now=130.0), budget.deadline(0.5)
(30.0, 130.0)
>>> Budget(0.0).left()
inf
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError

__all__ = ["Budget", "Clock", "Progress", "Schedule", "TrainingState", "cosine_rate"]

log = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "val_loss", "learning_rate")


@dataclass(frozen=True)
class Budget:
    """A run's wall-clock budget: ``seconds`` from ``started`` (a ``time.perf_counter()``).

    ``seconds`` 0 means no budget. Start one where the run starts
    (``Budget.start(seconds)``) and hand the same object to everything the
    run does, so that nothing re-computes what is left.
    """

    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        value = self.seconds
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or not 0 <= value <= 1e7:
            raise InputError(f"budget: expected a number of seconds in [0, 1e7] (0: none), "
                             f"got {value!r}")

    @classmethod
    def start(cls, seconds: float | None) -> Budget:
        """A budget of ``seconds`` (None or 0: none) starting now."""
        return cls(0.0 if seconds is None else seconds)

    def __bool__(self) -> bool:
        return self.seconds > 0

    def elapsed(self, now: float | None = None) -> float:
        return (time.perf_counter() if now is None else now) - self.started

    def left(self, now: float | None = None) -> float:
        """Seconds left (infinite without a budget; may be negative when overrun)."""
        return self.seconds - self.elapsed(now) if self else math.inf

    def deadline(self, share: float = 1.0) -> float:
        """The ``perf_counter`` time when ``share`` of the budget is spent (inf without one)."""
        return self.started + share * self.seconds if self else math.inf


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


class TrainingState:
    """Everything training needs to continue where it stopped (JSON-serialisable)."""

    def __init__(self, learning_rate: float):
        self.epoch = 0  # finished epochs
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
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


class Schedule(keras.callbacks.Callback):
    """Keep the best weights, halve the learning rate on plateaus, stop early.

    Improvement means a validation loss strictly below the best so far. The
    state lives in a :class:`TrainingState`, so that a resumed run continues it.
    """

    def __init__(self, state: TrainingState, *, patience: int, stop_patience: int,
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


class Clock(keras.callbacks.Callback):
    """Count steps and time, stop at the budget, and set the cosine learning rate.

    Progress through the run is the larger of the share of the step cap and
    the share of the budget done, so that a cosine schedule reaches its end
    whichever limit comes first. Time counts from ``budget.started`` plus
    the training time of earlier runs of a resumed training.
    """

    def __init__(self, state: TrainingState, *, budget: Budget, total_steps: int,
                 peak_rate: float, warmup: float, cosine: bool):
        super().__init__()
        self.state, self.total_steps, self.budget = state, total_steps, budget
        self.peak_rate, self.warmup, self.cosine = peak_rate, warmup, cosine
        self.origin = budget.started - state.elapsed  # a resumed run's time zero lies earlier

    def progress(self) -> float:
        done = self.state.steps / self.total_steps
        if self.budget:
            done = max(done, self.state.elapsed / self.budget.seconds)
        return min(done, 1.0)

    def on_train_batch_begin(self, batch, logs=None):
        if self.cosine:
            rate = cosine_rate(self.progress(), peak=self.peak_rate, warmup=self.warmup)
            self.model.optimizer.learning_rate = rate
            self.state.learning_rate = rate

    def on_train_batch_end(self, batch, logs=None):
        self.state.steps += 1
        self.state.elapsed = time.perf_counter() - self.origin
        if self.budget and self.state.elapsed >= self.budget.seconds:
            if not self.state.out_of_time:
                log.info("time budget of %.0f s reached after %d steps", self.budget.seconds,
                         self.state.steps)
            self.state.out_of_time = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.state.elapsed = time.perf_counter() - self.origin


class Progress(keras.callbacks.Callback):
    """A progress bar over the run, and one log line per epoch.

    With a budget the bar runs over its seconds (the number of steps it will
    buy is not known in advance) and shows steps and loss after it; without
    one, over the step cap.
    """

    def __init__(self, state: TrainingState, *, total_steps: int, budget: Budget,
                 enabled: bool):
        super().__init__()
        self.state, self.budget = state, budget
        if budget:
            self.bar = tqdm(total=round(budget.seconds), initial=min(
                round(state.elapsed), round(budget.seconds)), desc="training", unit="s",
                disable=not enabled)
        else:
            self.bar = tqdm(total=total_steps, initial=state.steps, desc="training",
                            unit="step", disable=not enabled)

    def on_train_batch_end(self, batch, logs=None):
        postfix = {"loss": f"{float(logs['loss']):.4f}"} if logs and "loss" in logs else {}
        if self.budget:
            self.bar.update(min(round(self.state.elapsed), self.bar.total) - self.bar.n)
            postfix = {"steps": self.state.steps, **postfix}
        else:
            self.bar.update(1)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info("epoch %d: loss %.5f, val_loss %.5f", epoch + 1,
                 float(logs.get("loss", np.nan)), float(logs.get("val_loss", np.nan)))

    def close(self) -> None:
        self.bar.close()
