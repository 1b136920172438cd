"""TensorFlow's oneDNN CPU kernels: on in the command line, advised (not forced) in the library."""

import json
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


# One child per setting of the switch (the user's choice: none, off, on); the tests
# below read what it printed. Each child starts as the command line does, trains a tiny
# network, asks whether the library warns, and reads the plan's cap on pass sizes.
PROBE = """
    import json, logging, os
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    from cryocare.cli.app import load_backend
    load_backend()
    import numpy as np
    from cryocare import backends
    from cryocare.config import CareConfig
    from cryocare.model import CAREModel
    from cryocare.normalize import Normalization
    from cryocare.pairs import PairSet
    from cryocare.predict import Device
    from cryocare.training import train
    x = np.random.default_rng(0).normal(size=(2, 2, 8, 8, 8)).astype("float32")
    pairs = PairSet(x_train=x[0], y_train=x[1], x_val=x[0], y_val=x[1],
                    normalization=Normalization(0.0, 1.0), patch_shape=(8, 8, 8),
                    tilt_axis="Y")
    config = CareConfig(unet_n_depth=1, unet_n_first=2, train_batch_size=2, train_epochs=1,
                        train_steps_per_epoch=1, train_precision="float32")
    model = train(pairs, config, init=None, progress=False)
    asked_in_training = backends.warn_slow_cpu_kernels.cache_info().currsize == 1
    caps = {True: "eigen", False: "any"}
    print(json.dumps({
        "switch": os.environ["TF_ENABLE_ONEDNN_OPTS"], "onednn": backends.tensorflow_onednn(),
        "asked_in_training": asked_in_training,
        "warns": [backends.warn_slow_cpu_kernels(), backends.warn_slow_cpu_kernels()],
        "cap": caps[Device.current().eigen],
        "cap_openvino": caps[Device.current(engine="openvino").eigen]}))
"""


@pytest.fixture(scope="module")
def probes():
    results = {}
    for choice in (None, "0", "1"):
        result = _python(PROBE, **({} if choice is None else {"TF_ENABLE_ONEDNN_OPTS": choice}))
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines()
                    if line.startswith("cryocare.backends")]
        results[choice] = {**json.loads(result.stdout.splitlines()[-1]), "warnings": warnings}
    return results


def test_command_line_turns_onednn_on_when_the_user_did_not_choose(probes):
    assert probes[None]["switch"] == "1" and probes[None]["onednn"] is True
    assert probes[None]["warnings"] == []


def test_the_users_choice_wins_and_the_library_warns_once(probes):
    off = probes["0"]
    assert off["switch"] == "0" and off["onednn"] is False and off["warns"] == [True, True]
    assert len(off["warnings"]) == 1 and "TF_ENABLE_ONEDNN_OPTS=1" in off["warnings"][0]
    assert probes["1"]["switch"] == "1" and probes["1"]["onednn"] is True


def test_importing_the_library_changes_no_environment():
    result = _python("""
        import os
        import cryocare, cryocare.model, cryocare.training
        print("TF_ENABLE_ONEDNN_OPTS" in os.environ)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


@pytest.mark.parametrize("choice, warned", [("1", False), ("0", True)])
def test_training_warns_only_without_onednn(probes, choice, warned):
    assert probes[choice]["asked_in_training"]  # training asked (the answer is cached) ...
    assert probes[choice]["warns"][0] is warned  # ... and warned only with oneDNN off
    assert bool(probes[choice]["warnings"]) is warned


@pytest.mark.parametrize("choice", ["0", "1"])
def test_passes_are_capped_only_where_eigen_computes(probes, choice):
    expected = ("eigen", "any") if choice == "0" else ("any", "any")
    assert (probes[choice]["cap"], probes[choice]["cap_openvino"]) == expected
