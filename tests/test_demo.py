"""The demo of README's first command, at a tiny size."""

import pytest

from cryocare.demo import run_demo
from cryocare.errors import OutputExistsError
from cryocare.recipe import DEFAULT_RECIPE

# The demo's recipe capped at 20 steps instead of a time budget: a budget of seconds
# can run out before training starts on a loaded machine (measuring, sampling).
TINY = DEFAULT_RECIPE.override(
    config=DEFAULT_RECIPE.config.replace(train_epochs=2, train_steps_per_epoch=10,
                                         train_precision="float32"),
    patch_shape=16, n_patches=200)


@pytest.mark.slow
def test_the_demo_writes_its_files_and_scores_every_method(tmp_path):
    result = run_demo(tmp_path / "demo", shape=(32, 64, 64), recipe=TINY, budget=0, seed=3)
    assert set(result.scores) == {"raw", "median", "NAD", "CARE", "CARE wedge"}
    for name in ("even", "odd", "clean", "isotropic", "denoised", "restored", "segmentation",
                 "figure"):
        assert result.files[name].is_file(), name
    assert 1 <= result.settings["NAD"]["iterations"] <= 60  # tuned on the halves
    # The shipped model, fine-tuned for 20 steps, is already far above the raw average.
    assert result.scores["CARE"]["psnr"] > result.scores["raw"]["psnr"] + 3
    # The wedge scores, for the two networks only; the restorer fills the cone of CARE's
    # result with far more of the truth than Noise2Noise put there (at this size and seed
    # measured 0.612 against 0.298, Z/X 3.8 against 7.7; 0.2 leaves room for the backend).
    assert {k for k, v in result.scores.items() if "cone_r" in v} == {"CARE", "CARE wedge"}
    assert result.scores["CARE wedge"]["cone_r"] > result.scores["CARE"]["cone_r"] + 0.2
    assert 1 <= result.scores["CARE wedge"]["z_ratio"] < result.scores["CARE"]["z_ratio"]
    assert "wedge" in result.timings
    with pytest.raises(OutputExistsError, match="from an earlier run"):
        run_demo(tmp_path / "demo", shape=(32, 64, 64), recipe=TINY, budget=0, seed=3)
