"""The endless, reproducible stream of training batches.

Each sample maps the even half to the odd half or, chosen at random, the
odd half to the even half (Noise2Noise is symmetric in them). Batch ``i`` of
epoch ``e`` depends only on ``(seed, e, i)``.

Examples
--------
>>> import numpy as np
>>> x = np.zeros((10, 4, 4), np.float32)
>>> batches = PairBatches(x, x + 1, batch_size=3, steps=5, seed=0)
>>> a, b = batches[7]
>>> a.shape, bool(np.all(np.abs(a - b) == 1))
((3, 4, 4, 1), True)
>>> bool(np.array_equal(batches[7][0], PairBatches(x, x + 1, batch_size=3, steps=5, seed=0,
...                                                 epoch=1)[2][0]))
True
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

__all__ = ["PairBatches"]


class PairBatches(keras.utils.PyDataset):
    """An endless stream of random batches of pairs, each pair in a random direction.

    Batch ``i`` of epoch ``e`` (counted from ``epoch``, the first epoch of
    this run) depends only on ``(seed, e, i)``, so training is reproducible
    and a resumed run sees the batches an uninterrupted run would have seen.
    The stream has no end (``num_batches`` is None) and ``fit`` is given
    ``steps_per_epoch``: Keras then keeps one iterator for the whole run.
    With a finite dataset it would build a new one every epoch, and on
    TensorFlow tearing down the old one waited up to ~9 s for its prefetch
    thread (measured: every other epoch of 50 steps took 20 s instead of 12).

    Parameters
    ----------
    x, y : ndarray, shape (n, *patch_shape)
        Even and odd patches.
    batch_size, steps : int
        Pairs per batch and batches per epoch.
    seed : int
        Seed of the draws.
    epoch : int
        The epoch the stream starts at (a resumed run starts later).
    tilt_axis : str
        Passed to ``augment``.
    augment : callable, optional
        ``augment(x, y, *, rng, tilt_axis) -> (x, y)``, applied to every batch
        with the batch's own generator (so a resumed run augments alike).
    transform : callable, optional
        ``transform(x, y, *, rng) -> (inputs, targets)`` with channel axes,
        applied last with the same generator (the training objective's
        batch, :mod:`cryocare.training.objectives`); default: add the axis.
    swap : bool
        Swap the two volumes of each pair at random (Noise2Noise); False
        when the second is a clean target.
    workers : int
        Threads that prefetch batches.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, steps: int, seed: int,
                 epoch: int = 0, tilt_axis: str = "Y", augment: Callable | None = None,
                 transform: Callable | None = None, swap: bool = True, workers: int = 1):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.x, self.y = x, y
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.epoch = epoch
        self.tilt_axis = tilt_axis
        self.augment = augment
        self.transform, self.swap = transform, swap

    @property
    def num_batches(self) -> None:
        return None  # endless: fit() is given steps_per_epoch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, step = self.epoch + index // self.steps, index % self.steps
        rng = np.random.default_rng([self.seed, epoch, step])
        pick = rng.integers(0, len(self.x), size=self.batch_size)
        swap = (rng.random(self.batch_size) < 0.5).reshape((-1,) + (1,) * (self.x.ndim - 1))
        swap &= self.swap
        xs, ys = self.x[pick], self.y[pick]
        x, y = np.where(swap, ys, xs), np.where(swap, xs, ys)
        if self.augment is not None:
            x, y = self.augment(x, y, rng=rng, tilt_axis=self.tilt_axis)
        if self.transform is not None:
            return self.transform(x, y, rng=rng)
        return x[..., None], y[..., None]
