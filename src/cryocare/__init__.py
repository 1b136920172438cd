"""cryocare: content-aware restoration of cryo-electron tomograms and projections.

Noise2Noise training of a CARE network on pairs of independently noisy
images of the same content (even/odd frame sums, even/odd tomograms), with
tiled prediction, baselines and Otsu segmentation.

The names a notebook needs are here, loaded when first used — importing
``cryocare`` imports neither TensorFlow nor Keras:

>>> import cryocare
>>> data = cryocare.simulate_tomogram((16, 32, 32), seed=0)
>>> mask = cryocare.segment_otsu(data.clean)
>>> mask.shape, mask.dtype
((16, 32, 32), dtype('bool'))

A model restores a pair of halves, or one volume, in two lines (the
shipped general model here; a folder of your own, or a cryoCARE 0.3.0
archive, alike)::

    model = cryocare.load_model("pretrained")
    denoised = model.denoise(even, odd)        # or model.predict(volume)

:func:`denoise` is different: it *trains* a model on your halves first (for
the recipe's time budget, 12 minutes by default), then predicts.

Names that are also modules (``cryocare.simulate``, ``cryocare.segment``,
``cryocare.evaluate``) stay modules; their functions are exported under
their own names.

Each stage is also a module of its own: :mod:`cryocare.io`,
:mod:`cryocare.simulate`, :mod:`cryocare.pairs`, :mod:`cryocare.training`,
:mod:`cryocare.model`, :mod:`cryocare.predict`, :mod:`cryocare.filters`,
:mod:`cryocare.segment`, :mod:`cryocare.metrics`, ...
"""

from __future__ import annotations

import importlib as _importlib

__version__ = "0.2.0"

from .errors import CryocareError, InputError  # noqa: E402  (no heavy imports)

#: Public name -> (module, attribute), imported on first use.
_LAZY = {
    "read": ("io", "read"),
    "write": ("io", "write"),
    "read_pair": ("io", "read_pair"),
    "simulate_tomogram": ("simulate", "simulate_tomogram"),
    "sample_pairs": ("pairs", "sample_pairs"),
    "CareConfig": ("config", "CareConfig"),
    "Recipe": ("recipe", "Recipe"),
    "DEFAULT_RECIPE": ("recipe", "DEFAULT_RECIPE"),
    "train_on_pair": ("recipe", "train_on_pair"),
    "CAREModel": ("model", "CAREModel"),
    "train": ("training", "train"),
    "denoise": ("recipe", "denoise"),
    "load_model": ("modelfiles", "load_model"),
    "denoise_file": ("predict", "denoise_file"),
    "PredictOptions": ("config", "PredictOptions"),
    "median": ("filters", "median"),
    "gaussian": ("filters", "gaussian"),
    "psnr": ("metrics", "psnr"),
    "dice": ("metrics", "dice"),
    "denoise_tomogram": ("single", "denoise_tomogram"),
    "segment_otsu": ("segment", "segment_otsu"),
    "nad": ("filters", "nad"),
    "WedgeRestorer": ("isotropic", "WedgeRestorer"),
}

__all__ = ["__version__", "CryocareError", "InputError", *_LAZY]


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cryocare' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(n for n in set(globals()) | set(_LAZY) if not n.startswith("_")
                  or n == "__version__")
