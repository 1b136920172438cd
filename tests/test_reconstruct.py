"""Tests of cryocare.reconstruct: projection and weighted back-projection."""

import numpy as np
import pytest

from cryocare.errors import InputError
from cryocare.reconstruct import (
    bin_projections,
    project,
    reconstruct,
    weighted_backprojection,
)
from cryocare.simulate import phantom

FULL = np.arange(-90.0, 90.0, 2.0)  # 180° of views: no missing wedge
LIMITED = np.arange(-60.0, 60.1, 3.0)  # the usual ±60° tilt series, 41 views


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _blob(nz=32, ny=3, nx=64, sigma=3.0, centre=(0.0, 0.0)):
    """An isotropic Gaussian in the Z-X plane, the same in every Y row, peak 1."""
    z = np.arange(nz) - (nz - 1) / 2 - centre[0]
    x = np.arange(nx) - (nx - 1) / 2 - centre[1]
    plane = np.exp(-(z[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return np.repeat(plane[:, None, :], ny, axis=1).astype(np.float32)


# --- project -------------------------------------------------------------------------


def test_project_at_zero_degrees_is_the_sum_along_z():
    vol = np.random.default_rng(0).random((10, 5, 12), dtype=np.float32)
    proj = project(vol, [0.0])
    assert proj.shape == (1, 5, 12) and proj.dtype == np.float32
    # Exact up to float32 summation order.
    np.testing.assert_allclose(proj[0], vol.sum(axis=0), rtol=1e-5)


def test_project_at_ninety_degrees_is_the_sum_along_x():
    vol = np.random.default_rng(1).random((8, 3, 12), dtype=np.float32)
    proj = project(vol, [90.0])
    # u = z_c at 90°: slice z lands on detector pixel z + (12 - 8) / 2 exactly.
    np.testing.assert_allclose(proj[0][:, 2:10], vol.sum(axis=2).T, rtol=1e-5)
    np.testing.assert_array_equal(proj[0][:, :2], 0)


def test_project_conserves_mass_of_an_object_inside_the_field():
    vol = _blob(sigma=3.0)
    proj = project(vol, LIMITED)
    # Joseph's method with linear interpolation integrates a smooth (σ = 3
    # voxel) object to well under 0.1 % at any angle.
    np.testing.assert_allclose(
        proj.sum(axis=(0, 2)) / LIMITED.size, vol.sum(axis=(0, 2)), rtol=1e-3
    )


def test_project_of_a_rotated_blob_is_the_same_gaussian_profile():
    vol = _blob(sigma=2.5)
    proj = project(vol, [0.0, 35.0, 60.0])
    # A centred isotropic blob projects to the same profile at every angle;
    # 2 % allows for the interpolation blur of a σ = 2.5 voxel Gaussian.
    np.testing.assert_allclose(proj[1], proj[0], atol=0.02 * proj[0].max())
    np.testing.assert_allclose(proj[2], proj[0], atol=0.02 * proj[0].max())


def test_project_tilt_axis_x_is_tilt_axis_y_of_the_transposed_volume():
    vol = np.random.default_rng(2).random((6, 9, 14), dtype=np.float32)
    got = project(vol, LIMITED, tilt_axis="X")
    want = project(vol.transpose(0, 2, 1), LIMITED).transpose(0, 2, 1)
    assert got.shape == (LIMITED.size, 9, 14)
    np.testing.assert_array_equal(got, want)


# --- weighted back-projection --------------------------------------------------------


def test_wbp_of_full_range_projections_recovers_amplitude():
    vol = _blob(sigma=3.0)
    rec = weighted_backprojection(project(vol, FULL), FULL, thickness=32)
    assert rec.shape == vol.shape and rec.dtype == np.float32
    # Two linear interpolations (project, back-project) blur a σ = 3 voxel
    # Gaussian by ~3 %; 5 % leaves room and still catches any scaling error.
    assert float(rec.max() / vol.max()) == pytest.approx(1.0, abs=0.05)
    assert float(np.abs(rec - vol).max()) < 0.05


def test_wbp_of_an_off_centre_blob_puts_it_in_place():
    # Odd sizes put the centre, hence the shifted peak, exactly on a voxel.
    vol = _blob(nz=33, nx=65, sigma=2.0, centre=(5.0, -11.0))
    rec = weighted_backprojection(project(vol, FULL), FULL, thickness=33)
    assert (
        np.unravel_index(np.argmax(rec), rec.shape)[::2]
        == np.unravel_index(np.argmax(vol), vol.shape)[::2]
    )
    assert _corr(rec, vol) > 0.99  # interpolation blur only


@pytest.mark.parametrize("nx", [64, 65])
def test_wbp_amplitude_with_odd_padded_width_regression(nx):
    # Regression: the Ram-Lak kernel was built for even FFT lengths only, and
    # an odd width (65 -> padded 135) doubled the reconstruction.
    vol = _blob(nz=32, nx=nx, sigma=3.0)
    rec = weighted_backprojection(project(vol, FULL), FULL, thickness=32)
    assert float(rec.max() / vol.max()) == pytest.approx(1.0, abs=0.05)


def test_wbp_missing_wedge_scales_the_peak_by_the_covered_angle():
    vol = _blob(sigma=3.0)
    full = weighted_backprojection(project(vol, FULL), FULL, thickness=32)
    limited = weighted_backprojection(project(vol, LIMITED), LIMITED, thickness=32)
    # The peak of an isotropic blob is the integral of its radially symmetric
    # spectrum over the measured directions, i.e. proportional to the angle the
    # weights cover: 120° + one 3° step (the end tilts get a full step) of 180°.
    # 1 % covers the discrete angular sampling.
    assert float(limited.max() / full.max()) == pytest.approx(123.0 / 180.0, rel=0.01)


def test_wbp_of_a_noiseless_phantom_matches_it():
    ph = phantom((32, 64, 64), seed=0)
    z0, z1 = ph.slab
    centre = (slice(z0 + 2, z1 - 2), slice(None), slice(16, 48))  # away from edges
    full = weighted_backprojection(project(ph.density, FULL), FULL, thickness=32)
    limited = weighted_backprojection(project(ph.density, LIMITED), LIMITED, thickness=32)
    # Full range: only interpolation blur (measured 0.999).
    assert _corr(full[centre], ph.density[centre]) > 0.97
    # ±60°: the missing wedge elongates every object along Z and removes a
    # third of Fourier space, which caps the correlation (measured 0.80-0.93
    # over seeds 0-3 and two sizes).
    assert _corr(limited[centre], ph.density[centre]) > 0.75


def test_wbp_is_linear():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((LIMITED.size, 4, 24), dtype=np.float32)
    b = rng.standard_normal((LIMITED.size, 4, 24), dtype=np.float32)

    def wbp(s):
        return weighted_backprojection(s, LIMITED, thickness=10)

    # float32 arithmetic: relative error ~1e-6 of the typical value.
    np.testing.assert_allclose(wbp((a + b) / 2), (wbp(a) + wbp(b)) / 2, atol=1e-4)


def test_wbp_thickness_sets_the_output_depth_centred_on_the_axis():
    vol = _blob(nz=32, sigma=2.0)
    proj = project(vol, FULL)
    thick = weighted_backprojection(proj, FULL, thickness=32)
    thin = weighted_backprojection(proj, FULL, thickness=12)
    assert thin.shape == (12, 3, 64)
    # Same geometry: the thin volume is the central 12 slices of the thick one.
    np.testing.assert_allclose(thin, thick[10:22], atol=1e-5)


def test_wbp_tilt_axis_x_is_tilt_axis_y_transposed():
    rng = np.random.default_rng(4)
    series = rng.standard_normal((LIMITED.size, 7, 20), dtype=np.float32)
    got = weighted_backprojection(series, LIMITED, thickness=9, tilt_axis="X")
    want = weighted_backprojection(series.transpose(0, 2, 1), LIMITED, thickness=9).transpose(
        0, 2, 1
    )
    assert got.shape == (9, 7, 20)
    np.testing.assert_array_equal(got, want)


def test_wbp_round_trip_with_tilt_axis_x():
    vol = _blob(sigma=3.0).transpose(0, 2, 1)  # (Z, X-ish, Y): rotates in Z-Y
    rec = weighted_backprojection(
        project(vol, FULL, tilt_axis="X"), FULL, thickness=32, tilt_axis="X"
    )
    assert float(np.abs(rec - vol).max()) < 0.05  # as the tilt_axis="Y" round trip


def test_wbp_lowpass_reduces_noise():
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((LIMITED.size, 16, 64), dtype=np.float32)
    plain = weighted_backprojection(noise, LIMITED, thickness=16)
    smooth = weighted_backprojection(noise, LIMITED, thickness=16, lowpass=1.0)
    # A Hann window over the ramp keeps ∫ f² w(f)² / ∫ f² ≈ 0.09 of the
    # ramp-filtered white-noise power, a standard deviation ratio of ≈ 0.3.
    assert float(smooth.std() / plain.std()) < 0.4


def test_wbp_edge_padding_avoids_bright_rims_of_truncated_projections():
    # A laterally infinite slab of constant projections reconstructs to ~0
    # everywhere (its spectrum lies in the missing wedge); zero-padding would
    # leave a strong rim at the detector edges.
    series = np.ones((LIMITED.size, 2, 48), dtype=np.float32)
    rec = weighted_backprojection(series, LIMITED, thickness=16)
    assert float(np.abs(rec).max()) < 0.05


# --- validation ----------------------------------------------------------------------


def test_wbp_angles_must_match_the_number_of_projections():
    series = np.zeros((5, 4, 8), dtype=np.float32)
    with pytest.raises(InputError, match=r"one angle per projection \(5\), found 4 angles"):
        weighted_backprojection(series, [0, 1, 2, 3], thickness=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tilt_series": np.zeros((4, 8))}, "3-D"),
        ({"tilt_series": np.zeros((0, 4, 8))}, "non-empty"),
        ({"tilt_series": np.full((1, 4, 8), np.nan)}, "finite"),
        ({"tilt_series": np.zeros((1, 4, 8), complex)}, "real-valued"),
        ({"thickness": 0}, "thickness"),
        ({"thickness": 2.5}, "thickness"),
        ({"lowpass": 0.0}, "lowpass"),
        ({"lowpass": 1.5}, "lowpass"),
        ({"tilt_axis": "Z"}, "tilt_axis"),
        ({"angles": [[0.0]]}, "1-D"),
        ({"angles": [np.inf]}, "finite"),
    ],
)
def test_wbp_rejects_bad_input(kwargs, match):
    args = {"tilt_series": np.zeros((1, 4, 8)), "angles": [0.0], "thickness": 4, **kwargs}
    with pytest.raises(InputError, match=match):
        weighted_backprojection(args.pop("tilt_series"), args.pop("angles"), **args)


@pytest.mark.parametrize(
    ("volume", "angles", "match"),
    [
        (np.zeros((4, 8)), [0.0], "3-D"),
        (np.zeros((2, 4, 8)), [], "non-empty"),
        (np.zeros((2, 4, 8)), ["a"], "angles"),
    ],
)
def test_project_rejects_bad_input(volume, angles, match):
    with pytest.raises(InputError, match=match):
        project(volume, angles)


# --- reconstruct: binning, voxel size, simulated data --------------------------------


def test_binned_reconstruction_matches_the_binned_full_reconstruction():
    ph = phantom((32, 64, 64), seed=1)
    series = project(ph.density, LIMITED)
    full = reconstruct(series, LIMITED, thickness=32, pixel_size=4.0)
    binned = reconstruct(series, LIMITED, thickness=32, binning=2, pixel_size=4.0)
    assert (full.voxel_size, binned.voxel_size) == (4.0, 8.0)
    assert binned.volume.shape == (16, 32, 32)
    reference = full.volume.reshape(16, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5))
    # Same density units (the mean ratio is 1 within 5 %), same structure up to
    # the blur of binning before rather than after filtering (measured: ratio 0.971,
    # correlation 0.998).
    ratio = float(np.abs(binned.volume).mean() / np.abs(reference).mean())
    assert ratio == pytest.approx(1.0, rel=0.05)
    assert _corr(binned.volume, reference) > 0.9


def test_bin_projections_drops_partial_blocks_and_keeps_line_integral_units():
    series = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    binned = bin_projections(series, 2)
    assert binned.shape == (2, 2, 3)
    assert binned[0, 0, 0] == pytest.approx(np.mean([0, 1, 7, 8]) / 2)


def test_reconstructing_the_simulated_clean_series_gives_the_simulated_tomogram():
    from cryocare.simulate import simulate_tilt_series, simulate_tomogram

    shape = (24, 48, 48)
    ts = simulate_tilt_series(shape, seed=2)
    tomo = simulate_tomogram(shape, seed=2)
    rec = reconstruct(ts.clean, ts.angles, thickness=shape[0], pixel_size=ts.voxel_size)
    assert rec.voxel_size == ts.voxel_size
    assert _corr(rec.volume, tomo.clean) > 0.95


def test_even_and_odd_series_reconstruct_to_a_working_t2t_pair():
    from cryocare.simulate import simulate_tilt_series

    shape = (24, 48, 48)
    ts = simulate_tilt_series(shape, seed=3)
    even, odd, clean = (reconstruct(s, ts.angles, thickness=shape[0]).volume
                        for s in (ts.even, ts.odd, ts.clean))
    # Independent noise: the two noise fields are uncorrelated (|r| < 0.05; 55k
    # voxels, but WBP correlates neighbours, so the band is wider than 3/sqrt(n)).
    assert abs(_corr(even - clean, odd - clean)) < 0.05
    # Same signal: averaging the halves brings the result closer to the clean tomogram.
    assert _corr((even + odd) / 2, clean) > max(_corr(even, clean), _corr(odd, clean))
    assert _corr(even, odd) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"binning": 0}, "binning"), ({"binning": 100}, "larger"), ({"thickness": 0}, "thickness"),
     ({"pixel_size": -1.0}, "pixel_size")],
)
def test_reconstruct_rejects_bad_input(kwargs, match):
    args = {"thickness": 8} | kwargs
    with pytest.raises(InputError, match=match):
        reconstruct(np.ones((3, 8, 8), np.float32), [-10.0, 0.0, 10.0], **args)


def test_cli_reconstruct_finds_the_tilt_file_and_carries_the_voxel_size(tmp_path):
    from cryocare import io
    from cryocare.cli import main
    from cryocare.tiltseries import write_tilt_angles

    ph = phantom((16, 16, 32), seed=0)
    for half in ("EVN", "ODD"):
        io.write(tmp_path / f"TS_01_{half}.st", project(ph.density, LIMITED), voxel_size=5.0)
    write_tilt_angles(tmp_path / "TS_01.tlt", LIMITED)
    out = tmp_path / "rec"
    assert main(["reconstruct", str(tmp_path / "TS_01_EVN.st"), str(tmp_path / "TS_01_ODD.st"),
                 "--thickness", "16", "--binning", "2", "--output", str(out), "-q"]) == 0
    rec = io.read(out / "TS_01_EVN_rec.mrc")
    assert rec.shape == (8, 8, 16)
    assert io.read_info(out / "TS_01_ODD_rec.mrc").voxel_size == (10.0, 10.0, 10.0)
    expected = reconstruct(project(ph.density, LIMITED), LIMITED, thickness=16, binning=2)
    np.testing.assert_allclose(rec, expected.volume, rtol=1e-5, atol=1e-5)
    # A tilt file of the wrong length: one line, exit status 2.
    write_tilt_angles(tmp_path / "short.tlt", LIMITED[:3])
    assert main(["reconstruct", str(tmp_path / "TS_01_EVN.st"), "--angles",
                 str(tmp_path / "short.tlt"), "--thickness", "16",
                 "--output", str(tmp_path / "x.mrc"), "-q"]) == 2
