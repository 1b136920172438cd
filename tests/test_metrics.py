"""Tests of cryocare.metrics: analytic answers on seeded synthetic data."""

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

import cryocare.metrics as metrics
from cryocare.errors import InputError
from cryocare.metrics import mse, pearson, psnr, psnr_affine


def readonly(array):
    """A read-only copy of `array`: any write into it by the code under test raises."""
    array = np.array(array)
    array.flags.writeable = False
    return array


def ramp(shape):
    """Deterministic reference with range exactly 1 (from 0 to 1)."""
    return np.linspace(0.0, 1.0, math.prod(shape)).reshape(shape)


# --- mse ----------------------------------------------------------------------


def test_mse_hand_made():
    reference = np.zeros((2, 2))
    image = np.array([[1.0, -1.0], [2.0, 0.0]])
    assert mse(readonly(reference), readonly(image)) == (1 + 1 + 4 + 0) / 4


def test_mse_integer_inputs_do_not_wrap():
    # uint8 difference 0 - 255 would wrap around; float64 arithmetic does not.
    reference = np.zeros((2, 2), dtype=np.uint8)
    image = np.full((2, 2), 255, dtype=np.uint8)
    assert mse(reference, image) == 255.0**2


# --- psnr -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(256, 256), (16, 64, 64)])
@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_psnr_of_gaussian_noise(shape, sigma):
    # mse of n samples of N(0, sigma^2) is sigma^2 * chi2_n / n, relative sd
    # sqrt(2 / n); PSNR = 20 log10(range / sigma) - 10 log10(mse / sigma^2)
    # so its sd is (10 / ln 10) * sqrt(2 / n) ~ 0.024 dB for n = 65536.
    # Allow 5 sd.
    rng = np.random.default_rng(4)
    reference = ramp(shape)
    noisy = reference + rng.normal(scale=sigma, size=shape)
    n = reference.size
    tolerance = 5 * (10 / math.log(10)) * math.sqrt(2 / n)
    expected = 20 * math.log10(1.0 / sigma)
    assert psnr(readonly(reference), readonly(noisy)) == pytest.approx(expected, abs=tolerance)


def test_psnr_identical_is_inf():
    reference = ramp((5, 6))
    assert psnr(reference, reference.copy()) == math.inf
    assert psnr_affine(reference, reference.copy()) == math.inf
    # A constant reference compared with itself is fine once a range is given.
    constant = np.full((3, 3), 2.0)
    assert psnr(constant, constant, data_range=1.0) == math.inf


def test_psnr_hand_made():
    reference = np.array([[0.0, 10.0], [0.0, 10.0]])
    assert psnr(reference, reference + 1.0) == 20.0  # range 10, mse 1
    assert psnr(reference, reference + 1.0, data_range=100.0) == 40.0


def test_psnr_matches_scikit_image_given_data_range():
    rng = np.random.default_rng(5)
    reference = rng.random((20, 30))
    image = reference + rng.normal(scale=0.05, size=reference.shape)
    expected = peak_signal_noise_ratio(reference, image, data_range=1.3)
    # Same formula in float64; only summation order differs.
    assert psnr(reference, image, data_range=1.3) == pytest.approx(expected, rel=1e-12)


def test_psnr_default_range_is_reference_range():
    rng = np.random.default_rng(6)
    reference = rng.normal(size=(10, 10)).astype(np.float32)
    image = reference + 0.1
    peak = float(reference.max()) - float(reference.min())
    assert psnr(reference, image) == pytest.approx(psnr(reference, image, data_range=peak))


def test_psnr_constant_reference_without_range():
    with pytest.raises(InputError, match="reference is constant.*pass data_range"):
        psnr(np.full((3, 3), 2.0), np.zeros((3, 3)))
    with pytest.raises(InputError, match="reference is constant"):
        psnr_affine(np.full((3, 3), 2.0), np.zeros((3, 3)))


@pytest.mark.parametrize("function", [psnr, psnr_affine])
@pytest.mark.parametrize("data_range", [0, -1.0, math.inf, math.nan, "1", True])
def test_psnr_rejects_bad_data_range(function, data_range):
    with pytest.raises(InputError, match="data_range"):
        function(ramp((3, 3)), ramp((3, 3)), data_range=data_range)


# --- psnr_affine ----------------------------------------------------------------


@pytest.mark.parametrize(("scale", "offset"), [(3.0, 5.0), (0.01, -100.0), (-2.0, 1.0)])
def test_psnr_affine_invariant_to_rescaling(scale, offset):
    rng = np.random.default_rng(7)
    reference = ramp((32, 48))
    noisy = reference + rng.normal(scale=0.1, size=reference.shape)
    expected = psnr_affine(reference, noisy)
    # Exact in real arithmetic; float64 rounding of the fit is ~1e-15 relative.
    assert psnr_affine(reference, scale * noisy + offset) == pytest.approx(expected, rel=1e-10)


def test_psnr_affine_undoes_rescaling():
    # Rescaling wrecks the plain PSNR but not the affine one, which is at
    # least the plain PSNR of the unscaled image (a = 1, b = 0 is a candidate).
    rng = np.random.default_rng(8)
    reference = ramp((64, 64))
    noisy = reference + rng.normal(scale=0.1, size=reference.shape)
    rescaled = 4.0 * noisy - 3.0
    assert psnr(reference, rescaled) < 0.0
    assert psnr_affine(reference, rescaled) >= psnr(reference, noisy) - 1e-12


def test_psnr_affine_hand_made():
    # reference r = [0, 1, 2, 3], image x = [0, 0, 1, 1]: the fit is
    # a = S_rx / S_xx = 2 / 1 = 2, b = 1.5 - 2 * 0.5 = 0.5, fitted [0.5, 0.5, 2.5, 2.5],
    # residual [-0.5, 0.5, -0.5, 0.5], mse 0.25, range 3.
    reference = np.array([[0.0, 1.0], [2.0, 3.0]])
    image = np.array([[0.0, 0.0], [1.0, 1.0]])
    expected = 10 * math.log10(3.0**2 / 0.25)
    assert psnr_affine(reference, image) == pytest.approx(expected, rel=1e-14)


def test_psnr_affine_constant_image_fits_the_mean():
    # a = 0, b = mean(reference): mse is the variance of the reference.
    reference = np.array([[0.0, 1.0], [2.0, 3.0]])
    expected = 10 * math.log10(3.0**2 / 1.25)
    assert psnr_affine(reference, np.full((2, 2), 0.1)) == pytest.approx(expected, rel=1e-14)


# --- pearson --------------------------------------------------------------------


def test_pearson_affine_relations():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(20, 30))
    # Exact in real arithmetic; float64 rounding is ~1e-16 relative.
    assert pearson(x, 3 * x + 5) == pytest.approx(1.0, abs=1e-12)
    assert pearson(x, -x) == pytest.approx(-1.0, abs=1e-12)
    assert -1.0 <= pearson(x, -x) <= 1.0


def test_pearson_hand_made():
    # Centred: [-1, 0, 1] and [-1, 1, 0]: sum of products 1, sums of squares 2 and 2.
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == 0.5


def test_pearson_large_offset_is_accurate():
    # Values near 1e8 with unit spread: naive sum-of-squares formulas lose
    # all digits here; centred, merged moments do not.
    rng = np.random.default_rng(10)
    x = rng.normal(size=(50, 40))
    y = x + rng.normal(size=x.shape)
    expected = np.corrcoef(x.ravel(), y.ravel())[0, 1]
    assert pearson(x + 1e8, y - 1e8) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_pearson_of_a_constant_input_is_zero(which):
    """One behaviour for every caller: the filter tuner and halves_score need a score."""
    x = ramp((3, 3))
    c = np.full((3, 3), 0.1)
    args = {"a": (c, x), "b": (x, c), "both": (c, c)}[which]
    assert pearson(*args) == 0.0
    assert metrics.halves_score(*args) == 0.0


# --- chunked accumulation -------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 100, 10**9])
def test_chunked_results_equal_direct_formulas(monkeypatch, chunk):
    # Slabs of 1, 7 or 100 elements (rounded to whole rows) merge to the
    # same answer as one slab and as plain NumPy, to float64 rounding.
    monkeypatch.setattr(metrics, "_CHUNK", chunk)
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(9, 5, 4)) + 3.0
    image = 0.5 * reference + rng.normal(scale=0.3, size=reference.shape)
    d = reference - image
    assert mse(reference, image) == pytest.approx(np.mean(d**2), rel=1e-12)
    peak = reference.max() - reference.min()
    assert psnr(reference, image) == pytest.approx(
        10 * np.log10(peak**2 / np.mean(d**2)), rel=1e-12
    )
    r = np.corrcoef(reference.ravel(), image.ravel())[0, 1]
    assert pearson(reference, image) == pytest.approx(r, rel=1e-12)
    a, b = np.polyfit(image.ravel(), reference.ravel(), 1)
    fitted_mse = np.mean((reference - (a * image + b)) ** 2)
    assert psnr_affine(reference, image) == pytest.approx(
        10 * np.log10(peak**2 / fitted_mse), rel=1e-10
    )


def test_read_only_float32_memmap(tmp_path):
    rng = np.random.default_rng(12)
    shape = (6, 10, 12)
    reference = rng.random(shape).astype(np.float32)
    image = (reference + rng.normal(scale=0.1, size=shape)).astype(np.float32)
    paths = tmp_path / "reference.raw", tmp_path / "image.raw"
    reference.tofile(paths[0])
    image.tofile(paths[1])
    ref_map, img_map = (np.memmap(p, dtype=np.float32, mode="r", shape=shape) for p in paths)
    assert psnr(ref_map, img_map) == pytest.approx(psnr(reference, image), rel=1e-14)
    assert psnr_affine(ref_map, img_map) == pytest.approx(psnr_affine(reference, image))
    assert pearson(ref_map, img_map) == pytest.approx(pearson(reference, image))


# --- input checks ---------------------------------------------------------------


@pytest.mark.parametrize("function", [mse, psnr, psnr_affine, pearson])
def test_inputs_unchanged_and_float_returned(function):
    rng = np.random.default_rng(13)
    a = rng.random((4, 5, 6)).astype(np.float32)
    b = a + rng.normal(scale=0.1, size=a.shape).astype(np.float32)
    copies = a.copy(), b.copy()
    value = function(a, b)
    assert type(value) is float
    np.testing.assert_array_equal(a, copies[0])
    np.testing.assert_array_equal(b, copies[1])


@pytest.mark.parametrize("function", [mse, psnr, psnr_affine, pearson])
def test_shape_mismatch_names_both_shapes(function):
    with pytest.raises(InputError, match=r"\(4, 5\).*\(5, 4\)"):
        function(np.zeros((4, 5)), np.zeros((5, 4)))


@pytest.mark.parametrize("function", [mse, psnr, psnr_affine, pearson])
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "expected finite values"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "expected finite values"),
        (np.zeros((2, 2), dtype=bool), "dtype bool"),
        (np.zeros((2, 2), dtype=complex), "dtype complex128"),
        (np.zeros((0, 2)), "non-empty"),
        (np.float64(1.0), "non-empty"),
    ],
)
def test_bad_values_rejected(function, bad, match):
    good = np.arange(float(bad.size)).reshape(bad.shape)
    with pytest.raises(InputError, match=match):
        function(bad, good)
    with pytest.raises(InputError, match=match):
        function(good, bad)


# --- SSIM after affine fit ------------------------------------------------------

from skimage.metrics import structural_similarity  # noqa: E402

from cryocare.metrics import fsc, halves_score, snr_from_halves, ssim_affine  # noqa: E402


def smooth_volume(shape, seed):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.normal(size=shape), 2.0) * 10


def test_ssim_affine_identical_and_rescaled_is_one():
    clean = smooth_volume((12, 20, 20), 0)
    assert ssim_affine(clean, clean) == pytest.approx(1.0, abs=1e-12)
    assert ssim_affine(clean, -3.0 * clean + 7.0) == pytest.approx(1.0, abs=1e-9)


def test_ssim_affine_equals_skimage_on_the_fitted_image():
    clean = smooth_volume((12, 24, 24), 1)
    noisy = clean + np.random.default_rng(2).normal(size=clean.shape)
    image = 0.5 * noisy + 3.0
    slope = np.cov(clean.ravel(), image.ravel(), bias=True)[0, 1] / image.var()
    fitted = slope * image + (clean.mean() - slope * image.mean())
    expected = structural_similarity(clean, fitted, data_range=np.ptp(clean),
                                     gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    # Same formula, fit computed two ways: equal to float64 rounding.
    assert ssim_affine(readonly(clean), readonly(image)) == pytest.approx(expected, abs=1e-9)


def test_ssim_affine_decreases_with_noise():
    clean = smooth_volume((12, 24, 24), 3)
    rng = np.random.default_rng(4)
    scores = [ssim_affine(clean, clean + rng.normal(scale=s, size=clean.shape))
              for s in (0.1, 0.5, 2.0)]
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("shape", [(9, 20, 20), (100,)])
def test_ssim_affine_rejects_small_or_1d(shape):
    with pytest.raises(InputError, match="at least 11"):
        ssim_affine(np.ones(shape), np.ones(shape))


# --- FSC / FRC --------------------------------------------------------------------


def test_fsc_identical_volumes_is_one_and_resolution_is_nyquist():
    volume = np.random.default_rng(5).normal(size=(16, 20, 24))
    curve = fsc(readonly(volume), readonly(volume), voxel_size=3.0)
    np.testing.assert_allclose(curve.correlation, 1.0, atol=1e-12)
    assert curve.frequency[-1] == pytest.approx(1 / 6.0)  # Nyquist 1 / (2 * 3 Å)
    assert curve.resolution(0.143) == curve.resolution(0.5) == 6.0


def test_fsc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 32, 32, 32))
    curve = fsc(a, b)
    # Each shell correlation of independent noise has standard deviation
    # ~1/sqrt(count); 5 of those never fails by chance (p < 1e-6 per shell).
    assert np.all(np.abs(curve.correlation) < 5 / np.sqrt(curve.count))
    assert curve.resolution(0.143) == pytest.approx(1 / curve.frequency[0])


def band_limited(shape, cutoff, seed):
    """White noise with every Fourier coefficient beyond `cutoff` (cycles/voxel) zeroed."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fftn(rng.normal(size=shape))
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    spectrum[np.sqrt(sum(g**2 for g in grids)) > cutoff] = 0
    return np.fft.ifftn(spectrum).real


@pytest.mark.parametrize("shape", [(32, 32, 32), (24, 40, 32), (64, 64)])
def test_fsc_resolution_of_a_band_limited_signal(shape):
    # Signal up to 0.25 cycles/voxel, noise 100x weaker in amplitude but
    # white: FSC ~ 1 below the cutoff and ~ 0 beyond, so both thresholds
    # cross at the cutoff: 1 / (0.25 / 2 Å) = 8 Å, within one shell
    # (1 / min(shape) cycles/voxel, i.e. 8 Å * 0.25 / (0.25 -/+ 1/min(shape))).
    signal = band_limited(shape, 0.25, 7)
    rng = np.random.default_rng(8)
    scale = 0.01 * signal.std() * 5  # noise power beyond the cutoff still dominates there
    a = signal + rng.normal(scale=scale, size=shape)
    b = signal + rng.normal(scale=scale, size=shape)
    curve = fsc(a, b, voxel_size=2.0)
    step = 1 / min(shape)
    low, high = 2.0 / (0.25 + step), 2.0 / (0.25 - step)
    for threshold in (0.143, 0.5):
        assert low <= curve.resolution(threshold) <= high


def test_fsc_bad_inputs():
    good = np.random.default_rng(9).normal(size=(8, 8, 8))
    with pytest.raises(InputError, match=r"\(8, 8, 8\).*\(8, 8, 9\)"):
        fsc(good, np.zeros((8, 8, 9)))
    with pytest.raises(InputError, match="constant"):
        fsc(good, np.ones((8, 8, 8)))
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        fsc(good, bad)
    with pytest.raises(InputError, match="voxel_size"):
        fsc(good, good, voxel_size=0)
    with pytest.raises(InputError, match="threshold"):
        fsc(good, good).resolution(1.5)


# --- reference-free scores ---------------------------------------------------------


@pytest.mark.parametrize(("signal_power", "noise_power"), [(4.0, 1.0), (1.0, 4.0)])
def test_snr_from_halves_analytic(signal_power, noise_power):
    rng = np.random.default_rng(10)
    shape = (64, 64, 64)
    signal = rng.normal(scale=math.sqrt(signal_power), size=shape)
    even = signal + rng.normal(scale=math.sqrt(noise_power), size=shape)
    odd = signal + rng.normal(scale=math.sqrt(noise_power), size=shape)
    # 262144 voxels: r has a standard error ~0.002, so the SNR within 5 %.
    assert snr_from_halves(even, odd) == pytest.approx(signal_power / noise_power, rel=0.05)


def test_snr_from_halves_limits():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(2, 16, 16))
    assert snr_from_halves(a, -a) == 0.0
    assert snr_from_halves(a, a) == math.inf
    assert snr_from_halves(a, b) < 0.05


def test_halves_score_ranks_like_correlation_with_the_truth():
    from scipy.ndimage import gaussian_filter

    clean = smooth_volume((24, 32, 32), 12)
    rng = np.random.default_rng(13)
    even = clean + rng.normal(scale=2.0, size=clean.shape)
    odd = clean + rng.normal(scale=2.0, size=clean.shape)
    candidates = {"raw": even, "s1": gaussian_filter(even, 1.0), "s2": gaussian_filter(even, 2.0),
                  "s6": gaussian_filter(even, 6.0)}
    truth_order = sorted(candidates, key=lambda n: pearson(candidates[n], clean))
    score_order = sorted(candidates, key=lambda n: halves_score(candidates[n], odd))
    assert truth_order == score_order
