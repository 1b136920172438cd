"""The demo of README's first command, at a tiny size."""

import pytest

from cryocare.demo import run_demo
from cryocare.errors import OutputExistsError


@pytest.mark.slow
def test_the_demo_writes_its_files_and_scores_every_method(tmp_path):
    result = run_demo(tmp_path / "demo", shape=(32, 64, 64), budget=12.0, seed=3)
    assert set(result.scores) == {"raw", "median", "NAD", "CARE"}
    for name in ("even", "odd", "clean", "denoised", "segmentation", "figure"):
        assert result.files[name].is_file(), name
    assert 1 <= result.settings["NAD"]["iterations"] <= 60  # tuned on the halves
    # The shipped model, fine-tuned for seconds, is already far above the raw average.
    assert result.scores["CARE"]["psnr"] > result.scores["raw"]["psnr"] + 3
    with pytest.raises(OutputExistsError, match="from an earlier run"):
        run_demo(tmp_path / "demo", shape=(32, 64, 64), budget=12.0, seed=3)
