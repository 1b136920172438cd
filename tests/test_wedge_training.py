"""Training objectives: the wedge-restoring batch transform and loss, and training with them."""

import keras
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryocare import losses
from cryocare.config import CareConfig
from cryocare.errors import InputError
from cryocare.model import CAREModel
from cryocare.pairs import sample_pairs
from cryocare.training import train
from cryocare.training.objectives import (
    get,
    rotate_crop,
    rotated_measured_mask,
)
from cryocare.wedge import Wedge, measured_mask, missing_mask

WEDGE = CareConfig(train_objective="wedge", train_tilt_range=(-45, 50), seed=1)


def _band(shape, low=0.05, high=0.3):
    grids = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    k = np.sqrt(sum(g**2 for g in grids))
    return (k > low) & (k < high)


def _wedged_noise(shape, wedge, seed):
    """White noise with nothing in the missing wedge: what a tilt series measures."""
    noise = np.random.default_rng(seed).normal(size=shape)
    return np.fft.ifftn(np.fft.fftn(noise) * measured_mask(shape, wedge)).real.astype(np.float32)


# ------------------------------------------------------------------ configuration
def test_the_wedge_objective_needs_a_tilt_range():
    with pytest.raises(InputError, match="train_tilt_range"):
        CareConfig(train_objective="wedge")
    with pytest.raises(InputError, match="train_objective"):
        CareConfig(train_objective="n2v")
    with pytest.raises(InputError, match="train_tilt_range"):
        CareConfig(train_tilt_range=(60, -60))


def test_the_tilt_range_survives_the_json_round_trip():
    values = WEDGE.to_dict()
    assert values["train_tilt_range"] == [-45.0, 50.0]
    assert CareConfig.from_dict(values) == WEDGE
    assert CareConfig().train_objective == "n2n"   # the default stays Noise2Noise


def test_n2n_keeps_todays_batches():
    x = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    a, b = get(CareConfig()).batch(x, x + 1, rng=np.random.default_rng(0), patch_shape=(4,) * 3)
    assert np.array_equal(a[..., 0], x) and np.array_equal(b[..., 0], x + 1)
    assert get(CareConfig()).loss((4, 4, 4)) == "mse"


# ------------------------------------------------------------------ the transform
def test_rotated_mask_marks_where_the_rotated_volume_has_power():
    """Turn a volume measured with the wedge; its spectrum is where the mask says.

    Tolerance: cropping the turned cube and linear interpolation leak some
    power across the cone's edge; 10° clear of it the unmeasured directions
    hold < 15 % of the measured ones' power per frequency (measured: 6-7 %;
    with the rotation applied the wrong way round the ratio is ~1).
    """
    wedge = Wedge(-45, 45)
    volume = _wedged_noise((56,) * 3, wedge, seed=0)
    band = _band((32,) * 3)
    for seed in range(3):
        rotation = Rotation.random(random_state=seed).as_matrix()
        power = np.abs(np.fft.fftn(rotate_crop(volume, rotation, (32,) * 3))) ** 2
        seen = rotated_measured_mask((32,) * 3, wedge, rotation)
        clear = ~rotated_measured_mask((32,) * 3, Wedge(-55, 55), rotation)
        assert power[clear & band].mean() < 0.15 * power[seen & band].mean()
        wrong = rotated_measured_mask((32,) * 3, wedge, rotation.T)
        assert not np.array_equal(wrong, seen)


def test_batch_rotates_both_halves_alike_and_imposes_the_wedge():
    objective = get(WEDGE)
    patch = objective.patch_shape((28,) * 3, multiple=4)
    assert patch == (16,) * 3 and objective.sample_shape(patch) == (28,) * 3
    x = np.random.default_rng(2).normal(size=(3, 28, 28, 28)).astype(np.float32)
    inputs, targets = objective.batch(x, x, rng=np.random.default_rng(5), patch_shape=patch)
    assert inputs.shape == (3, *patch, 1) and targets.shape == (3, *patch, 2)
    measured = measured_mask(patch, objective.wedge)
    # the Nyquist planes keep a frequency only with its conjugate (a real input)
    hermitian = measured & np.roll(measured[::-1, ::-1, ::-1], 1, (0, 1, 2))
    assert (measured & ~hermitian).sum() < 0.05 * measured.sum()
    for i in range(3):
        # same volume in both halves: the input is the target with the wedge imposed,
        # so both halves were turned by the same rotation
        expected = np.fft.ifftn(np.fft.fftn(targets[i, ..., 0]) * hermitian).real
        np.testing.assert_allclose(inputs[i, ..., 0], expected, atol=1e-4)
        # nothing of the input in the original orientation's missing cone
        spectrum = np.abs(np.fft.fftn(inputs[i, ..., 0])) ** 2
        assert spectrum[missing_mask(patch, objective.wedge)].max() < 1e-6 * spectrum.max()
        # the loss weights: the rotated measured mask, doubled inside the input's wedge
        weights = targets[i, ..., 1]
        seen = weights > 0
        assert set(np.unique(weights)) <= {0.0, 1.0, 2.0}
        assert np.array_equal(weights == 2, seen & ~hermitian)
    # the same generator state gives the same batch (a resumed run sees the same data)
    again = objective.batch(x, x, rng=np.random.default_rng(5), patch_shape=patch)
    assert np.array_equal(again[1], targets)


def test_loss_mask_is_the_rotated_measured_mask():
    objective = get(WEDGE.replace(train_tilt_range=(-60, 60)))
    from cryocare.training import objectives

    objective.weight = 1.0
    x = np.zeros((1, 28, 28, 28), np.float32)
    seed = np.random.default_rng(11)
    rotation = Rotation.random(random_state=np.random.default_rng(11)).as_matrix()
    _, targets = objective.batch(x, x, rng=seed, patch_shape=(16,) * 3)
    expected = objectives.rotated_measured_mask((16,) * 3, objective.wedge, rotation)
    assert np.array_equal(targets[0, ..., 1] > 0, expected)
    assert np.array_equal(targets[0, ..., 1], expected.astype(np.float32))


def test_wedge_objective_wants_cubes():
    objective = get(WEDGE)
    with pytest.raises(InputError, match="cubic"):
        objective.patch_shape((16, 32, 32), multiple=4)
    with pytest.raises(InputError, match="too small"):
        objective.patch_shape((6, 6, 6), multiple=4)


# ------------------------------------------------------------------ the loss
def _loss(fn, target, weights, prediction):
    y_true = np.stack([target, weights], axis=-1)[None]
    return float(keras.ops.convert_to_numpy(fn(y_true, prediction[None, ..., None])))


def test_masked_loss_ignores_errors_where_the_target_was_not_measured():
    shape = (12, 12, 12)
    rng = np.random.default_rng(4)
    target = rng.normal(size=shape).astype(np.float32)
    wedge = Wedge(-50, 50)
    weights = measured_mask(shape, wedge).astype(np.float32)
    in_cone = np.fft.ifftn(np.fft.fftn(rng.normal(size=shape)) * ~measured_mask(shape, wedge))
    in_cone = in_cone.real.astype(np.float32)
    loss = losses.fourier_masked_mse(shape)
    assert np.abs(in_cone).max() > 0.1
    # an error only in the unmeasured directions costs nothing
    assert _loss(loss, target, weights, target + in_cone) < 1e-9
    # elsewhere it costs mean(w |FFT(error)|²) / N, computed here by NumPy
    error = rng.normal(size=shape).astype(np.float32)
    expected = np.mean(weights * np.abs(np.fft.fftn(error)) ** 2) / error.size
    assert _loss(loss, target, weights, target + error) == pytest.approx(expected, rel=1e-4)


def test_masked_loss_is_the_mse_over_the_full_range():
    """A full ±90° series measures every direction: Parseval makes the loss the MSE."""
    objective = get(WEDGE.replace(train_tilt_range=(-90, 90)))
    x = np.random.default_rng(6).normal(size=(2, 28, 28, 28)).astype(np.float32)
    inputs, targets = objective.batch(x, x[::-1], rng=np.random.default_rng(0),
                                      patch_shape=(16,) * 3)
    assert np.all(targets[..., 1] == 1)
    prediction = np.random.default_rng(7).normal(size=inputs.shape).astype(np.float32)
    value = float(keras.ops.convert_to_numpy(objective.loss((16,) * 3)(targets, prediction)))
    assert value == pytest.approx(np.mean((prediction[..., 0] - targets[..., 0]) ** 2), rel=1e-5)


# ------------------------------------------------------------------ training
def _blob_pair(seed=0, shape=(32, 64, 32)):
    """Even/odd halves of sparse blobs behind a ±50° wedge: structure a network can restore."""
    import scipy.ndimage

    rng = np.random.default_rng(seed)
    clean = np.zeros(shape)
    clean[tuple(rng.integers(0, n, 80) for n in shape)] = 1.0
    clean = scipy.ndimage.gaussian_filter(clean, 1.5)
    clean /= clean.max()
    mask = measured_mask(shape, Wedge(-50, 50))
    return [np.fft.ifftn(np.fft.fftn(clean + rng.normal(size=shape) * 0.3) * mask).real
            .astype(np.float32) for _ in range(2)]


@pytest.mark.backend
def test_training_with_the_wedge_objective_lowers_its_loss():
    even, odd = _blob_pair()
    pairs = sample_pairs([even], [odd], patch_shape=22, n_patches=40, val_fraction=0.25,
                         seed=0)
    config = WEDGE.replace(train_tilt_range=(-50, 50), unet_n_depth=1, unet_n_first=4,
                           train_epochs=3, train_steps_per_epoch=8, train_batch_size=4,
                           train_learning_rate=3e-3)
    objective = get(config)
    x_val, y_val = objective.validation(pairs.x_val, pairs.y_val, patch_shape=(12,) * 3)
    loss = objective.loss((12,) * 3)
    untrained = CAREModel(config, pairs.normalization).keras_model  # the same seeded start
    start = float(keras.ops.convert_to_numpy(loss(y_val, untrained(x_val))))
    model = train(pairs, config)
    history = model.history["val_loss"]
    # 24 steps of a 4-filter network: measured 0.84 of the start on TensorFlow
    assert len(history) == 3 and min(history) < 0.9 * start, (start, history)
    assert model.config.train_objective == "wedge"


@pytest.mark.backend
def test_supervised_pairs_are_never_swapped():
    even, odd = _blob_pair(1)
    pairs = sample_pairs([even], [np.zeros_like(odd)], patch_shape=8, n_patches=20,
                         val_fraction=0.25, seed=0)
    config = CareConfig(train_objective="supervised", unet_n_depth=1, unet_n_first=2,
                        train_epochs=1, train_steps_per_epoch=2, train_batch_size=4)
    from cryocare.training.batches import PairBatches

    batches = PairBatches(pairs.x_train, pairs.y_train, batch_size=8, steps=2, seed=0,
                          swap=get(config).symmetric)
    for i in range(4):  # the targets all come from the constant volume
        assert np.ptp(batches[i][1]) == 0 and np.ptp(batches[i][0]) > 0
    with pytest.raises(InputError, match="train_augment"):
        train(pairs, config.replace(train_augment=True))


# ------------------------------------------------------------------ faces
def test_pretrain_wedge_tiny_runs(tmp_path):
    """The regeneration script of the shipped restorer, at a size CI affords (~20 s)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "wedge"
    subprocess.run([sys.executable, str(root / "benchmarks" / "pretrain_wedge.py"), "--tiny",
                    "--output", str(out)], check=True, capture_output=True, timeout=300)
    config = json.loads((out / "config.json").read_text())["config"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert config["train_objective"] == "supervised" and config["wedge_binning"] == 2
    assert provenance["training"]["tomograms"] == 3 and provenance["training"]["steps"] >= 1
    assert provenance["training"]["binning"] == 2
    assert provenance["training"]["patch_shape"] == [16, 16, 16]
    assert all(-70 <= s["tilt_range"][0] <= -40 and 40 <= s["tilt_range"][1] <= 70
               for s in provenance["settings"])


def test_pretrain_wedge_refine_tiny_runs(tmp_path):
    """The regeneration script of the shipped refiner, at a size CI affords: full
    resolution, supervised, on what the shipped restorer gives."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "refiner"
    subprocess.run([sys.executable, str(root / "benchmarks" / "pretrain_wedge.py"), "--refine",
                    "--tiny", "--output", str(out)], check=True, capture_output=True, timeout=300)
    config = json.loads((out / "config.json").read_text())["config"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert config["train_objective"] == "supervised" and config["wedge_binning"] == 1
    assert provenance["training"]["tomograms"] == 3 and provenance["training"]["steps"] >= 1
    assert provenance["training"]["restorer"].endswith("wedge")
    assert provenance["training"]["tomogram_seeds"][0] == 300_000
    assert provenance["training"]["patch_shape"] == [16, 16, 16]


# ------------------------------------------------------------------ the shipped model
def test_shipped_restorer_fills_the_cone_better_than_the_n2n_model():
    """Zero-shot on a held-out seed (±60°): the in-cone correlation with the wedge-free
    truth of the two-scale restoration beats the general Noise2Noise model's, and the
    measured directions are that model's."""
    import cryocare
    from cryocare.isotropic import WedgeRestorer
    from cryocare.metrics import wedge_correlation
    from cryocare.simulate import simulate_tomogram

    data = simulate_tomogram((48, 96, 96), seed=10_101, tilt_range=(-60, 60))
    n2n = cryocare.load_model("pretrained").denoise(data.even, data.odd)
    restoring = cryocare.load_model("pretrained", wedge="-60,60")
    assert isinstance(restoring, WedgeRestorer) and restoring.binning == 2
    assert restoring.restorer.config.train_objective == "supervised"
    restored = restoring.denoise(data.even, data.odd)
    change = np.fft.fftn(restored - n2n)
    measured = measured_mask(restored.shape, Wedge(-60, 60))
    assert np.abs(change[measured]).max() < 1e-3 * np.abs(change).max()
    cone_n2n = wedge_correlation(data.isotropic, n2n, "-60,60").missing
    cone_wedge = wedge_correlation(data.isotropic, restored, "-60,60").missing
    # measured: 0.706 against 0.358 (the full-resolution wedge model before: 0.443)
    assert cone_wedge > cone_n2n + 0.2, (cone_n2n, cone_wedge)
    # above the binned Nyquist frequency the cone is the shipped refiner's; without it the
    # denoiser's (measured at 0.27-0.4 cycles/voxel: 0.447 against 0.313)
    assert restoring.refiner is not None
    unrefined = WedgeRestorer(restoring.denoiser, restoring.restorer, "-60,60")
    fine = {name: wedge_correlation(data.isotropic, volume, "-60,60", band=(0.27, 0.4)).missing
            for name, volume in (("refined", restored),
                                 ("unrefined", unrefined.denoise(data.even, data.odd)))}
    assert fine["refined"] > fine["unrefined"] + 0.05, fine


def test_cli_predict_with_a_wedge_restores_it(tmp_path, caplog):
    import cryocare
    from cryocare import io
    from cryocare.cli.main import main
    from cryocare.simulate import simulate_tomogram

    data = simulate_tomogram((32, 64, 64), seed=10_102, tilt_range=(-30, 30))
    io.write(tmp_path / "even.mrc", data.even)
    io.write(tmp_path / "odd.mrc", data.odd)
    args = ["predict", "--model", "pretrained", "--even", str(tmp_path / "even.mrc"),
            "--odd", str(tmp_path / "odd.mrc"), "--output", str(tmp_path / "out.mrc"),
            "--wedge", "-30,30"]
    assert main(args) == 0
    restored = io.read(tmp_path / "out.mrc")
    expected = cryocare.load_model("pretrained", wedge="-30,30").denoise(data.even, data.odd)
    np.testing.assert_allclose(restored, expected, atol=1e-4 * np.abs(expected).max())
    assert "trained on ranges" in caplog.text   # ±30° lies outside its training family
    assert main(args[:-2] + ["--wedge", "60", "--overwrite"]) == 2


def test_cli_denoise_with_a_wedge_saves_denoiser_and_restorer(tmp_path):
    import json

    from cryocare import io
    from cryocare.cli.main import main
    from cryocare.isotropic import WedgeRestorer
    from cryocare.simulate import simulate_tomogram

    data = simulate_tomogram((40, 96, 96), seed=10_103, tilt_range=(-55, 50))
    io.write(tmp_path / "even.mrc", data.even)
    io.write(tmp_path / "odd.mrc", data.odd)
    assert main(["denoise", "--even", str(tmp_path / "even.mrc"), "--odd",
                 str(tmp_path / "odd.mrc"), "--output", str(tmp_path / "out.mrc"),
                 "--wedge", "-55,50", "--time-budget", "none", "--epochs", "1", "--steps", "2",
                 "--batch-size", "2", "--n-patches", "12", "--save-model",
                 str(tmp_path / "model"), "--no-tta"]) == 0
    restorer = WedgeRestorer.load(tmp_path / "model")
    assert restorer.wedge == Wedge(-55.0, 50.0)
    assert restorer.denoiser.config.train_objective == "n2n"
    assert json.loads((tmp_path / "model" / "restoration.json").read_text())["binning"] == \
        restorer.binning == restorer.restorer.config.wedge_binning
    restored = io.read(tmp_path / "out.mrc")
    np.testing.assert_allclose(restored, restorer.denoise(data.even, data.odd),
                               atol=1e-4 * np.abs(restored).max())
