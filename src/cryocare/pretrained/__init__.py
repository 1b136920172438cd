"""Pretrained networks shipped with cryocare, as package data.

Each model is a folder written by :meth:`cryocare.model.CAREModel.save`
inside this package; ``"general"`` is the recipe's 3-D U-Net trained on a
broad family of simulated tomograms (``docs/pretrained.md`` is its model
card, ``benchmarks/pretrain.py`` regenerates it from seeds). It is meant as
the starting point of Noise2Noise fine-tuning on a user's own even/odd
halves, and can denoise zero-shot with per-image normalisation::

    model = pretrained.load()
    denoised = model.denoise(even, odd, normalize="image")

``"wedge"`` is the same network trained to restore the missing wedge as
well (supervised on the simulator's wedge-free truth, from the general
weights; ``benchmarks/pretrain_wedge.py``): what ``load_model("pretrained",
wedge=...)`` and ``wedge=`` fine-tuning start from. ``"wedge-refiner"``
restores the cone above what the binned restorer reaches, at full
resolution (``benchmarks/pretrain_wedge.py --refine``).

Importing this module is cheap: Keras is imported by :func:`load` only.

Examples
--------
>>> from cryocare import pretrained
>>> pretrained.names()
('general', 'wedge', 'wedge-refiner')
>>> (pretrained.model_path() / "config.json").is_file()
True
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..model import CAREModel

__all__ = ["DEFAULT", "load", "model_path", "names"]

#: Name of the model :func:`load` and :func:`model_path` return by default.
DEFAULT = "general"

_HERE = Path(__file__).resolve().parent


def names() -> tuple[str, ...]:
    """Names of the pretrained models installed with this package, sorted."""
    return tuple(sorted(p.name for p in _HERE.iterdir()
                        if p.is_dir() and (p / "config.json").is_file()))


def model_path(name: str = DEFAULT) -> Path:
    """The folder of the pretrained model ``name`` inside the installed package.

    Raises
    ------
    InputError
        When no model of that name is installed (the message names those that are).
    """
    known = names()
    if not isinstance(name, str) or name not in known:
        raise InputError(f"pretrained model {name!r}: not installed (known: "
                         f"{', '.join(known) if known else 'none'})")
    return _HERE / name


def load(name: str = DEFAULT) -> CAREModel:
    """Load the pretrained model ``name`` (imports Keras).

    Returns
    -------
    CAREModel
        Its network, weights and normalisation, as saved.
    """
    from ..model import CAREModel

    return CAREModel.load(model_path(name))
