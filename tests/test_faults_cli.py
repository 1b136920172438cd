"""Real processes killed mid-run: nothing partial is kept, the next run cleans up and resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cryocare import io
from cryocare.config import CareConfig
from cryocare.model import CAREModel
from cryocare.normalize import Normalization
from cryocare.pairs import sample_pairs
from cryocare.simulate import simulate_tomogram

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryocare.cli", *args]


def _wait_for(predicate, process, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, "the process ended before it was killed"
        assert time.monotonic() < deadline, "timed out waiting for the process"
        time.sleep(0.05)


def test_a_killed_predict_leaves_no_output_and_the_next_run_removes_its_temporary(tmp_path):
    model = tmp_path / "model"
    CAREModel(CareConfig(unet_n_depth=1, unet_n_first=2), Normalization(0.0, 1.0)).save(model)
    rng = np.random.default_rng(0)
    for half in ("EVN", "ODD"):
        io.write(tmp_path / f"t_{half}.mrc",
                 rng.normal(size=(96, 128, 128)).astype(np.float32), voxel_size=10.0)
    args = ["predict", "--model", str(model), "--even", str(tmp_path / "t_EVN.mrc"), "--odd",
            str(tmp_path / "t_ODD.mrc"), "-o", str(tmp_path / "out.mrc"), "--tiles", "32,64,64",
            "-q"]
    process = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    def temporaries():
        return [p for p in tmp_path.iterdir() if p.name.startswith(".out.mrc.")]

    _wait_for(lambda: temporaries(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "out.mrc").exists()  # never a partial output under the real name
    assert temporaries()  # what a killed writer leaves ...
    done = subprocess.run(_cli(*args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not temporaries()  # ... the next run on the same output removes
    assert io.read_info(tmp_path / "out.mrc").shape == (96, 128, 128)


def test_a_killed_train_resumes_from_its_checkpoint_to_the_same_steps(tmp_path):
    data = simulate_tomogram((32, 64, 64), seed=0)
    pairs = sample_pairs([data.even], [data.odd], patch_shape=16, n_patches=40,
                         seed=0).save(tmp_path / "pairs.npz")
    checkpoints = tmp_path / "checkpoints"
    args = ["train", str(pairs), "-o", str(tmp_path / "model"), "--epochs", "12", "--steps",
            "3", "--batch-size", "4", "--n-first", "4", "--time-budget", "none", "--init",
            "none", "--checkpoint-dir", str(checkpoints), "-q"]
    process = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = checkpoints / "checkpoint.json"

    def epochs_done() -> int:
        try:
            return json.loads(state.read_text())["state"]["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    _wait_for(lambda: epochs_done() >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = epochs_done()
    assert 2 <= killed_at < 12 and not (tmp_path / "model").exists()
    done = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert len(history["loss"]) == 12  # the epochs before the kill, then the rest
    assert epochs_done() == 12
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".tmp-")]
    assert Path(tmp_path / "model" / "weights.weights.h5").is_file()
    assert os.path.getsize(tmp_path / "model" / "weights.weights.h5") > 0
