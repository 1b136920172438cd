"""Drop-in replacements for cryoCARE 0.3.0's three scripts.

``cryoCARE_extract_train_data.py``, ``cryoCARE_train.py`` and
``cryoCARE_predict.py`` take ``--conf FILE.json`` (the configs of
:mod:`cryocare.compat`) and write what cryoCARE writes where pipelines look
for it:

==================================  ==============================================
script                              output
==================================  ==============================================
``cryoCARE_extract_train_data.py``  the training-data folder ``path``
                                    (holding ``cryocare_pairs.npz``)
``cryoCARE_train.py``               the model archive ``<path>/<model_name>.tar.gz``
                                    (cryoCARE 0.3.0 format, loadable by cryoCARE)
``cryoCARE_predict.py``             ``<output>/<file name of the even tomogram>``
==================================  ==============================================

Every failure ends with one line on stderr and a non-zero exit status
(2 for bad input or an existing output, 1 for a system error). Relative
paths in a config are resolved from the current folder, as cryoCARE does.
The same configs are accepted by ``cryocare extract|train|predict --config``.

Examples
--------
The functions run the configs from Python too (training takes minutes, so
this is shown, not run)::

    from cryocare import compat, legacy_cli
    legacy_cli.extract_train_data(compat.read_config("train_data_config.json"))
    archive = legacy_cli.train(compat.read_config("train_config.json"))
    outputs = legacy_cli.predict(compat.read_config("predict_config.json"))
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .compat import PAIRS_FILE, PredictConfig, TrainConfig, TrainDataConfig, read_config
from .errors import CryocareError, InputError, OutputExistsError

__all__ = [
    "extract_train_data", "train", "predict", "main_extract", "main_train", "main_predict",
    "run_config", "dispatch",
]

log = logging.getLogger(__name__)


def _halves(even: Sequence[str], odd: Sequence[str]) -> list[tuple[Path, Path]]:
    """Pair halves: explicit file lists by position (as written), folders and globs by name."""
    from .pairing import find_halves

    if len(even) == len(odd) and all(Path(p).is_file() for p in (*even, *odd)):
        return [(Path(e), Path(o)) for e, o in zip(even, odd, strict=True)]
    return find_halves(even, odd)


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
    from .pairs import sample_pairs

    pairs_found = _halves(config.even, config.odd)
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


def train(config: TrainConfig, *, progress: bool = False) -> Path:
    """Train as ``cryoCARE_train.py`` does; returns ``<path>/<model_name>.tar.gz``."""
    from .compat import write_archive
    from .model import CAREModel
    from .pairs import PairSet

    data = Path(config.train_data)
    pair_file = data / PAIRS_FILE if data.is_dir() else data
    if not pair_file.is_file():
        hint = (" (it holds cryoCARE 0.3.0's train_data.npz: run this package's "
                "cryoCARE_extract_train_data.py on the same config first)"
                if (data / "train_data.npz").is_file() else "")
        raise InputError(f"config key 'train_data': {data}: no {PAIRS_FILE} found{hint}")
    if config.gpu_id:
        log.info("gpu_id %s is not acted on; select devices with CUDA_VISIBLE_DEVICES",
                 list(config.gpu_id))
    archive = Path(config.path) / f"{config.model_name}.tar.gz"
    if archive.exists() and not config.overwrite:
        raise OutputExistsError(
            f"{archive}: model archive exists already (set \"overwrite\": true in the config)"
        )
    care_config = config.care_config()
    pairs = PairSet.load(pair_file)
    model = CAREModel.train(pairs, care_config, progress=progress)
    Path(config.path).mkdir(parents=True, exist_ok=True)
    return write_archive(model, archive, model_name=config.model_name,
                         overwrite=config.overwrite)


def _load_any_model(path: Path):
    """A cryoCARE archive or folder, or a cryocare model folder (``CAREModel.save``)."""
    import json

    from .compat import load_archive
    from .model import CAREModel

    meta = path / "config.json"
    if path.is_dir() and meta.is_file():
        try:
            is_ours = json.loads(meta.read_text()).get("format") == "cryocare-model"
        except (OSError, ValueError, AttributeError):
            is_ours = False
        if is_ours:
            return CAREModel.load(path)
    return load_archive(path)


def predict(config: PredictConfig, *, progress: bool = False) -> list[Path]:
    """Denoise as ``cryoCARE_predict.py`` does; returns the files written.

    Each output is ``<output>/<file name of the even tomogram>``. ``n_tiles``
    bounds the tile size (cores of at most ceil(size / n) voxels per axis);
    tiles overlap by the receptive field, so the result does not depend on it.
    """
    from . import io
    from .model import DEFAULT_TILE

    pairs_found = _halves(config.even, config.odd)
    names = [even.name for even, _ in pairs_found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(f"config key 'even': several even tomograms are named "
                         f"{', '.join(clashes)}; their outputs would overwrite each other")
    model = _load_any_model(Path(config.path))
    if config.gpu_id:
        log.info("gpu_id %s is not acted on; select devices with CUDA_VISIBLE_DEVICES",
                 list(config.gpu_id))
    output = Path(config.output)
    _make_folder(output, overwrite=config.overwrite)
    written = []
    for even_path, odd_path in pairs_found:
        even, odd, info = io.read_pair(even_path, odd_path, mmap=True)
        tiles = tuple(min(DEFAULT_TILE, math.ceil(n / t))
                      for n, t in zip(even.shape, config.n_tiles, strict=True))
        denoised = model.denoise(even, odd, tile_shape=tiles, progress=progress)
        target = output / even_path.name
        written.append(io.write(target, denoised, like=info, overwrite=config.overwrite,
                                label=f"CARE denoised from {even_path.name}"))
        log.info("wrote %s", target)
    return written


_KIND = {"extract": TrainDataConfig, "train": TrainConfig, "predict": PredictConfig}
_SCRIPT = {"extract": "cryoCARE_extract_train_data.py", "train": "cryoCARE_train.py",
           "predict": "cryoCARE_predict.py"}


def run_config(kind: str, path: str | os.PathLike, *, progress: bool = False) -> list[Path]:
    """Read the cryoCARE config at ``path``, check it is a ``kind`` config, run it."""
    config = read_config(path)
    if not isinstance(config, _KIND[kind]):
        expected = {"extract": "train_data", "train": "train", "predict": "predict"}[kind]
        raise InputError(f"{path}: expected a cryoCARE {expected} config for "
                         f"{_SCRIPT[kind]}, got a {type(config).__name__}")
    if kind == "extract":
        return [extract_train_data(config)]
    if kind == "train":
        return [train(config, progress=progress)]
    return predict(config, progress=progress)


def _main(kind: str, argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog=_SCRIPT[kind],
        description=f"cryocare {__version__}: drop-in for cryoCARE 0.3.0's {_SCRIPT[kind]}.",
    )
    parser.add_argument("--conf", required=True, type=Path, help="cryoCARE JSON config")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # an application, not the library
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        for path in run_config(kind, args.conf, progress=not args.quiet):
            print(path)
    except CryocareError as error:
        print(f"{_SCRIPT[kind]}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{_SCRIPT[kind]}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_SCRIPT[kind]}: interrupted", file=sys.stderr)
        return 130
    return 0


def main_extract(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_extract_train_data.py --conf train_data_config.json``."""
    return _main("extract", argv)


def main_train(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_train.py --conf train_config.json``."""
    return _main("train", argv)


def main_predict(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_predict.py --conf predict_config.json``."""
    return _main("predict", argv)



def dispatch(argv: Sequence[str]) -> int | None:
    """Run ``cryocare`` command lines that belong to the compatibility layer, else None.

    ``cryocare extract|train|predict --config FILE.json`` with a cryoCARE
    config runs it like the matching cryoCARE script, and
    ``cryocare denoise|train|predict --star tomograms.star ...`` goes to
    :func:`cryocare.relion.main`. Anything else returns None (the normal
    command line handles it).
    """
    import json

    from .compat import is_cryocare_config

    argv = list(argv)
    if not argv or argv[0] not in ("extract", "train", "predict", "denoise"):
        return None
    if any(a == "--star" or a.startswith("--star=") for a in argv[1:]):
        from .relion import main as relion_main

        return relion_main(argv)
    if argv[0] == "denoise" or "--config" not in argv[1:-1]:
        return None
    path = Path(argv[argv.index("--config") + 1])
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # the normal command line reports it
    if not is_cryocare_config(values):
        return None
    kind = argv[0]
    rest = [a for i, a in enumerate(argv[1:], 1)
            if a != "--config" and argv[i - 1] != "--config"]
    extra = [a for a in rest if a not in ("-q", "--quiet", "-v", "--verbose")]
    if extra:
        print(f"cryocare {kind}: error: {path} is a cryoCARE config; other options "
              f"({' '.join(extra)}) cannot be combined with it", file=sys.stderr)
        return 2
    quiet = "-q" in rest or "--quiet" in rest
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        for written in run_config(kind, path, progress=not quiet):
            print(written)
    except CryocareError as error:
        print(f"cryocare {kind}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cryocare {kind}: error: {error}", file=sys.stderr)
        return 1
    return 0
