"""TensorFlow's oneDNN CPU kernels: on in the command line, advised (not forced) in the library."""

import os
import subprocess
import sys
import textwrap

import pytest


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environ.update(env, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=300)


def test_command_line_turns_onednn_on_when_the_user_did_not_choose():
    result = _python("""
        import os
        from cryocare.cli.app import load_backend
        from cryocare.backends import tensorflow_onednn
        load_backend()
        print(os.environ["TF_ENABLE_ONEDNN_OPTS"], tensorflow_onednn())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True"]


def test_the_users_choice_wins_and_the_library_warns_once():
    result = _python("""
        import logging, os
        logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
        from cryocare.cli.app import load_backend
        from cryocare.backends import tensorflow_onednn, warn_slow_cpu_kernels
        load_backend()
        print(os.environ["TF_ENABLE_ONEDNN_OPTS"], tensorflow_onednn(),
              warn_slow_cpu_kernels(), warn_slow_cpu_kernels())
    """, TF_ENABLE_ONEDNN_OPTS="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False", "True", "True"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("cryocare.backends")]
    assert len(warnings) == 1 and "TF_ENABLE_ONEDNN_OPTS=1" in warnings[0]


def test_importing_the_library_changes_no_environment():
    result = _python("""
        import os
        import cryocare, cryocare.model, cryocare.training
        print("TF_ENABLE_ONEDNN_OPTS" in os.environ)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


@pytest.mark.parametrize("value, expected", [("1", "False"), ("0", "True")])
def test_training_warns_only_without_onednn(value, expected):
    result = _python("""
        import logging
        import numpy as np
        from cryocare import backends
        from cryocare.config import CareConfig
        from cryocare.normalize import Normalization
        from cryocare.pairs import PairSet
        from cryocare.training import train
        x = np.random.default_rng(0).normal(size=(2, 2, 8, 8, 8)).astype("float32")
        pairs = PairSet(x_train=x[0], y_train=x[1], x_val=x[0], y_val=x[1],
                        normalization=Normalization(0.0, 1.0), patch_shape=(8, 8, 8),
                        tilt_axis="Y")
        config = CareConfig(unet_n_depth=1, unet_n_first=2, train_batch_size=2, train_epochs=1,
                            train_steps_per_epoch=1, train_precision="float32")
        train(pairs, config, init=None, progress=False)
        print(backends.warn_slow_cpu_kernels.cache_info().currsize == 1
              and backends.warn_slow_cpu_kernels())
    """, TF_ENABLE_ONEDNN_OPTS=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == expected


@pytest.mark.parametrize("value", ["0", "1"])
def test_passes_are_capped_only_where_eigen_computes(value):
    result = _python("""
        import keras  # noqa: F401 - TensorFlow imported, its oneDNN switch read
        from cryocare.config import CareConfig
        from cryocare.model import CAREModel
        from cryocare.normalize import Normalization
        from cryocare.predict import EIGEN_PASS_VOXELS, MAX_PASS_VOXELS
        model = CAREModel(CareConfig(unet_n_depth=1, unet_n_first=2), Normalization(0.0, 1.0))
        caps = {EIGEN_PASS_VOXELS: "eigen", MAX_PASS_VOXELS: "any"}
        print(caps[model._predict_options()["max_pass_voxels"]],
              caps[model._predict_options(engine="openvino")["max_pass_voxels"]])
    """, TF_ENABLE_ONEDNN_OPTS=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == (["eigen", "any"] if value == "0" else ["any", "any"])
