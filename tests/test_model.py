import json

import numpy as np
import pytest

from cryocare import nets
from cryocare.config import CareConfig
from cryocare.errors import InputError, OutputExistsError
from cryocare.model import CAREModel
from cryocare.normalize import Normalization, compute_normalization
from cryocare.pairs import sample_pairs
from cryocare.training import train

TINY = CareConfig(unet_n_depth=2, unet_n_first=4, train_epochs=4, train_steps_per_epoch=15,
                  train_batch_size=8, train_learning_rate=1e-3, seed=3)


@pytest.fixture(scope="module")
def trained(smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even], [odd], patch_shape=16, n_patches=120, seed=0)
    return train(pairs, TINY)


def _mse(a, b):
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_noise2noise_training_beats_the_raw_average(trained, smooth_pair):
    clean, even, odd = smooth_pair
    denoised = trained.denoise(even, odd)
    # The average of the halves has noise variance 0.5; a trained network removes most of it.
    assert _mse(denoised, clean) < 0.5 * _mse((even + odd) / 2, clean)
    assert trained.history["val_loss"][-1] < trained.history["val_loss"][0]


@pytest.mark.parametrize("shape", [(29, 37, 41), (16, 16, 16), (13, 50, 23)])
def test_tiled_prediction_equals_untiled(trained, shape):
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    untiled = trained.predict(image, tile_shape=None)
    tiled = trained.predict(image, tile_shape=(8, 12, 16), batch_size=2)
    # float32 convolutions summed in a different order: differences at rounding level
    assert np.abs(tiled - untiled).max() <= 1e-5 * np.ptp(untiled)


def test_tiled_prediction_equals_untiled_in_2d():
    config = CareConfig(n_dim=2, unet_n_depth=3, unet_n_first=4, seed=1)
    model = CAREModel(config, Normalization(mean=0.5, std=2.0))
    assert nets.halo(config) == 51  # exact receptive field (test_nets)
    image = np.random.default_rng(2).normal(size=(151, 97)).astype(np.float32)
    untiled = model.predict(image, tile_shape=None)
    tiled = model.predict(image, tile_shape=(32, 40))
    assert np.abs(tiled - untiled).max() <= 1e-5 * np.ptp(untiled)


def test_halo_bounds_the_receptive_field():
    # An impulse must not influence outputs farther away than the halo.
    config = CareConfig(unet_n_depth=2, unet_n_first=2, unet_residual=False, seed=4)
    model = CAREModel(config, Normalization(mean=0.0, std=1.0))
    image = np.zeros((64, 64, 64), np.float32)
    base = model.predict(image, tile_shape=None)
    image[32, 32, 32] = 100.0
    changed = np.abs(model.predict(image, tile_shape=None) - base) > 0
    where = np.argwhere(changed)
    radius = np.abs(where - 32).max()
    assert 0 < radius <= nets.halo(config)


def test_save_load_round_trip(trained, tmp_path, smooth_pair):
    _, even, _ = smooth_pair
    path = trained.save(tmp_path / "model")
    assert {p.name for p in path.iterdir()} == {
        "config.json", "history.json", "history.png", "weights.weights.h5",
        "weights_last.weights.h5"}
    meta = json.loads((path / "config.json").read_text())
    assert meta["versions"]["backend"] and meta["normalization"]["std"] > 0
    loaded = CAREModel.load(path)
    assert loaded.config == trained.config
    expected = trained.predict(even[:16])
    # Same weights; oneDNN may pick differently ordered float32 reductions: rounding only.
    np.testing.assert_allclose(loaded.predict(even[:16]), expected, rtol=0,
                               atol=1e-5 * np.ptp(expected))
    assert loaded.history == trained.history


def test_save_never_overwrites_unless_asked(trained, tmp_path):
    path = trained.save(tmp_path / "model")
    marker = path / "config.json"
    before = marker.read_bytes()
    with pytest.raises(OutputExistsError):
        trained.save(path)
    assert marker.read_bytes() == before
    trained.save(path, overwrite=True)
    assert not list(tmp_path.glob(".model*"))  # no staging folders left behind


def test_load_rejects_incomplete_and_newer_folders(trained, tmp_path):
    with pytest.raises(InputError, match="no such model folder"):
        CAREModel.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a complete"):
        CAREModel.load(tmp_path / "empty")
    path = trained.save(tmp_path / "model")
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = 99
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="newer"):
        CAREModel.load(path)


def test_predict_refuses_wrong_dimensionality(trained):
    with pytest.raises(InputError, match="3-D"):
        trained.predict(np.zeros((16, 16), np.float32))


def test_unknown_network_lists_the_registered_ones():
    with pytest.raises(InputError, match="known networks are .*unet"):
        nets.build(CareConfig(network="resnet"))


def test_load_names_a_bad_key_in_the_saved_config(trained, tmp_path):
    path = trained.save(tmp_path / "model")
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["unet_future_option"] = 1
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="config.json: .*'unet_future_option'"):
        CAREModel.load(path)


def test_a_model_without_statistics_normalises_each_image_and_saves_them_as_null(tmp_path):
    config = CareConfig(unet_n_depth=1, unet_n_first=2, seed=2)
    general = CAREModel(config, None)
    image = np.random.default_rng(3).normal(5.0, 3.0, size=(12, 16, 16)).astype(np.float32)
    per_image = CAREModel(config, compute_normalization([image]),
                          keras_model=general.keras_model)
    # Without training statistics, every image is scaled by its own mean and std.
    np.testing.assert_allclose(general.predict(image, tile_shape=None),
                               per_image.predict(image, tile_shape=None), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(general.denoise(image, image, tile_shape=None),
                               per_image.denoise(image, image, tile_shape=None), atol=1e-5)
    path = general.save(tmp_path / "general")
    assert json.loads((path / "config.json").read_text())["normalization"] is None
    assert CAREModel.load(path).normalization is None


def test_a_saved_description_without_normalisation_is_refused(trained, tmp_path):
    path = trained.save(tmp_path / "model")
    meta = json.loads((path / "config.json").read_text())
    del meta["normalization"]
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="config.json: normalisation: expected keys"):
        CAREModel.load(path)


def test_an_untrained_model_of_an_auto_precision_config_computes_in_float32():
    model = CAREModel(CareConfig(unet_n_depth=1, unet_n_first=2, train_precision="auto"))
    assert model.config.train_precision == "float32" and model.normalization is None
