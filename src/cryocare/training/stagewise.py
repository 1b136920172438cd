"""Greedy, stage-by-stage training of the learned diffusion network.

For ``t = 1 .. T`` the network cut after stage ``t`` is trained Noise2Noise
(both directions, batches as in the joint phase) with stages ``1 .. t-1``
frozen, for ``stage_epochs`` epochs each; with a budget, stage ``t`` also
ends once ``t / (2 T)`` of it has passed. :func:`cryocare.training.train`
runs this before training all stages jointly (validation, best weights,
schedule, checkpoints) whenever the network is ``"diffusion"`` and training
starts from random weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import keras

from .. import losses
from ..config import CareConfig
from ..errors import InputError
from ..model import CAREModel
from ..nets.diffusion import stages
from ..pairs import PairSet
from .batches import PairBatches
from .schedule import Budget

__all__ = ["default_stage_epochs", "train_greedy"]

log = logging.getLogger(__name__)


def default_stage_epochs(config: CareConfig) -> int:
    """Epochs per greedy stage: a quarter of the run in all, at least one each.

    Examples
    --------
    >>> default_stage_epochs(CareConfig(network="diffusion", train_epochs=20,
    ...                                 diffusion_stages=5))
    2
    """
    return max(1, config.train_epochs // (2 * config.diffusion_stages))


class _StopAt(keras.callbacks.Callback):
    """Stop a fit after the step that crosses the ``perf_counter`` time ``deadline``."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() >= self.deadline:
            self.model.stop_training = True


def train_greedy(model: CAREModel, pairs: PairSet, *, stage_epochs: int, budget: Budget,
                 callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
    """Train the stages of ``model``'s diffusion network one after the other, in place.

    Every stage is trainable again afterwards. The greedy stages share half
    of ``budget``; ``callbacks`` run in every stage's fit.
    """
    network, config = model.keras_model, model.config
    if isinstance(stage_epochs, bool) or not isinstance(stage_epochs, int) or stage_epochs < 0:
        raise InputError(f"stage_epochs: expected a non-negative integer, got {stage_epochs!r}")
    layers = stages(network)
    n_stages = len(layers)
    try:
        for t, layer in enumerate(layers, start=1):
            if stage_epochs == 0:
                break
            for i, other in enumerate(layers, start=1):
                other.trainable = i == t
            cut = keras.Model(network.inputs, layer.output, name=f"greedy_{t}")
            cut.compile(optimizer=keras.optimizers.Adam(config.train_learning_rate),
                        loss=losses.get(config.train_loss, shape=pairs.patch_shape))
            batches = PairBatches(pairs.x_train, pairs.y_train,
                                  batch_size=config.train_batch_size,
                                  steps=config.train_steps_per_epoch,
                                  seed=config.seed + 7919 * t, tilt_axis=pairs.tilt_axis)
            stage_callbacks = list(callbacks)
            if budget:
                stage_callbacks.insert(0, _StopAt(budget.deadline(0.5 * t / n_stages)))
            history = cut.fit(batches, epochs=stage_epochs, verbose=0,
                              steps_per_epoch=config.train_steps_per_epoch, shuffle=False,
                              callbacks=stage_callbacks)
            log.info("greedy stage %d/%d: loss %.5f", t, n_stages, history.history["loss"][-1])
    finally:
        for layer in layers:
            layer.trainable = True
