"""The training recipe: how to turn one even/odd pair into a good model in a fixed time.

Most users train on a laptop or a shared node for minutes, so the recipe is
tuned for the quality reached per minute of training, measured with
``benchmarks/quality.py`` (the tables are in ``docs/recipe.md``):

* a 2-level U-Net with 16 filters, patches of 32³, batches of 16;
* a peak learning rate of 2e-3 with a 5 % linear warm-up and a cosine decay
  to zero at the end of the time budget (CSBDeep and cryoCARE use 4e-4 and
  halve it on plateaus, which a short run never reaches);
* bfloat16 arithmetic with float32 weights where the CPU computes bfloat16
  natively (AVX-512 BF16 or AMX: twice the steps per minute), else float32;
* test-time augmentation: the prediction is averaged over the 8 flips of
  every tile, which keep the missing wedge where it is.

:data:`DEFAULT_RECIPE` is what ``cryocare denoise``, ``cryocare evaluate``
and the demo use; :func:`train_on_pair` applies any :class:`Recipe`. Which
precision it picks depends on the CPU it is imported on (read from
``/proc/cpuinfo``); a saved model records the precision it was trained in.

Examples
--------
>>> DEFAULT_RECIPE.config.train_schedule, DEFAULT_RECIPE.patch_shape, DEFAULT_RECIPE.tta
('cosine', (32, 32, 32), True)
>>> DEFAULT_RECIPE.replace(tta=False).tta
False
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import CareConfig
from .errors import InputError
from .pairs import sample_pairs

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel

__all__ = ["DEFAULT_RECIPE", "DEFAULT_TIME_BUDGET", "Recipe", "cpu_has_bfloat16", "parse_duration",
           "train_on_pair"]

log = logging.getLogger(__name__)

#: Training time of ``cryocare denoise`` when no budget is given (seconds).
DEFAULT_TIME_BUDGET = 12 * 60.0


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
        Number of training pairs sampled from the tomogram.
    tta : bool
        Average the prediction over all flips of each tile.
    """

    config: CareConfig
    patch_shape: tuple[int, ...] = (32, 32, 32)
    n_patches: int = 1200
    tta: bool = True

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
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX), from ``cpuinfo``.

    False when the file cannot be read (not Linux): then bfloat16 would be
    emulated, which is slower than float32.
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
                      train_epochs=100, train_steps_per_epoch=50,
                      train_precision="mixed_bfloat16" if cpu_has_bfloat16() else "float32"),
)


def train_on_pair(even: np.ndarray, odd: np.ndarray, *, recipe: Recipe = DEFAULT_RECIPE,
                  time_budget: float | None = DEFAULT_TIME_BUDGET, seed: int = 0,
                  tilt_axis: str = "Y", progress: bool = False,
                  checkpoint_dir: str | os.PathLike | None = None,
                  resume: bool = False) -> CAREModel:
    """Train a model on one even/odd pair with ``recipe``, in at most ``time_budget`` seconds.

    The budget covers sampling the pairs, building the network and
    training: the call returns at most a few validation passes after it.

    Parameters
    ----------
    even, odd : ndarray
        The two halves (2-D or 3-D, memory maps fine).
    recipe : Recipe
        What to train and how.
    time_budget : float or None
        Seconds; None trains for the recipe's epochs.
    seed : int
        Seed of sampling and training (replaces the recipe's).
    tilt_axis : {"Y", "X"}
        Axis along which validation pairs are held out.
    progress : bool
        Show a progress bar.
    checkpoint_dir, resume
        As in :meth:`cryocare.model.CAREModel.train`.

    Returns
    -------
    CAREModel
        The trained model (``model.denoise(even, odd, tta=recipe.tta)``
        predicts as the recipe says).
    """
    from .model import CAREModel  # imports Keras

    start = time.perf_counter()
    if np.ndim(even) not in (2, 3):
        raise InputError(f"expected 2-D or 3-D halves, got shape {np.shape(even)}")
    if time_budget is not None and not time_budget > 0:
        raise InputError(f"time_budget: expected a positive number of seconds, got {time_budget}")
    ndim = np.ndim(even)
    patch_shape = tuple(min(p, s) for p, s in
                        zip(recipe.patch_shape[-ndim:], np.shape(even), strict=True))
    pairs = sample_pairs([even], [odd], patch_shape=_fit(patch_shape, recipe.config),
                         n_patches=recipe.n_patches, tilt_axis=tilt_axis, seed=seed)
    config = recipe.config.replace(n_dim=ndim, seed=seed)
    if time_budget is not None:
        left = time_budget - (time.perf_counter() - start)
        if left <= 0:
            raise InputError(f"time_budget: {time_budget:g} s were used up sampling the pairs")
        config = config.replace(train_time_budget=left)
    if config.network == "diffusion":
        from .nets.diffusion import train_stagewise

        return train_stagewise(pairs, config, progress=progress, checkpoint_dir=checkpoint_dir,
                               resume=resume)
    return CAREModel.train(pairs, config, progress=progress, checkpoint_dir=checkpoint_dir,
                           resume=resume)


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
