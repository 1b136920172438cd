"""The notebook-style walk-through in examples/ runs from start to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

WALKTHROUGH = Path(__file__).resolve().parent.parent / "examples" / "walkthrough.py"


@pytest.mark.slow
def test_walkthrough_runs_and_writes_its_outputs(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "error::FutureWarning"}
    result = subprocess.run([sys.executable, str(WALKTHROUGH)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CARE: PSNR" in result.stdout
    out = tmp_path / "walkthrough_output"
    for name in ("even.mrc", "odd.mrc", "clean.mrc", "denoised.mrc", "walkthrough.png",
                 "restored.mrc", "walkthrough_wedge.png"):
        assert (out / name).is_file(), name
    # the restorer raises CARE's in-cone correlation with the wedge-free truth
    cone = {}
    for line in result.stdout.splitlines():
        if ": in-cone r " in line:
            name, rest = line.split(": in-cone r ")
            cone[name.strip()] = float(rest.split(",")[0])
    assert cone["CARE + restorer"] > cone["CARE"] + 0.1, cone
    assert (out / "model" / "config.json").is_file()
