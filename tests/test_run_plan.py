"""One training plan for every face: the start loaded once, fine-tuning rates, the machine fit."""

import pytest

from cryocare import modelfiles
from cryocare.cli import main
from cryocare.pairs import sample_pairs
from cryocare.recipe import DEFAULT_RECIPE, plan_run, train_on_pair
from cryocare.simulate import simulate_tomogram
from cryocare.training import speed


@pytest.fixture(scope="module")
def halves():
    data = simulate_tomogram((24, 48, 48), seed=3)
    return data.even, data.odd


@pytest.fixture()
def loads(monkeypatch):
    """Counts the models loaded (the pretrained one is a model folder like any other)."""
    calls = []
    real = modelfiles.load_model

    def counted(source, *args, **kwargs):
        calls.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(modelfiles, "load_model", counted)
    # each step costs 0.1 s per pair of the batch: the fit is decided by this, not the machine
    monkeypatch.setattr(speed, "step_seconds",
                        lambda config, patch_shape: (0.0, 0.1 * config.train_batch_size))
    return calls


def _tiny(recipe=DEFAULT_RECIPE):
    return recipe.replace(n_patches=24, patch_shape=(16, 16, 16), config=recipe.config.replace(
        train_epochs=1, train_steps_per_epoch=2, train_batch_size=8, train_precision="float32"))


def test_a_run_from_the_pretrained_model_plans_its_fine_tuning_rate_and_a_fit(loads):
    run = plan_run(_tiny(), init="pretrained", budget=60.0)
    assert loads == ["pretrained"] and run.start is not None
    assert run.config.train_learning_rate == DEFAULT_RECIPE.finetune_learning_rate
    assert run.fit is not None and run.config.train_batch_size == 4  # twice the steps of 8
    scratch = plan_run(_tiny(), init="none", budget=60.0, fit=False)
    assert scratch.start is None and scratch.fit is None
    assert scratch.config.train_learning_rate == DEFAULT_RECIPE.config.train_learning_rate
    # pairs sampled already: the fit changes the batch, never the patches
    kept = plan_run(_tiny().replace(patch_shape=(24, 24, 24)), init="none", budget=60.0,
                    keep_patches=True)
    assert kept.patch_shape == (24, 24, 24)


def test_train_on_pair_loads_the_starting_model_once(halves, loads):
    model = train_on_pair(*halves, recipe=_tiny(), budget=60.0, init="pretrained")
    assert loads == ["pretrained"]
    assert model.config.train_learning_rate == DEFAULT_RECIPE.finetune_learning_rate


def test_cryocare_train_pairs_is_planned_like_denoise(halves, loads, tmp_path, caplog):
    pairs = sample_pairs([halves[0]], [halves[1]], patch_shape=16, n_patches=24, seed=0)
    pairs.save(tmp_path / "pairs.npz")
    with caplog.at_level("INFO", logger="cryocare.recipe"):
        assert main(["train", str(tmp_path / "pairs.npz"), "--output", str(tmp_path / "m"),
                     "--epochs", "1", "--steps", "2", "--time-budget", "60s", "-v"]) == 0
    # the same machine-fitting line as `cryocare denoise` (batch 16 -> 8 -> 4: twice the
    # steps each time at 0.1 s per pair; the patches of the pair file kept), the start
    # loaded once
    assert "fitted to this machine: 16 filters, batch 4, patches 16x16x16" in caplog.text
    assert loads == ["pretrained"]
    trained = modelfiles.load_model(tmp_path / "m")
    assert trained.config.train_batch_size == 4
    assert trained.config.train_learning_rate == DEFAULT_RECIPE.finetune_learning_rate
