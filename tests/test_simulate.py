"""Tests of cryocare.simulate: phantom, tilt series and tomogram simulation."""

import dataclasses
import time

import numpy as np
import pytest

from cryocare.errors import InputError
from cryocare.simulate import (
    Phantom,
    SimulatedTiltSeries,
    SimulatedTomogram,
    phantom,
    simulate_tilt_series,
    simulate_tomogram,
)

TINY = (24, 48, 48)


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def default_tomograms():
    """Three tomograms at the default settings (about 0.2 s each)."""
    return [simulate_tomogram(seed=seed) for seed in range(3)]


# --- phantom -------------------------------------------------------------------------


def test_phantom_types_and_invariants():
    ph = phantom((32, 64, 64), seed=0)
    assert isinstance(ph, Phantom)
    assert ph.density.shape == ph.mask.shape == ph.labels.shape == (32, 64, 64)
    assert ph.density.dtype == np.float32 and ph.mask.dtype == bool
    assert ph.labels.dtype == np.uint8 and ph.labels.max() < len(Phantom.LABEL_NAMES)
    assert float(ph.density.min()) >= 0.0
    np.testing.assert_array_equal(ph.mask, ph.labels > 0)
    z0, z1 = ph.slab
    assert ph.slab == (4, 28)  # 0.75 × 32 slices, centred
    assert not ph.density[:z0].any() and not ph.density[z1:].any()  # ice only
    assert ph.voxel_size == 10.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ph.voxel_size = 5.0  # type: ignore[misc]


def test_phantom_is_deterministic_by_seed():
    a, b, c = (phantom(TINY, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.density, b.density)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.density, c.density)


def test_phantom_accepts_a_generator_as_seed():
    a = phantom(TINY, seed=np.random.default_rng(3))
    b = phantom(TINY, seed=3)
    np.testing.assert_array_equal(a.density, b.density)


def test_phantom_contains_every_kind_of_object():
    ph = phantom((48, 128, 128), seed=0)
    present = set(np.unique(ph.labels).tolist())
    assert present == {0, 1, 2, 3}  # background, membrane, filament, macromolecule
    fraction = ph.mask.mean()
    assert 0.03 < fraction < 0.4  # crowded, yet mostly cytosol (measured 0.16)


def test_phantom_mask_covers_the_objects():
    for seed in range(3):
        ph = phantom((32, 96, 96), seed=seed)
        # The cytosol never exceeds 0.6 (mean 0.12 + 6 standard deviations);
        # every denser voxel belongs to an object and must be in the mask.
        assert ph.mask[ph.density > 0.6].all()
        # And the mask is material: mostly dense voxels, not cytosol.
        assert float(np.median(ph.density[ph.mask])) > 0.5


def test_phantom_crowding_scales_the_amount_of_material():
    sparse = phantom((32, 96, 96), seed=1, crowding=0.3).mask.mean()
    dense = phantom((32, 96, 96), seed=1, crowding=2.0).mask.mean()
    empty = phantom((32, 96, 96), seed=1, crowding=0.0)
    assert dense > 2 * sparse
    assert not empty.mask.any() and float(empty.density.max()) < 0.6  # cytosol only


def test_phantom_sizes_follow_voxel_size():
    fine = phantom((32, 96, 96), seed=2, voxel_size=10.0).mask.mean()
    coarse = phantom((32, 96, 96), seed=2, voxel_size=20.0).mask.mean()
    # At 2 nm per voxel the same volume covers 8× the specimen; objects are
    # half as big in voxels and the occupied fraction stays of the same order.
    assert 0.3 < coarse / fine < 3.0


def test_phantom_is_fast():
    start = time.perf_counter()
    phantom((32, 64, 64), seed=0)
    # "Well under a second" (measured ~0.01 s on 2 cores).
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (8, 8)}, "shape"),
        ({"shape": (8, 8, 2)}, "shape"),
        ({"shape": (8, 8, 8.5)}, "shape"),
        ({"shape": "abc"}, "shape"),
        ({"voxel_size": 0}, "voxel_size"),
        ({"slab_fraction": 0.0}, "slab_fraction"),
        ({"slab_fraction": "thin"}, "slab_fraction"),
        ({"crowding": -1}, "crowding"),
        ({"seed": None}, "seed"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_phantom_rejects_bad_input(kwargs, match):
    args = {"shape": TINY, "seed": 0, **kwargs}
    with pytest.raises(InputError, match=match):
        phantom(args.pop("shape"), **args)


# --- tilt series ---------------------------------------------------------------------


def test_tilt_series_types_and_angles():
    ts = simulate_tilt_series(TINY, seed=0)
    assert isinstance(ts, SimulatedTiltSeries)
    np.testing.assert_array_equal(ts.angles, np.arange(-60.0, 60.1, 3.0))
    for image in (ts.even, ts.odd, ts.clean):
        assert image.shape == (41, 48, 48) and image.dtype == np.float32
    assert ts.density.shape == TINY and ts.voxel_size == 10.0


def test_tilt_series_is_deterministic_by_seed():
    a, b, c = (simulate_tilt_series(TINY, seed=s, tilt_step=10.0) for s in (1, 1, 2))
    for name in ("even", "odd", "clean"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


@pytest.mark.parametrize("n_frames", [8, 3])
def test_tilt_series_halves_are_unbiased_with_poisson_variance(n_frames):
    dose = 3.0
    ts = simulate_tilt_series(TINY, seed=4, dose_per_tilt=dose, n_frames=n_frames)
    intensity = 1.0 + ts.clean.astype(np.float64)  # expected counts / flat field
    for half, frames in ((ts.even, (n_frames + 1) // 2), (ts.odd, n_frames // 2)):
        flat = dose * ts.voxel_size**2 * frames / n_frames  # e⁻ per pixel in the half
        noise = half.astype(np.float64) - ts.clean
        # Poisson: var(counts / flat) = intensity / flat, independent pixels.
        variance = intensity / flat
        n = noise.size
        standard_error = float(np.sqrt(variance.sum())) / n
        # Unbiased: E[half] = clean. Five standard errors: never by chance.
        assert abs(float(noise.mean())) < 5 * standard_error
        # Same scale: regressing the half on clean gives slope 1 (5 s.e.).
        centred = ts.clean - ts.clean.mean()
        slope = float((centred * noise).sum() / (centred**2).sum()) + 1.0
        slope_error = float(np.sqrt((centred**2 * variance).sum()) / (centred**2).sum())
        assert abs(slope - 1.0) < 5 * slope_error
        # The variance is that of the half's own dose (the relative standard
        # error of a variance over 94 000 pixels is 0.5 %; 3 % is six of them).
        assert float((noise**2).mean() / variance.mean()) == pytest.approx(1.0, rel=0.03)


def test_tilt_series_dense_material_is_dark():
    ts = simulate_tilt_series((32, 64, 64), seed=0)
    projected = ts.density.sum(axis=0)  # 0° tilt is the middle image
    # Underfocus and amplitude contrast both darken dense material.
    assert _corr(ts.clean[ts.angles.size // 2], projected) < -0.3


# --- tomogram ------------------------------------------------------------------------


def test_tomogram_types_and_truth(default_tomograms):
    tomo = default_tomograms[0]
    assert isinstance(tomo, SimulatedTomogram)
    for volume in (tomo.even, tomo.odd, tomo.clean, tomo.density):
        assert volume.shape == (64, 128, 128) and volume.dtype == np.float32
    assert tomo.mask.dtype == bool and tomo.angles.size == 41
    # The imaged specimen is phantom(shape, seed=seed).
    np.testing.assert_array_equal(tomo.density, phantom((64, 128, 128), seed=0).density)


def test_tomogram_is_deterministic_by_seed():
    a, b, c = (simulate_tomogram(TINY, seed=s) for s in (5, 5, 6))
    for name in ("even", "odd", "clean"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_tomogram_even_odd_correlation_is_realistic(default_tomograms):
    for tomo in default_tomograms:
        # Target ≈ 0.1 (measured 0.105 ± 0.02 over 16 seeds, 0.07-0.14).
        assert 0.05 < _corr(tomo.even, tomo.odd) < 0.2


def test_tomogram_structure_is_present_under_the_noise(default_tomograms):
    for tomo in default_tomograms:
        single = _corr(tomo.even, tomo.clean)
        average = _corr((tomo.even + tomo.odd) / 2, tomo.clean)
        # Averaging the independent halves halves the noise variance, which
        # raises the correlation by sqrt(2 / (1 + r_eo)) ≈ 1.35 at r_eo = 0.1.
        assert average > 1.25 * single
        assert single > 0.2  # measured 0.32 on average


def test_tomogram_clean_is_on_the_scale_of_the_halves(default_tomograms):
    tomo = default_tomograms[0]
    average = (tomo.even + tomo.odd) / 2
    centred = tomo.clean - tomo.clean.mean()
    slope = float((centred * (average - average.mean())).sum() / (centred**2).sum())
    # E[(even + odd) / 2] = clean gives slope 1; the noise (correlated over a
    # few voxels, 10⁶ voxels) moves it by ~0.01, so 0.1 is a wide margin.
    assert slope == pytest.approx(1.0, abs=0.1)


def test_tomogram_halves_average_to_clean():
    # E[even] = clean in every voxel: over 8 seeds the volume mean of
    # (even - clean) scatters around 0 with the spread of its per-seed values.
    means = np.array(
        [
            float((t.even - t.clean).mean())
            for t in (simulate_tomogram(TINY, seed=s) for s in range(8))
        ]
    )
    standard_error = means.std(ddof=1) / np.sqrt(means.size)
    assert abs(means.mean()) < 5 * standard_error


def test_tomogram_dense_material_is_dark(default_tomograms):
    for tomo in default_tomograms:
        # IMOD convention for cryo-tomograms: dense material is dark.
        assert _corr(tomo.clean, tomo.density) < -0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (24, 48)}, "shape"),
        ({"shape": (0, 48, 48)}, "shape"),
        ({"dose_per_tilt": 0.0}, "dose_per_tilt"),
        ({"dose_per_tilt": -1.0}, "dose_per_tilt"),
        ({"tilt_step": 0.0}, "tilt_step"),
        ({"tilt_step": -3.0}, "tilt_step"),
        ({"tilt_range": (60.0, -60.0)}, "tilt_range"),
        ({"tilt_range": (-95.0, 60.0)}, "tilt_range"),
        ({"tilt_range": 60.0}, "tilt_range"),
        ({"n_frames": 1}, "n_frames"),
        ({"n_frames": 4.0}, "n_frames"),
        ({"amplitude_contrast": 1.0}, "amplitude_contrast"),
        ({"cs_mm": -1.0}, "cs_mm"),
        ({"voltage_kv": 0.0}, "voltage_kv"),
        ({"defocus_um": float("nan")}, "defocus_um"),
        ({"voxel_size": -10.0}, "voxel_size"),
    ],
)
def test_simulation_rejects_bad_input(kwargs, match):
    args = {"shape": TINY, **kwargs}
    with pytest.raises(InputError, match=match):
        simulate_tilt_series(args.pop("shape"), **args)
    with pytest.raises(InputError, match=match):
        simulate_tomogram(
            TINY if "shape" not in kwargs else kwargs["shape"],
            **{k: v for k, v in kwargs.items() if k != "shape"},
        )


# --- specimen mix, tilt axis and the settings sampler ---------------------------------


def test_phantom_amounts_of_one_kind():
    shape = (32, 96, 96)
    # Explicit 1.0 is the default, draw for draw.
    np.testing.assert_array_equal(
        phantom(shape, seed=3, membranes=1.0, filaments=1.0, macromolecules=1.0).labels,
        phantom(shape, seed=3).labels,
    )
    for kind, label in (("membranes", 1), ("filaments", 2), ("macromolecules", 3)):
        ph = phantom(shape, seed=3, **{kind: 0.0})
        assert label not in np.unique(ph.labels)
    more = phantom(shape, seed=3, membranes=3.0).labels == 1
    assert more.mean() > 1.5 * (phantom(shape, seed=3).labels == 1).mean()


@pytest.mark.parametrize("kind", ["membranes", "filaments", "macromolecules"])
def test_phantom_rejects_negative_amounts(kind):
    with pytest.raises(InputError, match=kind):
        phantom(TINY, seed=0, **{kind: -0.5})


def test_tomogram_tilted_about_x():
    shape = (32, 64, 64)
    y = simulate_tomogram(shape, seed=11)
    x = simulate_tomogram(shape, seed=11, tilt_axis="X")
    assert x.tilt_axis == "X" and y.tilt_axis == "Y"
    np.testing.assert_array_equal(x.density, y.density)  # the same specimen
    assert _corr(x.clean, x.density) < -0.3  # dense is dark, as about Y

    # The missing wedge lies along the axis normal to the tilt axis: the
    # noiseless tomogram keeps less power at high |kz| along it. Ratio of
    # power at high kz to the total, along kx (Y-axis tilt) vs ky.
    def wedge_power(volume, axis):
        power = np.abs(np.fft.fftn(volume - volume.mean())) ** 2
        kz = np.abs(np.fft.fftfreq(shape[0]))[:, None, None]
        k_in = np.abs(np.fft.fftfreq(shape[axis]))
        k_in = k_in[None, :, None] if axis == 1 else k_in[None, None, :]
        # Directions within 20° of the beam axis are in the missing wedge of a ±60° series.
        wedge = (kz > 0.05) & (k_in < np.tan(np.deg2rad(20)) * kz)
        return float(power[np.broadcast_to(wedge, power.shape)].sum() / power.sum())

    # About Y the Z-X plane is sampled and the wedge is along X (axis 2), about X along Y.
    assert wedge_power(y.clean, 2) < 0.5 * wedge_power(y.clean, 1)
    assert wedge_power(x.clean, 1) < 0.5 * wedge_power(x.clean, 2)


def test_tilt_series_rejects_bad_tilt_axis():
    with pytest.raises(InputError, match="tilt_axis"):
        simulate_tilt_series(TINY, seed=0, tilt_axis="Z")


def test_random_settings_are_seeded_in_range_and_simulate():
    import json

    from cryocare.simulate import random_settings

    draws = [random_settings(np.random.default_rng(5)) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = np.random.default_rng(0)
    many = [random_settings(rng) for _ in range(200)]
    json.dumps(many)  # JSON-serialisable, for provenance files
    assert {s["tilt_axis"] for s in many} == {"Y", "X"}
    for s in many:
        assert 4.0 <= s["voxel_size"] <= 20.0
        assert 40 <= s["shape"][0] <= 96 and all(128 <= n <= 192 for n in s["shape"][1:])
        assert 0 < s["slab_fraction"] <= 1.0
        assert -70 <= s["tilt_range"][0] <= -40 and 40 <= s["tilt_range"][1] <= 70
        assert 1.0 <= s["tilt_step"] <= 4.0 and 1.5 <= s["defocus_um"] <= 5.5
        tilts = int((s["tilt_range"][1] - s["tilt_range"][0]) / s["tilt_step"] + 1e-9) + 1
        assert 60 <= s["dose_per_tilt"] * tilts <= 180.5  # total dose, rounding aside
    # Both thin lamellae in ice and crops of thick cells occur.
    fractions = np.array([s["slab_fraction"] for s in many])
    assert (fractions < 0.6).any() and (fractions == 1.0).any()
    small = random_settings(np.random.default_rng(1), depth=(16, 16), lateral=(32, 32))
    tomo = simulate_tomogram(**small, seed=1)
    assert tomo.even.shape == (16, 32, 32) and tomo.tilt_axis == small["tilt_axis"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voxel_size": (20.0, 4.0)}, "voxel_size"),
        ({"max_tilt": (40.0, 95.0)}, "max_tilt"),
        ({"depth": 5}, "depth"),
        ({"p_absent": 1.0}, "p_absent"),
        ({"tilt_axes": ("Z",)}, "tilt_axes"),
    ],
)
def test_random_settings_rejects_bad_ranges(kwargs, match):
    from cryocare.simulate import random_settings

    with pytest.raises(InputError, match=match):
        random_settings(np.random.default_rng(0), **kwargs)
    with pytest.raises(InputError, match="rng"):
        random_settings(0)


# --- the wedge-free truth ------------------------------------------------------------


def _cone_power_ratio(volume, wedge):
    """Mean power in the missing cone over that in the measured directions (0.04-0.15)."""
    from cryocare.wedge import measured_mask, missing_mask

    power = np.abs(np.fft.fftn(volume - volume.mean())) ** 2
    radius = np.sqrt(sum(np.meshgrid(*(np.fft.fftfreq(n) ** 2 for n in volume.shape),
                                     indexing="ij", sparse=True)))
    band = (radius > 0.04) & (radius < 0.15)
    cone = missing_mask(volume.shape, wedge, margin=5) & band
    seen = measured_mask(volume.shape, wedge, margin=5) & band
    return float(power[cone].mean() / power[seen].mean())


def test_isotropic_tilt_series_extends_the_measured_grid():
    ts = simulate_tilt_series((16, 32, 32), seed=1, tilt_range=(-45, 60), tilt_step=5.0)
    # The grid -45, -40, ... continued with the same step over [-90, 90): 36 tilts.
    np.testing.assert_array_equal(ts.isotropic_angles, np.arange(-90.0, 90.0, 5.0))
    index = np.searchsorted(ts.isotropic_angles, ts.angles)
    np.testing.assert_array_equal(ts.isotropic_angles[index], ts.angles)
    # Same phantom, CTF and normalisation: the images agree exactly where the angles do.
    np.testing.assert_array_equal(ts.isotropic[index], ts.clean)
    assert ts.isotropic.dtype == np.float32


def test_isotropic_grid_keeps_an_asymmetric_odd_step():
    ts = simulate_tilt_series((16, 32, 32), seed=1, tilt_range=(-52.5, 61.0), tilt_step=3.5)
    angles = ts.isotropic_angles
    assert angles[0] >= -90 and angles[-1] < 90 and angles[0] - 3.5 < -90 <= angles[-1] + 3.5 - 180
    np.testing.assert_allclose(np.diff(angles), 3.5)
    assert np.isin(ts.angles, angles).all()


def test_isotropic_equals_clean_without_a_wedge():
    tomo = simulate_tomogram(TINY, seed=2, tilt_range=(-90, 90), tilt_step=6.0)
    np.testing.assert_array_equal(tomo.isotropic, tomo.clean)


def test_isotropic_fills_the_missing_cone_and_keeps_the_rest(default_tomograms):
    from cryocare.wedge import Wedge

    wedge = Wedge(-60, 60)
    for tomo in default_tomograms:
        assert tomo.isotropic.shape == tomo.clean.shape and tomo.isotropic.dtype == np.float32
        # Measured 0.02 (clean) and about 1.5 (isotropic: the slab's flat faces put
        # power along k_z) at seed 3; a cone of 100 x less power is the wedge.
        assert _cone_power_ratio(tomo.clean, wedge) < 0.1
        assert _cone_power_ratio(tomo.isotropic, wedge) > 0.5
        # Not a different scale or structure: dense is dark and the wedged clean
        # volume is its band-limited part (correlation 0.76 at seed 3).
        assert _corr(tomo.isotropic, tomo.density) < -0.3
        assert _corr(tomo.isotropic, tomo.clean) > 0.6


def test_isotropic_about_x_fills_the_cone_along_y():
    from cryocare.wedge import Wedge

    tomo = simulate_tomogram((32, 64, 64), seed=11, tilt_axis="X")
    assert _cone_power_ratio(tomo.clean, Wedge(-60, 60, "X")) < 0.1
    assert _cone_power_ratio(tomo.isotropic, Wedge(-60, 60, "X")) > 0.5


def test_isotropic_is_deterministic_by_seed():
    a, b, c = (simulate_tomogram(TINY, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.isotropic, b.isotropic)
    assert not np.array_equal(a.isotropic, c.isotropic)


def test_cli_simulate_writes_isotropic_beside_clean(tmp_path):
    from cryocare import io
    from cryocare.cli import main

    assert main(["simulate", str(tmp_path), "--shape", "24,48,48", "--seed", "4"]) == 0
    expected = simulate_tomogram((24, 48, 48), seed=4)
    for name in ("clean", "isotropic"):
        np.testing.assert_array_equal(io.read(tmp_path / f"{name}.mrc"), getattr(expected, name))


def test_isotropic_can_be_left_out_without_changing_the_rest():
    with_truth = simulate_tomogram(TINY, seed=8, tilt_range=(-40, 40), tilt_step=2.0)
    without = simulate_tomogram(TINY, seed=8, tilt_range=(-40, 40), tilt_step=2.0,
                                isotropic=False)
    assert without.isotropic is None and with_truth.isotropic is not None
    for name in ("even", "odd", "clean"):
        np.testing.assert_array_equal(getattr(without, name), getattr(with_truth, name))
    series = simulate_tilt_series(TINY, seed=8, isotropic=False)
    assert series.isotropic is None and series.isotropic_angles is None
    with pytest.raises(InputError, match="isotropic: expected True or False"):
        simulate_tomogram(TINY, seed=8, isotropic=1)


def _ctf_filtered_potential(tomo, *, defocus_um=3.0, voltage_kv=300.0, cs_mm=2.7,
                            amplitude=0.07):
    """The wedge-free truth without tomography: for a weak phase object every tilt's 2-D
    CTF is the 3-D CTF on that tilt's central slice, so over all directions the
    noise-free reconstruction is the phase potential filtered by CTF(|k|) in 3-D."""
    import math

    voltage = voltage_kv * 1e3
    wavelength = 12.2643 / math.sqrt(voltage * (1 + 0.978466e-6 * voltage))
    rest = 510998.95
    sigma = 2 * math.pi / (wavelength * voltage) * (rest + voltage) / (2 * rest + voltage)
    shape, size = tomo.density.shape, tomo.voxel_size
    k2 = sum(np.meshgrid(*(np.fft.fftfreq(n, d=size) ** 2 for n in shape[:-1]),
                         np.fft.rfftfreq(shape[-1], d=size) ** 2, indexing="ij", sparse=True))
    chi = math.pi * wavelength * defocus_um * 1e4 * k2 \
        - 0.5 * math.pi * cs_mm * 1e7 * wavelength**3 * k2**2
    ctf = -(math.sqrt(1 - amplitude**2) * np.sin(chi) + amplitude * np.cos(chi))
    phase = tomo.density * sigma * 2.0 * size  # 2.0 V: protein above ice, as simulated
    return np.fft.irfftn(np.fft.rfftn(phase) * 2 * ctf, s=shape, axes=(0, 1, 2))


def test_isotropic_is_the_ctf_filtered_potential(default_tomograms):
    from cryocare.metrics import lowpass, pearson, wedge_correlation

    for tomo in default_tomograms:
        truth = _ctf_filtered_potential(tomo)
        # Measured over seeds 0-2: in-cone and measured correlation 0.999, low-passed
        # correlation 0.99 and amplitude 0.96 of the exact truth (WBP interpolation blur);
        # clean keeps only 0.10-0.13 of the cone. Bounds leave room for other phantoms.
        score = wedge_correlation(truth, tomo.isotropic, "-60,60")
        assert score.missing > 0.95 and score.measured > 0.95
        assert wedge_correlation(truth, tomo.clean, "-60,60").missing < 0.3
        smooth_truth, smooth = lowpass(truth), lowpass(tomo.isotropic)
        assert pearson(smooth_truth, smooth) > 0.95
        slope = float(np.sum(smooth_truth * smooth) / np.sum(smooth_truth**2))
        assert slope == pytest.approx(1.0, abs=0.1)
