"""A fine-tuning run that a widget can start in a worker thread, watch and cancel.

:class:`FineTune` runs :func:`cryocare.recipe.train_on_pair` (the recipe of
``cryocare denoise``, within a time budget) and then restores the halves
with the trained model. Another thread may read its progress
(:attr:`FineTune.phase`, :meth:`FineTune.fraction`, :attr:`FineTune.steps`,
:attr:`FineTune.loss`) and call :meth:`FineTune.cancel`: a Keras callback
sets ``model.stop_training`` at the next training step, and the run returns
None instead of a result. Keras is imported only when the run starts
(TensorFlow through :func:`load_tensorflow`, which keeps it clear of
napari's OpenGL). Imports neither napari nor Qt.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backends
from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..model import CAREModel
    from ..recipe import Recipe

__all__ = ["FineTune", "load_tensorflow"]

log = logging.getLogger(__name__)

_IMPORT = threading.Lock()


def load_tensorflow() -> bool:
    """Import TensorFlow bound to its own symbols, when Keras will run on it; True if done here.

    napari draws with OpenGL; on Linux, Mesa's drivers (software rendering,
    Intel and AMD graphics) load the system's LLVM library. TensorFlow
    carries its own LLVM: imported after Mesa's, its initialisers bind to
    the system's copy and the process crashes (a segmentation fault on
    import, or ``free(): invalid pointer`` at exit). Imported with
    ``RTLD_DEEPBIND`` it keeps to its own. The flags of the import are
    restored at once; nothing happens when TensorFlow is imported already,
    when Keras runs on another backend, or off Linux.
    """
    if "tensorflow" in sys.modules or backends.current() != "tensorflow" or \
            not hasattr(os, "RTLD_DEEPBIND"):
        return False
    with _IMPORT:
        if "tensorflow" in sys.modules:
            return False
        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.setdlopenflags(flags)
    return True


#: The phases of a run, in order ("cancelled" and "failed" may end it earlier).
PHASES = ("waiting", "training", "predicting", "done")


class FineTune:
    """Fine-tune a model on even/odd halves within ``budget`` seconds, then restore them.

    Parameters
    ----------
    even, odd : ndarray
        The two halves (3-D; memory maps fine).
    budget : float
        Seconds for training, counted from :meth:`run` (as in
        :func:`~cryocare.recipe.train_on_pair`); the prediction comes after.
    recipe : Recipe, optional
        Default :data:`cryocare.recipe.DEFAULT_RECIPE`.
    init : "pretrained", path or CAREModel
        Starting weights (the shipped pretrained model by default).
    seed : int
        Seed of sampling and training.
    fit : bool
        Fit the recipe to this machine's measured speed (as ``cryocare denoise``).
    tta : bool, optional
        Flip-averaged prediction; default the recipe's.

    Attributes
    ----------
    phase : str
        ``"waiting"``, ``"training"``, ``"predicting"``, ``"done"``, ``"cancelled"``
        or ``"failed"``.
    steps : int
        Training steps done.
    loss : float
        Training loss of the last step (NaN before the first).
    model : CAREModel or None
        The trained model, once training ended without a cancel.
    """

    def __init__(self, even: np.ndarray, odd: np.ndarray, *, budget: float,
                 recipe: Recipe | None = None, init: Any = "pretrained", seed: int = 0,
                 fit: bool = True, tta: bool | None = None):
        if np.shape(even) != np.shape(odd):
            raise InputError(f"even and odd halves differ in shape: {np.shape(even)} and "
                             f"{np.shape(odd)}")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or \
                not math.isfinite(budget) or budget <= 0:
            raise InputError(f"budget: expected a positive number of seconds, got {budget!r}")
        self.even, self.odd, self.budget = even, odd, float(budget)
        self.recipe, self.init, self.seed, self.fit, self.tta = recipe, init, seed, fit, tta
        self.phase = "waiting"
        self.steps = 0
        self.loss = math.nan
        self.model: CAREModel | None = None
        self.started: float | None = None
        self._cancel = threading.Event()

    # ------------------------------------------------------------- other threads
    def cancel(self) -> None:
        """Stop the run: at the next training step, or drop the prediction when it ends."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def fraction(self, now: float | None = None) -> float:
        """Share of the training budget spent, 0 to 1 (1 once training is over)."""
        if self.started is None:
            return 0.0
        if self.phase != "training":
            return 1.0 if self.phase in ("predicting", "done") else 0.0
        now = time.perf_counter() if now is None else now
        return min(max((now - self.started) / self.budget, 0.0), 1.0)

    # ------------------------------------------------------------------ the run
    def run(self) -> np.ndarray | None:
        """Train, then restore the halves; None when cancelled.

        Returns
        -------
        ndarray or None
            The mean of both restored halves, float32, the halves' shape.
        """
        from ..recipe import DEFAULT_RECIPE, train_on_pair

        load_tensorflow()
        recipe = DEFAULT_RECIPE if self.recipe is None else self.recipe
        self.started = time.perf_counter()
        self.phase = "training"
        try:
            if self.cancelled:
                return self._stop()
            model = train_on_pair(self.even, self.odd, recipe=recipe, budget=self.budget,
                                  init=self.init, seed=self.seed, fit=self.fit,
                                  callbacks=[self._callback()])
            if self.cancelled:
                return self._stop()
            self.model, self.phase = model, "predicting"
            log.info("fine-tuned for %.1f s (%d steps); restoring the halves",
                     time.perf_counter() - self.started, self.steps)
            restored = model.denoise(self.even, self.odd,
                                     tta=recipe.tta if self.tta is None else self.tta)
            if self.cancelled:
                return self._stop()
        except BaseException:
            self.phase = "failed"
            raise
        self.phase = "done"
        return restored

    def _stop(self) -> None:
        self.phase = "cancelled"
        log.info("fine-tuning cancelled after %d steps", self.steps)
        return None

    def _callback(self):
        import keras  # a training face: Keras comes with train_on_pair anyway

        job = self

        class _Watch(keras.callbacks.Callback):
            """Count steps, keep the loss, stop at a cancel."""

            def on_train_batch_end(self, batch, logs=None):
                job.steps += 1
                if logs and "loss" in logs:
                    job.loss = float(logs["loss"])
                if job.cancelled:
                    self.model.stop_training = True

            def on_train_batch_begin(self, batch, logs=None):
                if job.cancelled:
                    self.model.stop_training = True

        return _Watch()
