"""The short-budget recipe: time budget, cosine schedule, FSC loss, test-time augmentation."""

import json
import time

import numpy as np
import pytest

from cryocare import losses
from cryocare.config import CareConfig
from cryocare.errors import InputError
from cryocare.model import CAREModel
from cryocare.normalize import Normalization
from cryocare.pairs import sample_pairs
from cryocare.predict import flip_averaged
from cryocare.recipe import DEFAULT_RECIPE, train_on_pair
from cryocare.training import cosine_rate, train

TINY = CareConfig(unet_n_depth=2, unet_n_first=4, train_epochs=4, train_steps_per_epoch=5,
                  train_batch_size=4, train_learning_rate=1e-3, seed=3)


@pytest.fixture(scope="module")
def pairs(smooth_pair):
    _, even, odd = smooth_pair
    return sample_pairs([even], [odd], patch_shape=16, n_patches=60, seed=0)


# ------------------------------------------------------------------------- FSC loss
def _batch(seed, shape=(3, 16, 16, 16, 1)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.backend
@pytest.mark.parametrize("shape", [(3, 16, 16, 16, 1), (2, 24, 20, 1)])
def test_fsc_loss_is_mse_for_scaled_copies_and_adds_two_for_negated_ones(shape):
    x = _batch(0, shape)
    loss = losses.get("fsc", shape=shape[1:-1])
    mse = float(np.mean((x - 2 * x) ** 2))
    # A scaled copy correlates perfectly in every shell: the FSC term vanishes.
    assert float(loss(x, 2 * x)) == pytest.approx(mse, rel=1e-5)
    # A negated copy correlates with -1 in every shell: the FSC term is 2.
    assert float(loss(x, -x)) == pytest.approx(float(np.mean((2 * x) ** 2)) + 2.0, rel=1e-5)


@pytest.mark.backend
def test_fsc_loss_of_independent_noise_is_mse_plus_about_one():
    x, y = _batch(1), _batch(2)
    value = float(losses.get("fsc", shape=(16, 16, 16))(x, y))
    mse = float(np.mean((x - y) ** 2))
    assert value - mse == pytest.approx(1.0, abs=0.05)


def test_shell_matrix_puts_every_frequency_in_its_shell():
    matrix = losses.shell_matrix((6, 8, 10))
    assert matrix.shape == (480, 3)
    assert set(np.unique(matrix.sum(axis=1))) <= {0.0, 1.0}
    assert matrix[0].sum() == 0  # zero frequency left out
    # The frequency (0, 0, 1 / 10 cycles) at radius 1 * min(shape) / 10 = 0.6 -> shell 1.
    assert matrix[1, 0] == 1


def test_unknown_loss_is_refused():
    with pytest.raises(InputError, match="train_loss"):
        CareConfig(train_loss="ssim")
    with pytest.raises(InputError, match="expected one of mse, mae, fsc"):
        losses.get("l3", shape=(8, 8))


def test_training_with_the_fsc_loss_lowers_it(pairs):
    model = train(pairs, TINY.replace(train_loss="fsc"))
    assert np.all(np.isfinite(model.history["loss"]))
    assert model.history["loss"][-1] < model.history["loss"][0]


# ---------------------------------------------------------------- schedule and budget
def test_cosine_schedule_sets_the_rate_of_every_step(pairs):
    config = TINY.replace(train_schedule="cosine", train_warmup=0.25)
    model = train(pairs, config)
    total = config.train_epochs * config.train_steps_per_epoch
    # The rate recorded at the end of epoch k is the one of its last step.
    expected = [cosine_rate((k * 5 - 1) / total, peak=1e-3, warmup=0.25) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(model.history["learning_rate"], expected, rtol=1e-6)
    assert float(model.keras_model.optimizer.learning_rate) == pytest.approx(expected[-1],
                                                                              rel=1e-5)


def test_plateau_schedule_is_not_touched_by_the_clock(pairs):
    model = train(pairs, TINY.replace(train_epochs=2))
    assert model.history["learning_rate"] == [1e-3, 1e-3]


@pytest.mark.backend
def test_time_budget_stops_cleanly_keeps_the_best_and_resumes(pairs, tmp_path):
    config = TINY.replace(train_epochs=100_000, train_steps_per_epoch=3,
                          train_time_budget=6.0, train_schedule="cosine")
    start = time.perf_counter()
    model = train(pairs, config, checkpoint_dir=tmp_path / "ck")
    took = time.perf_counter() - start
    epochs = len(model.history["val_loss"])
    assert 1 <= epochs < 100_000
    # One step and one validation of a tiny network beyond the budget, not the 100 000
    # epochs asked for (hours); generous margin for start-up and compilation on a loaded
    # machine (39 s were seen with two other TensorFlow jobs on two cores).
    assert took < config.train_time_budget + 60
    state = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["state"]
    assert state["out_of_time"] and state["elapsed"] >= config.train_time_budget
    # Under cosine the rate ran down to (nearly) zero by the end of the budget.
    assert model.history["learning_rate"][-1] < 0.2 * config.train_learning_rate
    # The budget is spent: resuming with the same one does nothing more ...
    again = train(pairs, config, checkpoint_dir=tmp_path / "ck", resume=True)
    assert len(again.history["val_loss"]) == epochs
    # ... and a larger one continues where the run stopped.
    more = train(pairs, config.replace(train_time_budget=state["elapsed"] + 3.0),
                           checkpoint_dir=tmp_path / "ck", resume=True)
    assert len(more.history["val_loss"]) > epochs
    assert int(more.keras_model.optimizer.iterations) > state["steps"]


@pytest.mark.parametrize("key,value", [("train_time_budget", -1.0), ("train_warmup", 0.9),
                                       ("train_schedule", "linear"),
                                       ("train_time_budget", float("nan"))])
def test_bad_schedule_values_name_the_key(key, value):
    with pytest.raises(InputError, match=key):
        CareConfig(**{key: value})


# -------------------------------------------------------------- test-time augmentation
def test_flip_averaging_leaves_a_flip_equivariant_network_alone():
    batch = np.random.default_rng(0).normal(size=(2, 5, 6, 7)).astype(np.float32)
    double = flip_averaged(lambda b: 2 * b)
    np.testing.assert_allclose(double(batch), 2 * batch, rtol=1e-6)


def test_flip_averaging_makes_the_output_flip_symmetric():
    weights = np.random.default_rng(1).normal(size=(6, 7)).astype(np.float32)
    network = flip_averaged(lambda b: b * weights)  # position-dependent: not equivariant
    image = np.random.default_rng(2).normal(size=(1, 6, 7)).astype(np.float32)
    flipped = network(np.ascontiguousarray(image[:, ::-1, ::-1]))[:, ::-1, ::-1]
    np.testing.assert_allclose(flipped, network(image), rtol=1e-5, atol=1e-6)


def test_tta_prediction_is_tiled_like_untiled_and_not_the_plain_one():
    config = CareConfig(unet_n_depth=2, unet_n_first=4, seed=5)
    model = CAREModel(config, Normalization(mean=0.0, std=1.0))
    image = np.random.default_rng(3).normal(size=(23, 31, 37)).astype(np.float32)
    untiled = model.predict(image, tile_shape=None, tta=True)
    tiled = model.predict(image, tile_shape=(8, 12, 16), tta=True)
    assert np.abs(tiled - untiled).max() <= 1e-5 * np.ptp(untiled)
    plain = model.predict(image, tile_shape=None)
    assert np.abs(plain - untiled).max() > 1e-3 * np.ptp(untiled)
    # The average over flips of a flipped image is the flipped average (sizes that are
    # multiples of the pooling factor, so that no one-sided padding breaks the symmetry).
    image = image[:20, :28, :36]
    averaged = model.predict(image, tile_shape=None, tta=True)
    flipped = model.predict(np.ascontiguousarray(image[::-1]), tile_shape=None, tta=True)
    np.testing.assert_allclose(flipped[::-1], averaged, atol=1e-5 * np.ptp(averaged))


# ----------------------------------------------------------------------------- recipe
def test_recipe_trains_and_denoises(smooth_pair):
    clean, even, odd = smooth_pair
    # Capped by steps (4 x 10), not by the generous budget, so the result does not
    # depend on the machine's speed; the budget itself is tested above.
    recipe = DEFAULT_RECIPE.replace(
        n_patches=80, patch_shape=(16, 16, 16),
        config=DEFAULT_RECIPE.config.replace(unet_n_first=4, train_batch_size=8,
                                             train_epochs=4, train_steps_per_epoch=10))
    model = train_on_pair(even, odd, recipe=recipe, budget=600.0, seed=1, init="none",
                          fit=False)
    assert len(model.history["loss"]) == 4
    assert model.config.train_schedule == "cosine" and model.config.seed == 1
    assert model.config.train_time_budget == 600.0  # the budget of the run, from the call
    assert model.config.train_precision in ("float32", "mixed_bfloat16")  # "auto" resolved
    denoised = model.denoise(even, odd, tta=recipe.tta)
    raw = (even + odd) / 2
    assert np.mean((denoised - clean) ** 2) < np.mean((raw - clean) ** 2)


def test_recipe_fits_patches_to_a_thin_volume():
    rng = np.random.default_rng(0)
    even, odd = (rng.normal(size=(10, 72, 72)).astype(np.float32) for _ in range(2))
    recipe = DEFAULT_RECIPE.replace(
        n_patches=20, config=DEFAULT_RECIPE.config.replace(
            unet_n_first=2, train_epochs=1, train_steps_per_epoch=1, train_batch_size=2))
    model = train_on_pair(even, odd, recipe=recipe, budget=None, init="none")
    assert model.keras_model.input_shape[1:4] in {(8, 32, 32), (None, None, None)}
    with pytest.raises(InputError, match="too small"):
        train_on_pair(even[:3], odd[:3], recipe=recipe, budget=None, init="none")
    with pytest.raises(InputError, match="budget"):
        train_on_pair(even, odd, recipe=recipe, budget=-1, init="none")


# ------------------------------------------------------------------------ command line
def test_command_line_time_budget_schedule_loss_and_tta(pairs, tmp_path, smooth_pair):
    from cryocare import io
    from cryocare.cli import main

    pairs.save(tmp_path / "pairs.npz")
    assert main(["train", str(tmp_path / "pairs.npz"), "--output", str(tmp_path / "m"),
                 "--time-budget", "4s", "--schedule", "cosine", "--loss", "fsc", "--steps", "2",
                 "--batch-size", "4", "--n-first", "4", "--init", "none", "-q"]) == 0
    model = CAREModel.load(tmp_path / "m")
    assert model.config.train_time_budget == 4.0
    assert model.config.train_loss == "fsc" and model.config.train_schedule == "cosine"
    _, even, odd = smooth_pair
    io.write(tmp_path / "e.mrc", even[:12])
    io.write(tmp_path / "o.mrc", odd[:12])
    assert main(["predict", "--model", str(tmp_path / "m"), "--even", str(tmp_path / "e.mrc"),
                 "--odd", str(tmp_path / "o.mrc"), "--output", str(tmp_path / "d.mrc"),
                 "--tta", "--force-model", "-q"]) == 0
    expected = model.denoise(even[:12], odd[:12], tta=True)
    np.testing.assert_allclose(io.read(tmp_path / "d.mrc"), expected, atol=1e-5)
    with pytest.raises(SystemExit) as error:
        main(["train", str(tmp_path / "pairs.npz"), "--output", str(tmp_path / "m2"),
              "--time-budget", "soon", "-q"])
    assert error.value.code == 2


def test_diffusion_training_keeps_the_time_budget_across_both_phases(pairs):
    from cryocare.training import train_stagewise

    config = CareConfig(network="diffusion", diffusion_stages=2, diffusion_filters=4,
                        train_epochs=100_000, train_steps_per_epoch=3, train_batch_size=4,
                        train_time_budget=6.0, train_schedule="cosine", seed=1)
    start = time.perf_counter()
    model = train_stagewise(pairs, config, stage_epochs=1000)
    # Start-up, two greedy compilations and the joint one on a loaded 2-core machine took
    # up to 20 s beyond the budget (generous margin, as for the U-Net above).
    assert time.perf_counter() - start < config.train_time_budget + 30
    # The joint phase got what the greedy phase left of the one budget, and trained.
    assert model.config.train_time_budget == 6.0
    assert len(model.history["val_loss"]) >= 1


# ---------------------------------------------------------------------------- precision
def test_bfloat16_training_predicts_in_float32(pairs, caplog):
    from cryocare.backends import precision_runs

    model = train(pairs, TINY.replace(train_precision="mixed_bfloat16",
                                                train_epochs=1))
    hidden = [layer for layer in model.keras_model.layers if layer.weights][0]
    if precision_runs("mixed_bfloat16"):
        assert hidden.compute_dtype == "bfloat16"
    else:  # e.g. a CPU without AVX-512: float32 instead, said in a warning
        assert hidden.compute_dtype == "float32"
        assert "training in float32" in caplog.text
    image = np.random.default_rng(4).normal(size=(21, 30, 26)).astype(np.float32)
    untiled = model.predict(image, tile_shape=None)
    tiled = model.predict(image, tile_shape=(8, 12, 8))
    # bfloat16 would differ by ~1e-2 between tilings; float32 prediction by rounding only.
    assert np.abs(tiled - untiled).max() <= 1e-5 * np.ptp(untiled)


def test_configs_with_the_old_mixed_precision_flag_still_load():
    assert CareConfig.from_dict({"train_mixed_precision": True}).train_precision == \
        "mixed_float16"
    assert CareConfig.from_dict({"train_mixed_precision": False}).train_precision == "float32"
    with pytest.raises(InputError, match="train_mixed_precision"):
        CareConfig.from_dict({"train_mixed_precision": "False"})
    with pytest.raises(InputError, match="train_precision"):
        CareConfig(train_precision="int8")


def test_bfloat16_prediction_is_close_to_float32(caplog):
    from cryocare.backends import precision_runs

    config = CareConfig(unet_n_depth=2, unet_n_first=4, seed=6)
    model = CAREModel(config, Normalization(mean=1.0, std=2.0))
    image = np.random.default_rng(5).normal(1.0, 2.0, size=(16, 24, 28)).astype(np.float32)
    exact = model.predict(image, tile_shape=None)
    fast = model.predict(image, tile_shape=None, precision="bfloat16")
    assert fast.dtype == np.float32
    difference = np.abs(fast - exact).max() / np.ptp(exact)
    if precision_runs("mixed_bfloat16"):
        assert 0 < difference < 1e-2  # bfloat16 keeps 8 bits of mantissa
    else:  # no bfloat16 kernels here (a CPU without AVX-512): float32, with a warning
        assert difference <= 1e-6 and "predicting in float32" in caplog.text
    with pytest.raises(InputError, match="precision"):
        model.predict(image, precision="int8")


def test_a_precision_the_device_cannot_run_falls_back_to_float32(pairs, monkeypatch, caplog):
    """Where bfloat16 has no kernels (oneDNN below AVX-512), asking for it neither crashes
    training midway nor prediction: both compute in float32 and say so."""
    from cryocare import backends

    monkeypatch.setattr(backends, "precision_runs", lambda policy: policy == "float32")
    model = train(pairs, TINY.replace(train_precision="mixed_bfloat16", train_epochs=1))
    assert model.config.train_precision == "float32"
    assert [layer for layer in model.keras_model.layers if layer.weights][0].compute_dtype \
        == "float32"
    image = np.random.default_rng(4).normal(size=(21, 30, 26)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(image, precision="bfloat16"),
                                  model.predict(image))
    assert "training in float32" in caplog.text and "predicting in float32" in caplog.text


# ------------------------------------------------------------ fitting the machine
def _seconds_per_voxel(rate, setup=5.0):
    """A machine on which a step costs ``rate`` seconds per voxel of batch and filter."""
    def step_time(recipe):
        config = recipe.config
        return setup, rate * config.train_batch_size * np.prod(recipe.patch_shape) * \
            config.unet_n_first
    return step_time


def test_a_fast_machine_keeps_the_recipe():
    from cryocare.recipe import ENOUGH_STEPS, fit_recipe

    fit = fit_recipe(DEFAULT_RECIPE, budget=720, step_time=_seconds_per_voxel(2e-8),
                     finetuning=False)
    assert fit.recipe == DEFAULT_RECIPE and fit.enough
    assert fit.steps >= ENOUGH_STEPS["scratch"]
    assert "the recipe's 16 filters, batch 16, patches 32x32x32 buys about" in fit.reason


def test_a_slow_machine_trains_smaller_batches_and_a_narrower_network_unless_fine_tuning():
    from cryocare.recipe import fit_recipe

    slow = _seconds_per_voxel(3e-7)  # the recipe's step: 2.5 s, 243 steps in 12 minutes
    scratch = fit_recipe(DEFAULT_RECIPE, budget=720, step_time=slow, finetuning=False)
    # Batch 8 buys 481 steps, fewer than the 600 wanted; 8 filters as well buy 955.
    assert (scratch.recipe.config.unet_n_first, scratch.recipe.config.train_batch_size) == (8, 8)
    assert scratch.enough and scratch.steps == 955
    assert "8 filters, batch 8, patches 32x32x32: about 955 steps" in scratch.reason
    # Fine-tuning wants fewer steps, and keeps the network: 77 steps of batch 16, 150 of 8.
    tuned = fit_recipe(DEFAULT_RECIPE, budget=240, step_time=slow, finetuning=True)
    assert tuned.recipe.config.unet_n_first == 16  # the pretrained network is kept
    assert tuned.recipe.config.train_batch_size == 8 and tuned.enough


def test_measuring_counts_against_the_budget_and_a_hopeless_budget_says_so():
    from cryocare.recipe import MEASURE_SHARE, candidates, fit_recipe

    seen = []

    def step_time(recipe):
        seen.append(recipe)
        return 20.0, 10.0  # every setting equally slow: measuring one takes 40 s

    fit = fit_recipe(DEFAULT_RECIPE, budget=1600, step_time=step_time, finetuning=False)
    assert seen == candidates(DEFAULT_RECIPE, finetuning=False)  # 40 s each, of 1400+ left
    assert not fit.enough and fit.recipe == seen[0]  # none buys 1.5 times its steps
    # (1600 - measuring the first, 40 s - setting it up again, 20 s) / (10 s * 1.15)
    assert fit.steps == 133 and "fewer than the 600 wanted" in fit.reason
    seen.clear()
    fit = fit_recipe(DEFAULT_RECIPE, budget=150, step_time=step_time, finetuning=False)
    assert len(seen) == 1 and 40 > MEASURE_SHARE * (150 - 40)  # a quarter of what is left
    assert fit.steps == 7


def test_a_smaller_setting_must_buy_half_again_as_many_steps():
    from cryocare.recipe import fit_recipe

    # bfloat16 on a fast CPU: halving the batch saves only 10 % of the step.
    times = iter([(5.0, 1.0), (5.0, 0.9), (5.0, 0.5), (5.0, 0.3)])
    fit = fit_recipe(DEFAULT_RECIPE, budget=400, step_time=lambda r: next(times),
                     finetuning=False)
    # 337 steps of the recipe, 368 of batch 8 (not half again as many), 652 of 8 filters.
    assert (fit.recipe.config.unet_n_first, fit.recipe.config.train_batch_size) == (8, 8)
    assert fit.steps == 652 and fit.enough


def test_train_on_pair_fits_the_machine_and_warns_when_the_budget_is_too_small(
        smooth_pair, monkeypatch, caplog):
    from cryocare.training import speed

    _, even, odd = smooth_pair
    monkeypatch.setattr(speed, "step_seconds",
                        lambda config, patch_shape: (0.0, 0.1 * config.train_batch_size))
    recipe = DEFAULT_RECIPE.replace(
        n_patches=40, patch_shape=(16, 16, 16), config=DEFAULT_RECIPE.config.replace(
            unet_n_first=4, train_batch_size=8, train_epochs=1, train_steps_per_epoch=2,
            train_precision="float32"))
    with caplog.at_level("INFO", logger="cryocare.recipe"):
        model = train_on_pair(even, odd, recipe=recipe, budget=60.0, init="none")
    assert model.config.train_batch_size == 4  # buys twice the steps of batch 8
    assert "fitted to this machine: 4 filters, batch 4, patches 16x16x16" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # 60 s less the start-up, at 0.4 s (+15 %) per step: about 125 steps, not the 600 wanted.
    assert len(warnings) == 1 and "a budget of 60 s buys about 1" in warnings[0]
    assert "near or below NAD's" in warnings[0] and "the 600 steps wanted" in warnings[0]


def test_train_on_pair_fine_tunes_a_matching_model_at_the_fine_tuning_rate(smooth_pair):
    _, even, odd = smooth_pair
    recipe = DEFAULT_RECIPE.replace(
        n_patches=40, patch_shape=(16, 16, 16), config=DEFAULT_RECIPE.config.replace(
            unet_n_first=4, train_batch_size=4, train_epochs=1, train_steps_per_epoch=2))
    first = train_on_pair(even, odd, recipe=recipe, budget=None, init="none")
    assert first.config.train_learning_rate == recipe.config.train_learning_rate
    tuned = train_on_pair([even], [odd], recipe=recipe, budget=None, init=first)
    assert tuned.config.train_learning_rate == recipe.finetune_learning_rate
    assert tuned.config.train_warmup == recipe.finetune_warmup


def test_resuming_continues_the_checkpoints_run_without_fitting_again(smooth_pair, tmp_path,
                                                                      monkeypatch):
    from cryocare.training import speed

    _, even, odd = smooth_pair
    recipe = DEFAULT_RECIPE.replace(
        n_patches=40, patch_shape=(16, 16, 16), config=DEFAULT_RECIPE.config.replace(
            unet_n_first=4, train_batch_size=4, train_epochs=1, train_steps_per_epoch=2,
            train_precision="float32"))
    first = train_on_pair(even, odd, recipe=recipe, budget=None, init="none",
                          checkpoint_dir=tmp_path / "ck")
    monkeypatch.setattr(speed, "step_seconds", lambda *a, **k: pytest.fail("measured again"))
    other = recipe.replace(patch_shape=(8, 8, 8), config=recipe.config.replace(
        train_batch_size=2, train_epochs=2))
    resumed = train_on_pair(even, odd, recipe=other, budget=600.0, init="none",
                            checkpoint_dir=tmp_path / "ck", resume=True)
    # The checkpoint's config (batch 4, one epoch) and patches (16^3): nothing left to do.
    assert resumed.config.train_batch_size == 4
    assert resumed.history["val_loss"] == first.history["val_loss"]


def test_denoise_in_one_call_trains_with_the_recipe_and_restores_both_halves(smooth_pair):
    import cryocare

    clean, even, odd = smooth_pair
    recipe = DEFAULT_RECIPE.replace(
        n_patches=80, patch_shape=(16, 16, 16), tta=False, config=DEFAULT_RECIPE.config.replace(
            unet_n_first=4, train_batch_size=8, train_epochs=2, train_steps_per_epoch=10))
    denoised = cryocare.denoise(even, odd, recipe=recipe, budget=None, init="none", seed=1)
    assert denoised.shape == even.shape and denoised.dtype == np.float32
    raw = (even + odd) / 2
    assert np.mean((denoised - clean) ** 2) < np.mean((raw - clean) ** 2)


def test_by_default_training_fine_tunes_the_shipped_pretrained_model(smooth_pair):
    from cryocare import pretrained
    from cryocare.model import CAREModel

    if "general" not in pretrained.names():
        pytest.skip("the pretrained model is not installed")
    _, even, odd = smooth_pair
    quick = DEFAULT_RECIPE.replace(n_patches=20, config=DEFAULT_RECIPE.config.replace(
        train_epochs=1, train_steps_per_epoch=1, train_batch_size=2, train_precision="float32"))
    general = CAREModel.load(pretrained.model_path())
    model = train_on_pair(np.concatenate([even] * 2, axis=1), np.concatenate([odd] * 2, axis=1),
                          recipe=quick, budget=None)  # init="pretrained": its network matches
    assert model.config.train_learning_rate == quick.finetune_learning_rate
    # One step at a low rate: the weights are still close to the pretrained ones.
    start, tuned = general.keras_model.get_weights()[0], model.keras_model.get_weights()[0]
    assert np.abs(tuned - start).max() < 0.1 * np.abs(start).max()
