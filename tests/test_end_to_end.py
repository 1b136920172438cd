"""The library's layering, and the smallest whole run.

That CARE trained from random weights beats the raw average, the median and the
Gaussian (PSNR, SSIM, Otsu Dice) is tested once, through ``evaluate``, and that the
recipe's fine-tuned model beats every baseline, NAD included: both in
tests/test_evaluate.py.
"""

import subprocess
import sys

import numpy as np

from cryocare.config import CareConfig
from cryocare.pairs import sample_pairs
from cryocare.simulate import simulate_tomogram
from cryocare.training import train

NUMPY_ONLY = ["cryocare", "cryocare.io", "cryocare.simulate", "cryocare.reconstruct",
              "cryocare.pairs", "cryocare.tiling", "cryocare.filters", "cryocare.segment",
              "cryocare.metrics", "cryocare.config", "cryocare.cli", "cryocare.recipe",
              "cryocare.relion", "cryocare.modelfiles", "cryocare.nets"]


def test_numpy_only_modules_do_not_import_tensorflow():
    # One fresh interpreter for all of them: an import hook records and refuses every
    # attempt to import a deep-learning package (even one guarded by try/except), naming
    # the module that made it, whatever the order of the imports.
    code = f"""
import importlib, sys
FORBIDDEN = ("tensorflow", "keras", "torch", "jax")
bad, current = [], None
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            bad.append(f"{{current}} imports {{name}}")
            raise ImportError(f"{{name}} refused")
sys.meta_path.insert(0, Refuse())
for current in {NUMPY_ONLY!r}:
    try:
        importlib.import_module(current)
    except ImportError:
        pass
print("; ".join(bad))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout


def test_denoised_output_is_finite_and_shaped(tmp_path):
    data = simulate_tomogram((16, 40, 36), seed=5)
    config = CareConfig(unet_n_depth=1, unet_n_first=2, train_epochs=1,
                        train_steps_per_epoch=2, train_batch_size=2)
    pairs = sample_pairs([data.even], [data.odd], patch_shape=8, n_patches=10, seed=0)
    out = train(pairs, config).denoise(data.even, data.odd)
    assert out.shape == data.even.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
