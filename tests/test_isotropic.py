"""Two-scale missing-wedge restoration: binning, the Fourier merge, WedgeRestorer and its faces."""

import numpy as np
import pytest

from cryocare.config import CareConfig
from cryocare.errors import InputError
from cryocare.isotropic import WedgeRestorer
from cryocare.metrics import lowpass
from cryocare.model import CAREModel
from cryocare.wedge import (
    Wedge,
    bin_volume,
    measured_mask,
    merge_cone,
    missing_mask,
    unbin_volume,
)

TINY = CareConfig(unet_n_depth=1, unet_n_first=2, seed=3)
WEDGE = Wedge(-55.0, 60.0)


def _smooth(shape, seed, cutoff=0.18):
    return lowpass(np.random.default_rng(seed).normal(size=shape), cutoff).astype(np.float32)


def _tiny_restorer(wedge=WEDGE, binning=2):
    return WedgeRestorer(CAREModel(TINY, None), CAREModel(TINY.replace(wedge_binning=binning,
                                                                      seed=4), None), wedge)


# ------------------------------------------------------------------ binning
@pytest.mark.parametrize("shape", [(32, 48, 64), (16, 24, 40)])
def test_unbinning_restores_what_binning_kept(shape):
    """Below the binned Nyquist frequency nothing is lost: shift and block transfer undone."""
    volume = _smooth(shape, 1)
    back = unbin_volume(bin_volume(volume, 2), 2, shape)
    assert np.abs(back - volume).max() < 1e-4 * np.abs(volume).max()


def test_binning_pads_odd_shapes_and_unbinning_crops_back():
    volume = _smooth((33, 47, 62), 2)
    binned = bin_volume(volume, 2)
    assert binned.shape == (17, 24, 31)
    assert binned[-1, 0, 0] == pytest.approx(volume[-1, :2, :2].mean(), rel=1e-5)
    back = unbin_volume(binned, 2, volume.shape)
    inner = (slice(4, -4),) * 3  # the padded edge is no longer periodic
    assert np.corrcoef(back[inner].ravel(), volume[inner].ravel())[0, 1] > 0.999
    with pytest.raises(InputError, match="does not bin"):
        unbin_volume(binned, 2, (40, 47, 62))
    with pytest.raises(InputError, match="factor"):
        bin_volume(volume, 0)


# ------------------------------------------------------------------ the merge
def test_merge_keeps_the_measured_directions_and_takes_the_cone_from_the_restoration():
    shape = (32, 48, 64)
    denoised = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    truth = _smooth(shape, 6, cutoff=0.2)
    merged = merge_cone(denoised, bin_volume(truth, 2), WEDGE, 2)
    spectrum = {name: np.fft.fftn(v) for name, v in
                (("merged", merged), ("denoised", denoised), ("truth", truth))}
    measured = measured_mask(shape, WEDGE)
    scale = np.abs(spectrum["denoised"]).max()
    assert np.abs(spectrum["merged"] - spectrum["denoised"])[measured].max() < 1e-4 * scale
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n) for n in shape),
                                              indexing="ij")))
    cone = missing_mask(shape, WEDGE) & (k < 0.2)
    assert np.abs(spectrum["merged"] - spectrum["truth"])[cone].max() < 1e-3 * scale
    with pytest.raises(InputError, match="binned by 2"):
        merge_cone(denoised, truth, WEDGE, 2)


# ------------------------------------------------------------------ WedgeRestorer
@pytest.mark.backend
def test_restorer_is_the_denoiser_in_the_measured_directions():
    """Restoring the wedge changes nothing the tilt series measured."""
    restorer = _tiny_restorer()
    rng = np.random.default_rng(7)
    even, odd = rng.normal(size=(2, 24, 40, 32)).astype(np.float32)
    restored = restorer.denoise(even, odd)
    denoised = restorer.denoiser.denoise(even, odd)
    measured = measured_mask(restored.shape, WEDGE)
    change = np.fft.fftn(restored - denoised)
    assert np.abs(change[measured]).max() < 1e-4 * np.abs(np.fft.fftn(denoised)).max()
    assert np.abs(change[~measured]).max() > 0  # and the cone did change
    single = restorer.predict(even)
    assert single.shape == even.shape and not np.allclose(single, restored)
    with pytest.raises(InputError, match="differ in shape"):
        restorer.denoise(even, odd[:-1])
    with pytest.raises(InputError, match="3-D"):
        WedgeRestorer(CAREModel(TINY.replace(n_dim=2), None), restorer.restorer, WEDGE)


@pytest.mark.backend
def test_the_restorer_averages_its_prediction_over_the_flips_of_the_binned_halves():
    """What goes into the cone is the mean of the restorer's predictions on each flip of
    the binned halves' mean."""
    import itertools

    restorer = _tiny_restorer()
    even, odd = np.random.default_rng(11).normal(size=(2, 16, 32, 24)).astype(np.float32)
    denoised = restorer.denoiser.denoise(even, odd)
    binned = (bin_volume(even, 2) + bin_volume(odd, 2)) / 2  # the restorer sees their mean
    predictions = []
    for axes in itertools.chain.from_iterable(itertools.combinations(range(3), n)
                                              for n in range(4)):
        flipped = np.ascontiguousarray(np.flip(binned, axes))
        predictions.append(np.flip(restorer.restorer.predict(flipped), axes))
    expected = merge_cone(denoised, np.mean(predictions, axis=0), WEDGE, 2)
    restored = restorer.fill_cone(denoised, even, odd)
    assert restorer.flips == 8
    np.testing.assert_allclose(restored, expected, atol=1e-5 * np.abs(expected).max())
    once = WedgeRestorer(restorer.denoiser, restorer.restorer, WEDGE, flips=1)
    np.testing.assert_allclose(once.fill_cone(denoised, even, odd),
                               merge_cone(denoised, predictions[0], WEDGE, 2),
                               atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(once.fill_cone(denoised, even, odd), restored)
    assert restorer.with_wedge("-45,45").flips == 8 and once.with_wedge("-45,45").flips == 1
    with pytest.raises(InputError, match="flips"):
        WedgeRestorer(restorer.denoiser, restorer.restorer, WEDGE, flips=3)


@pytest.mark.backend
def test_a_refiner_fills_the_cone_above_the_binned_nyquist_frequency():
    """Below the binned Nyquist frequency the cone stays the restorer's, above it the
    refiner's (which sees the halves' mean with the restorer's cone in it); the measured
    directions stay the denoiser's."""
    plain = _tiny_restorer()
    plain = WedgeRestorer(plain.denoiser, plain.restorer, WEDGE, flips=1)
    refiner = CAREModel(TINY.replace(seed=5), None)
    refined = WedgeRestorer(plain.denoiser, plain.restorer, WEDGE, flips=1, refiner=refiner)
    even, odd = np.random.default_rng(12).normal(size=(2, 16, 32, 24)).astype(np.float32)
    denoised = plain.denoiser.denoise(even, odd)
    mean = (even + odd) / 2
    coarse = plain.restorer.predict(bin_volume(mean, 2))
    fine = refiner.predict(merge_cone(mean, coarse, WEDGE, 2))
    expected = merge_cone(merge_cone(denoised, fine, WEDGE), coarse, WEDGE, 2)
    restored = refined.denoise(even, odd)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(restored, expected, atol=1e-5 * scale)
    change = np.fft.fftn(restored - plain.denoise(even, odd))
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n) for n in even.shape),
                                              indexing="ij")))
    cone = missing_mask(even.shape, WEDGE)
    below = np.abs(np.fft.fftfreq(even.shape[0]))[:, None, None] < 0.24
    below = below & (np.abs(np.fft.fftfreq(even.shape[1]))[None, :, None] < 0.24) & (
        np.abs(np.fft.fftfreq(even.shape[2]))[None, None, :] < 0.24)
    spectrum = np.abs(np.fft.fftn(restored)).max()
    assert np.abs(change[~cone]).max() < 1e-4 * spectrum  # measured: the denoiser's
    assert np.abs(change[cone & below]).max() < 1e-4 * spectrum  # the restorer's, as before
    assert np.abs(change[cone & (k > 0.3)]).max() > 1e-3 * spectrum  # the refiner's
    assert "refiner=True" in repr(refined) and refined.with_wedge("-45,45").refiner is refiner
    single = refined.predict(even)
    assert single.shape == even.shape and np.isfinite(single).all()


def test_restorer_saves_loads_and_takes_another_range(tmp_path):
    from cryocare.errors import OutputExistsError
    from cryocare.modelfiles import RESTORER, inspect_model, load_model

    restorer = _tiny_restorer()
    folder = restorer.save(tmp_path / "restoration")
    with pytest.raises(OutputExistsError):
        restorer.save(folder)
    source = inspect_model(folder)
    assert source.kind == RESTORER and source.n_dim == 3
    assert source.config["wedge_binning"] == 2
    even = np.random.default_rng(8).normal(size=(16, 32, 32)).astype(np.float32)
    loaded = load_model(folder)
    assert isinstance(loaded, WedgeRestorer) and loaded.wedge == WEDGE
    np.testing.assert_allclose(loaded.predict(even), restorer.predict(even), atol=1e-5)
    other = load_model(folder, wedge="-40,45")
    assert other.wedge == Wedge(-40.0, 45.0) and other.binning == 2 and other.flips == 8
    fewer = WedgeRestorer(restorer.denoiser, restorer.restorer, WEDGE, flips=2)
    assert load_model(fewer.save(tmp_path / "fewer")).flips == 2
    assert load_model(tmp_path / "fewer").refiner is None
    refined = WedgeRestorer(restorer.denoiser, restorer.restorer, WEDGE,
                            refiner=CAREModel(TINY.replace(seed=5), None))
    again = load_model(refined.save(tmp_path / "refined"))
    assert again.refiner is not None
    np.testing.assert_allclose(again.predict(even), refined.predict(even), atol=1e-5)
    (tmp_path / "refined" / "refiner" / "config.json").unlink()
    with pytest.raises(InputError, match="refiner"):
        inspect_model(tmp_path / "refined")
    (folder / "restorer" / "config.json").unlink()
    with pytest.raises(InputError, match="restorer"):
        inspect_model(folder)


def test_a_noise2noise_model_with_a_wedge_gets_the_shipped_restorer(tmp_path):
    from cryocare.modelfiles import load_model, with_wedge

    folder = CAREModel(TINY, None).save(tmp_path / "n2n")
    paired = load_model(folder, wedge="-60,60")
    assert isinstance(paired, WedgeRestorer)
    assert paired.restorer.config.wedge_binning == paired.binning
    assert paired.refiner is not None  # the shipped restorer comes with the shipped refiner
    assert load_model("pretrained", wedge="-60,60").refiner is not None
    own = CAREModel(TINY.replace(wedge_binning=2), None).save(tmp_path / "own_restorer")
    assert load_model(own, wedge="-60,60").refiner is None  # it learnt another's output
    assert paired.denoiser.config.unet_n_first == 2
    assert with_wedge(paired, "-45,45").wedge == Wedge(-45.0, 45.0)
    with pytest.raises(InputError, match="2-D"):
        with_wedge(CAREModel(TINY.replace(n_dim=2), None), "-60,60")


def test_train_on_pair_with_a_wedge_denoises_as_without_it(tmp_path):
    """The denoiser of ``wedge=`` is the Noise2Noise model that training without it gives."""
    from cryocare.recipe import DEFAULT_RECIPE, train_on_pair

    rng = np.random.default_rng(9)
    signal = _smooth((32, 64, 48), 10, cutoff=0.15) * 20
    even, odd = (signal + rng.normal(size=signal.shape).astype(np.float32) for _ in range(2))
    recipe = DEFAULT_RECIPE.replace(
        config=DEFAULT_RECIPE.config.replace(unet_n_depth=1, unet_n_first=2, train_epochs=1,
                                             train_steps_per_epoch=2, train_batch_size=2,
                                             train_precision="float32"),
        n_patches=8, patch_shape=(16, 16, 16))
    plain = train_on_pair(even, odd, recipe=recipe, budget=0, init=None, seed=2)
    restoring = train_on_pair(even, odd, recipe=recipe, budget=0, init=None, seed=2,
                              wedge="-50,55")
    assert isinstance(restoring, WedgeRestorer)
    assert restoring.wedge == Wedge(-50.0, 55.0)
    assert restoring.denoiser.config.train_objective == "n2n"
    np.testing.assert_allclose(restoring.denoiser.denoise(even, odd), plain.denoise(even, odd),
                               atol=1e-5)
    # so does a start from a model folder (loaded once, before the denoiser trains)
    folder = str(plain.save(tmp_path / "start"))
    again = train_on_pair(even, odd, recipe=recipe, budget=0, init=folder, seed=2)
    from_folder = train_on_pair(even, odd, recipe=recipe, budget=0, init=folder, seed=2,
                                wedge="-50,55")
    np.testing.assert_allclose(from_folder.denoiser.denoise(even, odd), again.denoise(even, odd),
                               atol=1e-5)
    # with a share of the budget, the restorer (the network of its own) is fine-tuned
    # with the wedge objective
    start = WedgeRestorer(CAREModel(recipe.config, None), CAREModel(
        TINY.replace(unet_n_first=4, wedge_binning=2), None), "-60,60")
    tuned = train_on_pair(even, odd, recipe=recipe.replace(wedge_share=0.5, wedge_n_patches=8),
                          budget=0, init=start, seed=2, wedge="-50,55")
    assert tuned.restorer.config.unet_n_first == 4
    assert tuned.restorer.config.train_objective == "wedge"
    assert tuned.restorer.config.wedge_binning == tuned.binning > 1
    assert tuned.restorer.config.train_tilt_range == (-50.0, 55.0)
    with pytest.raises(InputError, match="3-D"):
        train_on_pair(even[0], odd[0], recipe=recipe, budget=0, init=None, wedge="-60,60")
    with pytest.raises(InputError, match="wedge_share"):
        train_on_pair(even, odd, recipe=recipe.replace(wedge_share=1.0), budget=0, init=None,
                      wedge="-60,60")


def test_cli_refuses_a_wedge_on_a_cluster(tmp_path):
    from cryocare import io
    from cryocare.cli.main import main

    volume = np.random.default_rng(11).normal(size=(16, 32, 32)).astype(np.float32)
    io.write(tmp_path / "even.mrc", volume)
    io.write(tmp_path / "odd.mrc", volume)
    assert main(["predict", "--model", "pretrained", "--even", str(tmp_path / "even.mrc"),
                 "--odd", str(tmp_path / "odd.mrc"), "--output", str(tmp_path / "out.mrc"),
                 "--wedge=-60,60", "--scheduler", "local"]) == 2
    assert not (tmp_path / "out.mrc").exists()


def test_cli_restores_the_wedge_of_a_tomogram_without_halves(tmp_path):
    import cryocare
    from cryocare import io
    from cryocare.cli.main import main
    from cryocare.simulate import simulate_tomogram

    data = simulate_tomogram((32, 64, 64), seed=10_104, tilt_range=(-60, 60))
    io.write(tmp_path / "tomo.mrc", data.even)
    assert main(["predict", "--model", "pretrained", "--wedge=-60,60", str(tmp_path / "tomo.mrc"),
                 "--output", str(tmp_path / "out.mrc"), "-q"]) == 0
    expected = cryocare.load_model("pretrained", wedge="-60,60").predict(data.even)
    restored = io.read(tmp_path / "out.mrc")
    np.testing.assert_allclose(restored, expected, atol=1e-4 * np.abs(expected).max())
    alone = cryocare.load_model("pretrained").predict(data.even)
    assert not np.allclose(restored, alone, atol=1e-3 * np.abs(alone).max())


def test_a_saved_restoration_predicts_unchecked_and_starts_training_from_its_denoiser(tmp_path):
    """``--model`` a saved restoration restores the wedge with its range (no held-out check:
    the halves lack the cone); as ``init`` it hands training its denoiser."""
    from cryocare import io
    from cryocare.cli.main import main
    from cryocare.training.finetune import load_init

    restorer = _tiny_restorer()
    folder = restorer.save(tmp_path / "restoration")
    rng = np.random.default_rng(12)
    even, odd = rng.normal(size=(2, 16, 32, 32)).astype(np.float32)
    io.write(tmp_path / "even.mrc", even)
    io.write(tmp_path / "odd.mrc", odd)
    assert main(["predict", "--model", str(folder), "--even", str(tmp_path / "even.mrc"),
                 "--odd", str(tmp_path / "odd.mrc"), "--output", str(tmp_path / "out.mrc"),
                 "--report", str(tmp_path / "report.json"), "-q"]) == 0
    np.testing.assert_allclose(io.read(tmp_path / "out.mrc"), restorer.denoise(even, odd),
                               atol=1e-5)
    report = (tmp_path / "report.json").read_text()
    assert "the missing wedge is restored" in report
    assert load_init(folder).config == restorer.denoiser.config
    assert load_init(restorer) is restorer.denoiser
