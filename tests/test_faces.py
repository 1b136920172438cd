"""Every face of the command line takes the same path: same model, same output.

``cryocare denoise``, ``cryocare denoise --star`` and the three cryoCARE
scripts train the same network the same way (the recipe, explicit values
winning) and predict with the same engine; bad input fails before the
deep-learning backend loads.
"""

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryocare import io
from cryocare.cli import main
from cryocare.cli.scripts import main_extract, main_predict, main_train
from cryocare.simulate import simulate_tomogram

# What all three faces are told: a tiny network, a fixed number of steps, no time limit.
STEPS = {"epochs": 2, "steps": 3, "batch": 4, "depth": 1, "n_first": 4, "kernel": 3,
         "lr": 4e-4, "patch": 16, "n_patches": 24}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    data = simulate_tomogram((32, 48, 48), seed=5)
    io.write(folder / "TS_01_EVN.mrc", data.even, voxel_size=10.0)
    io.write(folder / "TS_01_ODD.mrc", data.odd, voxel_size=10.0)
    return folder


def _cli_training_options() -> list[str]:
    s = STEPS
    return ["--epochs", str(s["epochs"]), "--steps", str(s["steps"]),
            "--batch-size", str(s["batch"]), "--depth", str(s["depth"]),
            "--n-first", str(s["n_first"]), "--kernel-size", str(s["kernel"]),
            "--learning-rate", str(s["lr"]), "--patch-shape", str(s["patch"]),
            "--n-patches", str(s["n_patches"]), "--time-budget", "none", "--seed", "0",
            "--no-tta", "-q"]  # cryoCARE_predict.py predicts without flips, as cryoCARE


@pytest.mark.slow
def test_denoise_star_and_cryocare_scripts_train_and_predict_alike(pair, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    even, odd = pair / "TS_01_EVN.mrc", pair / "TS_01_ODD.mrc"

    # 1. cryocare denoise
    assert main(["denoise", "--even", str(even), "--odd", str(odd), "-o", "denoised.mrc",
                 "--save-model", "model_denoise", "--force-model",
                 *_cli_training_options()]) == 0

    # 2. cryocare denoise --star (a RELION 5 project with one tomogram)
    (tmp_path / "default_pipeline.star").write_text("data_pipeline_general\n")
    table = pd.DataFrame({"rlnTomoName": ["TS_01"],
                          "rlnTomoReconstructedTomogramHalf1": [str(even)],
                          "rlnTomoReconstructedTomogramHalf2": [str(odd)]})
    starfile.write({"global": table}, tmp_path / "tomograms.star")
    assert main(["denoise", "--star", "tomograms.star", "-o", "job", "--save-model",
                 "model_star", *_cli_training_options()]) == 0

    # 3. the cryoCARE scripts, configs as RELION writes them
    s = STEPS
    configs = {
        "extract": {"even": [str(even)], "odd": [str(odd)], "patch_shape": [s["patch"]] * 3,
                    "num_slices": s["n_patches"], "split": 0.9, "tilt_axis": "Y",
                    "path": "train_data", "overwrite": "True"},
        "train": {"train_data": "train_data", "epochs": s["epochs"],
                  "steps_per_epoch": s["steps"], "batch_size": s["batch"],
                  "unet_kern_size": s["kernel"], "unet_n_depth": s["depth"],
                  "unet_n_first": s["n_first"], "learning_rate": s["lr"],
                  "model_name": "model", "path": "cc", "overwrite": "True", "gpu_id": [0]},
        "predict": {"path": "cc/model.tar.gz", "even": [str(even)], "odd": [str(odd)],
                    "n_tiles": [1, 2, 2], "output": "cc_out", "overwrite": "True",
                    "gpu_id": [0]},
    }
    for kind, values in configs.items():
        (tmp_path / f"{kind}.json").write_text(json.dumps(values))
    assert main_extract(["--conf", "extract.json", "-q"]) == 0
    assert main_train(["--conf", "train.json", "-q"]) == 0
    assert main_predict(["--conf", "predict.json", "-q"]) == 0

    from cryocare.modelfiles import load_model

    models = [load_model(p) for p in ("model_denoise", "model_star", "cc/model.tar.gz")]
    keys = ("n_dim", "network", "unet_n_depth", "unet_n_first", "unet_kern_size",
            "train_epochs", "train_steps_per_epoch", "train_batch_size",
            "train_learning_rate")
    described = [{k: m.config.to_dict()[k] for k in keys} for m in models]
    assert described[0] == described[1] == described[2]
    assert models[0].config == models[1].config
    for a, b in zip(models[0].keras_model.get_weights(), models[2].keras_model.get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    outputs = [io.read(p) for p in ("denoised.mrc", "job/tomograms/rec_TS_01.mrc",
                                    "cc_out/TS_01_EVN.mrc")]
    scale = float(np.ptp(outputs[0]))
    for other in outputs[1:]:  # same weights; tiles and flips sum in another order
        np.testing.assert_allclose(other, outputs[0], rtol=0, atol=1e-4 * scale)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from cryocare.config import CareConfig
    from cryocare.model import CAREModel
    from cryocare.normalize import Normalization

    folder = tmp_path_factory.mktemp("model") / "model"
    CAREModel(CareConfig(unet_n_depth=1, unet_n_first=2),
              Normalization(0.0, 1.0)).save(folder)
    return folder


def test_a_text_file_named_mrc_fails_in_one_line_before_the_backend_loads(tiny_model, pair,
                                                                          tmp_path):
    bad = tmp_path / "TS_02_EVN.mrc"
    bad.write_text("this is not an MRC file\n" * 40)
    (tmp_path / "TS_02_ODD.mrc").write_bytes((pair / "TS_01_ODD.mrc").read_bytes())
    code = ("import sys; from cryocare.cli import main; "
            f"rc = main(['predict', '--model', {str(tiny_model)!r}, '--even', {str(bad)!r}, "
            f"'--odd', {str(tmp_path / 'TS_02_ODD.mrc')!r}, '-o', {str(tmp_path / 'o.mrc')!r}]); "
            "print(rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False", "False"]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "TS_02_EVN.mrc" in lines[0], done.stderr


def test_backend_start_up_lines_stay_off_stderr(tiny_model, pair, tmp_path):
    code = ("from cryocare.cli import main; "
            f"main(['predict', '--model', {str(tiny_model)!r}, '--even', "
            f"{str(pair / 'TS_01_EVN.mrc')!r}, '--odd', {str(pair / 'TS_01_ODD.mrc')!r}, "
            f"'-o', {str(tmp_path / 'o.mrc')!r}, '--force-model', '-q'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in __import__("os").environ.items()
                               if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert io.read_info(tmp_path / "o.mrc").shape == (32, 48, 48)


def test_backend_lines_stay_off_stderr_for_the_whole_run_on_an_avx2_cpu(pair, tmp_path):
    """Regression: with oneDNN on and capped to AVX2, TensorFlow logged during training (a
    failing bfloat16 probe, "oneDNN supports DT_INT32 only on platforms with AVX-512"),
    after the start-up lines had been captured."""
    code = ("from cryocare.cli import main; "
            f"main(['denoise', '--even', {str(pair / 'TS_01_EVN.mrc')!r}, '--odd', "
            f"{str(pair / 'TS_01_ODD.mrc')!r}, '-o', {str(tmp_path / 'o.mrc')!r}, "
            f"*{_cli_training_options()!r}])")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("WARNING cryocare") for line in lines), done.stderr
    assert io.read_info(tmp_path / "o.mrc").shape == (32, 48, 48)


def test_tiles_smaller_than_the_margin_are_refused_as_a_size(tiny_model, pair, tmp_path,
                                                              capsys):
    rc = main(["predict", "--model", str(tiny_model), "--even", str(pair / "TS_01_EVN.mrc"),
               "--odd", str(pair / "TS_01_ODD.mrc"), "-o", str(tmp_path / "o.mrc"),
               "--tiles", "1,2,2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--tiles" in err and "SIZE" in err and "n_tiles" in err
    assert not (tmp_path / "o.mrc").exists()


def test_predict_names_outputs_after_the_pair_and_reads_cryocare_archives(pair, tmp_path):
    from cryocare.modelfiles import load_model

    archive = Path(__file__).parent / "data" / "cryocare-0.3.0" / "model.tar.gz"
    assert main(["predict", "--model", str(archive), "--even", str(pair / "TS_01_EVN.mrc"),
                 "--odd", str(pair / "TS_01_ODD.mrc"), "-o", str(tmp_path / "out"),
                 "--tiles", "none", "--force-model", "-q"]) == 0
    written = tmp_path / "out" / "TS_01_denoised.mrc"
    even, odd, _ = io.read_pair(pair / "TS_01_EVN.mrc", pair / "TS_01_ODD.mrc")
    expected = load_model(archive).denoise(even, odd, tile_shape=None)
    np.testing.assert_allclose(io.read(written), expected, rtol=0,
                               atol=1e-5 * float(np.ptp(expected)))


def test_star_prediction_streams_each_tomogram_to_disk(tiny_model, tmp_path, monkeypatch):
    """Peak memory does not grow with the number of tomograms (NumPy allocations traced)."""
    from cryocare.modelfiles import load_model
    from cryocare.relion import predict_star

    monkeypatch.chdir(tmp_path)
    (tmp_path / "default_pipeline.star").write_text("data_pipeline_general\n")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(3):
        for half in ("half1", "half2"):
            io.write(f"TS_{index}_{half}.mrc",
                     rng.normal(size=(32, 96, 96)).astype(np.float32), voxel_size=10.0)
        rows.append({"rlnTomoName": f"TS_{index}",
                     "rlnTomoReconstructedTomogramHalf1": f"TS_{index}_half1.mrc",
                     "rlnTomoReconstructedTomogramHalf2": f"TS_{index}_half2.mrc"})
    model = load_model(tiny_model)
    peaks = []
    for count in (1, 3):
        starfile.write({"global": pd.DataFrame(rows[:count])}, f"t{count}.star")
        model.denoise(*(io.read(f"TS_0_{h}.mrc") for h in ("half1", "half2")),
                      tile_shape=(32, 48, 48))  # compile outside the measurement
        tracemalloc.start()
        predict_star(f"t{count}.star", model, f"job{count}", tile_shape=(32, 48, 48),
                     memory="64M")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    volume = 32 * 96 * 96 * 4
    # Holding the outputs would add two volumes; streaming adds (almost) nothing.
    assert peaks[1] - peaks[0] < volume / 2, peaks


@pytest.mark.parametrize("engine", ["auto", "openvino", "onnxruntime"])
def test_predict_with_an_exported_engine_equals_keras(engine, tiny_model, pair, tmp_path):
    from cryocare import runtime

    if engine not in runtime.available() and engine != "auto":
        pytest.skip(f"{engine} is not installed (pip install 'cryocare-ng[fast]')")
    args = ["predict", "--model", str(tiny_model), "--even", str(pair / "TS_01_EVN.mrc"),
            "--odd", str(pair / "TS_01_ODD.mrc"), "--tiles", "32,48,48", "--force-model", "-q"]
    assert main([*args, "-o", str(tmp_path / "keras.mrc")]) == 0
    assert main([*args, "-o", str(tmp_path / "other.mrc"), "--engine", engine]) == 0
    keras_out, other = io.read(tmp_path / "keras.mrc"), io.read(tmp_path / "other.mrc")
    np.testing.assert_allclose(other, keras_out, rtol=0, atol=1e-5 * float(keras_out.std()))


def test_training_can_start_from_a_cryocare_archive(pair):
    """--init takes every model format, a cryoCARE 0.3.0 archive too."""
    from cryocare.modelfiles import load_model
    from cryocare.pairs import sample_pairs
    from cryocare.training import train

    archive = Path(__file__).parent / "data" / "cryocare-0.3.0" / "model.tar.gz"
    start = load_model(archive)
    even, odd, _ = io.read_pair(pair / "TS_01_EVN.mrc", pair / "TS_01_ODD.mrc")
    pairs = sample_pairs([even], [odd], patch_shape=16, n_patches=12, seed=0)
    config = start.config.replace(train_epochs=1, train_steps_per_epoch=1, train_batch_size=2,
                                  train_learning_rate=1e-6, train_precision="float32")
    tuned = train(pairs, config, init=str(archive), budget=None)
    before, after = start.keras_model.get_weights(), tuned.keras_model.get_weights()
    # one step at a tiny rate from the archive's weights: close to them, not random ones
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)
