"""The training recipe: how to turn even/odd halves into a good model in a fixed time.

Most users train on a laptop or a shared node for minutes, so the recipe is
tuned for the quality reached per minute of training, measured with
``benchmarks/quality.py`` (the tables are in ``docs/recipe.md``):

* a 2-level U-Net with 16 filters, patches of 32³, batches of 16;
* a peak learning rate of 2e-3 with a 5 % linear warm-up and a cosine decay
  to zero at the end of the time budget (CSBDeep and cryoCARE use 4e-4 and
  halve it on plateaus, which a short run never reaches);
* the arithmetic the training device is fastest in (``"auto"``: bfloat16
  on GPUs from compute capability 8.0 and on CPUs where a measured
  bfloat16 step is clearly faster, else float32);
* test-time augmentation: the prediction is averaged over the 8 flips of
  every tile, which keep the missing wedge where it is;
* starting from the shipped pretrained model when its network is the
  recipe's, fine-tuned at a lower peak rate (``finetune_learning_rate``);
* fitted to the machine (:func:`fit_recipe`): with a time budget, the first
  seconds measure the training step, and on a slow machine smaller batches,
  patches and (from scratch) a narrower network buy enough steps.

:data:`DEFAULT_RECIPE` is what ``cryocare denoise``, ``cryocare evaluate``,
``--star`` and the demo use; :func:`train_on_pair` applies any
:class:`Recipe`. Importing this module reads nothing from the machine and
does not import Keras.

Examples
--------
>>> DEFAULT_RECIPE.config.train_schedule, DEFAULT_RECIPE.patch_shape, DEFAULT_RECIPE.tta
('cosine', (32, 32, 32), True)
>>> DEFAULT_RECIPE.config.train_precision
'auto'
>>> DEFAULT_RECIPE.replace(tta=False).tta
False
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import CareConfig
from .errors import InputError
from .pairs import sample_pairs

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel

__all__ = ["DEFAULT_RECIPE", "DEFAULT_TIME_BUDGET", "Fit", "Recipe", "RunPlan", "candidates",
           "cpu_has_bfloat16", "denoise", "fit_recipe", "parse_duration", "plan_run",
           "train_on_pair"]

log = logging.getLogger(__name__)

#: Training time of ``cryocare denoise`` when no budget is given (seconds).
DEFAULT_TIME_BUDGET = 12 * 60.0
#: Training steps a budget should buy, from scratch and fine-tuning the pretrained
#: model: below them, a cheaper setting that buys them does better (docs/recipe.md).
ENOUGH_STEPS = {"scratch": 600, "finetune": 100}
#: Below these, expect little: from scratch about NAD's PSNR (measured at 250 steps),
#: fine-tuning about the pretrained model's zero-shot result.
TOO_FEW_STEPS = {"scratch": 250, "finetune": 20}
_EXPECT = {"scratch": "a result near or below NAD's",
           "finetune": "little beyond the pretrained model's zero-shot result"}
#: Training takes this much longer per step than the bare measured step (batch
#: sampling, callbacks, one validation pass per 50 steps).
STEP_OVERHEAD = 1.15
#: A smaller setting replaces a larger one only if it buys this many times the steps
#: (a larger network learns more per step).
STEP_GAIN = 1.5
#: Measuring another setting stops when it would take more than this share of what is
#: left of the budget (on a slow machine a second measurement doubles the steps).
MEASURE_SHARE = 0.25


@dataclass(frozen=True)
class Recipe:
    """Network, training schedule, training pairs and prediction options, together.

    Parameters
    ----------
    config : CareConfig
        Network and training settings. ``train_epochs × train_steps_per_epoch``
        caps the run; a time budget usually ends it first.
    patch_shape : tuple of int
        Shape of the training patches (3-D; a 2-D recipe uses the last two).
    n_patches : int
        Number of training pairs sampled from the tomogram(s).
    tta : bool
        Average the prediction over all flips of each tile.
    finetune_learning_rate : float
        Peak learning rate when training starts from a model (the pretrained
        one): lower than from scratch, so that the warm-up does not undo
        what the model knows.
    finetune_warmup : float
        Warm-up share of the run when fine-tuning.
    wedge_n_patches : int
        Most training pairs when the wedge restorer is fine-tuned with the
        ``"wedge"`` objective (it samples cubes √3 times the patch, 5.4
        times the voxels, so fewer); a smaller ``n_patches`` wins.
    wedge_share : float
        With ``wedge=``: the share of the budget that fine-tunes the wedge
        restorer self-supervised on the binned halves, after the denoiser
        had the rest; 0 (default) keeps the shipped restorer as it is, which
        measured better than fine-tuning it (docs/wedge.md).
    """

    config: CareConfig
    patch_shape: tuple[int, ...] = (32, 32, 32)
    n_patches: int = 1200
    tta: bool = True
    finetune_learning_rate: float = 5e-4
    finetune_warmup: float = 0.05
    wedge_n_patches: int = 400
    wedge_share: float = 0.0

    def replace(self, **changes: Any) -> Recipe:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def override(self, *, config: CareConfig | None = None,
                 patch_shape: int | tuple[int, ...] | None = None,
                 n_patches: int | None = None, tta: bool | None = None) -> Recipe:
        """Copy with the given settings; None keeps this recipe's.

        One patch size (``32`` or ``(32,)``) means a cube.

        Examples
        --------
        >>> DEFAULT_RECIPE.override(patch_shape=16, tta=None).patch_shape
        (16, 16, 16)
        """
        if patch_shape is not None:
            patch_shape = tuple(np.atleast_1d(patch_shape).tolist())  # Python ints: JSON-safe
            patch_shape = patch_shape * 3 if len(patch_shape) == 1 else patch_shape
        return self.replace(
            config=self.config if config is None else config,
            patch_shape=self.patch_shape if patch_shape is None else patch_shape,
            n_patches=self.n_patches if n_patches is None else n_patches,
            tta=self.tta if tta is None else bool(tta))

    def finetuning(self) -> Recipe:
        """This recipe for a run that starts from a model: its fine-tuning rate and warm-up.

        Examples
        --------
        >>> DEFAULT_RECIPE.finetuning().config.train_learning_rate
        0.0005
        """
        return self.replace(config=self.config.replace(
            train_learning_rate=self.finetune_learning_rate,
            train_warmup=self.finetune_warmup))

    def describe(self) -> dict[str, Any]:
        """The recipe's settings that differ from :class:`CareConfig`'s defaults, and the rest."""
        defaults = CareConfig().to_dict()
        changed = {k: v for k, v in self.config.to_dict().items() if defaults.get(k) != v}
        return {"config": changed, "patch_shape": list(self.patch_shape),
                "n_patches": self.n_patches, "tta": self.tta}


def parse_duration(text: str) -> float:
    """Seconds from a duration such as ``"90"``, ``"90s"``, ``"12m"`` or ``"1.5h"``.

    Examples
    --------
    >>> [parse_duration(t) for t in ("90", "90s", "12m", "1.5h")]
    [90.0, 90.0, 720.0, 5400.0]
    """
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = float(number) * units[unit.lower()]
    except ValueError:
        raise InputError(f"expected a duration like 90s, 12m or 1.5h, got {text!r}") from None
    if not 0 < seconds < 1e7:
        raise InputError(f"expected a positive duration, got {text!r}")
    return seconds


def cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``cpuinfo`` lists native bfloat16 (AVX-512 BF16 or AMX) flags.

    Informational only: the recipe's precision is ``"auto"``, decided by a
    measured step on the device that trains
    (:func:`cryocare.training.precision.resolve`), since flags say nothing
    about a GPU or a capped oneDNN.
    """
    try:
        with open(cpuinfo) as stream:
            flags = set(stream.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


DEFAULT_RECIPE = Recipe(
    config=CareConfig(unet_n_depth=2, unet_n_first=16, train_batch_size=16,
                      train_learning_rate=2e-3, train_schedule="cosine", train_warmup=0.05,
                      train_epochs=100, train_steps_per_epoch=50, train_precision="auto"),
)


# ------------------------------------------------------------- fitting the machine
@dataclass(frozen=True)
class Fit:
    """What :func:`fit_recipe` chose and why.

    Attributes
    ----------
    recipe : Recipe
        The recipe to train with.
    step : float
        Measured seconds per training step of that recipe.
    steps : int
        Training steps the budget is expected to buy with it.
    enough : bool
        Whether they reach :data:`ENOUGH_STEPS`.
    reason : str
        One line for the log.
    """

    recipe: Recipe
    step: float
    steps: int
    enough: bool
    reason: str


def _setting(recipe: Recipe) -> str:
    config = recipe.config
    width = f"{config.unet_n_first} filters, " if config.network == "unet" else ""
    return (f"{width}batch {config.train_batch_size}, patches "
            f"{'x'.join(map(str, recipe.patch_shape))}")


def candidates(recipe: Recipe, *, finetuning: bool) -> list[Recipe]:
    """The settings :func:`fit_recipe` tries, from the recipe's own to the cheapest.

    Each about halves the work per step of the one before, in the order that
    cost the least quality per step when measured (``docs/recipe.md``): half
    the batch (no loss at 250 steps), a narrower U-Net (from scratch only:
    fine-tuning keeps the pretrained network), smaller patches (3/4 of each
    size, kept a multiple of the network's pooling factor).

    Examples
    --------
    >>> [_setting(r) for r in candidates(DEFAULT_RECIPE, finetuning=False)]
    ['16 filters, batch 16, patches 32x32x32', '16 filters, batch 8, patches 32x32x32', \
'8 filters, batch 8, patches 32x32x32', '8 filters, batch 8, patches 24x24x24']
    >>> [_setting(r) for r in candidates(DEFAULT_RECIPE, finetuning=True)]
    ['16 filters, batch 16, patches 32x32x32', '16 filters, batch 8, patches 32x32x32', \
'16 filters, batch 8, patches 24x24x24', '16 filters, batch 4, patches 24x24x24']
    """
    from . import nets

    multiple = nets.multiple_of(recipe.config)

    def narrower(r: Recipe) -> Recipe | None:
        config = r.config
        if finetuning or config.network != "unet" or config.unet_n_first < 8:
            return None
        return r.replace(config=config.replace(unet_n_first=config.unet_n_first // 2))

    def smaller_batch(r: Recipe) -> Recipe | None:
        batch = r.config.train_batch_size
        return None if batch < 8 else r.replace(
            config=r.config.replace(train_batch_size=batch // 2))

    def smaller_patches(r: Recipe) -> Recipe | None:
        shape = tuple(max(multiple, (3 * p // 4) // multiple * multiple) for p in r.patch_shape)
        return None if shape == r.patch_shape or min(shape) < 16 else r.replace(
            patch_shape=shape)

    order = [smaller_batch, smaller_patches, smaller_batch] if finetuning else \
        [smaller_batch, narrower, smaller_patches]
    found = [recipe]
    for shrink in order:
        smaller = shrink(found[-1])
        if smaller is not None:
            found.append(smaller)
    return found


def fit_recipe(recipe: Recipe, *, budget: float, step_time: Callable[[Recipe], Any],
               finetuning: bool, keep_patches: bool = False) -> Fit:
    """Choose the setting that buys enough training steps in ``budget`` on this machine.

    Tries :func:`candidates` in order, measuring each (``step_time(recipe)``
    returns ``(setup, step)`` seconds, e.g. by
    :func:`cryocare.training.speed.step_seconds`; the time measuring takes
    is counted against the budget), until one buys :data:`ENOUGH_STEPS` or
    measuring the next would take more than :data:`MEASURE_SHARE` of what is
    left. A smaller setting is chosen over a larger one only when it buys
    :data:`STEP_GAIN` times the steps; ``enough`` says whether the choice
    reaches :data:`ENOUGH_STEPS`.

    Parameters
    ----------
    recipe : Recipe
        The recipe to fit (its config's precision already resolved).
    budget : float
        Seconds left for measuring and training.
    step_time : callable
        ``step_time(recipe) -> (setup seconds, seconds per step)``.
    finetuning : bool
        Whether training starts from a model (its network is kept).
    keep_patches : bool
        Keep the recipe's patch shape (the pairs were sampled already).

    Examples
    --------
    A machine whose step costs 1 ms per 1 000 voxels of batch per filter,
    and 5 s to set a network up:

    >>> def step_time(r):
    ...     voxels = r.config.train_batch_size * np.prod(r.patch_shape)
    ...     return 5.0, voxels * r.config.unet_n_first * 1e-6
    >>> fit = fit_recipe(DEFAULT_RECIPE, budget=720, step_time=step_time, finetuning=False)
    >>> _setting(fit.recipe), fit.steps, fit.enough
    ('8 filters, batch 8, patches 24x24x24', 652, True)

    Ten times the budget buys enough steps of the recipe's own setting:

    >>> fit = fit_recipe(DEFAULT_RECIPE, budget=7200, step_time=step_time, finetuning=False)
    >>> _setting(fit.recipe), fit.steps
    ('16 filters, batch 16, patches 32x32x32', 743)
    """
    need = ENOUGH_STEPS["finetune" if finetuning else "scratch"]
    spent = 0.0
    tried: list[Fit] = []
    best: Fit | None = None
    cost = 0.0
    for candidate in candidates(recipe, finetuning=finetuning):
        if keep_patches and candidate.patch_shape != recipe.patch_shape:
            continue
        if tried and cost > MEASURE_SHARE * (budget - spent):
            break
        setup, step = step_time(candidate)
        cost = setup + 2 * step  # what measuring took (and about what the next will take)
        spent += cost
        left = budget - spent - setup  # training sets its network up again
        steps = max(0, int(left / (step * STEP_OVERHEAD)))
        tried.append(Fit(candidate, step, steps, steps >= need, ""))
        if best is None or steps >= STEP_GAIN * best.steps:
            best = tried[-1]
        if best.enough:
            break
    measured = "; ".join(f"{_setting(f.recipe)}: {f.step:.2f} s/step" for f in tried)
    if best.enough and best.recipe == recipe:
        reason = (f"the recipe's {_setting(recipe)} buys about {best.steps} steps in the budget "
                  f"({best.step:.2f} s per step)")
    elif best.enough:
        reason = (f"{_setting(best.recipe)}: about {best.steps} steps in the budget, at least "
                  f"the {need} that beat fewer steps of a larger setting (measured: {measured})")
    else:
        reason = (f"{_setting(best.recipe)}: about {best.steps} steps in the budget, fewer than "
                  f"the {need} wanted (measured: {measured})")
    return dataclasses.replace(best, reason=reason)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a training run will do, decided before it samples pairs or trains.

    Attributes
    ----------
    recipe : Recipe
        The recipe as fitted (its fine-tuning form when the run starts from a model).
    config : CareConfig
        The network and training settings of the run.
    patch_shape : tuple of int
        The patches to train on.
    start : CAREModel or None
        The model the run starts from, loaded once; None: random weights.
    fit : Fit or None
        What fitting to this machine chose and why (None: not fitted).
    """

    recipe: Recipe
    config: CareConfig
    patch_shape: tuple[int, ...]
    start: Any
    fit: Fit | None


def plan_run(recipe: Recipe, *, init: Any = "pretrained", budget: Any = None,
             fit: bool = True, keep_patches: bool = False) -> RunPlan:
    """The one training plan of every face: the start, its learning rate and the fit.

    ``cryocare denoise``, ``cryocare train PAIRS``, ``--star``, ``evaluate``,
    the demo and the cryoCARE scripts all decide here: the starting model is
    loaded once (:func:`cryocare.training.finetune.initial_model`); a run
    that starts from a model trains at the recipe's fine-tuning rate and
    warm-up; with a time budget and ``fit``, :func:`fit_recipe` measures this
    machine and adapts batch, patches (not with ``keep_patches``: pairs
    already sampled) and, from scratch, width — and the log says what it chose.

    Parameters
    ----------
    recipe : Recipe
        What to train, its ``config.n_dim`` and ``patch_shape`` those of the data.
    init : "pretrained", "none", None, path or CAREModel
        Starting weights.
    budget : float, Budget or None
        Seconds (a :class:`cryocare.training.Budget` started by the caller,
        so that planning counts); None or 0: no fitting.
    fit : bool
        Fit the recipe to the machine's measured speed (with a budget).
    keep_patches : bool
        The patch shape is fixed (the pairs exist).

    Returns
    -------
    RunPlan
    """
    from .training import Budget, finetune, precision
    from .training.speed import step_seconds

    clock = budget if isinstance(budget, Budget) else Budget.start(budget or 0.0)
    config, patch_shape = recipe.config, tuple(recipe.patch_shape)
    start = finetune.initial_model(init, config)
    if start is not None:
        recipe = recipe.finetuning()
        config = config.replace(train_learning_rate=recipe.finetune_learning_rate,
                                train_warmup=recipe.finetune_warmup)
    chosen = None
    if fit and clock:
        config = config.replace(train_precision=precision.resolve(config.train_precision))
        chosen = fit_recipe(recipe.replace(config=config, patch_shape=patch_shape),
                            budget=clock.left(),
                            step_time=lambda r: step_seconds(r.config, r.patch_shape),
                            finetuning=start is not None, keep_patches=keep_patches)
        config, patch_shape = chosen.recipe.config, chosen.recipe.patch_shape
        log.info("fitted to this machine: %s", chosen.reason)
        mode = "finetune" if start is not None else "scratch"
        if chosen.steps < TOO_FEW_STEPS[mode]:
            need = ENOUGH_STEPS[mode]
            log.warning(
                "a budget of %.0f s buys about %d training step(s) on this machine (%.2f s "
                "each, %s): expect %s. About %.0f s would buy the %d steps wanted.",
                clock.seconds, chosen.steps, chosen.step, _setting(chosen.recipe),
                _EXPECT[mode], need * chosen.step * STEP_OVERHEAD
                + (clock.seconds - clock.left()), need)
    return RunPlan(recipe=recipe.replace(config=config, patch_shape=patch_shape), config=config,
                   patch_shape=tuple(patch_shape), start=start, fit=chosen)


# ------------------------------------------------------------------------ training
def _as_list(halves: Any) -> list[np.ndarray]:
    return list(halves) if isinstance(halves, list | tuple) else [halves]


def train_on_pair(even: np.ndarray | Sequence[np.ndarray], odd: np.ndarray | Sequence[np.ndarray],
                  *, recipe: Recipe | None = None, budget: float | None = DEFAULT_TIME_BUDGET,
                  init: Any = "pretrained", seed: int = 0, tilt_axis: str = "Y",
                  fit: bool = True, progress: bool = False,
                  checkpoint_dir: str | os.PathLike | None = None,
                  resume: bool = False, callbacks: Sequence[Any] = (),
                  wedge: Any = None) -> Any:
    """Train a model on even/odd halves with ``recipe``, in at most ``budget`` seconds.

    The budget counts from this call: measuring the machine, sampling the
    pairs, building the network and training. It is handed to
    :func:`cryocare.training.train` once, as one clock.

    Parameters
    ----------
    even, odd : ndarray or sequence of ndarray
        The two halves (2-D or 3-D, memory maps fine), or several pairs of
        tomograms sampled together.
    recipe : Recipe, optional
        What to train and how; default :data:`DEFAULT_RECIPE`.
    budget : float or None
        Seconds; 0 trains for the recipe's step cap (and fits nothing); None
        takes the recipe config's ``train_time_budget`` (0 in :data:`DEFAULT_RECIPE`).
    init : "pretrained", "none", None, path or CAREModel
        Starting weights (:mod:`cryocare.training.finetune`). The default,
        the shipped pretrained model, is used when its network is the
        recipe's, and then trained at the recipe's fine-tuning rate; else
        training starts from random weights (the log says why).
    seed : int
        Seed of sampling and training (replaces the recipe's).
    tilt_axis : {"Y", "X", "Z"}
        Axis along which validation pairs are held out (``"Z"``: along Z,
        as cryoCARE 0.3.0 offers).
    fit : bool
        With a budget, let :func:`fit_recipe` adapt batch, patches and
        (from scratch) width to this machine's measured speed. Pass False
        when the user chose the network.
    progress : bool
        Show a progress bar.
    checkpoint_dir, resume
        As in :func:`cryocare.training.train`. Resuming continues the
        checkpoint's run: its config and patch shape, nothing re-fitted.
    callbacks : sequence of keras.callbacks.Callback
        Extra Keras callbacks of the training run (as in
        :func:`cryocare.training.train`); one that sets ``model.stop_training``
        ends the run after the current step, with the best weights so far.
    wedge : str, path, (min, max), Wedge or None
        The tilt range of the halves (``"-60,60"``, a ``.tlt`` file, see
        :func:`cryocare.wedge.parse_wedge`; the axis is ``tilt_axis``, "Y"
        for "Z"): restore the missing wedge too (:mod:`cryocare.isotropic`).
        The denoiser trains Noise2Noise exactly as without ``wedge`` (on
        ``1 - recipe.wedge_share`` of the budget), the shipped restorer
        (``pretrained:wedge``; or ``init``'s, when ``init`` is a saved
        WedgeRestorer) restores the cone; with a ``wedge_share`` it is
        fine-tuned with the self-supervised ``"wedge"`` objective
        (:mod:`cryocare.training.objectives`) on the binned halves.
        None (default): Noise2Noise denoising.

    Returns
    -------
    CAREModel or WedgeRestorer
        The trained model (``model.denoise(even, odd, tta=recipe.tta)``
        predicts as the recipe says); its config records the budget and
        the precision the run had. With ``wedge``, a
        :class:`cryocare.isotropic.WedgeRestorer`.
    """
    recipe = DEFAULT_RECIPE if recipe is None else recipe
    if wedge is not None:
        return _train_wedge_restoration(
            even, odd, recipe=recipe, budget=budget, init=init, seed=seed, tilt_axis=tilt_axis,
            fit=fit, progress=progress, checkpoint_dir=checkpoint_dir, resume=resume,
            callbacks=callbacks, wedge=wedge)
    return _train(even, odd, recipe=recipe, budget=budget, init=init, seed=seed,
                  tilt_axis=tilt_axis, fit=fit, progress=progress, checkpoint_dir=checkpoint_dir,
                  resume=resume, callbacks=callbacks)


def _train(even, odd, *, recipe: Recipe, budget: float | None, init: Any, seed: int,
           tilt_axis: str, fit: bool, progress: bool, checkpoint_dir=None, resume: bool = False,
           callbacks: Sequence[Any] = (), wedge: Any = None) -> CAREModel:
    """One training run (:func:`train_on_pair` without ``wedge``; with ``wedge``, the
    ``"wedge"`` objective, which fine-tunes a restorer)."""
    from . import training  # imports Keras
    from .training import objectives
    from .training.checkpoints import Checkpoints

    clock = training.Budget.start(recipe.config.train_time_budget if budget is None else budget)
    evens, odds = _as_list(even), _as_list(odd)
    ndim = np.ndim(evens[0]) if evens else 0
    if ndim not in (2, 3):
        shape = np.shape(evens[0]) if evens else ()
        raise InputError(f"expected 2-D or 3-D halves, got shape {shape}")
    config = recipe.config.replace(n_dim=ndim, seed=seed)
    smallest = tuple(min(np.shape(e)[i] for e in evens) for i in range(ndim))
    if wedge is not None:
        recipe, config, smallest, init = _wedge_setup(recipe, config, smallest, wedge,
                                                       tilt_axis=tilt_axis, init=init)
    patch_shape = _fit(tuple(min(p, s) for p, s in zip(recipe.patch_shape[-ndim:], smallest,
                                                       strict=True)), config)
    start = None
    resumed = resume and checkpoint_dir is not None and Checkpoints(checkpoint_dir).exists()
    if resumed:
        meta = Checkpoints(checkpoint_dir).meta()
        config = CareConfig.from_dict(meta["config"])
        patch_shape = tuple(meta.get("patch_shape") or patch_shape)  # as the pairs were sampled
    elif not resume:
        run = plan_run(recipe.replace(config=config, patch_shape=patch_shape), init=init,
                       budget=clock, fit=fit)
        recipe, config, patch_shape, start = run.recipe, run.config, run.patch_shape, run.start
    if not resumed:  # the pairs of the wedge objective are cubes large enough to turn
        patch_shape = objectives.get(config).sample_shape(patch_shape)
    pairs = sample_pairs(evens, odds, patch_shape=patch_shape, n_patches=recipe.n_patches,
                         tilt_axis=tilt_axis, seed=seed)
    if clock and clock.left() <= 0:
        raise InputError(f"budget: {clock.seconds:g} s were used up before training started "
                         f"(measuring and sampling the pairs)")
    return training.train(pairs, config, budget=clock, init=start, progress=progress,
                          checkpoint_dir=checkpoint_dir, resume=resume, callbacks=callbacks)


#: Fewest seconds worth fine-tuning the wedge restorer for (sampling its pairs takes some).
_RESTORER_MIN_SECONDS = 30


def _train_wedge_restoration(even, odd, *, recipe: Recipe, budget: float | None, init: Any,
                             seed: int, tilt_axis: str, fit: bool, progress: bool,
                             checkpoint_dir, resume: bool, callbacks: Sequence[Any],
                             wedge: Any):
    """:func:`train_on_pair` with ``wedge``: the denoiser trained Noise2Noise as without it,
    the restorer the shipped one (or ``init``'s), fine-tuned on the binned halves for
    :attr:`Recipe.wedge_share` of the budget (its network as it is, not fitted to the
    machine; not at all when fewer than 30 s are left); a
    :class:`cryocare.isotropic.WedgeRestorer`."""
    import time

    from .isotropic import WedgeRestorer
    from .modelfiles import PRETRAINED_WEDGE, load_model, refiner_for
    from .training.finetune import load_start
    from .wedge import bin_volume, parse_wedge

    evens, odds = _as_list(even), _as_list(odd)
    if any(np.ndim(e) != 3 for e in evens):
        raise InputError(f"wedge: restoring the missing wedge needs 3-D halves, got "
                         f"{np.ndim(evens[0])}-D ones")
    wedge = parse_wedge(wedge, tilt_axis=tilt_axis if tilt_axis in ("Y", "X") else "Y")
    share = float(recipe.wedge_share)
    if not 0 <= share < 1:
        raise InputError(f"wedge_share: expected a share of the budget in [0, 1), got {share}")
    started = time.perf_counter()
    seconds = recipe.config.train_time_budget if budget is None else budget
    # A saved restoration (or one given) brings its restorer; any other start is loaded
    # once, here ("pretrained" training loads itself, to name it as before).
    denoiser_init, restorer, refiner = init, None, None
    start = init if isinstance(init, str) and init == "pretrained" else load_start(init)
    if isinstance(start, WedgeRestorer):
        denoiser_init, restorer, refiner = start.denoiser, start.restorer, start.refiner
    elif start is not None:
        denoiser_init = start
    denoiser = _train(evens, odds, recipe=recipe, budget=seconds * (1 - share), init=denoiser_init,
                      seed=seed, tilt_axis=tilt_axis, fit=fit, progress=progress,
                      checkpoint_dir=checkpoint_dir, resume=resume, callbacks=callbacks)
    if restorer is None:
        restorer = load_model(PRETRAINED_WEDGE)
        refiner = refiner_for(restorer)  # kept if the restorer is fine-tuned below
    left = seconds - (time.perf_counter() - started) if seconds else 0.0
    if share > 0 and seconds and left < _RESTORER_MIN_SECONDS:
        log.warning("the wedge restorer is not fine-tuned: %.0f s of the budget are left, "
                    "fewer than %d", left, _RESTORER_MIN_SECONDS)
    elif share > 0:
        b = restorer.config.wedge_binning
        binned = ([bin_volume(v, b) for v in evens], [bin_volume(v, b) for v in odds])
        log.info("fine-tuning the wedge restorer on the halves binned by %d (%s)", b,
                 f"{left:.0f} s" if seconds else "the recipe's steps")
        restorer = _train(*binned, recipe=recipe.replace(
            n_patches=min(recipe.n_patches, recipe.wedge_n_patches),
            config=recipe.config.replace(**restorer.config.architecture(), wedge_binning=b)),
            budget=max(left, 0.0),
            init=restorer, seed=seed, tilt_axis=tilt_axis, fit=False, progress=progress,
            wedge=wedge)
    return WedgeRestorer(denoiser, restorer, wedge, refiner=refiner)


def denoise(even: np.ndarray, odd: np.ndarray, *, recipe: Recipe | None = None,
            budget: float | None = DEFAULT_TIME_BUDGET, init: Any = "pretrained", seed: int = 0,
            tilt_axis: str = "Y", fit: bool = True, progress: bool = False, wedge: Any = None,
            **options: Any) -> np.ndarray | None:
    """**Train** a model on the halves with the recipe, then restore them: ``cryocare denoise``.

    This trains (fine-tunes the shipped model) for ``budget`` seconds — 12
    minutes by default — before it predicts. To predict with a model you
    have, without training: ``cryocare.load_model(...).denoise(even, odd)``.

    :func:`train_on_pair` (same arguments), then
    :meth:`cryocare.model.CAREModel.denoise` with the recipe's test-time
    augmentation; ``options`` are those of
    :meth:`~cryocare.model.CAREModel.denoise` (``memory``, ``out``, ...).
    Use :func:`train_on_pair` to keep the model. Without ``out`` or ``wedge``,
    :func:`cryocare.heldout.denoise` checks the model against Gaussian and NAD
    filters on the validation end of the tilt axis, logs the estimated gains,
    and returns a filter's restoration (or a blend) if it wins
    (docs/heldout.md).

    Returns
    -------
    ndarray or None
        The mean of both restored halves, float32 (None when ``out`` is a
        slab writer).
    """
    recipe = DEFAULT_RECIPE if recipe is None else recipe
    seconds = recipe.config.train_time_budget if budget is None else budget
    log.info("cryocare.denoise trains a model on the halves first (%s), then predicts; "
             "load_model(...).denoise(even, odd) predicts with a model without training",
             f"for {seconds:.0f} s" if seconds else "for the recipe's steps")
    model = train_on_pair(even, odd, recipe=recipe, budget=budget, init=init, seed=seed,
                          tilt_axis=tilt_axis, fit=fit, progress=progress, wedge=wedge)
    options.setdefault("tta", recipe.tta)
    if wedge is not None or options.get("out") is not None:  # no held-out check (heldout.md)
        return model.denoise(even, odd, progress=progress, **options)
    from .heldout import denoise as checked
    from .heldout import representative_region, validation_region

    # The estimate's line, scored where training held its pairs out; a filter if it wins.
    region = representative_region(np.shape(even), within=validation_region(
        np.shape(even), tilt_axis=tilt_axis))
    return checked(model, even, odd, region=region, progress=progress, **options)[0]


def _wedge_setup(recipe: Recipe, config: CareConfig, smallest: tuple[int, ...], wedge: Any, *,
                 tilt_axis: str, init: Any) -> tuple[Recipe, CareConfig, tuple[int, ...], Any]:
    """The recipe, config, largest patch and start of a wedge-restoring run."""
    from .wedge import parse_wedge

    if len(smallest) != 3:
        raise InputError(f"wedge: restoring the missing wedge needs 3-D halves, got "
                         f"{len(smallest)}-D ones")
    wedge = parse_wedge(wedge, tilt_axis=tilt_axis if tilt_axis in ("Y", "X") else "Y")
    config = config.replace(train_objective="wedge", train_tilt_axis=wedge.tilt_axis,
                            train_tilt_range=(wedge.min_angle, wedge.max_angle))
    side = int(min(smallest) / np.sqrt(3))  # a turned patch needs a cube √3 times its side
    recipe = recipe.replace(n_patches=min(recipe.n_patches, recipe.wedge_n_patches))
    if isinstance(init, str) and init == "pretrained":
        init = "pretrained:wedge"
    return recipe, config, (side,) * 3, init


def _fit(patch_shape: tuple[int, ...], config: CareConfig) -> tuple[int, ...]:
    """Round patch sizes down to what the network can take (a thin volume may be small)."""
    from . import nets

    multiple = nets.multiple_of(config)
    fitted = tuple(p - p % multiple for p in patch_shape)
    if min(fitted) < multiple:
        raise InputError(
            f"the halves are too small for patches of {patch_shape}: every size must be at "
            f"least {multiple} for the {config.network} network"
        )
    return fitted
