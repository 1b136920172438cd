"""RELION's Continue: a second run skips finished tomograms, redoes partial ones, keeps columns.

The model is a counting stand-in (the average of the halves), so these tests check the
job's bookkeeping, not denoising, and run in a fraction of a second.
"""

import logging
import os

import numpy as np
import pandas as pd
import pytest
import starfile

from cryocare import cli, io, relion
from cryocare.errors import OutputExistsError

SHAPE = (8, 16, 16)
COLUMNS = {"rlnTomoTiltSeriesPixelSize": 1.35, "rlnVoltage": 300.0,
           "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
           "rlnTomoTomogramBinning": 4.0}


class CountingModel:
    """Writes the average of the halves and counts how often it ran."""

    def __init__(self):
        self.calls = []

    def denoise(self, even, odd, *settings, out=None, **options):  # options in any form
        self.calls.append(np.shape(even))
        out.write((np.asarray(even) + np.asarray(odd)) / 2)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "default_pipeline.star").write_text("data_pipeline_general\n")
    folder = tmp_path / "Tomograms" / "job007" / "tomograms"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for name in ("TS_01", "TS_02", "TS_03"):
        for half in ("half1", "half2"):
            io.write(folder / f"rec_{name}_{half}.mrc",
                     rng.normal(size=SHAPE).astype(np.float32), voxel_size=10.0)
        rows.append({"rlnTomoName": name, "rlnTomoTiltSeriesStarFile": f"{name}.star",
                     **COLUMNS,
                     "rlnTomoReconstructedTomogramHalf1":
                         f"Tomograms/job007/tomograms/rec_{name}_half1.mrc",
                     "rlnTomoReconstructedTomogramHalf2":
                         f"Tomograms/job007/tomograms/rec_{name}_half2.mrc"})
    starfile.write({"global": pd.DataFrame(rows)}, tmp_path / "Tomograms/job007/tomograms.star")
    return tmp_path


def _star(project):
    return project / "Tomograms/job007/tomograms.star"


def test_a_second_run_skips_finished_tomograms_and_redoes_a_truncated_one(project, caplog):
    model, job = CountingModel(), project / "Denoise/job009"
    relion.predict_star(_star(project), model, job)
    assert len(model.calls) == 3
    done = {n: job / "tomograms" / f"rec_{n}.mrc" for n in ("TS_01", "TS_02", "TS_03")}
    stamps = {n: p.stat().st_mtime_ns for n, p in done.items()}

    # A run that was cut: TS_02's output lost its last bytes (a copy, a full disk).
    done["TS_02"].write_bytes(done["TS_02"].read_bytes()[:-100])
    with caplog.at_level(logging.INFO, logger="cryocare.relion"):
        star = relion.predict_star(_star(project), model, job)
    assert len(model.calls) == 4  # only TS_02 ran again
    assert done["TS_01"].stat().st_mtime_ns == stamps["TS_01"]
    assert done["TS_03"].stat().st_mtime_ns == stamps["TS_03"]
    assert relion.is_complete(done["TS_02"], SHAPE)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "rec_TS_01.mrc: complete already, skipped" in messages
    assert "rec_TS_02.mrc: incomplete or unreadable, denoised again" in messages
    halves = [io.read(project / f"Tomograms/job007/tomograms/rec_TS_02_{h}.mrc")
              for h in ("half1", "half2")]
    np.testing.assert_allclose(io.read(done["TS_02"]), (halves[0] + halves[1]) / 2, atol=1e-6)

    table = starfile.read(star, always_dict=True)["global"]
    assert list(table["rlnTomoReconstructedTomogramDenoised"]) == [
        f"Denoise/job009/tomograms/rec_{n}.mrc" for n in ("TS_01", "TS_02", "TS_03")]


def test_overwrite_redoes_every_tomogram(project):
    model, job = CountingModel(), project / "Denoise/job009"
    relion.predict_star(_star(project), model, job)
    relion.predict_star(_star(project), model, job, overwrite=True)
    assert len(model.calls) == 6


def test_an_output_of_the_wrong_shape_is_redone(project):
    job = project / "Denoise/job009"
    (job / "tomograms").mkdir(parents=True)
    io.write(job / "tomograms" / "rec_TS_03.mrc", np.zeros((4, 16, 16), np.float32))
    model = CountingModel()
    relion.predict_star(_star(project), model, job)
    assert len(model.calls) == 3
    assert io.read_info(job / "tomograms" / "rec_TS_03.mrc").shape == SHAPE


def test_the_output_star_keeps_every_input_column(project):
    star = relion.predict_star(_star(project), CountingModel(), project / "Denoise/job009")
    before = starfile.read(_star(project), always_dict=True)["global"]
    after = starfile.read(star, always_dict=True)["global"]
    assert list(after.columns) == [*before.columns, "rlnTomoReconstructedTomogramDenoised"]
    pd.testing.assert_frame_equal(after[list(before.columns)], before)
    for column, value in COLUMNS.items():
        assert (after[column] == value).all(), column


def test_a_foreign_tomograms_star_in_the_job_folder_is_not_replaced(project):
    job = project / "Denoise/job009"
    job.mkdir(parents=True)
    foreign = job / "tomograms.star"
    starfile.write({"global": pd.DataFrame({"rlnTomoName": ["x"]})}, foreign)
    text = foreign.read_text()
    with pytest.raises(OutputExistsError, match="not the tomograms.star of a denoising job"):
        relion.predict_star(_star(project), CountingModel(), job)
    assert foreign.read_text() == text


def test_cli_second_run_loads_no_model_and_trains_nothing(project, monkeypatch, capsys):
    """`cryocare predict --star` and `denoise --star` run again: nothing to do, no model."""
    import cryocare.cli.star as star_face
    import cryocare.modelfiles

    loaded = []

    def load_model(source, wedge=None):
        loaded.append(source)
        return CountingModel()

    monkeypatch.setattr(cryocare.modelfiles, "load_model", load_model)
    monkeypatch.setattr(star_face, "load_backend", lambda device: None)
    monkeypatch.chdir(project)
    star = "Tomograms/job007/tomograms.star"
    args = ["predict", "--star", star, "--model", "pretrained", "--output", "Denoise/job010",
            "-q"]
    assert cli.main(args) == 0
    assert len(loaded) == 1
    first = {p.name: p.stat().st_mtime_ns for p in (project / "Denoise/job010/tomograms")
             .iterdir()}
    assert sorted(first) == ["rec_TS_01.mrc", "rec_TS_02.mrc", "rec_TS_03.mrc"]

    assert cli.main(args) == 0  # continue: every output complete
    assert len(loaded) == 1
    assert {p.name: p.stat().st_mtime_ns for p in (project / "Denoise/job010/tomograms")
            .iterdir()} == first
    table = starfile.read(project / "Denoise/job010/tomograms.star", always_dict=True)["global"]
    assert list(table["rlnVoltage"]) == [300.0] * 3

    # denoise --star into the same job folder: everything done, so no training either.
    def no_training(*args, **kwargs):
        raise AssertionError("trained although every tomogram was denoised")

    monkeypatch.setattr(relion, "train_star", no_training)
    assert cli.main(["denoise", "--star", star, "--output", "Denoise/job010", "-q"]) == 0
    assert capsys.readouterr().out.strip().endswith("Denoise/job010/tomograms.star")

    # A truncated output is redone on the next run, with the model loaded again.
    victim = project / "Denoise/job010/tomograms/rec_TS_01.mrc"
    os.truncate(victim, victim.stat().st_size - 64)
    assert cli.main(args) == 0
    assert len(loaded) == 2 and relion.is_complete(victim, SHAPE)
