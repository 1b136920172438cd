"""The training entry: :func:`train` (and :func:`train_stagewise`, its diffusion form)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

from .. import backends, nets
from ..config import CareConfig
from ..errors import InputError
from ..model import CAREModel
from ..pairs import PairSet
from .batches import PairBatches
from .checkpoints import Checkpoints
from .finetune import describe, initial_model
from .objectives import get as get_objective
from .precision import resolve
from .schedule import Budget, Clock, Progress, Schedule, TrainingState
from .stagewise import default_stage_epochs, train_greedy

__all__ = ["train", "train_stagewise"]

log = logging.getLogger(__name__)


def train(pairs: PairSet, config: CareConfig | None = None, *,
          budget: float | Budget | None = None, init: Any = None, progress: bool = False,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
          augment: Callable | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> CAREModel:
    """Train a model Noise2Noise on ``pairs`` and return it with its best weights.

    Every face of cryocare trains through this function. The diffusion
    network is trained greedily stage by stage first, then jointly
    (:mod:`cryocare.training.stagewise`), unless it starts from a model or
    resumes.

    Parameters
    ----------
    pairs : PairSet
        Normalised even/odd patch pairs (see :func:`cryocare.pairs.sample_pairs`).
    config : CareConfig, optional
        Network and training settings; default ``CareConfig(n_dim=<patch
        dimensionality>)``, or, starting from a model, that model's config.
        ``train_epochs × train_steps_per_epoch`` caps the run.
    budget : float, Budget or None
        Wall-clock seconds for the run, counted from this call (building the
        network and compiling included), or a :class:`Budget` started
        earlier by the caller (to count sampling the pairs, say). None takes
        ``config.train_time_budget``; 0 is no budget. When it runs out, the
        current step finishes, the partial epoch is validated like a full
        one, and the best weights so far are returned. The budget the run
        had is recorded in the returned model's ``config.train_time_budget``.
    init : None, "none", "pretrained", path or CAREModel
        Starting weights (:mod:`cryocare.training.finetune`): random (None,
        default), the shipped general model, a saved model folder, or a
        model. A given model or folder must have the config's architecture
        (an InputError lists the keys that differ); the pretrained model of
        another architecture is passed over (training starts from random
        weights, and the log says why). Ignored when resuming (the
        checkpoint holds the weights).
    progress : bool
        Show a progress bar: over the budget's seconds (steps and loss after
        it), or over the step cap without a budget.
    checkpoint_dir : path, optional
        Folder for a checkpoint after every epoch (created if missing; its
        parent must exist). Refused if it holds a checkpoint already,
        unless ``resume`` is set.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` (same config and
        pairs; ``train_epochs``, the budget and the precision may change); the
        best weights found before the interruption are kept. The budget
        counts the time of the earlier runs too.
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
        ``loss``, ``val_loss`` and ``learning_rate`` per epoch, and its
        config the budget and the precision (``"auto"`` resolved) it had.

    Examples
    --------
    Shown, not run (``docs/model.md`` runs one)::

        model = train(pairs, CareConfig(train_epochs=10), budget=600, init="pretrained")
    """
    return _train(pairs, config, budget=budget, init=init, progress=progress,
                  checkpoint_dir=checkpoint_dir, resume=resume, augment=augment,
                  callbacks=callbacks, stage_epochs=None)


def train_stagewise(pairs: PairSet, config: CareConfig, *, stage_epochs: int | None = None,
                    **options: Any) -> CAREModel:
    """:func:`train` for the diffusion network, with ``stage_epochs`` per greedy stage.

    ``stage_epochs`` defaults to ``max(1, train_epochs // (2 T))`` (``T``
    stages); 0 skips the greedy phase. ``options`` are those of :func:`train`.
    """
    if config.network != "diffusion":
        raise InputError(f"config key 'network': expected 'diffusion' for stage-wise "
                         f"training, got {config.network!r}")
    return _train(pairs, config, stage_epochs=stage_epochs, **{
        "budget": None, "init": None, "progress": False, "checkpoint_dir": None,
        "resume": False, "augment": None, "callbacks": (), **options})


def _train(pairs: PairSet, config: CareConfig | None, *, budget: float | Budget | None,
           init: Any, progress: bool, checkpoint_dir: str | os.PathLike | None, resume: bool,
           augment: Callable | None, callbacks: Sequence[keras.callbacks.Callback],
           stage_epochs: int | None) -> CAREModel:
    n_dim = len(pairs.patch_shape)
    start = None if resume else initial_model(init, config)
    if config is None:
        config = CareConfig(n_dim=n_dim) if start is None else start.config
    if not isinstance(budget, Budget):
        budget = Budget.start(config.train_time_budget if budget is None else budget)
    if config.n_dim != n_dim:
        raise InputError(f"config.n_dim is {config.n_dim} but the patches are {n_dim}-D")
    if config.backend is not None:
        backends.check(config.backend)
    multiple = nets.multiple_of(config)
    objective = get_objective(config)
    patch_shape = objective.patch_shape(pairs.patch_shape, multiple=multiple)
    if any(p % multiple for p in patch_shape):
        raise InputError(
            f"patch shape {patch_shape}: every size must be a multiple of "
            f"{multiple} for the {config.network} network"
        )
    if config.network == "diffusion" and objective.name != "n2n":
        raise InputError(f"config key 'train_objective': the diffusion network trains "
                         f"Noise2Noise only, got {config.train_objective!r}")
    if len(pairs.x_train) == 0 or len(pairs.x_val) == 0:
        raise InputError("training needs at least one training and one validation pair")
    if resume and checkpoint_dir is None:
        raise InputError("resume: expected a checkpoint_dir to resume from")
    backends.warn_slow_cpu_kernels()
    config = config.replace(train_precision=resolve(config.train_precision),
                            train_time_budget=float(budget.seconds))
    checkpoints = None if checkpoint_dir is None else Checkpoints(checkpoint_dir)
    if checkpoints is not None:
        checkpoints.prepare(config, pairs.normalization, resume=resume)

    model = CAREModel(config, pairs.normalization)
    if start is not None:
        model.keras_model.set_weights(start.keras_model.get_weights())
        log.info("starting from %s", describe(init))
    elif config.network == "diffusion" and not resume:
        epochs = default_stage_epochs(config) if stage_epochs is None else stage_epochs
        train_greedy(model, pairs, stage_epochs=epochs, budget=budget, callbacks=callbacks)
    optimizer = keras.optimizers.Adam(learning_rate=config.train_learning_rate)
    if config.train_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.keras_model.compile(optimizer=optimizer,
                              loss=objective.loss(patch_shape))
    state = TrainingState(config.train_learning_rate)
    if resume:
        checkpoints.restore(model, state)

    if augment is None and config.train_augment:
        if not objective.symmetric:
            raise InputError(f"config key 'train_augment': it swaps the two volumes of a pair, "
                             f"which the {objective.name!r} objective must not; pass augment=")
        from ..pairs import augment_batch as augment

    steps = config.train_steps_per_epoch
    cap = config.train_epochs * steps
    batches = PairBatches(
        pairs.x_train, pairs.y_train, batch_size=config.train_batch_size, steps=steps,
        seed=config.seed, epoch=state.epoch, tilt_axis=pairs.tilt_axis, augment=augment,
        transform=functools.partial(objective.batch, patch_shape=patch_shape),
        swap=objective.symmetric, workers=1 if keras.backend.backend() == "tensorflow" else 2)
    # One direction suffices: even→odd and odd→even have the same expected loss,
    # and validation is a sizeable share of a short CPU training run.
    x_val, y_val = objective.validation(pairs.x_val, pairs.y_val, patch_shape=patch_shape)
    bar = Progress(state, total_steps=cap, budget=budget, enabled=progress)
    schedule = Schedule(
        state, patience=config.train_reduce_lr_patience,
        stop_patience=config.train_early_stopping_patience,
        on_epoch=None if checkpoints is None else lambda: checkpoints.write(
            model, state, patch_shape=pairs.patch_shape),
        plateau=config.train_schedule == "plateau")
    if resume and budget and state.out_of_time and state.elapsed < budget.seconds:
        state.out_of_time = False  # the budget was raised: go on
    clock = Clock(state, budget=budget, total_steps=cap, peak_rate=config.train_learning_rate,
                  warmup=config.train_warmup, cosine=config.train_schedule == "cosine")
    todo = 0 if state.stopped_early or state.out_of_time else config.train_epochs - state.epoch
    log.info("training %s on %s in %s for at most %d steps (%d epochs of %d, batch %d) on "
             "%d pairs%s", config.network, keras.backend.backend(), config.train_precision,
             max(todo, 0) * steps, max(todo, 0), steps, config.train_batch_size,
             len(pairs.x_train), f", within {budget.seconds:.0f} s" if budget else "")
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
    model.last_weights = model.keras_model.get_weights()
    if state.best_weights is not None:
        model.keras_model.set_weights(state.best_weights)
    return model
