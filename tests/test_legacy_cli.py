"""The three cryoCARE scripts, end to end, with configs written the way RELION 5 writes them."""

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest

from cryocare import cli, compat, configjobs, io
from cryocare.cli import scripts
from cryocare.errors import InputError
from cryocare.halves import find_halves
from cryocare.pairs import PairSet
from cryocare.simulate import simulate_tomogram

TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "unet_kern_size": 3,
              "unet_n_depth": 1, "unet_n_first": 4, "learning_rate": 0.0004}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A RELION-like project folder with two tiny tomograms (halves named half1/half2)."""
    root = tmp_path_factory.mktemp("project")
    folder = root / "Tomograms" / "job007" / "tomograms"
    folder.mkdir(parents=True)
    for index, name in enumerate(("TS_01", "TS_02")):
        data = simulate_tomogram((16, 32, 32), seed=index)
        io.write(folder / f"rec_{name}_half1.mrc", data.even, voxel_size=10.0)
        io.write(folder / f"rec_{name}_half2.mrc", data.odd, voxel_size=10.0)
    return root


def _relion_configs(folder: Path) -> dict:
    """train_data/train/predict configs as RELION 5's denoising job writes them.

    RELION writes paths relative to the project, "overwrite": "True" as a string
    and "gpu_id" as a list; cryoCARE is run from the project folder.
    """
    even = [f"Tomograms/job007/tomograms/rec_TS_0{i}_half1.mrc" for i in (1, 2)]
    odd = [f"Tomograms/job007/tomograms/rec_TS_0{i}_half2.mrc" for i in (1, 2)]
    job = "Denoise/job008"
    configs = {
        "train_data_config": {"even": even, "odd": odd, "patch_shape": [16, 16, 16],
                              "num_slices": 20, "split": 0.9, "tilt_axis": "Y",
                              "n_normalization_samples": 2, "path": job, "overwrite": "True"},
        "train_config": {"train_data": job, **TINY_TRAIN, "model_name": "denoising_model",
                         "path": job, "overwrite": "True", "gpu_id": [0]},
        "predict_config": {"path": f"{job}/denoising_model.tar.gz", "even": even, "odd": odd,
                           "n_tiles": [1, 2, 2], "output": f"{job}/tomograms",
                           "overwrite": "True", "gpu_id": [0]},
    }
    paths = {}
    for name, values in configs.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(values, indent=4))
    return paths


@pytest.mark.slow
def test_three_scripts_end_to_end_as_relion_calls_them(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "Denoise").mkdir()
    configs = _relion_configs(project / "Denoise")
    assert scripts.main_extract(["--conf", str(configs["train_data_config"]), "-q"]) == 0
    assert (project / "Denoise/job008" / compat.PAIRS_FILE).is_file()
    assert scripts.main_train(["--conf", str(configs["train_config"]), "-q"]) == 0
    archive = project / "Denoise/job008/denoising_model.tar.gz"
    assert archive.is_file()  # where RELION looks for the model
    assert scripts.main_predict(["--conf", str(configs["predict_config"]), "-q"]) == 0
    out = project / "Denoise/job008/tomograms"
    written = sorted(p.name for p in out.iterdir())
    assert written == ["rec_TS_01_half1.mrc", "rec_TS_02_half1.mrc"]  # named after even
    # The output is the model's denoising of the right pair (paired by name).
    model = compat.load_archive(archive)
    even, odd, _ = io.read_pair(project / "Tomograms/job007/tomograms/rec_TS_02_half1.mrc",
                                project / "Tomograms/job007/tomograms/rec_TS_02_half2.mrc")
    # Same network and weights; tiled vs whole differ only by summation order (float32).
    np.testing.assert_allclose(io.read(out / "rec_TS_02_half1.mrc"),
                               model.denoise(even, odd),
                               rtol=0, atol=1e-4 * float(np.ptp(even)))
    assert io.read_info(out / "rec_TS_02_half1.mrc").voxel_size == (10.0, 10.0, 10.0)

    # Re-running with "overwrite": "false" refuses, with a clear one-line message.
    values = json.loads(configs["predict_config"].read_text())
    configs["predict_config"].write_text(json.dumps({**values, "overwrite": "false"}))
    capsys.readouterr()
    assert scripts.main_predict(["--conf", str(configs["predict_config"]), "-q"]) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and len(err.strip().splitlines()) == 1

    # The same config through `cryocare predict --config` (overwrite again).
    configs["predict_config"].write_text(json.dumps(values))
    assert cli.main(["predict", "--config", str(configs["predict_config"]), "-q"]) == 0


def test_folders_are_paired_by_name(tmp_path, monkeypatch):
    """Regression: cryoCARE zipped two unsorted directory listings."""
    for half in ("even", "odd"):
        (tmp_path / half).mkdir()
    for name in ("b_tomo", "a_tomo"):
        for half in ("even", "odd"):
            (tmp_path / half / f"{name}.mrc").write_bytes(b"")
    pairs = find_halves([str(tmp_path / "even")], [str(tmp_path / "odd")])
    assert [(e.parent.name, e.name, o.parent.name, o.name) for e, o in pairs] == [
        ("even", "a_tomo.mrc", "odd", "a_tomo.mrc"), ("even", "b_tomo.mrc", "odd", "b_tomo.mrc")]


@pytest.mark.parametrize("values, message", [
    ({"path": "m.tar.gz", "even": "e.mrc", "odd": "o.mrc", "output": "out",
      "overwrite": "perhaps"}, "'overwrite'"),
    ({"path": "missing.tar.gz", "even": "e.mrc", "odd": "o.mrc", "output": "out"},
     "e.mrc: no such file"),
    ({"train_data": "nowhere", **TINY_TRAIN, "model_name": "m", "path": "m"},
     "'train_data'"),
])
def test_failures_exit_nonzero_with_one_line(tmp_path, monkeypatch, capsys, values, message):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "config.json"
    conf.write_text(json.dumps(values))
    main = scripts.main_train if "train_data" in values else scripts.main_predict
    assert main(["--conf", str(conf), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message.strip("'") in err and len(err.splitlines()) == 1


def test_wrong_kind_of_config_and_missing_file(tmp_path, capsys):
    conf = tmp_path / "predict_config.json"
    conf.write_text(json.dumps({"path": "m.tar.gz", "even": "e.mrc", "odd": "o.mrc",
                                "output": "out"}))
    assert scripts.main_train(["--conf", str(conf)]) == 2
    assert "expected a cryoCARE train config" in capsys.readouterr().err
    assert scripts.main_extract(["--conf", str(tmp_path / "none.json")]) == 2
    assert "cannot read the config" in capsys.readouterr().err


def test_console_scripts_are_declared():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("cryoCARE_extract_train_data.py") == "cryocare.cli.scripts:main_extract"
    assert scripts.get("cryoCARE_train.py") == "cryocare.cli.scripts:main_train"
    assert scripts.get("cryoCARE_predict.py") == "cryocare.cli.scripts:main_predict"


def test_mask_key_places_patches_inside_the_mask(tmp_path, monkeypatch):
    """nextPYP writes "mask": patch centres must lie inside it (here: the top 8 Z slices)."""
    monkeypatch.chdir(tmp_path)
    ramp = np.broadcast_to(np.arange(32, dtype=np.float32)[:, None, None], (32, 32, 32))
    io.write("tomo_half1.rec", ramp)
    io.write("tomo_half2.rec", ramp)
    mask = np.zeros((32, 32, 32), np.float32)
    mask[:8] = 1
    io.write("train_mask.mrc", mask)
    values = {"even": ["tomo_half1.rec"], "odd": ["tomo_half2.rec"], "tilt_axis": "Y",
              "path": "./train_data", "patch_shape": [8, 8, 8], "num_slices": 30,
              "split": 0.75, "n_normalization_samples": 10, "mask": "./train_mask.mrc"}
    pairs = PairSet.load(configjobs.extract_train_data(compat.config_from_dict(values)))
    # A centre at z <= 7 means a patch spanning at most z = 3..10 (values are z).
    for patches in (pairs.x_train, pairs.x_val):
        values_seen = pairs.normalization.denormalize(patches)
        assert values_seen.max() <= 11 + 1e-3  # float32 round trip through the normalisation
    io.write("small_mask.mrc", mask[:16])
    bad = compat.config_from_dict({**values, "mask": "small_mask.mrc", "overwrite": True})
    with pytest.raises(InputError, match="'mask'.*shape"):
        configjobs.extract_train_data(bad)
