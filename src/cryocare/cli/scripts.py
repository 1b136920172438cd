"""Drop-in replacements for cryoCARE 0.3.0's three scripts, as thin faces.

``cryoCARE_extract_train_data.py``, ``cryoCARE_train.py`` and
``cryoCARE_predict.py`` take ``--conf FILE.json`` and run the jobs of
:mod:`cryocare.configjobs` through the same shell as ``cryocare`` (one line
on stderr and a non-zero exit status on failure; the backend's start-up
lines only with ``-v``). ``cryocare extract|train|predict --config FILE``
with a cryoCARE config runs the same, and also takes cryocare's prediction
options (``--memory``, ``--precision``, ``--tta``, ...).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .app import configure_logging, load_backend, run
from .options import HelpFormatter, predict_options

__all__ = ["main_extract", "main_train", "main_predict", "run_config_args", "SCRIPTS"]

#: Script name of each job.
SCRIPTS = {"extract": "cryoCARE_extract_train_data.py", "train": "cryoCARE_train.py",
           "predict": "cryoCARE_predict.py"}


def _device(config) -> str | None:
    gpu_id = getattr(config, "gpu_id", ())
    return f"gpu:{gpu_id[0]}" if gpu_id else None


def _check(kind: str, path: Path):
    """Read the config (no backend yet) and check that its inputs exist."""
    from ..configjobs import read_job_config
    from ..halves import find_halves
    from ..modelfiles import inspect_model
    from .checks import check_pair

    config = read_job_config(kind, path, used_by=SCRIPTS[kind])
    if kind in ("extract", "predict"):
        for even, odd in find_halves(config.even, config.odd):
            check_pair(even, odd)
    if kind == "predict":
        inspect_model(config.path)
    return config


def run_config_args(kind: str, args: argparse.Namespace) -> int:
    """Run a cryoCARE config given to ``cryocare <kind> --config``; prints the files written."""
    from .. import configjobs

    config = _check(kind, args.config)
    progress = not args.quiet
    if kind == "extract":
        print(configjobs.extract_train_data(config, seed=getattr(args, "seed", 0) or 0))
        return 0
    load_backend(device=getattr(args, "device", None) or _device(config), strict=False)
    if kind == "train":
        print(configjobs.train(config, progress=progress, init=getattr(args, "init", "pretrained")))
        return 0
    options = config.options(predict_options(args).replace(device=None))
    for path in configjobs.predict(config, options, progress=progress):
        print(path)
    return 0


def _main(kind: str, argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog=SCRIPTS[kind], formatter_class=HelpFormatter,
        description=f"cryocare {__version__}: drop-in for cryoCARE 0.3.0's {SCRIPTS[kind]}.",
    )
    parser.add_argument("--conf", dest="config", required=True, type=Path,
                        help="cryoCARE JSON config")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug log, including the deep-learning backend's start-up lines")
    args = parser.parse_args(argv)
    args.tta = None
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    return run(SCRIPTS[kind], lambda: run_config_args(kind, args))


def main_extract(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_extract_train_data.py --conf train_data_config.json``."""
    return _main("extract", argv)


def main_train(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_train.py --conf train_config.json``."""
    return _main("train", argv)


def main_predict(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_predict.py --conf predict_config.json``."""
    return _main("predict", argv)
