"""Tomograms without halves (issue 29): zero-shot prediction from Python and the command line.

One seeded simulated volume (the average of its halves, as a tomogram reconstructed from
all frames) and the shipped pretrained model, loaded once; every test here is seconds.
"""

import logging

import mrcfile
import numpy as np
import pytest
import tifffile

import cryocare
from cryocare import io
from cryocare.cli import main
from cryocare.filters import gaussian
from cryocare.metrics import psnr_affine
from cryocare.single import denoise_tomogram, output_paths

SHAPE = (40, 80, 80)


@pytest.fixture(scope="module")
def volume():
    data = cryocare.simulate_tomogram(SHAPE, seed=1)
    return data.clean, ((data.even + data.odd) / 2).astype(np.float32)


@pytest.fixture(scope="module")
def pretrained():
    return cryocare.load_model("pretrained")


@pytest.fixture
def reuse_model(pretrained, monkeypatch):
    """The command line loads the one pretrained model of this module (loading takes seconds);
    returns the list of what it was asked to load."""
    import cryocare.modelfiles

    asked = []

    def load_model(source, **kwargs):
        asked.append(source.path)
        return pretrained

    monkeypatch.setattr(cryocare.modelfiles, "load_model", load_model)
    return asked


def test_zero_shot_beats_the_gaussian_filter_by_half_a_decibel(volume, pretrained):
    clean, tomogram = volume
    denoised = cryocare.denoise_tomogram(tomogram, model=pretrained)
    assert denoised.shape == SHAPE and denoised.dtype == np.float32
    # PSNR after the least-squares affine fit to the truth: the network's output and the
    # filter's keep different intensity scales; the fit removes that for both alike.
    ours, filtered = psnr_affine(clean, denoised), psnr_affine(clean, gaussian(tomogram))
    assert ours >= filtered + 0.5, (ours, filtered)  # measured: 32.7 vs 28.6 dB


def test_predict_one_tomogram_from_the_command_line(volume, pretrained, tmp_path, capsys):
    """The real command, model loading included: `cryocare predict --model pretrained T -o O`."""
    _, tomogram = volume
    io.write(tmp_path / "tomo.mrc", tomogram, voxel_size=13.5, origin=(1.0, 2.0, 3.0))
    assert main(["predict", "--model", "pretrained", str(tmp_path / "tomo.mrc"),
                 "-o", str(tmp_path / "out.mrc"), "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out.mrc")
    info = io.read_info(tmp_path / "out.mrc")
    assert info.shape == SHAPE and info.voxel_size == (13.5, 13.5, 13.5)
    assert info.origin == (1.0, 2.0, 3.0)
    expected = denoise_tomogram(tomogram, model=pretrained)
    # The same model and tiles; float32 rounding between a tiled and a whole pass.
    np.testing.assert_allclose(io.read(tmp_path / "out.mrc"), expected, rtol=0,
                               atol=1e-4 * np.ptp(expected))


def test_a_folder_and_a_glob_of_mrc_and_tiff_tomograms(volume, reuse_model, tmp_path):
    _, tomogram = volume
    (tmp_path / "in").mkdir()
    io.write(tmp_path / "in" / "TS_01.mrc", tomogram)
    tifffile.imwrite(tmp_path / "in" / "TS_02.tif", tomogram[:, ::-1])
    (tmp_path / "in" / "notes.txt").write_text("not a tomogram")
    io.write(tmp_path / "TS_03.rec", tomogram[::-1])
    assert main(["predict", "--model", "pretrained", str(tmp_path / "in"),
                 str(tmp_path / "*.rec"), "-o", str(tmp_path / "out"), "-q"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["TS_01_denoised.mrc", "TS_02_denoised.mrc", "TS_03_denoised.mrc"]
    first = io.read(tmp_path / "out" / "TS_01_denoised.mrc")
    flipped = io.read(tmp_path / "out" / "TS_02_denoised.mrc")[:, ::-1]
    # The same volume flipped along Y: the U-Net is not flip-equivariant, so only close.
    assert np.corrcoef(first.ravel(), flipped.ravel())[0, 1] > 0.95
    assert len(reuse_model) == 1  # one model for every tomogram


def test_a_header_with_zeroed_statistics_is_read_correctly(volume, reuse_model, tmp_path):
    # AreTomo3 writes dmin = dmax = dmean = rms = 0; nothing may trust them.
    _, tomogram = volume
    path = tmp_path / "TS_01_Vol.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(tomogram)
        mrc.voxel_size = 10.0
        mrc.header.dmin = mrc.header.dmax = mrc.header.dmean = mrc.header.rms = 0
    assert float(mrcfile.open(path).header.dmax) == 0.0
    np.testing.assert_array_equal(io.read(path), tomogram)
    np.testing.assert_array_equal(io.read(path, mmap=True), tomogram)
    assert io.validate(path).shape == SHAPE
    assert main(["predict", "--model", "pretrained", str(path), "-o",
                 str(tmp_path / "out.mrc"), "-q"]) == 0
    out = io.read(tmp_path / "out.mrc")
    header = mrcfile.open(tmp_path / "out.mrc").header  # the output's statistics are real
    assert float(header.dmin) == pytest.approx(out.min())
    assert float(header.dmax) == pytest.approx(out.max())
    assert float(header.dmean) == pytest.approx(out.mean(), abs=1e-4 * float(np.ptp(out)))


def test_denoise_without_halves_says_it_predicts_zero_shot(volume, reuse_model, tmp_path,
                                                          caplog):
    _, tomogram = volume
    io.write(tmp_path / "tomo.mrc", tomogram)
    with caplog.at_level(logging.WARNING, logger="cryocare"):
        assert main(["denoise", str(tmp_path / "tomo.mrc"), "-o",
                     str(tmp_path / "out.mrc"), "-q"]) == 0
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "no even/odd halves" in text and "zero-shot" in text
    assert io.read_info(tmp_path / "out.mrc").shape == SHAPE
    for refused in (["--init", "none"], ["--save-model", str(tmp_path / "model")]):
        assert main(["denoise", str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "o2.mrc"),
                     *refused, "-q"]) == 2
    assert not (tmp_path / "o2.mrc").exists() and not (tmp_path / "model").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["T1.mrc", "T2.mrc", "-o", "out.mrc"], "with 2 tomograms, the output must be a folder"),
    (["T1.mrc", "--even", "T2.mrc", "--odd", "T1.mrc", "-o", "out.mrc"], "found both"),
    (["T1.mrc", "-o", "out.tif"], "expected an MRC file name"),
    (["missing.mrc", "-o", "out.mrc"], "missing.mrc: no such file or folder"),
    # Regression (issue 29): one volume given as --even was answered with the list of options.
    (["--even", "T1.mrc", "-o", "out.mrc"], "--even without --odd: give both halves, or a "
                                            "tomogram without halves without either"),
])
def test_bad_single_tomogram_input_is_one_line(volume, tmp_path, monkeypatch, capsys, args,
                                               message):
    _, tomogram = volume
    monkeypatch.chdir(tmp_path)
    io.write("T1.mrc", tomogram[:8, :16, :16]), io.write("T2.mrc", tomogram[:8, :16, :16])
    assert main(["predict", "--model", "pretrained", *args, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mrc").exists()


def test_output_names_follow_the_inputs(tmp_path):
    (tmp_path / "out").mkdir()
    pairs = output_paths([tmp_path / "a" / "x.mrc"], tmp_path / "out")
    assert pairs == [(tmp_path / "a" / "x.mrc", tmp_path / "out" / "x_denoised.mrc")]
    with pytest.raises(cryocare.InputError, match="would be written to x_denoised.mrc"):
        output_paths([tmp_path / "a" / "x.mrc", tmp_path / "b" / "x.tif"], tmp_path / "out")


def test_the_python_face_lists_the_one_call():
    assert "denoise_tomogram" in dir(cryocare)
    assert cryocare.denoise_tomogram is denoise_tomogram


# ------------------------------------------------ the blind-spot objective (one noisy volume)
def test_blind_spots_hide_a_box_shaped_for_the_noise_and_score_only_their_centres():
    from cryocare.config import CareConfig
    from cryocare.training.objectives import BLIND_SPACING, BlindSpot, get

    x = np.random.default_rng(0).normal(size=(3, 18, 24, 30)).astype(np.float32)
    objective = get(CareConfig(train_objective="blindspot"))
    assert isinstance(objective, BlindSpot) and objective.extent(3) == (1, 0, 2)  # tilt axis Y
    inputs, targets = objective.batch(x, x, rng=np.random.default_rng(1),
                                      patch_shape=x.shape[1:])
    assert inputs.shape == (*x.shape, 1) and targets.shape == (*x.shape, 2)
    np.testing.assert_array_equal(targets[..., 0], x)
    weights = targets[..., 1]
    per_block = np.prod([n // BLIND_SPACING for n in x.shape[1:]])
    assert set(np.unique(weights)) == {0.0, 1.0}
    assert (weights.sum(axis=(1, 2, 3)) == per_block).all()
    changed = inputs[..., 0] != x
    assert changed[weights > 0].all()  # every centre is hidden
    # What the blind spots hold comes from the patch itself.
    assert np.isin(inputs[..., 0][changed], x).all()
    # One block per patch: exactly the box around its centre is replaced, ±1 along Z,
    # ±2 across the tilt axis (X), nothing along it (Y). A donor may be the voxel itself.
    x = np.random.default_rng(3).normal(size=(20, 6, 6, 6)).astype(np.float32)
    inputs, targets = objective.batch(x, x, rng=np.random.default_rng(4), patch_shape=(6,) * 3)
    for i in range(len(x)):
        (z,), (y,), (c,) = np.nonzero(targets[i, ..., 1])
        box = np.zeros((6, 6, 6), bool)
        box[max(z - 1, 0):z + 2, y, max(c - 2, 0):c + 3] = True
        changed = inputs[i, ..., 0] != x[i]
        assert not (changed & ~box).any() and changed[box].mean() > 0.75
    # Tilt axis X turns the box.
    assert get(CareConfig(train_objective="blindspot", train_tilt_axis="X")).extent(3) == (1, 2, 0)


def test_the_blind_spot_loss_is_the_squared_error_at_the_centres_only():
    from cryocare.config import CareConfig
    from cryocare.training.objectives import get

    rng = np.random.default_rng(2)
    target, prediction = rng.normal(size=(2, 2, 8, 8, 8)).astype(np.float32)
    weights = (rng.random(target.shape) < 0.1).astype(np.float32)
    loss = get(CareConfig(train_objective="blindspot")).loss((8, 8, 8))
    value = float(loss(np.stack([target, weights], -1), prediction[..., None]))
    expected = ((prediction - target) ** 2 * weights).sum() / weights.sum()
    assert value == pytest.approx(expected, rel=1e-5)
