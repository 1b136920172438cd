"""cryoCARE 0.3.0's three jobs, run from its JSON configs on cryocare's one path.

``cryoCARE_extract_train_data.py``, ``cryoCARE_train.py`` and
``cryoCARE_predict.py`` (and ``cryocare extract|train|predict --config``) run
these functions. They write what cryoCARE writes where pipelines look for it:

==================================  ==============================================
job                                 output
==================================  ==============================================
:func:`extract_train_data`          the training-data folder ``path``
                                    (holding ``cryocare_pairs.npz``)
:func:`train`                       the model archive ``<path>/<model_name>.tar.gz``
                                    (cryoCARE 0.3.0 format, loadable by cryoCARE)
:func:`predict`                     ``<output>/<file name of the even tomogram>``
==================================  ==============================================

They take the same path as ``cryocare denoise``: pairs by
:func:`cryocare.pairs.sample_pairs` (halves paired by name), training by
:func:`cryocare.training.train` with the recipe's settings wherever the
config is silent (its explicit values win), prediction by
:func:`cryocare.predict.denoise_file`, streaming. Relative paths in a config
are resolved from the current folder, as cryoCARE does.

Examples
--------
Training takes minutes, so this is shown, not run::

    from cryocare import compat, configjobs
    configjobs.extract_train_data(compat.read_config("train_data_config.json"))
    archive = configjobs.train(compat.read_config("train_config.json"))
    outputs = configjobs.predict(compat.read_config("predict_config.json"))
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .compat import PAIRS_FILE, PredictConfig, TrainConfig, TrainDataConfig, read_config
from .config import PredictOptions
from .errors import InputError, OutputExistsError

__all__ = ["extract_train_data", "train", "predict", "read_job_config", "run_config",
           "care_config", "JOBS"]

log = logging.getLogger(__name__)

#: The config class of each job.
JOBS = {"extract": TrainDataConfig, "train": TrainConfig, "predict": PredictConfig}
_EXPECTED = {"extract": "train_data", "train": "train", "predict": "predict"}


def _make_folder(path: Path, *, overwrite: bool) -> None:
    """Create ``path`` (with parents); an existing one only when overwriting, as cryoCARE."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: output folder exists already (set \"overwrite\": true in the config)"
        )
    path.mkdir(parents=True, exist_ok=True)


def extract_train_data(config: TrainDataConfig, *, seed: int = 0) -> Path:
    """Sample training pairs as ``cryoCARE_extract_train_data.py`` does; returns the pair file.

    ``num_slices`` pairs are drawn per tomogram; statistics come from all
    tomograms; with ``mask``, patches are centred inside the mask (one mask
    file, used for every tomogram). The pairs go to ``<path>/cryocare_pairs.npz``.
    """
    from . import io
    from .halves import find_halves
    from .pairs import sample_pairs

    pairs_found = find_halves(config.even, config.odd)
    if config.n_normalization_samples is not None:
        log.info("n_normalization_samples is not needed: statistics use every voxel")
    folder = Path(config.path)
    _make_folder(folder, overwrite=config.overwrite)
    loaded = [io.read_pair(e, o, mmap=True) for e, o in pairs_found]
    masks = None
    if config.mask is not None:  # one mask file (as nextPYP writes it) for every tomogram
        mask = io.read(config.mask, mmap=True)
        for (even_path, _), (even, _, _) in zip(pairs_found, loaded, strict=True):
            if even.shape != mask.shape:
                raise InputError(f"config key 'mask': {config.mask} has shape {mask.shape}, "
                                 f"but {even_path} has shape {even.shape}")
        masks = [mask] * len(loaded)
    pairs = sample_pairs([e for e, _, _ in loaded], [o for _, o, _ in loaded],
                         patch_shape=config.patch_shape,
                         n_patches=config.num_slices * len(loaded),
                         val_fraction=1.0 - config.split, tilt_axis=config.tilt_axis,
                         masks=masks, seed=seed)
    return pairs.save(folder / PAIRS_FILE, overwrite=config.overwrite)


def care_config(config: TrainConfig):
    """The recipe's :class:`~cryocare.config.CareConfig` with the config's explicit values.

    Network size, epochs, steps, batch and learning rate come from the
    cryoCARE config (all of them are required keys there); schedule,
    precision and everything else the config cannot say are the recipe's.
    """
    from .recipe import DEFAULT_RECIPE

    explicit = {k: v for k, v in config.care_config().to_dict().items()
                if k in _TRAIN_CONFIG_KEYS}
    return DEFAULT_RECIPE.config.replace(**explicit)


_TRAIN_CONFIG_KEYS = ("n_dim", "unet_n_depth", "unet_kern_size", "unet_n_first", "train_epochs",
                      "train_steps_per_epoch", "train_batch_size", "train_learning_rate")


def train(config: TrainConfig, *, progress: bool = False, init: Any = "pretrained") -> Path:
    """Train as ``cryoCARE_train.py`` does; returns ``<path>/<model_name>.tar.gz``.

    The epochs and steps of the config are the run (no time budget); the
    shipped pretrained model is the starting point when the config's network
    is its network (``init``, as in :func:`cryocare.training.train`).
    """
    from .compat import write_archive
    from .pairs import PairSet
    from .recipe import DEFAULT_RECIPE, plan_run
    from .training import train as train_pairs

    data = Path(config.train_data)
    pair_file = data / PAIRS_FILE if data.is_dir() else data
    if not pair_file.is_file():
        hint = (" (it holds cryoCARE 0.3.0's train_data.npz: run this package's "
                "cryoCARE_extract_train_data.py on the same config first)"
                if (data / "train_data.npz").is_file() else "")
        raise InputError(f"config key 'train_data': {data}: no {PAIRS_FILE} found{hint}")
    archive = Path(config.path) / f"{config.model_name}.tar.gz"
    if archive.exists() and not config.overwrite:
        raise OutputExistsError(
            f"{archive}: model archive exists already (set \"overwrite\": true in the config)"
        )
    pairs = PairSet.load(pair_file)
    # planned as every face plans: a start from a model trains at the fine-tuning rate
    run = plan_run(DEFAULT_RECIPE.replace(config=care_config(config),
                                          patch_shape=tuple(pairs.patch_shape)),
                   init=init, fit=False, keep_patches=True)
    model = train_pairs(pairs, run.config, budget=None, init=run.start, progress=progress)
    Path(config.path).mkdir(parents=True, exist_ok=True)
    return write_archive(model, archive, model_name=config.model_name,
                         overwrite=config.overwrite)


def predict(config: PredictConfig, options: PredictOptions | None = None, *,
            progress: bool = False) -> list[Path]:
    """Denoise as ``cryoCARE_predict.py`` does; returns the files written.

    Each output is ``<output>/<file name of the even tomogram>``, streamed
    from the memory-mapped halves. ``n_tiles`` is not needed: tiles are sized
    to the memory budget (cryoCARE users chose ``n_tiles`` to fit the GPU's
    memory) and overlap by the receptive field, so the result does not depend
    on them. ``options`` (:class:`cryocare.config.PredictOptions`; default: the
    config's own, :meth:`cryocare.compat.PredictConfig.options`) say how to
    predict; test-time augmentation is off by default, as in cryoCARE.
    """
    from .halves import find_halves
    from .modelfiles import load_model
    from .predict import denoise_file

    pairs_found = find_halves(config.even, config.odd)
    names = [even.name for even, _ in pairs_found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(f"config key 'even': several even tomograms are named "
                         f"{', '.join(clashes)}; their outputs would overwrite each other")
    options = config.options() if options is None else options
    if progress != options.progress:
        options = options.replace(progress=progress)
    model = load_model(config.path)
    output = Path(config.output)
    _make_folder(output, overwrite=config.overwrite)
    if config.n_tiles != (1, 1, 1):
        log.info("n_tiles %s is not needed: tiles are sized to the memory budget",
                 list(config.n_tiles))
    written = []
    for even_path, odd_path in pairs_found:
        written.append(denoise_file(model, even_path, odd_path, output / even_path.name,
                                    options, overwrite=config.overwrite))
        log.info("wrote %s", written[-1])
    return written


def read_job_config(kind: str, path: str | os.PathLike, *, used_by: str = ""):
    """The cryoCARE config at ``path``, which must be a ``kind`` config (``JOBS``).

    ``used_by`` names who asked (e.g. a script), for the error message.
    """
    config = read_config(path)
    if not isinstance(config, JOBS[kind]):
        by = f" for {used_by}" if used_by else ""
        raise InputError(f"{path}: expected a cryoCARE {_EXPECTED[kind]} config{by}, got a "
                         f"{type(config).__name__}")
    return config


def run_config(kind: str, path: str | os.PathLike, *, progress: bool = False,
               init: Any = "pretrained", options: PredictOptions | None = None) -> list[Path]:
    """Read the cryoCARE config at ``path``, check it is a ``kind`` config, run it.

    ``init`` is the starting model of :func:`train`; ``options`` the
    prediction options of :func:`predict`.
    """
    config = read_job_config(kind, path)
    if kind == "extract":
        return [extract_train_data(config)]
    if kind == "train":
        return [train(config, progress=progress, init=init)]
    return predict(config, options, progress=progress)
