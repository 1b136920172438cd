"""Tests of cryocare.tiltseries: movies per tilt -> even/odd tilt series -> T2T pair."""

import numpy as np
import pytest

from cryocare import io
from cryocare.errors import InputError, OutputExistsError
from cryocare.halves import find_halves
from cryocare.reconstruct import reconstruct
from cryocare.simulate import simulate_tilt_series
from cryocare.tiltseries import (
    find_tilt_file,
    read_tilt_angles,
    split_tilt_movies,
    write_tilt_angles,
    write_tilt_series_halves,
)


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def simulated():
    """A small simulated tilt series, its contrast and one Poisson movie (6 frames) per tilt.

    The simulator's contrast (std 0.005 at 10 Å pixels) is amplified 20 times so that
    a test-sized tomogram has a measurable signal at 20 counts per pixel per frame.
    """
    ts = simulate_tilt_series((16, 32, 48), seed=5)
    contrast = 20 * ts.clean
    rng = np.random.default_rng(6)
    dose = 20.0  # counts per pixel per frame
    movies = [rng.poisson(dose * np.clip(1 + image, 0, None), size=(6, *image.shape))
              .astype(np.float32) for image in contrast]
    return ts, movies, dose, contrast


def test_movies_per_tilt_give_an_even_odd_tilt_series_and_a_t2t_pair(simulated):
    ts, movies, dose, contrast = simulated
    series = split_tilt_movies(movies, ts.angles)
    assert series.even.shape == ts.clean.shape
    np.testing.assert_array_equal(series.angles, ts.angles)
    np.testing.assert_array_equal(series.even, np.stack([m[0::2].sum(0) for m in movies]))
    # Contrast as the simulator defines it: counts / expected counts - 1.
    even, odd = series.even / (3 * dose) - 1, series.odd / (3 * dose) - 1
    rec = {name: reconstruct(s, ts.angles, thickness=16).volume
           for name, s in (("even", even), ("odd", odd), ("clean", contrast))}
    # Independent noise in the two tomograms (|r| < 0.05 on 24k correlated voxels) …
    assert abs(_corr(rec["even"] - rec["clean"], rec["odd"] - rec["clean"])) < 0.05
    # … around the same signal: the average is closer to the clean tomogram than a half.
    assert _corr(rec["even"], rec["odd"]) > 0.4  # measured 0.62
    assert _corr((rec["even"] + rec["odd"]) / 2, rec["clean"]) > _corr(rec["even"], rec["clean"])


def test_tilt_file_round_trip_and_write_halves(tmp_path, simulated):
    ts, movies, _, _ = simulated
    series = split_tilt_movies(movies[:5], ts.angles[:5])
    even, odd, tlt = write_tilt_series_halves(series, tmp_path, "TS_01", pixel_size=10.0)
    np.testing.assert_allclose(read_tilt_angles(tlt), ts.angles[:5], atol=0.005)
    assert io.read_info(even).voxel_size == (10.0, 10.0, 10.0)
    assert find_halves([tmp_path / "*_EVN.st"], [tmp_path / "*_ODD.st"]) == [(even, odd)]
    assert find_tilt_file(even) == tlt and find_tilt_file(odd) == tlt
    with pytest.raises(OutputExistsError):
        write_tilt_series_halves(series, tmp_path, "TS_01")


def test_movie_files_and_tilt_file(tmp_path, simulated):
    ts, movies, _, _ = simulated
    paths = [io.write(tmp_path / f"tilt_{i:02d}.mrcs", m) for i, m in enumerate(movies[:3])]
    tlt = write_tilt_angles(tmp_path / "ts.rawtlt", ts.angles[:3])
    series = split_tilt_movies(paths, tlt)
    np.testing.assert_array_equal(series.odd[2], movies[2][1::2].sum(0))


def test_tilt_file_in_the_parent_of_even_and_odd_folders(tmp_path):
    (tmp_path / "even").mkdir()
    write_tilt_angles(tmp_path / "TS_07.tlt", [0.0])
    assert find_tilt_file(tmp_path / "even" / "TS_07.st") == tmp_path / "TS_07.tlt"
    with pytest.raises(InputError, match="no tilt-angle file"):
        find_tilt_file(tmp_path / "even" / "TS_08.st")


def test_tilt_file_length_must_match_the_movies(tmp_path, simulated):
    ts, movies, _, _ = simulated
    tlt = write_tilt_angles(tmp_path / "ts.tlt", ts.angles[:4])
    with pytest.raises(InputError, match=r"ts.tlt: 4 tilt angles, but 3 movies"):
        split_tilt_movies(movies[:3], tlt)


def test_movies_of_different_sizes_are_refused(simulated):
    _, movies, _, _ = simulated
    with pytest.raises(InputError, match="movie 1: frames of shape"):
        split_tilt_movies([movies[0], movies[1][:4]], [0.0, 3.0])


@pytest.mark.parametrize(("text", "match"), [("0.0\nabc\n", "line 2"), ("1 2\n", "line 1"),
                                             ("", "no tilt angles"), ("120\n", "±90")])
def test_bad_tilt_files(tmp_path, text, match):
    path = tmp_path / "bad.tlt"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_tilt_angles(path)
    with pytest.raises(InputError, match="cannot read"):
        read_tilt_angles(tmp_path / "missing.tlt")
