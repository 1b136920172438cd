"""Tests of cryocare.frames: even/odd frame sums, gain, rigid alignment (P2P)."""

import numpy as np
import pytest

from cryocare import io
from cryocare.errors import InputError, OutputExistsError
from cryocare.frames import (
    apply_shifts,
    estimate_shifts,
    read_movie,
    split_frames,
    split_movies,
)
from cryocare.halves import match_halves
from cryocare.reconstruct import project
from cryocare.simulate import phantom


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def contrast():
    """Noiseless projection contrast of a phantom, mean 0, std 0.1, (96, 96)."""
    proj = project(phantom((24, 96, 96), seed=0).density, [0.0])[0]
    return ((proj - proj.mean()) / proj.std() * 0.1).astype(np.float64)


def _movie(contrast, *, n_frames, dose, shifts=None, seed=0):
    """Poisson frames of ``dose`` counts per pixel at contrast ``c``, frame i moved by shifts[i]."""
    rng = np.random.default_rng(seed)
    images = np.repeat(contrast[None], n_frames, axis=0)
    if shifts is not None:
        images = apply_shifts(images, shifts).astype(np.float64)
    return rng.poisson(dose * (1 + images)).astype(np.float32)


def test_even_and_odd_sums_have_the_expected_correlation(contrast):
    n_frames, dose = 10, 0.5
    halves = split_frames(_movie(contrast, n_frames=n_frames, dose=dose))
    assert (halves.n_even, halves.n_odd) == (5, 5)
    # Each half: signal variance (5 d)² var(c), Poisson noise variance 5 d (mean of 1 + c = 1).
    signal, noise = (5 * dose) ** 2 * contrast.var(), 5 * dose
    expected = np.sqrt(signal / (signal + noise))
    # 9216 pixels: the sample correlation scatters by (1 - r²)/sqrt(n) ≈ 0.01; 0.03 is 3 sigma.
    assert _corr(halves.even, contrast) == pytest.approx(expected, abs=0.03)
    assert _corr(halves.odd, contrast) == pytest.approx(expected, abs=0.03)
    assert _corr(halves.even, halves.odd) == pytest.approx(expected**2, abs=0.03)
    # Independent halves: their noise is uncorrelated.
    mean = 5 * dose * (1 + contrast)
    assert abs(_corr(halves.even - mean, halves.odd - mean)) < 0.04


def test_odd_number_of_frames_puts_the_extra_frame_in_the_even_half():
    movie = np.arange(5)[:, None, None] * np.ones((5, 4, 4), np.float32)
    halves = split_frames(movie)
    assert (halves.n_even, halves.n_odd) == (3, 2)
    np.testing.assert_array_equal(halves.even, 0 + 2 + 4)
    np.testing.assert_array_equal(halves.odd, 1 + 3)


def test_gain_reference_multiplies_every_frame(tmp_path):
    movie = np.ones((4, 6, 8), np.float32)
    gain = np.linspace(0.5, 2.0, 48).reshape(6, 8).astype(np.float32)
    halves = split_frames(movie, gain=gain)
    np.testing.assert_allclose(halves.even, 2 * gain, rtol=1e-6)
    path = io.write(tmp_path / "gain.mrc", gain)
    np.testing.assert_allclose(split_frames(movie, gain=path).odd, 2 * gain, rtol=1e-6)
    with pytest.raises(InputError, match="does not match"):
        split_frames(movie, gain=gain.T)


def test_alignment_recovers_known_shifts_within_a_fifth_of_a_pixel():
    rng = np.random.default_rng(3)
    n_frames = 16
    # A drift of up to ~6 pixels with jitter, at sub-pixel positions.
    true = np.cumsum(rng.normal([0.3, -0.2], 0.3, size=(n_frames, 2)), axis=0)
    # Per-frame SNR sets the precision (error ∝ 1 / (contrast · sqrt(dose · pixels))):
    # contrast std 0.2 at 50 counts per pixel per frame on 128 x 128 frames gives a
    # measured worst error of 0.05-0.085 pixel over seeds 0-4 (96 x 96: 0.10-0.15;
    # 4 counts per pixel: ~0.8 pixel).
    proj = project(phantom((24, 128, 128), seed=0).density, [0.0])[0]
    image = (proj - proj.mean()) / proj.std() * 0.2
    movie = _movie(image, n_frames=n_frames, dose=50.0, shifts=true, seed=4)
    found = estimate_shifts(movie)
    error = found + (true - true.mean(axis=0))  # found undoes the drift, around its mean
    assert np.abs(error).max() < 0.2
    halves = split_frames(movie, align=True)
    plain = split_frames(movie)
    np.testing.assert_allclose(halves.shifts, found)
    # Aligned sums are sharper: they match the (centred) noiseless image better.
    target = apply_shifts(image[None], true.mean(axis=0, keepdims=True))[0]
    # Paired comparison on the same noise (measured 0.97 against 0.95 at 96 x 96).
    assert _corr(halves.even, target) > _corr(plain.even, target) + 0.01


def test_read_movie_mrcs_and_tiff_and_split_many(tmp_path, contrast):
    import tifffile

    movie = _movie(contrast, n_frames=4, dose=1.0)
    io.write(tmp_path / "a.mrcs", movie, voxel_size=1.5)
    tifffile.imwrite(tmp_path / "b.tif", movie, photometric="minisblack")
    np.testing.assert_array_equal(read_movie(tmp_path / "a.mrcs"), movie)
    np.testing.assert_array_equal(read_movie(tmp_path / "b.tif"), movie)
    out = tmp_path / "halves"
    written = split_movies([tmp_path / "a.mrcs", tmp_path / "b.tif"], out)
    assert [p.name for p in written[0]] == ["a_EVN.mrc", "a_ODD.mrc"]
    assert match_halves(sorted(out.glob("*_EVN.mrc")), sorted(out.glob("*_ODD.mrc"))) == written
    np.testing.assert_allclose(io.read(written[1][0]), movie[0] + movie[2])
    assert io.read_info(written[0][0]).voxel_size[-1] == pytest.approx(1.5)
    with pytest.raises(OutputExistsError):
        split_movies([tmp_path / "a.mrcs"], out)


def test_movies_of_different_frame_counts_or_sizes_are_refused(tmp_path):
    io.write(tmp_path / "a.mrcs", np.ones((4, 8, 8), np.float32))
    io.write(tmp_path / "b.mrcs", np.ones((6, 8, 8), np.float32))
    io.write(tmp_path / "c.mrcs", np.ones((4, 8, 10), np.float32))
    for other in ("b", "c"):
        with pytest.raises(InputError, match=rf"{other}.mrcs: .*all movies must match"):
            split_movies([tmp_path / "a.mrcs", tmp_path / f"{other}.mrcs"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("movie", "match"),
    [(np.ones((1, 8, 8)), "at least 2 frames"), (np.ones((8, 8)), "stack"),
     (np.ones((2, 8, 8), complex), "real numbers")],
)
def test_bad_movies(movie, match):
    with pytest.raises(InputError, match=match):
        split_frames(movie)


def test_unknown_movie_suffix(tmp_path):
    (tmp_path / "movie.eer").write_bytes(b"")
    with pytest.raises(InputError, match="suffix"):
        read_movie(tmp_path / "movie.eer")


def test_cli_split_frames(tmp_path, capsys):
    from cryocare.cli import main

    movie = np.arange(4)[:, None, None] * np.ones((4, 8, 8), np.float32)
    io.write(tmp_path / "m.mrcs", movie, voxel_size=2.0)
    gain = io.write(tmp_path / "gain.mrc", np.full((8, 8), 2.0, np.float32))
    assert main(["split-frames", str(tmp_path / "m.mrcs"), "--output", str(tmp_path / "out"),
                 "--gain", str(gain), "-q"]) == 0
    np.testing.assert_allclose(io.read(tmp_path / "out" / "m_ODD.mrc"), 2 * (1 + 3))
    # A second run refuses to overwrite: one line on stderr, exit status 2.
    assert main(["split-frames", str(tmp_path / "m.mrcs"), "--output",
                 str(tmp_path / "out"), "-q"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_cli_split_frames_of_a_tilt_series(tmp_path):
    from cryocare.cli import main
    from cryocare.tiltseries import write_tilt_angles

    movies = [io.write(tmp_path / f"t{i}.mrcs", np.full((2, 8, 8), i, np.float32))
              for i in range(3)]
    tlt = write_tilt_angles(tmp_path / "TS_03.rawtlt", [-3.0, 0.0, 3.0])
    assert main(["split-frames", *map(str, movies), "--tilts", str(tlt),
                 "--output", str(tmp_path / "ts"), "-q"]) == 0
    even = io.read(tmp_path / "ts" / "TS_03_EVN.st")
    np.testing.assert_array_equal(even[:, 0, 0], [0, 1, 2])
    assert (tmp_path / "ts" / "TS_03.tlt").is_file()
    bad = write_tilt_angles(tmp_path / "short.tlt", [0.0])
    assert main(["split-frames", *map(str, movies), "--tilts", str(bad),
                 "--output", str(tmp_path / "ts2"), "-q"]) == 2
