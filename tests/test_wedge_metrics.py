"""Tests of the wedge-aware scores of cryocare.metrics: in-cone and measured Fourier
correlation, directional resolution, low-passed PSNR (and the truth they need)."""

import math

import numpy as np
import pytest
import scipy.ndimage

from cryocare.errors import InputError
from cryocare.metrics import (
    DirectionalResolution,
    WedgeCorrelation,
    directional_resolution,
    lowpass,
    psnr_affine,
    psnr_lowpass,
    wedge_correlation,
)
from cryocare.simulate import simulate_tomogram
from cryocare.wedge import FULL, Wedge

SHAPE = (64, 128, 128)


@pytest.fixture(scope="module")
def tomo():
    """A default tomogram (±60° about Y) with its wedge-free truth, about 0.3 s."""
    return simulate_tomogram(SHAPE, seed=10_003)


def _waves(n=64, cycles=6):
    """Plane waves along Z (inside the missing cone of any wedge) and along X (measured)."""
    z, y, x = np.meshgrid(*[np.arange(n)] * 3, indexing="ij", sparse=True)
    along_z = np.cos(2 * np.pi * cycles * z / n) + 0 * y + 0 * x
    along_x = np.cos(2 * np.pi * cycles * x / n) + 0 * y + 0 * z
    return along_z, along_x


def _isotropic_halves(shape, seed):
    """Isotropic Gaussian blobs (σ 2 voxels) plus independent noise: two half maps."""
    rng = np.random.default_rng(seed)
    points = np.zeros(shape)
    points[tuple(rng.integers(0, s, 400) for s in shape)] = 1
    signal = scipy.ndimage.gaussian_filter(points, 2.0, mode="wrap")
    signal /= signal.std()
    return (signal + 0.5 * rng.normal(size=shape), signal + 0.5 * rng.normal(size=shape))


# --- wedge_correlation -----------------------------------------------------------------


def test_wedge_correlation_of_plane_waves_is_exact():
    along_z, along_x = _waves()
    truth = along_z + along_x
    # Periodic waves need no taper; each lies in exactly one region (6/64 ≈ 0.094 is in
    # the band), so the answers are exact.
    only_x = wedge_correlation(truth, along_x, "-60,60", taper=0)
    assert only_x == WedgeCorrelation(missing=0.0, measured=pytest.approx(1.0, abs=1e-12))
    only_z = wedge_correlation(truth, along_z, "-60,60", taper=0)
    assert only_z.missing == pytest.approx(1.0, abs=1e-12) and only_z.measured == 0.0
    flipped = wedge_correlation(truth, along_x - along_z, "-60,60", taper=0)
    assert flipped.missing == pytest.approx(-1.0) and flipped.measured == pytest.approx(1.0)


def test_wedge_correlation_taper_leaks_little():
    along_z, along_x = _waves()
    # With the default taper the window's side lobes move some power across the cone's
    # edge; measured 0.012 into the cone and 0.12 out of it (a small cone borders a
    # large measured region).
    assert abs(wedge_correlation(along_z + along_x, along_x, "-60,60").missing) < 0.05
    assert abs(wedge_correlation(along_z + along_x, along_z, "-60,60").measured) < 0.2


def test_wedge_correlation_ignores_scale_and_offset(tomo):
    score = wedge_correlation(tomo.isotropic, 3 * tomo.isotropic - 2, "-60,60")
    assert score.missing == pytest.approx(1.0, abs=1e-9)
    assert score.measured == pytest.approx(1.0, abs=1e-9)


def test_wedged_reconstruction_has_a_low_in_cone_correlation(tomo):
    score = wedge_correlation(tomo.isotropic, tomo.clean, Wedge(-60, 60))
    # Measured 0.15 and 0.996 at seed 10 003; the noiseless wedged reconstruction holds
    # only interpolation leakage in the cone, and everything else.
    assert score.missing < 0.3
    assert score.measured > 0.95
    # Noise lowers the measured correlation of the raw average, not the cone's (still low).
    average = wedge_correlation(tomo.isotropic, (tomo.even + tomo.odd) / 2, Wedge(-60, 60))
    assert average.measured < score.measured and average.missing < 0.3


def test_wedge_correlation_of_noise_is_near_zero(tomo):
    noise = np.random.default_rng(1).normal(size=SHAPE)
    score = wedge_correlation(tomo.isotropic, noise, "-60,60")
    # About 5 000 independent coefficients in the cone's band: spread ~0.015 (measured
    # 0.004); the apodisation correlates neighbours, so 0.06 is 4 of its spreads.
    assert abs(score.missing) < 0.06 and abs(score.measured) < 0.06


def test_wedge_correlation_follows_the_tilt_axis():
    data = simulate_tomogram((48, 96, 96), seed=10_007, tilt_axis="X")
    right = wedge_correlation(data.isotropic, data.clean, Wedge(-60, 60, "X"))
    wrong = wedge_correlation(data.isotropic, data.clean, Wedge(-60, 60, "Y"))
    # Measured 0.19 / 0.99 about the right axis, 0.54 / 0.91 about the wrong one.
    assert right.missing < 0.3 and right.measured > 0.95
    assert wrong.missing > right.missing + 0.2


def test_wedge_correlation_without_a_wedge_has_no_cone(tomo):
    score = wedge_correlation(tomo.isotropic, tomo.clean, FULL)
    assert math.isnan(score.missing) and 0.5 < score.measured < 1


def test_wedge_correlation_rejects_bad_input(tomo):
    good = tomo.isotropic
    cases = [
        ((good, good[:-1], "-60,60"), {}, "image: expected the shape"),
        ((good[0], good[0], "-60,60"), {}, "3-D volumes"),
        ((good, good, "60"), {}, "wedge"),
        ((good, good, "-60,60"), {"band": (0.2, 0.1)}, "band"),
        ((good, good, "-60,60"), {"margin": -1}, "margin"),
        ((good, good, "-60,60"), {"taper": 0.7}, "taper"),
        ((np.zeros(SHAPE), good, "-60,60"), {}, "truth: expected a volume with structure"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(InputError, match=match):
            wedge_correlation(*args, **kwargs)
    with_nan = good.copy()
    with_nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="image: expected finite"):
        wedge_correlation(good, with_nan, "-60,60")


# --- directional_resolution ------------------------------------------------------------


def test_directional_resolution_of_identical_volumes_is_nyquist():
    volume = np.random.default_rng(0).normal(size=(16, 24, 32))
    result = directional_resolution(volume, volume, voxel_size=5.0)
    assert isinstance(result, DirectionalResolution)
    assert (result.z, result.y, result.x, result.anisotropy) == (10.0, 10.0, 10.0, 1.0)
    for curve in result.curves.values():
        np.testing.assert_allclose(curve.correlation, 1.0)


def test_wedged_map_resolves_z_worse_than_x(tomo):
    result = directional_resolution(tomo.clean, tomo.isotropic)
    # Measured z 16, x 2 (Nyquist: clean and isotropic agree on the measured directions).
    assert result.x <= 2.5 and result.y <= 2.5
    assert result.z > 4 * result.x and result.anisotropy == result.z / result.x
    # The curve along Z stays low where X is still 1.
    assert result.curves["z"].correlation[10:20].max() < 0.5 < result.curves["x"].correlation[
        10:20].min()


def test_isotropic_half_maps_resolve_z_like_x():
    even, odd = _isotropic_halves((48, 96, 96), seed=0)
    result = directional_resolution(even, odd)
    # Measured z/x 0.90 (z 3.7, x 4.1 voxels); the cones hold few coefficients at low
    # frequency, so 25 % either way.
    assert 0.75 < result.anisotropy < 1.25
    assert 0.75 < result.z / result.y < 1.25


def test_directional_resolution_rejects_bad_input(tomo):
    with pytest.raises(InputError, match="cone"):
        directional_resolution(tomo.clean, tomo.clean, cone=90)
    with pytest.raises(InputError, match="threshold"):
        directional_resolution(tomo.clean, tomo.clean, threshold=1.5)
    with pytest.raises(InputError, match="voxel_size"):
        directional_resolution(tomo.clean, tomo.clean, voxel_size=0)
    with pytest.raises(InputError, match="b: expected the shape"):
        directional_resolution(tomo.clean, tomo.clean[:, :-1])


# --- lowpass and psnr_lowpass -----------------------------------------------------------


def test_lowpass_passes_low_removes_high_and_halves_the_cutoff():
    n = 64
    x = np.arange(n)
    slow, edge, fast = (np.cos(2 * np.pi * c * x / n) for c in (4, 8, 16))  # 0.0625, 0.125, 0.25
    image = np.tile(slow + edge + fast, (8, 1))
    # Cut-off exactly at 0.125: the raised cosine is 1/2 there.
    np.testing.assert_allclose(lowpass(image, 0.125), np.tile(slow + 0.5 * edge, (8, 1)),
                               atol=1e-12)


def test_psnr_lowpass_ignores_what_lies_above_the_cutoff():
    rng = np.random.default_rng(2)
    truth = lowpass(rng.normal(size=(32, 32, 32)), 0.1)
    high = lowpass(rng.normal(size=truth.shape), 0.5) - lowpass(rng.normal(size=truth.shape), 0.2)
    high = high - lowpass(high, 0.2)  # nothing below 0.2 cycles/voxel
    assert psnr_affine(truth, truth + high) < 30
    assert psnr_lowpass(truth, 2 * (truth + high) - 1) > 100  # exact up to rounding


def test_psnr_lowpass_against_the_wedge_free_truth(tomo):
    clean = psnr_lowpass(tomo.isotropic, tomo.clean)
    average = psnr_lowpass(tomo.isotropic, (tomo.even + tomo.odd) / 2)
    # Measured 26.6 and 25.1 dB: the missing wedge costs the noiseless reconstruction more
    # than the noise left below 0.15 cycles/voxel costs the average.
    assert psnr_lowpass(tomo.isotropic, tomo.isotropic) > 100  # inf, or rounding
    assert average < clean < 35


def test_psnr_lowpass_rejects_bad_input():
    with pytest.raises(InputError, match="cutoff"):
        psnr_lowpass(np.ones((8, 8)), np.ones((8, 8)), cutoff=0)
    with pytest.raises(InputError, match="image: expected the shape"):
        psnr_lowpass(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(InputError, match="truth: expected a 2-D or 3-D"):
        psnr_lowpass(np.ones(8), np.ones(8))


# --- the held-out benchmark harness ------------------------------------------------------


def test_wedge_quality_harness_runs_at_the_smoke_size(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "wedge_quality.py"
    command = [sys.executable, str(script), "--datasets", "smoke", "--methods",
               "clean,raw,gaussian", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| smoke | gaussian |" in result.stdout
    assert (tmp_path / "wedge_quality_smoke.png").stat().st_size > 1000  # the XY/XZ figure
    scores = json.loads((tmp_path / "wedge_quality.json").read_text())["results"]["smoke"][
        "scores"]
    assert scores["clean"]["psnr_wedged"] is None  # inf against itself, null in JSON
    for method in ("clean", "raw", "gaussian"):
        # Nothing here restores the wedge: the cone stays below the measured directions.
        assert scores[method]["cone_r"] < 0.5 < scores[method]["measured_r"]
        assert scores[method]["z_ratio"] > 2
    # Without --overwrite an earlier result is kept.
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr
