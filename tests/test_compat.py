"""cryoCARE 0.3.0 compatibility: configs, strict booleans, model archives both ways."""

import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cryocare import compat, io
from cryocare.config import CareConfig
from cryocare.errors import InputError, OutputExistsError
from cryocare.pairs import sample_pairs
from cryocare.training import train

DATA = Path(__file__).parent / "data" / "cryocare-0.3.0"
ROOT = Path(__file__).parent.parent
REFERENCE_VENV = Path(os.environ.get("CRYOCARE_REFERENCE_VENV", ROOT / ".venv-cryocare-ref"))


# ------------------------------------------------------------------ booleans
@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (1, True), (0, False), ("true", True), ("false", False),
    ("True", True), ("False", False), ("yes", True), ("no", False), (" YES ", True),
    ("on", True), ("off", False), ("y", True), ("n", False), ("1", True), ("0", False),
])
def test_parse_bool_accepts_what_pipelines_write(value, expected):
    assert compat.parse_bool(value, key="overwrite") is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, -1, 0.5, None, [True]])
def test_parse_bool_rejects_everything_else_naming_the_key(value):
    with pytest.raises(InputError, match="'overwrite'"):
        compat.parse_bool(value, key="overwrite")


def test_false_string_no_longer_overwrites():
    # Regression: cryoCARE 0.3.0 tested `if config['overwrite']`, so "False" overwrote.
    config = compat.config_from_dict({"path": "m.tar.gz", "even": "e.mrc", "odd": "o.mrc",
                                      "output": "out", "overwrite": "False"})
    assert config.overwrite is False


# ------------------------------------------------------------------ configs
RELION_TRAIN_DATA = {  # as RELION 5's denoising job writes it (values included)
    "even": ["Tomograms/job007/tomograms/rec_TS_01_half1.mrc"],
    "odd": ["Tomograms/job007/tomograms/rec_TS_01_half2.mrc"],
    "patch_shape": [64, 64, 64], "num_slices": 600, "split": 0.9, "tilt_axis": "Y",
    "n_normalization_samples": 60, "path": "Denoise/job008", "overwrite": "True",
}
RELION_TRAIN = {
    "train_data": "Denoise/job008", "epochs": 100, "steps_per_epoch": 200, "batch_size": 16,
    "unet_kern_size": 3, "unet_n_depth": 3, "unet_n_first": 16, "learning_rate": 0.0004,
    "model_name": "denoising_model", "path": "Denoise/job008", "overwrite": "True",
    "gpu_id": [0, 1],
}
RELION_PREDICT = {
    "path": "Denoise/job008/denoising_model.tar.gz",
    "even": ["Tomograms/job007/tomograms/rec_TS_01_half1.mrc"],
    "odd": ["Tomograms/job007/tomograms/rec_TS_01_half2.mrc"],
    "n_tiles": [2, 2, 2], "output": "Denoise/job008/tomograms", "overwrite": "True",
    "gpu_id": [0],
}


def test_relion_configs_are_recognised_and_mapped():
    data = compat.config_from_dict(RELION_TRAIN_DATA)
    assert isinstance(data, compat.TrainDataConfig)
    assert data.patch_shape == (64, 64, 64) and data.overwrite and data.tilt_axis == "Y"
    train = compat.config_from_dict(RELION_TRAIN)
    assert isinstance(train, compat.TrainConfig) and train.gpu_id == (0, 1)
    care = train.care_config()
    assert (care.unet_n_depth, care.unet_n_first, care.train_epochs, care.train_batch_size,
            care.train_steps_per_epoch, care.train_learning_rate) == (3, 16, 100, 16, 200, 4e-4)
    predict = compat.config_from_dict(RELION_PREDICT)
    assert isinstance(predict, compat.PredictConfig) and predict.n_tiles == (2, 2, 2)


@pytest.mark.parametrize("gpu_id, expected", [(0, (0,)), ([0, 1], (0, 1)), ("0", (0,)),
                                              ("0,1", (0, 1)), (None, ())])
def test_gpu_id_as_pipelines_write_it(gpu_id, expected):
    config = compat.config_from_dict({**RELION_PREDICT, "gpu_id": gpu_id})
    assert config.gpu_id == expected


@pytest.mark.parametrize("change, message", [
    ({"split": 1.5}, "'split'"), ({"tilt_axis": "W"}, "'tilt_axis'"),
    ({"patch_shape": [64, 64]}, "'patch_shape'"), ({"num_slices": "many"}, "'num_slices'"),
    ({"overwrite": "sometimes"}, "'overwrite'"), ({"colour": "blue"}, "unknown key.*'colour'"),
])
def test_bad_train_data_configs_name_the_key(change, message):
    with pytest.raises(InputError, match=message):
        compat.config_from_dict({**RELION_TRAIN_DATA, **change})


def test_tilt_axis_z_is_accepted_as_cryocare_does():
    # Regression (issue 19): cryoCARE 0.3.0 accepts "Z" (Scipion offers it, for tomograms
    # never rotated after IMOD reconstruction); it was refused here.
    for given in ("Z", "z", " Z "):
        config = compat.config_from_dict({**RELION_TRAIN_DATA, "tilt_axis": given})
        assert config.tilt_axis == "Z"


SCIPION_TRAIN_DATA = {  # older scipion-em-cryocare: no tilt_axis, n_normalization_samples
    "even": "Runs/000123/extra/even.mrc", "odd": "Runs/000123/extra/odd.mrc",
    "patch_shape": [72, 72, 72], "num_slices": 1200, "split": 0.9,
    "path": "Runs/000123/extra/train_data"}
SCIPION_TRAIN = {"train_data": "Runs/000123/extra/train_data", "epochs": 100,
                 "batch_size": 16, "unet_kern_size": 3, "unet_n_depth": 3, "unet_n_first": 16,
                 "learning_rate": 0.0004, "model_name": "cryocare_model",
                 "path": "Runs/000124/extra", "gpu_id": "0 1"}
SCIPION_PREDICT = {"path": "Runs/000124/extra/cryocare_model.tar.gz",
                   "even": "Runs/000123/extra/even.mrc", "odd": "Runs/000123/extra/odd.mrc",
                   "n_tiles": [1, 1, 1], "output": "Runs/000125/extra/TS_01_denoised",
                   "overwrite": False, "gpu_id": 0}


def test_scipion_configs_with_their_omissions():
    data = compat.config_from_dict(SCIPION_TRAIN_DATA)
    assert data.tilt_axis == "Y" and data.even == ("Runs/000123/extra/even.mrc",)
    train = compat.config_from_dict(SCIPION_TRAIN)
    assert train.steps_per_epoch == 200 and train.gpu_id == (0, 1) and not train.overwrite
    predict = compat.config_from_dict(SCIPION_PREDICT)
    assert predict.overwrite is False and predict.gpu_id == (0,)


def test_missing_key_and_unknown_kind():
    values = dict(RELION_TRAIN)
    del values["model_name"]
    with pytest.raises(InputError, match="missing key.*'model_name'"):
        compat.config_from_dict(values)
    with pytest.raises(InputError, match="not a cryoCARE config"):
        compat.config_from_dict({"unet_n_depth": 2})


def test_read_config_names_the_file(tmp_path):
    path = tmp_path / "predict_config.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="predict_config.json: not valid JSON"):
        compat.read_config(path)
    assert isinstance(compat.read_config(DATA / "predict_config.json"), compat.PredictConfig)
    assert isinstance(compat.read_config(DATA / "train_config.json"), compat.TrainConfig)


# ------------------------------------------------------------------ archives
@pytest.fixture(scope="module")
def fixture_model():
    return compat.load_archive(DATA / "model.tar.gz")


@pytest.mark.slow
def test_fixture_archive_predicts_like_cryocare(fixture_model):
    """Our prediction with cryoCARE's own archive matches cryoCARE's own output.

    Tolerances (from the brief): Pearson r >= 0.999 and max |difference| <= 1e-3
    of the output's range; both implementations run the same float32 network,
    so only summation order differs (observed ~1e-6 of the range).
    """
    assert fixture_model.config.unet_n_depth == 3 and fixture_model.config.unet_n_first == 16
    assert fixture_model.normalization.std == pytest.approx(0.010091528296470642)
    even, odd, _ = io.read_pair(DATA / "even.mrc", DATA / "odd.mrc")
    reference = io.read(DATA / "cryocare_output.mrc")
    ours = fixture_model.denoise(even, odd)
    r = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    assert r >= 0.999
    assert np.abs(ours - reference).max() <= 1e-3 * np.ptp(reference)
    assert fixture_model.history["val_loss"] and len(fixture_model.history["loss"]) == 6


def test_archive_round_trip_is_exact(fixture_model, tmp_path):
    path = compat.write_archive(fixture_model, tmp_path / "denoising_model.tar.gz")
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert {f"denoising_model/{n}" for n in ("config.json", "norm.json", "history.dat",
                                            "weights_best.h5", "weights_last.h5")} <= names
    again = compat.load_archive(path)
    assert again.config == fixture_model.config
    assert again.normalization == fixture_model.normalization
    for a, b in zip(again.keras_model.get_weights(), fixture_model.keras_model.get_weights(),
                    strict=True):
        np.testing.assert_array_equal(a, b)  # float32 written and read back: exact
    with pytest.raises(OutputExistsError):
        compat.write_archive(fixture_model, path)


def test_archive_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no such cryoCARE model"):
        compat.load_archive(tmp_path / "missing.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar file")
    with pytest.raises(InputError, match="junk.tar.gz: not a readable"):
        compat.load_archive(junk)
    empty = tmp_path / "m"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"n_dim": 3}))
    with pytest.raises(InputError, match="norm.json is missing"):
        compat.load_archive(empty)


# ------------------------------------------------------------------ cryoCARE 0.3.0 itself
def _reference_script(name: str) -> Path:
    return REFERENCE_VENV / "bin" / name


@pytest.mark.slow
def test_cryocare_030_predicts_with_our_archive(tmp_path):
    """Two-way compatibility: cryoCARE 0.3.0 loads an archive we wrote and agrees with us.

    Needs cryoCARE 0.3.0 in its own environment (benchmarks/setup_reference.sh); this is
    the one test that is skipped when that is absent. Tolerance: r >= 0.999 (the brief);
    the same float32 network runs in both, so agreement is ~1e-7 of the range.
    """
    script = _reference_script("cryoCARE_predict.py")
    if not script.is_file():
        pytest.skip(f"cryoCARE 0.3.0 reference environment not found ({REFERENCE_VENV}); "
                    f"run benchmarks/setup_reference.sh (or set CRYOCARE_REFERENCE_VENV) to "
                    f"check that cryoCARE 0.3.0 loads archives written by cryocare")
    from cryocare.simulate import simulate_tomogram

    data = simulate_tomogram((32, 48, 48), seed=7)
    pairs = sample_pairs([data.even], [data.odd], patch_shape=16, n_patches=40, seed=0)
    config = CareConfig(unet_n_depth=2, unet_n_first=8, train_epochs=1,
                        train_steps_per_epoch=3, train_batch_size=4)
    model = train(pairs, config)
    ours = model.denoise(data.even, data.odd)
    archive = compat.write_archive(model, tmp_path / "ours.tar.gz")
    io.write(tmp_path / "tomo_even.mrc", data.even)
    io.write(tmp_path / "tomo_odd.mrc", data.odd)
    (tmp_path / "predict.json").write_text(json.dumps({
        "path": str(archive), "even": str(tmp_path / "tomo_even.mrc"),
        "odd": str(tmp_path / "tomo_odd.mrc"), "n_tiles": [1, 1, 1],
        "output": str(tmp_path / "out"), "overwrite": True, "gpu_id": 0}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([str(script), "--conf", str(tmp_path / "predict.json")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = io.read(tmp_path / "out" / "tomo_even.mrc")
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.999



# ------------------------------------------------------------------ CSBDeep as the oracle
def _csbdeep_config_class():
    """CSBDeep's own Config; its package refuses Keras backends other than TensorFlow."""
    try:
        from csbdeep.models import Config
    except (ImportError, NotImplementedError, RuntimeError) as error:
        pytest.skip(f"csbdeep.models cannot be imported here: {error}")
    return Config


def test_missing_archive_config_keys_take_csbdeeps_own_defaults():
    # A config.json with only the axes: every value is CSBDeep's default (was: a 3-D
    # kernel of 5 and the loss "mse", where CSBDeep builds 3 and "mae").
    theirs = _csbdeep_config_class()("ZYX", n_channel_in=1, n_channel_out=1)
    ours = compat._care_config({"n_dim": 3, "axes": "ZYXC"}, Path("config.json"))
    names = ("unet_n_depth", "unet_kern_size", "unet_n_first", "unet_residual", "train_loss",
             "train_epochs", "train_steps_per_epoch", "train_batch_size",
             "train_learning_rate")
    assert {n: getattr(ours, n) for n in names} == {n: getattr(theirs, n) for n in names}
    assert ours.train_reduce_lr_patience == theirs.train_reduce_lr["patience"]


def test_written_archive_config_is_the_one_csbdeep_writes_and_accepts():
    Config = _csbdeep_config_class()
    care = CareConfig(unet_n_depth=3, unet_n_first=16, unet_kern_size=3, train_epochs=6,
                      train_steps_per_epoch=50, train_batch_size=8)
    # Without CSBDeep (the torch and JAX backends) the same keys are written by hand.
    assert compat._csbdeep_values(care) == compat._csbdeep_config(care)
    ours = compat._csbdeep_values(care)
    options = {k: v for k, v in ours.items()
               if k not in ("n_dim", "axes", "n_channel_in", "n_channel_out", "probabilistic")}
    theirs = Config(ours["axes"], n_channel_in=1, n_channel_out=1,
                    probabilistic=ours["probabilistic"], **options)  # refuses unknown keys
    assert theirs.is_valid(return_invalid=True) == (True, ())
    assert json.loads(json.dumps(vars(theirs))) == ours  # what CARE.save writes: the same


def test_cryocare_archive_config_round_trips_through_csbdeep():
    Config = _csbdeep_config_class()
    with tarfile.open(DATA / "model.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/config.json"))
        written = json.load(tar.extractfile(member))
    care = compat._care_config(written, DATA / "model.tar.gz")
    again = compat._csbdeep_config(care)
    assert {k: again[k] for k in written} == written  # what cryoCARE wrote, key for key
    assert Config(**{k: v for k, v in again.items() if k != "n_dim"}).is_valid()


def test_an_archive_of_a_network_trained_with_the_fsc_loss_is_one_cryocare_loads():
    # CSBDeep refuses to load a config.json whose train_loss is not mse/mae, so an archive
    # of an FSC-trained network was one that cryoCARE (and RELION's job) could not load.
    Config = _csbdeep_config_class()
    written = compat._csbdeep_config(CareConfig(train_loss="fsc"))
    assert written["train_loss"] == "mse"
    assert Config(**{k: v for k, v in written.items() if k != "n_dim"}).is_valid()
