"""Deprecated home of the cryoCARE 0.3.0 scripts, kept for one release.

The scripts' entry points are in :mod:`cryocare.cli.scripts`; the jobs they
run (from cryoCARE configs, as library functions) in :mod:`cryocare.configjobs`.
"""

from .cli.scripts import main_extract, main_predict, main_train
from .configjobs import extract_train_data, predict, run_config, train

__all__ = ["extract_train_data", "train", "predict", "run_config", "main_extract", "main_train",
           "main_predict"]
