"""The command line, end to end on tiny simulated data."""

import json

import numpy as np
import pytest

from cryocare import io
from cryocare.cli import main


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    assert main(["simulate", str(folder), "--shape", "32,64,64", "--seed", "3", "-q"]) == 0
    return folder


@pytest.fixture(scope="module")
def trained_model(simulated, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    pairs = work / "pairs.npz"
    assert main(["extract", "--even", str(simulated / "even.mrc"), "--odd",
                 str(simulated / "odd.mrc"), "--output", str(pairs), "--patch-shape", "16",
                 "--n-patches", "60", "-q"]) == 0
    model = work / "model"
    assert main(["train", str(pairs), "--output", str(model), "--epochs", "1", "--steps", "3",
                 "--batch-size", "4", "--n-first", "4", "--depth", "2", "-q"]) == 0
    return model


def test_simulate_writes_the_four_volumes(simulated):
    for name in ("even", "odd", "clean", "mask"):
        info = io.read_info(simulated / f"{name}.mrc")
        assert info.shape == (32, 64, 64)
        assert info.voxel_size == (10.0, 10.0, 10.0)


def test_predict_keeps_odd_shapes_voxel_size_and_fills_every_slice(trained_model, tmp_path):
    # The acceptance case of the first issue: 97x130x131, no all-zero slice.
    rng = np.random.default_rng(0)
    even_path, odd_path = tmp_path / "t_even.mrc", tmp_path / "t_odd.mrc"
    for path in (even_path, odd_path):
        io.write(path, rng.normal(size=(97, 130, 131)).astype(np.float32) + 5,
                 voxel_size=(13.5, 13.5, 13.5))
    out = tmp_path / "denoised.mrc"
    assert main(["predict", "--model", str(trained_model), "--even", str(even_path),
                 "--odd", str(odd_path), "--output", str(out), "-q"]) == 0
    info = io.read_info(out)
    assert info.shape == (97, 130, 131)
    assert info.voxel_size == (13.5, 13.5, 13.5)
    result = io.read(out)
    for axis in range(3):
        assert (np.abs(result).max(axis=tuple(a for a in range(3) if a != axis)) > 0).all()


def test_predict_several_pairs_into_a_folder(trained_model, simulated, tmp_path):
    argv = ["predict", "--model", str(trained_model), "--output", str(tmp_path / "out"),
            "--tiles", "48,48,48", "-q", "--even"]
    for stem in ("a", "b"):
        for half in ("even", "odd"):
            (tmp_path / f"{stem}_{half}.mrc").write_bytes((simulated / f"{half}.mrc").read_bytes())
    argv += [str(tmp_path / "a_even.mrc"), str(tmp_path / "b_even.mrc"), "--odd",
             str(tmp_path / "a_odd.mrc"), str(tmp_path / "b_odd.mrc")]
    assert main(argv) == 0
    a = io.read(tmp_path / "out" / "a_denoised.mrc")
    b = io.read(tmp_path / "out" / "b_denoised.mrc")
    # same input, model and tiling: equal up to float32 rounding of oneDNN reductions
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.ptp(a))


def test_outputs_are_never_replaced_without_overwrite(trained_model, simulated, tmp_path,
                                                      capsys):
    out = tmp_path / "d.mrc"
    args = ["predict", "--model", str(trained_model), "--even", str(simulated / "even.mrc"),
            "--odd", str(simulated / "odd.mrc"), "--output", str(out), "-q"]
    assert main(args) == 0
    before = out.read_bytes()
    assert main(args) == 2
    assert "exists already" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_segment_reports_dice_against_a_reference(simulated, tmp_path, capsys):
    out = tmp_path / "mask.mrc"
    assert main(["segment", str(simulated / "clean.mrc"), "--output", str(out),
                 "--reference", str(simulated / "mask.mrc"), "-q"]) == 0
    assert "Dice" in capsys.readouterr().out
    mask = io.read(out)
    assert set(np.unique(mask)) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["segment", "missing.mrc", "--output", "x.mrc"], "missing.mrc"),
        (["predict", "--model", "nowhere", "--even", "a.mrc", "--odd", "b.mrc", "--output",
          "c.mrc"], "nowhere"),
        (["train", "nothing.npz", "--output", "m"], "nothing.npz"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_config_key_is_named(simulated, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"unet_depth": 3}')
    rc = main(["denoise", "--even", str(simulated / "even.mrc"), "--odd",
               str(simulated / "odd.mrc"), "--output", str(tmp_path / "d.mrc"),
               "--config", str(config), "-q"])
    assert rc == 2
    assert "'unet_depth'" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    for command in ("simulate", "extract", "train", "predict", "denoise", "segment", "demo"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
    assert "usage: cryocare" in capsys.readouterr().out


def test_predict_pairs_a_folder_and_a_glob_by_name(trained_model, simulated, tmp_path):
    # The halves come as a glob and a folder, listed in different orders; pairing is by name.
    (tmp_path / "in").mkdir()
    for stem, scale in (("TS_2", 2.0), ("TS_1", 1.0)):
        for half in ("EVN", "ODD"):
            data = io.read(simulated / f"{half.lower().replace('evn', 'even')}.mrc")
            io.write(tmp_path / "in" / f"{stem}_{half}.mrc", data[:, :32, :40] * scale,
                     voxel_size=10.0)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(trained_model),
                 "--even", str(tmp_path / "in" / "TS_*_EVN.mrc"),
                 "--odd", str(tmp_path / "in" / "TS_2_ODD.mrc"),
                 str(tmp_path / "in" / "TS_1_ODD.mrc"),
                 "--output", str(out), "--memory", "1G", "--normalize", "training", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["TS_1_denoised.mrc",
                                                     "TS_2_denoised.mrc"]
    one = io.read(out / "TS_1_denoised.mrc")
    two = io.read(out / "TS_2_denoised.mrc")
    assert one.shape == two.shape == (32, 32, 40)
    assert np.ptp(two) > 1.5 * np.ptp(one)  # TS_2 (twice the contrast) really came from TS_2


def test_predict_on_a_dask_scheduler_equals_single_process(trained_model, simulated, tmp_path):
    from cryocare.distributed import cluster_client

    single, spread = tmp_path / "single.mrc", tmp_path / "spread.mrc"
    common = ["predict", "--model", str(trained_model), "--even", str(simulated / "even.mrc"),
              "--odd", str(simulated / "odd.mrc"), "--force-model", "-q"]
    assert main([*common, "--output", str(single)]) == 0
    # A scheduler address, as for a SLURM cluster; the workers are threads of this test.
    with cluster_client(n_workers=2, processes=False) as client:
        assert main([*common, "--output", str(spread), "--scheduler",
                     client.scheduler.address, "--chunk", "8"]) == 0
    a, b = io.read(single), io.read(spread)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.ptp(a))  # float32 rounding


def test_files_without_half_markers_are_refused(trained_model, tmp_path, capsys):
    for name in ("x.mrc", "y.mrc", "z.mrc"):
        io.write(tmp_path / name, np.zeros((8, 8, 8)))
    assert main(["predict", "--model", str(trained_model), "--even", str(tmp_path / "x.mrc"),
                 str(tmp_path / "y.mrc"), "--odd", str(tmp_path / "z.mrc"),
                 "--output", str(tmp_path / "o"), "-q"]) == 2
    assert "cannot tell the half" in capsys.readouterr().err


def test_train_routes_the_diffusion_network_through_stagewise_training(trained_model, tmp_path,
                                                                     monkeypatch):
    from cryocare.training import loop

    calls = []
    original = loop.train_greedy

    def recording(model, *args, **kwargs):
        calls.append(model.config.network)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(loop, "train_greedy", recording)
    pairs = trained_model.parent / "pairs.npz"
    config = tmp_path / "diffusion.json"
    config.write_text('{"diffusion_stages": 2, "diffusion_filters": 2, "train_batch_size": 4}')
    out = tmp_path / "diffusion_model"
    assert main(["train", str(pairs), "--output", str(out), "--network", "diffusion",
                 "--config", str(config), "--epochs", "1", "--steps", "2", "--augment",
                 "-q"]) == 0
    assert calls == ["diffusion"]
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["network"] == "diffusion" and saved["train_augment"] is True


def test_denoise_trains_with_the_recipe_and_its_overrides(simulated, tmp_path):
    from cryocare.model import CAREModel
    from cryocare.recipe import DEFAULT_RECIPE

    rc = main(["denoise", "--even", str(simulated / "even.mrc"), "--odd",
               str(simulated / "odd.mrc"), "--output", str(tmp_path / "d.mrc"),
               "--save-model", str(tmp_path / "model"), "--time-budget", "60s", "--epochs", "2",
               "--steps", "3", "--batch-size", "4", "--n-first", "4", "--patch-shape", "16",
               "--n-patches", "40", "--no-tta", "--force-model", "-q"])
    assert rc == 0
    model = CAREModel.load(tmp_path / "model")
    # The recipe's schedule and precision, the command line's sizes and step counts.
    assert model.config.train_schedule == DEFAULT_RECIPE.config.train_schedule
    # "auto" is resolved on the device that trained, and the result recorded.
    assert DEFAULT_RECIPE.config.train_precision == "auto"
    assert model.config.train_precision in ("float32", "mixed_bfloat16")
    assert model.config.unet_n_first == 4 and model.config.train_epochs == 2
    assert 0 < model.config.train_time_budget <= 60
    assert len(model.history["loss"]) == 2
    even, odd = io.read(simulated / "even.mrc"), io.read(simulated / "odd.mrc")
    np.testing.assert_allclose(io.read(tmp_path / "d.mrc"), model.denoise(even, odd),
                               atol=1e-5)


def test_the_command_line_starts_tensorflow_without_importing_jax():
    """TF Lite imports JAX when it is installed (0.7 s and ~110 MB of start-up for nothing
    cryocare uses): the command line keeps it out while TensorFlow starts, and JAX still
    imports afterwards. The test environment has JAX (the ``jax`` extra)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    code = ("import sys; from cryocare.cli.app import load_backend; load_backend(); "
            "print('jax' in sys.modules, 'tensorflow' in sys.modules); "
            "import jax; print(float(jax.numpy.ones(3).sum()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=180).stdout.split()
    assert out == ["False", "True", "3.0"]


def test_the_command_line_starts_the_backend_that_keras_json_names(tmp_path):
    """Regression: the CLI read only KERAS_BACKEND and prepared TensorFlow for a torch user.

    A stand-in ``keras`` package (first on the path) records nothing but says which
    backend it is; ``keras.json`` in a temporary KERAS_HOME names JAX. The command
    line must prepare JAX (CUDA_VISIBLE_DEVICES for ``--device cpu``), not TensorFlow
    (its log level and oneDNN variables).
    """
    import os
    import subprocess
    import sys

    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "jax"}))
    fake = tmp_path / "fake" / "keras"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("class backend:\n    backend = staticmethod(lambda: 'jax')\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
                        "CUDA_VISIBLE_DEVICES")}
    env.update(KERAS_HOME=str(home), HOME=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(fake.parent), env.get("PYTHONPATH", "")]))
    code = ("import os; from cryocare.cli.app import load_backend; "
            "print(load_backend(device='cpu'), repr(os.environ.get('CUDA_VISIBLE_DEVICES')), "
            "os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["jax", "''", "None", "None"]
