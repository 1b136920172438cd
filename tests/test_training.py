"""The training entry: batches, schedule, budget, checkpoints, resume, fine-tuning, precision."""

import json
import shutil

import keras
import numpy as np
import pytest

from cryocare.config import CareConfig
from cryocare.errors import InputError, OutputExistsError
from cryocare.model import CAREModel
from cryocare.pairs import sample_pairs
from cryocare.training import train
from cryocare.training.schedule import Schedule, TrainingState

TINY = CareConfig(unet_n_depth=2, unet_n_first=4, train_epochs=4, train_steps_per_epoch=15,
                  train_batch_size=8, train_learning_rate=1e-3, seed=3)


def _mse(a, b):
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_patches_must_fit_the_pooling(smooth_pair):
    _, even, odd = smooth_pair
    pairs = sample_pairs([even], [odd], patch_shape=(10, 16, 16), n_patches=10)
    with pytest.raises(InputError, match="multiple of 4"):
        train(pairs, TINY)


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
    full = train(small_pairs, RESUME, checkpoint_dir=tmp_path / "full")
    names = {p.name for p in (tmp_path / "full").iterdir()}
    assert names == {"checkpoint.json", "last-e0003.weights.h5", "optimizer-e0003.npz",
                     "history.png",
                     f"best-e{int(np.argmin(full.history['val_loss'])) + 1:04d}.weights.h5"}

    # Ctrl-C in the middle of the third epoch: the checkpoint of epoch 2 stays.
    with pytest.raises(KeyboardInterrupt):
        train(small_pairs, RESUME, checkpoint_dir=tmp_path / "a",
                        callbacks=[_InterruptAt(2, 1)])
    meta = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert meta["state"]["epoch"] == 2 and meta["files"]["last"] == "last-e0002.weights.h5"
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    resumed = train(small_pairs, RESUME, checkpoint_dir=tmp_path / "a", resume=True)
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
    kept = train(small_pairs, RESUME, checkpoint_dir=tmp_path / "b", resume=True,
                           callbacks=[_Sabotage()])
    assert kept.history["val_loss"][:2] == meta["state"]["history"]["val_loss"]
    assert kept.history["val_loss"][2] > best_before
    assert _val_loss(kept, small_pairs) == pytest.approx(best_before, rel=1e-4)
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())["state"]
    assert state["best_epoch"] == meta["state"]["best_epoch"] and state["epoch"] == 3


@pytest.mark.backend
def test_checkpoints_are_never_overwritten_and_resume_checks_the_config(small_pairs, tmp_path):
    one = RESUME.replace(train_epochs=1, train_steps_per_epoch=2)
    train(small_pairs, one, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(OutputExistsError, match="checkpoint already"):
        train(small_pairs, one, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(InputError, match="'unet_n_first'"):
        train(small_pairs, one.replace(unet_n_first=8), checkpoint_dir=tmp_path / "ck",
                        resume=True)
    with pytest.raises(InputError, match="no checkpoint to resume"):
        train(small_pairs, one, checkpoint_dir=tmp_path / "none", resume=True)
    # Raising train_epochs continues the run.
    more = train(small_pairs, one.replace(train_epochs=2),
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
    state = TrainingState(learning_rate=1.0)
    schedule = Schedule(state, patience=2, stop_patience=3)
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
    model = train(small_pairs, config)
    assert len(model.history["val_loss"]) < 50


@pytest.mark.backend
def test_rednet_trains_saves_and_loads(small_pairs, tmp_path):
    config = RESUME.replace(network="rednet", rednet_n_layers=2, rednet_n_filters=4,
                            train_epochs=1)
    model = train(small_pairs, config)
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
        train(small_pairs, RESUME.replace(backend=other))


@pytest.mark.backend
def test_command_line_trains_with_checkpoints_and_resumes(small_pairs, tmp_path, capsys):
    from cryocare.cli import main

    small_pairs.save(tmp_path / "pairs.npz")
    common = [str(tmp_path / "pairs.npz"), "--steps", "2", "--batch-size", "4", "--depth", "2",
              "--n-first", "4", "--early-stopping", "5", "--init", "none", "--checkpoint-dir",
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
    a = train(pairs, config)
    b = train(pairs, config)
    plain = train(pairs, config.replace(train_augment=False))
    # Same seed: augmented batches are the same, so the losses agree to float32
    # training noise; without augmentation the batches differ, and so does the loss.
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-3)
    assert abs(a.history["loss"][0] - plain.history["loss"][0]) > 1e-4


# ------------------------------------------------------------------ budget of the run
ONE = TINY.replace(train_epochs=1, train_steps_per_epoch=2)


def test_the_budget_of_the_run_is_recorded_in_the_model(small_pairs):
    assert train(small_pairs, ONE, budget=600).config.train_time_budget == 600.0
    # None falls back to the config's budget; 0 is none.
    assert train(small_pairs, ONE.replace(train_time_budget=500.0)).config \
        .train_time_budget == 500.0
    assert train(small_pairs, ONE.replace(train_time_budget=500.0), budget=0).config \
        .train_time_budget == 0.0


def test_a_budget_started_by_the_caller_counts_the_time_before_the_call(small_pairs):
    import time

    from cryocare.training import Budget

    spent = Budget(100.0, started=time.perf_counter() - 100.0)  # used up before training
    model = train(small_pairs, TINY.replace(train_epochs=50), budget=spent)
    assert len(model.history["loss"]) == 1  # one step, validated, then out of time
    assert model.config.train_time_budget == 100.0


def test_a_bad_budget_names_the_budget(small_pairs):
    with pytest.raises(InputError, match="budget: expected a number of seconds"):
        train(small_pairs, ONE, budget=-5)


def test_the_progress_bar_runs_over_the_budget_in_seconds_else_over_the_step_cap():
    from cryocare.training import Budget
    from cryocare.training.schedule import Progress

    state = TrainingState(1e-3)
    state.steps, state.elapsed = 7, 30.4
    timed = Progress(state, total_steps=5000, budget=Budget(720.0), enabled=True)
    timed.on_train_batch_end(6, {"loss": 0.5})
    assert (timed.bar.total, timed.bar.n, timed.bar.unit) == (720, 30, "s")
    assert timed.bar.postfix == "steps=7, loss=0.5000"
    capped = Progress(state, total_steps=5000, budget=Budget(0.0), enabled=True)
    assert (capped.bar.total, capped.bar.n, capped.bar.unit) == (5000, 7, "step")
    timed.close()
    capped.close()


# ----------------------------------------------------------------------- fine-tuning
@pytest.fixture(scope="module")
def first(small_pairs):
    return train(small_pairs, ONE)


def test_training_starts_from_the_weights_of_a_model_or_a_model_folder(first, small_pairs,
                                                                        tmp_path):
    still = ONE.replace(train_epochs=1, train_steps_per_epoch=1, train_learning_rate=1e-9,
                        seed=99)
    folder = first.save(tmp_path / "first")
    for init in (first, folder, str(folder)):
        tuned = train(small_pairs, still, init=init)
        for a, b in zip(tuned.keras_model.get_weights(), first.keras_model.get_weights(),
                        strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)  # one step at a rate of 1e-9
    fresh = train(small_pairs, still, init="none")
    assert not np.allclose(fresh.keras_model.get_weights()[0],
                           first.keras_model.get_weights()[0])


def test_without_a_config_training_from_a_model_takes_its_config(first, small_pairs):
    tuned = train(small_pairs, init=first)
    assert tuned.config.architecture() == first.config.architecture()
    assert tuned.config.train_steps_per_epoch == ONE.train_steps_per_epoch


def test_an_initial_model_of_another_architecture_is_refused_with_the_keys(first, small_pairs):
    with pytest.raises(InputError, match=r"unet_n_first \(config 8, initial model 4\)"):
        train(small_pairs, ONE.replace(unet_n_first=8), init=first)
    with pytest.raises(InputError, match="network"):
        train(small_pairs, ONE.replace(network="rednet", rednet_n_layers=2), init=first)


def test_bad_inits_are_refused_with_what_was_expected(small_pairs, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="init 'nowhere': nowhere: no such model .expected a "
                                         "cryocare model folder, a cryoCARE .tar.gz"):
        train(small_pairs, ONE, init="nowhere")
    with pytest.raises(InputError, match="init: expected None"):
        train(small_pairs, ONE, init=3)
    from cryocare import pretrained

    def missing(name="general"):
        raise InputError(f"pretrained model {name!r}: not installed (known: none)")

    monkeypatch.setattr(pretrained, "model_path", missing)
    with pytest.raises(InputError, match="init 'pretrained': pretrained model 'general': not "
                                         "installed .*init='none'"):
        train(small_pairs, ONE, init="pretrained")


def test_the_pretrained_model_is_used_when_its_network_matches_else_passed_over(
        first, small_pairs, tmp_path, monkeypatch, caplog):
    from cryocare import pretrained

    folder = first.save(tmp_path / "general")
    monkeypatch.setattr(pretrained, "model_path", lambda name="general": folder)
    still = ONE.replace(train_steps_per_epoch=1, train_learning_rate=1e-9, seed=99)
    tuned = train(small_pairs, still, init="pretrained")
    np.testing.assert_allclose(tuned.keras_model.get_weights()[0],
                               first.keras_model.get_weights()[0], atol=1e-6)
    with caplog.at_level("INFO", logger="cryocare.training"):
        other = train(small_pairs, still.replace(unet_n_first=2), init="pretrained")
    assert other.config.unet_n_first == 2
    assert "random weights: the pretrained model's network differs from the config's in " \
           "unet_n_first (config 2, initial model 4)" in caplog.text


def test_the_diffusion_network_is_trained_stage_wise_unless_it_starts_from_a_model(
        small_pairs, monkeypatch):
    from cryocare.training import loop

    calls = []
    monkeypatch.setattr(loop, "train_greedy", lambda *args, **kw: calls.append(kw))
    config = ONE.replace(network="diffusion", diffusion_stages=2, diffusion_filters=2,
                         diffusion_n_rbf=5, train_epochs=8)
    model = train(small_pairs, config)
    assert [call["stage_epochs"] for call in calls] == [2]  # 8 // (2 * 2)
    train(small_pairs, config, init=model)
    assert len(calls) == 1


# ------------------------------------------------------------------------- precision
def test_auto_precision_is_measured_once_and_recorded(small_pairs, monkeypatch):
    from cryocare.training import precision

    measured = []

    def fake_step(chosen, **options):
        measured.append(chosen)
        return {"float32": 1.0, "mixed_bfloat16": 0.9}[chosen]  # bfloat16 barely faster

    monkeypatch.setattr(precision, "measure_step", fake_step)
    monkeypatch.setattr(precision, "gpu_compute_capability", lambda: None)
    monkeypatch.setattr(precision, "_CHOSEN", {})
    model = train(small_pairs, ONE.replace(train_precision="auto"))
    assert model.config.train_precision == "float32"
    train(small_pairs, ONE.replace(train_precision="auto"))
    assert measured == ["float32", "mixed_bfloat16"]  # cached for the process


@pytest.mark.parametrize(("capability", "expected"), [((8, 0), "mixed_bfloat16"),
                                                      ((7, 5), "float32")])
def test_a_gpu_chooses_bfloat16_by_its_compute_capability(capability, expected):
    from cryocare.training.precision import resolve

    assert resolve("auto", gpu_capability=capability) == expected


def test_a_cpu_that_fails_bfloat16_steps_trains_in_float32():
    # oneDNN capped to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) has no bfloat16 convolution.
    from cryocare.training.precision import resolve

    assert resolve("auto", gpu_capability=None,
                   probe={"float32": 1.0, "mixed_bfloat16": float("inf")}.get) == "float32"

