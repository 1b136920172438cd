"""Where training starts: random weights, the shipped pretrained model, or any model.

``init`` is what :func:`cryocare.training.train` starts from:

* ``None`` or ``"none"`` — random weights (seeded by ``config.seed``);
* ``"pretrained"`` — the general model shipped with cryocare
  (:func:`cryocare.pretrained.model_path`);
* a path — a model folder written by :meth:`cryocare.model.CAREModel.save`, or a
  cryoCARE 0.3.0 archive (:func:`cryocare.modelfiles.load_model`);
* a :class:`~cryocare.model.CAREModel`.

Weights carry over only between networks of the same architecture
(:meth:`cryocare.config.CareConfig.architecture`). A model or a folder of
another architecture is an error that names every key that differs; the
pretrained model of another architecture is not: training then starts from
random weights and says why in the log (``"pretrained"`` is every face's
default, and a user who asks for another network asks for that network).

Examples
--------
>>> from cryocare.config import CareConfig
>>> differences(CareConfig(unet_n_first=16), CareConfig(unet_n_first=8, seed=3))
['unet_n_first (config 8, initial model 16)']
>>> differences(CareConfig(), CareConfig(train_learning_rate=1e-4))
[]
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..config import CareConfig
from ..errors import InputError
from ..model import CAREModel

__all__ = ["INIT_CHOICES", "describe", "differences", "initial_model", "load_init"]

log = logging.getLogger(__name__)

INIT_CHOICES = ("none", "pretrained")


def load_start(init: Any) -> Any:
    """What ``init`` names, loaded: a CAREModel, a saved wedge restoration whole
    (:class:`cryocare.isotropic.WedgeRestorer`), or None for random weights.

    Raises
    ------
    InputError
        ``"pretrained"`` when no pretrained model is installed, a path that
        is no model (a cryocare folder or a cryoCARE 0.3.0 archive), or anything else.
    """
    if init is None or (isinstance(init, str) and init == "none"):
        return None
    if isinstance(init, CAREModel) or hasattr(init, "denoiser"):
        return init
    if isinstance(init, str | os.PathLike):
        from ..modelfiles import load_model  # every format: folder, cryoCARE archive, pretrained

        try:
            return load_model(init)
        except InputError as error:
            hint = "; train from scratch with init='none'" if init == "pretrained" else ""
            raise InputError(f"init {str(init)!r}: {error}{hint}") from None
    raise InputError(f"init: expected None, 'none', 'pretrained', a model folder or a "
                     f"CAREModel, got {init!r}")


def load_init(init: Any) -> CAREModel | None:
    """The model training starts from (None: random weights); of a wedge restoration, its
    denoiser.

    Raises
    ------
    InputError
        As :func:`load_start`.
    """
    start = load_start(init)
    if hasattr(start, "denoiser"):
        log.info("init %s is a wedge restoration: training starts from its denoiser",
                 describe(init))
        return start.denoiser
    return start


def describe(init: Any) -> str:
    """A short name of ``init`` for messages (a loaded model: the folder it came from)."""
    if isinstance(init, CAREModel):
        return "(the given model)" if init.source is None else f"{str(init.source)!r}"
    return f"{str(init)!r}"


def differences(initial: CareConfig, config: CareConfig) -> list[str]:
    """The architecture keys in which ``config`` differs from ``initial``'s, described."""
    theirs, ours = initial.architecture(), config.architecture()
    return [f"{key} (config {ours.get(key)!r}, initial model {theirs.get(key)!r})"
            for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]


def initial_model(init: Any, config: CareConfig | None) -> CAREModel | None:
    """The model a run of ``config`` starts from, None for random weights.

    Raises
    ------
    InputError
        As :func:`load_init`, and when a given model (not the pretrained
        one) has another architecture than ``config``.
    """
    start = load_init(init)
    if start is None or config is None:
        return start
    found = differences(start.config, config)
    if not found:
        return start
    if isinstance(init, str) and init == "pretrained":
        log.info("training from random weights: the pretrained model's network differs from "
                 "the config's in %s", ", ".join(found))
        return None
    raise InputError(f"init {describe(init)}: expected the config's network architecture, "
                     f"found differences in {', '.join(found)}")
