"""--star with --wedge: each tomogram's tilt range from its RELION 5 tilt-series STAR file.

The ranges are made different on purpose (TS_01 has aligned angles that differ from
its nominal ones; TS_02 has only nominal angles, outside the pretrained wedge model's
family), so that a test passes only if each tomogram's own range, from the right column,
reached the model choice or the training run.
"""

import json
import logging
import types

import numpy as np
import pandas as pd
import pytest
import starfile

from cryocare import cli, io, modelfiles, recipe, relion
from cryocare.errors import InputError
from cryocare.wedge import Wedge

SHAPE = (16, 32, 32)
STAR = "Tomograms/job007/tomograms.star"
TS_01 = Wedge(-48.0, 63.0)  # rlnTomoYTilt (nominal + 3°: -51..60)
TS_02 = Wedge(-30.0, 30.0)  # rlnTomoNominalStageTiltAngle only
TINY = ["--epochs", "1", "--steps", "2", "--batch-size", "2", "--depth", "1", "--n-first", "4",
        "--n-patches", "8", "--precision", "float32", "-q"]


class CountingModel:
    """Writes the average of the halves; its config says what it was trained for."""

    def __init__(self, objective="wedge", wedge=None, calls=None):
        self.calls = [] if calls is None else calls
        self.wedge = wedge
        self.config = types.SimpleNamespace(train_objective=objective)

    def with_wedge(self, wedge):  # as cryocare.isotropic.WedgeRestorer: the same calls
        return CountingModel(self.config.train_objective, wedge, self.calls)

    def denoise(self, even, odd, *settings, out=None, **options):
        self.calls.append((np.shape(even), self.wedge))
        out.write((np.asarray(even) + np.asarray(odd)) / 2)


def _tilt_series(path, name, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({name: pd.DataFrame(columns)}, path)


@pytest.fixture
def project(tmp_path):
    """Two tomograms; their tilt-series STAR files as RELION 5 writes them (block
    data_<rlnTomoName>, one row per tilt, paths relative to the project folder)."""
    (tmp_path / "default_pipeline.star").write_text("data_pipeline_general\n")
    folder = tmp_path / "Tomograms" / "job007" / "tomograms"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    rows = []
    for name in ("TS_01", "TS_02"):
        for half in ("half1", "half2"):
            io.write(folder / f"rec_{name}_{half}.mrc",
                     rng.normal(size=SHAPE).astype(np.float32), voxel_size=10.0)
        rows.append({"rlnTomoName": name,
                     "rlnTomoTiltSeriesStarFile": f"AlignTiltSeries/job005/tilt_series/{name}.star",
                     "rlnTomoReconstructedTomogramHalf1":
                         f"Tomograms/job007/tomograms/rec_{name}_half1.mrc",
                     "rlnTomoReconstructedTomogramHalf2":
                         f"Tomograms/job007/tomograms/rec_{name}_half2.mrc"})
    starfile.write({"global": pd.DataFrame(rows)}, tmp_path / STAR)
    nominal = np.arange(-51.0, 61.0, 3.0)  # dose-symmetric order does not matter: min..max
    rng.shuffle(nominal)
    _tilt_series(tmp_path / "AlignTiltSeries/job005/tilt_series/TS_01.star", "TS_01",
                 {"rlnMicrographPreExposure": np.arange(len(nominal)) * 3.0,
                  "rlnTomoNominalStageTiltAngle": nominal, "rlnTomoXTilt": 0.0,
                  "rlnTomoYTilt": nominal + 3.0, "rlnTomoZRot": 85.3})
    _tilt_series(tmp_path / "AlignTiltSeries/job005/tilt_series/TS_02.star", "TS_02",
                 {"rlnMicrographPreExposure": np.arange(21) * 3.0,
                  "rlnTomoNominalStageTiltAngle": np.linspace(30.0, -30.0, 21)})
    return tmp_path


def test_each_tomogram_gets_its_own_range_from_its_tilt_series(project, monkeypatch,
                                                                tmp_path_factory, caplog):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # paths from the project folder
    with caplog.at_level(logging.INFO, logger="cryocare.relion"):
        wedges = relion.tomogram_wedges(project / STAR)
    assert wedges == {"TS_01": TS_01, "TS_02": TS_02}  # aligned angles first, then nominal
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "TS_01: tilt range -48..63° about Y (rlnTomoYTilt" in messages
    assert "TS_02: tilt range -30..30° about Y (rlnTomoNominalStageTiltAngle" in messages
    assert relion.tomogram_wedges(project / STAR, names=["TS_02"]) == {"TS_02": TS_02}


def test_a_given_range_applies_to_every_tomogram(project):
    assert relion.tomogram_wedges(project / STAR, "-45,50") == {
        "TS_01": Wedge(-45, 50), "TS_02": Wedge(-45, 50)}
    assert relion.tomogram_wedges(project / STAR, (-60, 60), tilt_axis="X") == {
        "TS_01": Wedge(-60, 60, "X"), "TS_02": Wedge(-60, 60, "X")}
    mapping = {"TS_01": Wedge(-50, 50), "TS_02": "-40,40"}
    assert relion.tomogram_wedges(project / STAR, mapping) == {
        "TS_01": Wedge(-50, 50), "TS_02": Wedge(-40, 40)}


def _edit(project, name, columns):
    _tilt_series(project / f"AlignTiltSeries/job005/tilt_series/{name}.star", name, columns)


@pytest.mark.parametrize("damage, expected", [
    ("no column", r"tomogram TS_01: no rlnTomoTiltSeriesStarFile \(expected the tilt-series "
                  "STAR file"),
    ("no file", "tomogram TS_02: tilt-series STAR file "),
    ("no angles", "tomogram TS_02: .*TS_02.star has no column rlnTomoYTilt or "
                  "rlnTomoNominalStageTiltAngle"),
    ("other blocks", "tomogram TS_02: .*TS_02.star has no block data_TS_02 "
                     r"\(found data_a, data_b\)"),
    ("one angle", "tomogram TS_02: .*expected at least two finite tilt angles"),
])
def test_a_missing_piece_names_the_star_file_the_tomogram_and_what_was_expected(
        project, damage, expected):
    star = project / STAR
    if damage == "no column":
        table = starfile.read(star, always_dict=True)["global"]
        starfile.write({"global": table.drop(columns="rlnTomoTiltSeriesStarFile")}, star)
    elif damage == "no file":
        (project / "AlignTiltSeries/job005/tilt_series/TS_02.star").unlink()
    elif damage == "no angles":
        _edit(project, "TS_02", {"rlnMicrographPreExposure": [0.0, 3.0]})
    elif damage == "other blocks":
        path = project / "AlignTiltSeries/job005/tilt_series/TS_02.star"
        starfile.write({"a": pd.DataFrame({"rlnTomoYTilt": [-3.0, 3.0]}),
                        "b": pd.DataFrame({"rlnTomoYTilt": [-6.0, 6.0]})}, path)
    else:
        _edit(project, "TS_02", {"rlnTomoNominalStageTiltAngle": [0.0]})
    with pytest.raises(InputError, match=expected) as error:
        relion.tomogram_wedges(star)
    assert str(star) in str(error.value)
    # an explicit range needs no tilt-series file
    assert set(relion.tomogram_wedges(star, "-60,60")) == {"TS_01", "TS_02"}


def test_predict_star_chooses_the_model_with_each_tomograms_range(project, monkeypatch):
    chosen, loaded, model = [], [], CountingModel()

    def for_wedge(spec, wedge):
        chosen.append((spec, wedge))
        return "pretrained:wedge"

    def load_model(spec, **kw):
        loaded.append(spec)
        return model

    monkeypatch.setattr(modelfiles, "for_wedge", for_wedge)
    monkeypatch.setattr(modelfiles, "load_model", load_model)
    star = relion.predict_star(project / STAR, "pretrained", project / "Denoise/job010",
                               wedge="star")
    assert chosen == [("pretrained", TS_01), ("pretrained", TS_02)]
    assert loaded == ["pretrained:wedge"]
    assert model.calls == [(SHAPE, TS_01), (SHAPE, TS_02)]  # each with its own range
    table = starfile.read(star, always_dict=True)["global"]
    assert list(table["rlnTomoReconstructedTomogramDenoised"]) == [
        f"Denoise/job010/tomograms/rec_{n}.mrc" for n in ("TS_01", "TS_02")]

    # One range given: every tomogram has it (the model is chosen for it once).
    chosen.clear()
    relion.predict_star(project / STAR, "pretrained", project / "Denoise/job011",
                        wedge="-55,55")
    assert chosen == [("pretrained", Wedge(-55, 55))]

    # A finished job run again loads no model (RELION's Continue) but still checks the ranges.
    loaded.clear()
    relion.predict_star(project / STAR, "pretrained", project / "Denoise/job010", wedge="star")
    assert loaded == []
    (project / "AlignTiltSeries/job005/tilt_series/TS_01.star").unlink()
    with pytest.raises(InputError, match="TS_01.star not found"):
        relion.predict_star(project / STAR, "pretrained", project / "Denoise/job010",
                            wedge="star")


@pytest.mark.slow
def test_a_noise2noise_model_restores_with_the_shipped_restorer(project):
    """A Noise2Noise model given with wedges denoises; the shipped restorer fills each
    tomogram's own cone; the measured directions are that model's alone."""
    from cryocare.config import CareConfig
    from cryocare.model import CAREModel
    from cryocare.wedge import measured_mask

    n2n = CAREModel(CareConfig(unet_n_depth=1, unet_n_first=2, seed=1), None)
    relion.predict_star(project / STAR, n2n, project / "a", wedge="star")
    relion.predict_star(project / STAR, n2n, project / "b")  # no wedge: the model alone
    folder = project / "Tomograms/job007/tomograms"
    for name, wedge in (("TS_01", TS_01), ("TS_02", TS_02)):
        restored, alone = (io.read(project / f"{job}/tomograms/rec_{name}.mrc")
                           for job in ("a", "b"))
        halves = [io.read(folder / f"rec_{name}_{h}.mrc") for h in ("half1", "half2")]
        np.testing.assert_allclose(alone, n2n.denoise(*halves), atol=1e-5)
        change = np.fft.fftn(restored - alone)
        measured = measured_mask(SHAPE, wedge)
        assert np.abs(change[measured]).max() < 1e-3 * np.abs(change).max()
        assert np.abs(change[~measured]).max() > 1e-3 * np.abs(np.fft.fftn(alone)).max()


@pytest.mark.parametrize("train_names, expected", [
    (None, Wedge(-30, 30)),        # what both measured: -48..63 and -30..30
    (["TS_01"], TS_01),
])
def test_denoise_star_trains_over_the_range_every_training_tomogram_measured(
        project, monkeypatch, train_names, expected):
    received, model = [], CountingModel()

    def train_on_pair(evens, odds, **kw):
        received.append((len(evens), kw["wedge"]))
        return model

    monkeypatch.setattr(recipe, "train_on_pair", train_on_pair)
    relion.denoise_star(project / STAR, project / "Denoise/job009", train_names=train_names,
                        wedge="star", budget=0, fit=False)
    assert received == [(len(train_names or "ab"), expected)]
    assert model.calls == [(SHAPE, TS_01), (SHAPE, TS_02)]  # each restored with its range


def test_ranges_without_common_directions_are_refused(project, monkeypatch):
    _edit(project, "TS_02", {"rlnTomoYTilt": [-80.0, -70.0, -65.0]})
    monkeypatch.setattr(recipe, "train_on_pair", pytest.fail)
    with pytest.raises(InputError, match=r"TS_01 \(-48..63\), TS_02 \(-80..-65\) have no "
                                         "directions in common"):
        relion.denoise_star(project / STAR, project / "Denoise/job009", wedge="star",
                            budget=0, fit=False)


def test_the_command_line_checks_the_ranges_before_anything_heavy(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "AlignTiltSeries/job005/tilt_series/TS_02.star").unlink()
    for command in (["predict", "--model", "pretrained"], ["denoise"]):
        assert cli.main([*command, "--star", STAR, "--output", "Denoise/job012",
                         "--wedge", "star", "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"{STAR}, tomogram TS_02: tilt-series STAR file" in err
        assert "AlignTiltSeries/job005/tilt_series/TS_02.star not found" in err
    assert not (project / "Denoise/job012/tomograms").exists()
    # 'star' is a word of --star: without it, a clear line
    assert cli.main(["predict", "--model", "pretrained", "--wedge", "star", "--even", "a.mrc",
                     "--odd", "b.mrc", "--output", "c.mrc"]) == 2
    assert "--wedge star: reads each tomogram's tilt range" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_star_pretrained_with_wedge_restores_each_range(project, monkeypatch, caplog):
    monkeypatch.chdir(project)
    with caplog.at_level(logging.WARNING):
        assert cli.main(["predict", "--star", STAR, "--model", "pretrained", "--wedge", "star",
                         "--output", "Denoise/job010", "-q"]) == 0
    # TS_02's own range (±30°) lies outside the wedge model's family (±40° to ±70°); TS_01's
    # (-48..63) does not: only the first is warned about.
    assert "tilt range -30..30" in caplog.text and "tilt range -48..63" not in caplog.text
    restored = io.read(project / "Denoise/job010/tomograms/rec_TS_02.mrc")
    # the general model with the shipped restorer, at TS_02's own range
    wedge_model = relion.predict_star(STAR, modelfiles.load_model("pretrained", wedge=TS_02),
                                      "Denoise/wedge")
    n2n_model = relion.predict_star(STAR, modelfiles.load_model("pretrained"), "Denoise/n2n")
    assert wedge_model.is_file() and n2n_model.is_file()
    np.testing.assert_array_equal(restored, io.read("Denoise/wedge/tomograms/rec_TS_02.mrc"))
    assert not np.allclose(restored, io.read("Denoise/n2n/tomograms/rec_TS_02.mrc"), atol=1e-3)


@pytest.mark.slow
def test_denoise_star_with_wedge_fine_tunes_over_the_read_range(project, monkeypatch):
    monkeypatch.chdir(project)
    # a tiny network from scratch (the wedge model's own network would take minutes)
    assert cli.main(["denoise", "--star", STAR, "--wedge", "star", "--output", "Denoise/job009",
                     "--save-model", "Denoise/job009/model", "--init", "none",
                     "--patch-shape", "16", *TINY]) == 0
    saved = project / "Denoise/job009/model"
    config = json.loads((saved / "denoiser/config.json").read_text())["config"]
    assert config["train_objective"] == "n2n" and config["unet_n_first"] == 4
    description = json.loads((saved / "restoration.json").read_text())
    assert description["wedge"] == {"min_angle": -30.0, "max_angle": 30.0, "tilt_axis": "Y"}
    assert json.loads((saved / "restorer/config.json").read_text())["config"][
        "wedge_binning"] == description["binning"]
    for name in ("TS_01", "TS_02"):
        assert io.read(project / f"Denoise/job009/tomograms/rec_{name}.mrc").shape == SHAPE
