"""Run the reference implementation, cryoCARE 0.3.0, for benchmarks and comparisons.

cryoCARE 0.3.0 lives in its own virtual environment, made by
``benchmarks/setup_reference.sh`` (default ``.venv-cryocare-ref`` in the
repository; override with ``CRYOCARE_REFERENCE_VENV``). This module writes
cryoCARE's JSON configs and runs its three scripts from that environment's
``bin/`` as subprocesses, returning wall time and peak resident memory::

    from benchmarks import reference          # or: sys.path.insert(0, "benchmarks")
    if reference.available():
        data = reference.extract(["even.mrc"], ["odd.mrc"], "work/train_data")
        model = reference.train("work/train_data", "work/model", epochs=10)
        result = reference.predict(model.output, ["even.mrc"], ["odd.mrc"], "work/out")
        print(result.wall_time, result.peak_rss_mb, result.output)

Configs always carry ``"gpu_id": 0`` (cryoCARE fails without a GPU id list
when no GPU is present); ``CUDA_VISIBLE_DEVICES`` is left to the caller
(set it to ``""`` for CPU runs). ``python benchmarks/reference.py`` checks the
environment against the cryoCARE fixture in ``tests/data/cryocare-0.3.0``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-cryocare-ref"
SCRIPTS = ("cryoCARE_extract_train_data.py", "cryoCARE_train.py", "cryoCARE_predict.py")

__all__ = ["RunResult", "venv", "available", "run_script", "extract", "train", "predict"]


@dataclass(frozen=True)
class RunResult:
    """One run of a cryoCARE script."""

    script: str
    config: Path
    output: Path
    wall_time: float  # seconds
    peak_rss_mb: float  # peak resident memory of the process tree, MiB (sampled)
    returncode: int
    log: str


def venv() -> Path:
    """The reference environment's folder."""
    return Path(os.environ.get("CRYOCARE_REFERENCE_VENV", DEFAULT_VENV))


def available() -> bool:
    """True if cryoCARE 0.3.0's three scripts are installed in the reference environment."""
    return all((venv() / "bin" / name).is_file() for name in SCRIPTS)


def _tree_rss(process) -> int:
    import psutil

    total = 0
    try:
        procs = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_script(script: str, config: dict, config_path: str | os.PathLike, output: str | os.PathLike,
               *, cwd: str | os.PathLike | None = None, env: dict | None = None,
               interval: float = 0.05, check: bool = True) -> RunResult:
    """Write ``config`` to ``config_path`` and run ``script --conf config_path``.

    Peak memory is sampled every ``interval`` seconds with psutil over the
    process and its children.
    """
    import psutil

    if script not in SCRIPTS:
        raise ValueError(f"script: expected one of {SCRIPTS}, got {script!r}")
    if not available():
        raise RuntimeError(f"cryoCARE 0.3.0 not found in {venv()}; run "
                           f"benchmarks/setup_reference.sh")
    config_path = Path(config_path)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=4))
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    start = time.perf_counter()
    with open(config_path.with_suffix(".log"), "w+") as log:
        proc = psutil.Popen([str(venv() / "bin" / script), "--conf", str(config_path)],
                            cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(interval)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
    result = RunResult(script, config_path, Path(output), wall, peak / 2**20, proc.returncode,
                       text)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{text[-3000:]}")
    return result


def extract(even: Sequence[str], odd: Sequence[str], path: str | os.PathLike, *,
            patch_shape: int = 72, num_slices: int = 1200, split: float = 0.9,
            tilt_axis: str = "Y", n_normalization_samples: int = 500,
            **options) -> RunResult:
    """``cryoCARE_extract_train_data.py`` into the folder ``path``."""
    path = Path(path)
    config = {"even": [str(p) for p in even], "odd": [str(p) for p in odd],
              "patch_shape": [patch_shape] * 3, "num_slices": num_slices, "split": split,
              "tilt_axis": tilt_axis, "n_normalization_samples": n_normalization_samples,
              "path": str(path), "overwrite": True}
    return run_script(SCRIPTS[0], config, path.parent / f"{path.name}_config.json", path,
                      **options)


def train(train_data: str | os.PathLike, path: str | os.PathLike, *, model_name: str = "model",
          epochs: int = 100, steps_per_epoch: int = 200, batch_size: int = 16,
          unet_kern_size: int = 3, unet_n_depth: int = 3, unet_n_first: int = 16,
          learning_rate: float = 4e-4, **options) -> RunResult:
    """``cryoCARE_train.py``; ``output`` of the result is ``<path>/<model_name>.tar.gz``."""
    path = Path(path)
    config = {"train_data": str(train_data), "epochs": epochs,
              "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
              "unet_kern_size": unet_kern_size, "unet_n_depth": unet_n_depth,
              "unet_n_first": unet_n_first, "learning_rate": learning_rate,
              "model_name": model_name, "path": str(path), "gpu_id": 0}
    return run_script(SCRIPTS[1], config, path.parent / f"{path.name}_train_config.json",
                      path / f"{model_name}.tar.gz", **options)


def predict(model: str | os.PathLike, even: Sequence[str], odd: Sequence[str],
            output: str | os.PathLike, *, n_tiles: Sequence[int] = (1, 1, 1),
            **options) -> RunResult:
    """``cryoCARE_predict.py`` with the archive ``model``; outputs go to the folder ``output``."""
    output = Path(output)
    config = {"path": str(model), "even": [str(p) for p in even], "odd": [str(p) for p in odd],
              "n_tiles": list(n_tiles), "output": str(output), "overwrite": True, "gpu_id": 0}
    return run_script(SCRIPTS[2], config, output.parent / f"{output.name}_predict_config.json",
                      output, **options)


def _self_check() -> int:
    """Predict the fixture with cryoCARE 0.3.0 and compare with cryoCARE's stored output."""
    import tempfile

    import mrcfile
    import numpy as np

    if not available():
        print(f"cryoCARE 0.3.0 not found in {venv()}; run benchmarks/setup_reference.sh")
        return 1
    data = ROOT / "tests" / "data" / "cryocare-0.3.0"
    with tempfile.TemporaryDirectory() as tmp:
        result = predict(data / "model.tar.gz", [data / "even.mrc"], [data / "odd.mrc"],
                         Path(tmp) / "out", env={"CUDA_VISIBLE_DEVICES": ""})
        ours = mrcfile.read(result.output / "even.mrc")
    reference = mrcfile.read(data / "cryocare_output.mrc")
    r = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    diff = np.abs(ours - reference).max() / np.ptp(reference)
    print(f"cryoCARE 0.3.0 in {venv()}: fixture prediction r = {r:.9f}, "
          f"max |diff| / range = {diff:.2e}, wall {result.wall_time:.1f} s, "
          f"peak RSS {result.peak_rss_mb:.0f} MiB")
    return 0 if r >= 0.999 and diff <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(_self_check())
