import json
import shutil

import keras
import numpy as np
import pytest

from cryocare import nets
from cryocare.config import CareConfig
from cryocare.errors import InputError, OutputExistsError
from cryocare.model import CAREModel, _Schedule, _State
from cryocare.pairs import Normalization, sample_pairs

TINY = CareConfig(unet_n_depth=2, unet_n_first=4, train_epochs=4, train_steps_per_epoch=15,
                  train_batch_size=8, train_learning_rate=1e-3, seed=3)


@pytest.fixture(scope="module")
def trained(smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even], [odd], patch_shape=16, n_patches=120, seed=0)
    return CAREModel.train(pairs, TINY)


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


def test_patches_must_fit_the_pooling(smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even], [odd], patch_shape=(10, 16, 16), n_patches=10)
    with pytest.raises(InputError, match="multiple of 4"):
        CAREModel.train(pairs, TINY)


def test_unknown_network_lists_the_registered_ones():
    with pytest.raises(InputError, match="known networks are .*unet"):
        nets.build(CareConfig(network="resnet"))


# ------------------------------------------------------- checkpoints and resume
RESUME = TINY.replace(train_epochs=3, train_steps_per_epoch=4)


class _InterruptAt(keras.callbacks.Callback):
    """Raise KeyboardInterrupt (as Ctrl-C would) after a given step of a given epoch."""

    def __init__(self, epoch, step):
        super().__init__()
        self.at, self.epoch = (epoch, step), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


class _Sabotage(keras.callbacks.Callback):
    """Ruin the network after every step: the residual U-Net then outputs input + 10."""

    def on_train_batch_end(self, batch, logs=None):
        self.model.set_weights([np.zeros_like(w) for w in self.model.get_weights()])
        self.model.get_layer("final_conv").bias.assign(np.full(1, 10.0, np.float32))


@pytest.fixture(scope="module")
def small_pairs(smooth_pair):
    _, even, odd = smooth_pair
    return sample_pairs([even], [odd], patch_shape=16, n_patches=60, seed=0)


def _val_loss(model, pairs):
    prediction = model.keras_model.predict_on_batch(pairs.x_val[..., None])
    return _mse(keras.ops.convert_to_numpy(prediction)[..., 0], pairs.y_val)


@pytest.mark.backend
def test_interrupted_training_resumes_to_the_same_steps_and_keeps_the_best(
        small_pairs, tmp_path):
    full = CAREModel.train(small_pairs, RESUME, checkpoint_dir=tmp_path / "full")
    names = {p.name for p in (tmp_path / "full").iterdir()}
    assert names == {"checkpoint.json", "last-e0003.weights.h5", "optimizer-e0003.npz",
                     "history.png",
                     f"best-e{int(np.argmin(full.history['val_loss'])) + 1:04d}.weights.h5"}

    # Ctrl-C in the middle of the third epoch: the checkpoint of epoch 2 stays.
    with pytest.raises(KeyboardInterrupt):
        CAREModel.train(small_pairs, RESUME, checkpoint_dir=tmp_path / "a",
                        callbacks=[_InterruptAt(2, 1)])
    meta = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert meta["state"]["epoch"] == 2 and meta["files"]["last"] == "last-e0002.weights.h5"
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    resumed = CAREModel.train(small_pairs, RESUME, checkpoint_dir=tmp_path / "a", resume=True)
    assert int(resumed.keras_model.optimizer.iterations) == 3 * 4  # same total steps
    assert len(resumed.history["val_loss"]) == 3
    assert resumed.history["val_loss"][:2] == meta["state"]["history"]["val_loss"]
    # Same batches (seeded per epoch and step) and restored Adam state: the same run,
    # up to TensorFlow's CPU convolution gradients, which are not bitwise reproducible
    # (two uninterrupted runs differ by ~1e-3 relative after a few steps): 1e-2.
    np.testing.assert_allclose(resumed.history["val_loss"], full.history["val_loss"], rtol=1e-2)
    # The returned weights are the best ones (validation in batches vs. at once: rounding).
    assert _val_loss(resumed, small_pairs) == pytest.approx(min(resumed.history["val_loss"]),
                                                            rel=1e-4)

    # Resumed with a sabotaged last epoch, the best weights from before the
    # interruption are the ones kept and returned.
    best_before = min(meta["state"]["history"]["val_loss"])
    kept = CAREModel.train(small_pairs, RESUME, checkpoint_dir=tmp_path / "b", resume=True,
                           callbacks=[_Sabotage()])
    assert kept.history["val_loss"][:2] == meta["state"]["history"]["val_loss"]
    assert kept.history["val_loss"][2] > best_before
    assert _val_loss(kept, small_pairs) == pytest.approx(best_before, rel=1e-4)
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())["state"]
    assert state["best_epoch"] == meta["state"]["best_epoch"] and state["epoch"] == 3


@pytest.mark.backend
def test_checkpoints_are_never_overwritten_and_resume_checks_the_config(small_pairs, tmp_path):
    one = RESUME.replace(train_epochs=1, train_steps_per_epoch=2)
    CAREModel.train(small_pairs, one, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(OutputExistsError, match="checkpoint already"):
        CAREModel.train(small_pairs, one, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(InputError, match="'unet_n_first'"):
        CAREModel.train(small_pairs, one.replace(unet_n_first=8), checkpoint_dir=tmp_path / "ck",
                        resume=True)
    with pytest.raises(InputError, match="no checkpoint to resume"):
        CAREModel.train(small_pairs, one, checkpoint_dir=tmp_path / "none", resume=True)
    # Raising train_epochs continues the run.
    more = CAREModel.train(small_pairs, one.replace(train_epochs=2),
                           checkpoint_dir=tmp_path / "ck", resume=True)
    assert len(more.history["loss"]) == 2
    assert int(more.keras_model.optimizer.iterations) == 4


class _FakeModel:
    def __init__(self):
        self.stop_training = False
        self.optimizer = type("Optimizer", (), {"learning_rate": 1.0})()

    def get_weights(self):
        return []


@pytest.mark.backend
def test_schedule_halves_the_rate_on_plateaus_and_stops_early():
    state = _State(learning_rate=1.0)
    schedule = _Schedule(state, patience=2, stop_patience=3)
    schedule.set_model(_FakeModel())
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7, 0.4, 0.5, 0.5, 0.5]):
        schedule.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
        if schedule.model.stop_training:
            break
    # best 0.5 at epoch 2; two epochs without improvement -> rate halved at epoch 4;
    # best 0.4 at epoch 5; halved again at epoch 7; three epochs without -> stop at 8.
    assert state.history["learning_rate"] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert state.best_epoch == 5 and state.best_loss == 0.4
    assert schedule.model.optimizer.learning_rate == 0.25
    assert state.stopped_early and state.epoch == 8


def test_early_stopping_ends_training(small_pairs):
    # A learning rate of 1e-9 leaves the weights (and the loss) practically unchanged,
    # so the validation loss cannot improve strictly for long.
    config = RESUME.replace(train_epochs=50, train_steps_per_epoch=1,
                            train_learning_rate=1e-9, train_early_stopping_patience=1)
    model = CAREModel.train(small_pairs, config)
    assert len(model.history["val_loss"]) < 50


@pytest.mark.backend
def test_rednet_trains_saves_and_loads(small_pairs, tmp_path):
    config = RESUME.replace(network="rednet", rednet_n_layers=2, rednet_n_filters=4,
                            train_epochs=1)
    model = CAREModel.train(small_pairs, config)
    loaded = CAREModel.load(model.save(tmp_path / "red"))
    image = small_pairs.x_val[0]
    np.testing.assert_allclose(loaded.predict(image, tile_shape=None),
                               model.predict(image, tile_shape=None), atol=1e-5)
    last = CAREModel.load(tmp_path / "red", weights="last")
    assert last.config.network == "rednet"


@pytest.mark.backend
def test_a_config_for_another_backend_is_refused(small_pairs):
    other = next(b for b in ("tensorflow", "torch", "jax") if b != keras.backend.backend())
    with pytest.raises(InputError, match=f"not '{other}'|'{other}' is not installed"):
        CAREModel.train(small_pairs, RESUME.replace(backend=other))


def test_load_names_a_bad_key_in_the_saved_config(trained, tmp_path):
    path = trained.save(tmp_path / "model")
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["unet_future_option"] = 1
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="config.json: .*'unet_future_option'"):
        CAREModel.load(path)


@pytest.mark.backend
def test_command_line_trains_with_checkpoints_and_resumes(small_pairs, tmp_path, capsys):
    from cryocare.cli import main

    small_pairs.save(tmp_path / "pairs.npz")
    common = [str(tmp_path / "pairs.npz"), "--steps", "2", "--batch-size", "4", "--depth", "2",
              "--n-first", "4", "--early-stopping", "5", "--checkpoint-dir",
              str(tmp_path / "ck"), "-q"]
    assert main(["train", *common, "--output", str(tmp_path / "m1"), "--epochs", "1"]) == 0
    assert main(["train", *common, "--output", str(tmp_path / "m2"), "--epochs", "1"]) == 2
    assert "checkpoint already" in capsys.readouterr().err
    model = CAREModel.load(tmp_path / "m1")
    assert model.config.train_early_stopping_patience == 5
    assert json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["state"]["epoch"] == 1
    # --resume with nothing to resume from
    assert main(["train", *common[:-3], "--checkpoint-dir", str(tmp_path / "none"), "-q",
                 "--output", str(tmp_path / "m2"), "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err
    other = next(b for b in ("tensorflow", "torch", "jax") if b != keras.backend.backend())
    assert main(["train", *common, "--output", str(tmp_path / "m3"), "--backend", other]) == 2
    assert f"KERAS_BACKEND={other}" in capsys.readouterr().err


def test_augmentation_from_the_config_is_used_and_reproducible(smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even], [odd], patch_shape=16, n_patches=60, seed=0)
    config = TINY.replace(train_epochs=1, train_steps_per_epoch=4, train_augment=True)
    a = CAREModel.train(pairs, config)
    b = CAREModel.train(pairs, config)
    plain = CAREModel.train(pairs, config.replace(train_augment=False))
    # Same seed: augmented batches are the same, so the losses agree to float32
    # training noise; without augmentation the batches differ, and so does the loss.
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-3)
    assert abs(a.history["loss"][0] - plain.history["loss"][0]) > 1e-4
