"""How fast a network trains on this machine: a few real training steps, timed.

:func:`step_seconds` builds the network a config describes, compiles it with
the config's loss and arithmetic, and times training steps on random
batches of the given patch shape on the device Keras uses. The recipe
(:func:`cryocare.recipe.fit_recipe`) uses it to choose what a time budget
can afford.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import keras
import numpy as np

from .. import losses, nets
from ..config import CareConfig

__all__ = ["StepTime", "step_seconds"]

log = logging.getLogger(__name__)


class StepTime(NamedTuple):
    """Seconds to build and compile a network (its first step included), then per step."""

    setup: float
    step: float


def step_seconds(config: CareConfig, patch_shape: tuple[int, ...], *, repeats: int = 2,
                 seed: int = 0) -> StepTime:
    """Time training steps of ``config``'s network on batches of ``patch_shape``.

    The first step (tracing and compiling) counts as setup; the step time
    is the mean of ``repeats`` steps after it. The network is thrown away.
    """
    start = time.perf_counter()
    network = nets.build(config)
    optimizer = keras.optimizers.Adam(config.train_learning_rate)
    if config.train_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    network.compile(optimizer=optimizer, loss=losses.get(config.train_loss, shape=patch_shape))
    batch = np.random.default_rng(seed).normal(
        size=(config.train_batch_size, *patch_shape, 1)).astype(np.float32)
    network.train_on_batch(batch, batch)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        network.train_on_batch(batch, batch)
    step = (time.perf_counter() - start) / repeats
    log.debug("%s (%d filters), batch %d of %s: setup %.1f s, %.3f s per step", config.network,
              config.unet_n_first, config.train_batch_size, patch_shape, setup, step)
    return StepTime(setup, step)
