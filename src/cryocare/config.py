"""Validated, immutable model configuration, saved next to the weights.

Field names follow CSBDeep's :class:`csbdeep.models.Config` (``unet_n_depth``,
``train_batch_size``, ...) so that users of CSBDeep and cryoCARE recognise
them. Unknown keys, wrong types and out-of-range values are rejected with an
:class:`~cryocare.errors.InputError` that names the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = ["CareConfig"]

# name -> (lowest, highest) allowed value, both inclusive
_INT_BOUNDS = {
    "n_dim": (2, 3),
    "unet_n_depth": (1, 6),
    "unet_kern_size": (1, 9),
    "unet_n_first": (1, 512),
    "unet_n_conv_per_depth": (1, 4),
    "train_epochs": (1, 100_000),
    "train_steps_per_epoch": (1, 1_000_000),
    "train_batch_size": (1, 4096),
    "train_reduce_lr_patience": (1, 10_000),
    "seed": (0, 2**32 - 1),
}
_LOSSES = ("mse", "mae")


@dataclass(frozen=True)
class CareConfig:
    """Configuration of a CARE network and of its Noise2Noise training.

    Parameters
    ----------
    n_dim : int
        2 for micrographs/projections, 3 for tomograms.
    network : str
        Name of a network registered in :mod:`cryocare.nets` (``"unet"``).
    unet_n_depth : int
        Number of resolution levels of the U-Net.
    unet_kern_size : int
        Odd convolution kernel size in every dimension.
    unet_n_first : int
        Filters in the first level; doubled at each level below.
    unet_residual : bool
        Predict the residual to the input (CSBDeep's default).
    unet_n_conv_per_depth : int
        Convolutions per level.
    train_loss : str
        ``"mse"`` (Noise2Noise's loss for zero-mean noise) or ``"mae"``.
    train_epochs, train_steps_per_epoch, train_batch_size : int
        Length of training and batch size.
    train_learning_rate : float
        Initial learning rate of Adam.
    train_reduce_lr_patience : int
        Epochs without improvement of the validation loss before the learning
        rate is halved.
    seed : int
        Seed of weight initialisation and batch sampling.

    Examples
    --------
    >>> config = CareConfig(unet_n_depth=2, train_epochs=5)
    >>> CareConfig.from_dict(config.to_dict()) == config
    True
    """

    n_dim: int = 3
    network: str = "unet"
    unet_n_depth: int = 2
    unet_kern_size: int = 3
    unet_n_first: int = 16
    unet_residual: bool = True
    unet_n_conv_per_depth: int = 2
    train_loss: str = "mse"
    train_epochs: int = 20
    train_steps_per_epoch: int = 50
    train_batch_size: int = 16
    train_learning_rate: float = 4e-4
    train_reduce_lr_patience: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name, (low, high) in _INT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"config key {name!r}: expected an integer, got {value!r}")
            if not low <= value <= high:
                raise InputError(
                    f"config key {name!r}: expected a value in [{low}, {high}], got {value}"
                )
        if self.unet_kern_size % 2 == 0:
            raise InputError(
                f"config key 'unet_kern_size': expected an odd number, got {self.unet_kern_size}"
            )
        if not isinstance(self.unet_residual, bool):
            raise InputError(
                f"config key 'unet_residual': expected true or false, got {self.unet_residual!r}"
            )
        rate = self.train_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise InputError(f"config key 'train_learning_rate': expected a number, got {rate!r}")
        if not 0 < rate < 1:
            raise InputError(f"config key 'train_learning_rate': expected 0 < rate < 1, got {rate}")
        if self.train_loss not in _LOSSES:
            raise InputError(
                f"config key 'train_loss': expected one of {', '.join(_LOSSES)}, "
                f"got {self.train_loss!r}"
            )
        if not isinstance(self.network, str) or not self.network.isidentifier():
            # Whether the name is registered is checked when the network is built.
            raise InputError(
                f"config key 'network': expected a network name, got {self.network!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dictionary of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CareConfig:
        """Build a config from a dictionary, rejecting unknown keys."""
        if not isinstance(values, dict):
            raise InputError(f"config: expected a mapping of keys to values, got {values!r}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"config: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> CareConfig:
        """Copy of this config with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})
