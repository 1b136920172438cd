"""Keras backends: checks, selection, and one model predicting alike on every backend.

Keras picks its backend when it is first imported, so everything that needs
another backend than this process' runs in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from cryocare import backends
from cryocare.config import CareConfig
from cryocare.errors import InputError
from cryocare.model import CAREModel
from cryocare.pairs import sample_pairs
from cryocare.training import train

pytestmark = pytest.mark.backend  # run on every Keras backend (make test)

HERE = keras.backend.backend()
OTHERS = [name for name in backends.BACKENDS if name != HERE]


def _run(code, timeout=300):
    """Run Python code in a fresh process without KERAS_BACKEND (Keras' default applies)."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_backend_is_installed_for_the_tests():
    # CI installs the torch and jax extras; a missing one would hide the tests below.
    assert backends.available() == list(backends.BACKENDS)


def test_the_running_backend_passes_the_check():
    assert backends.current() == HERE
    assert backends.check(HERE) == HERE


def test_unknown_backend_is_named():
    with pytest.raises(InputError, match="'theano'; expected one of tensorflow, torch, jax"):
        backends.check("theano")
    with pytest.raises(InputError, match="'theano'"):
        CareConfig(backend="theano")


def test_a_backend_that_is_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"'jax' is not installed \(pip install cryocare-ng"):
        backends.check("jax")
    with pytest.raises(InputError, match="not installed"):
        backends.select("jax")


@pytest.mark.parametrize("other", OTHERS)
def test_another_backend_than_the_running_one_is_refused(other, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    with pytest.raises(InputError, match=f"runs on the '{HERE}' backend, not '{other}'.*"
                                         f"KERAS_BACKEND={other}"):
        backends.select(other)  # Keras is imported already: no silent switch
    assert "KERAS_BACKEND" not in os.environ


def test_before_keras_is_imported_the_environment_decides(monkeypatch):
    # Simulate a process that has not imported Keras yet.
    monkeypatch.delitem(sys.modules, "keras")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backends.current() == "jax"
    with pytest.raises(InputError, match="is set up for the 'jax' backend, not 'torch'"):
        backends.check("torch")


def _tiny_pairs():
    rng = np.random.default_rng(5)
    even, odd = rng.normal(size=(2, 32, 40, 32)).astype(np.float32)
    return sample_pairs([even], [odd], patch_shape=16, n_patches=24, seed=0)


def test_a_model_trained_here_predicts_the_same_on_every_other_backend(tmp_path):
    pairs = _tiny_pairs()
    config = CareConfig(unet_n_depth=2, unet_n_first=4, train_epochs=1,
                        train_steps_per_epoch=3, train_batch_size=4, seed=1)
    folders = {
        "unet": train(pairs, config).save(tmp_path / "unet"),
        # an untrained RED-Net: transposed convolutions must convert between backends too
        "rednet": CAREModel(config.replace(network="rednet", rednet_n_layers=3,
                                           rednet_n_filters=4), pairs.normalization
                            ).save(tmp_path / "rednet"),
    }
    x = np.random.default_rng(2).normal(size=(2, 16, 24, 20, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = {name: keras.ops.convert_to_numpy(CAREModel.load(path).keras_model(x))
                for name, path in folders.items()}
    for other in OTHERS:
        # backends.select sets KERAS_BACKEND before Keras is imported (as --backend does)
        _run(f"""
            import json, sys
            from cryocare import backends
            assert "keras" not in sys.modules
            backends.select({other!r})
            import keras, numpy as np
            assert keras.backend.backend() == {other!r}
            from cryocare.model import CAREModel
            x = np.load({str(tmp_path / "x.npy")!r})
            for name, path in {json.dumps({k: str(v) for k, v in folders.items()})}.items():
                y = keras.ops.convert_to_numpy(CAREModel.load(path).keras_model(x))
                np.save({str(tmp_path)!r} + f"/{{name}}_{other}.npy", y)
        """)
        for name in folders:
            got = np.load(tmp_path / f"{name}_{other}.npy")
            # Normalised data (unit variance); different convolution kernels sum in a
            # different order: float32 rounding, far below the 1e-4 the issue allows.
            assert np.abs(got - expected[name]).max() <= 1e-4, (name, other)
