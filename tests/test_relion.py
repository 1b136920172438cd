"""RELION 5 tomograms.star: read, denoise two tiny tomograms, write the updated STAR file."""

import pandas as pd
import pytest
import starfile

from cryocare import cli, io, relion
from cryocare.errors import InputError
from cryocare.simulate import simulate_tomogram

TINY = ["--epochs", "1", "--steps", "2", "--batch-size", "4", "--depth", "1", "--n-first", "4",
        "--patch-shape", "16", "--n-patches", "20", "-q"]


@pytest.fixture
def project(tmp_path):
    """A RELION project: default_pipeline.star, two tomograms, relative paths in the STAR file."""
    (tmp_path / "default_pipeline.star").write_text("data_pipeline_general\n")
    folder = tmp_path / "Tomograms" / "job007" / "tomograms"
    folder.mkdir(parents=True)
    rows = []
    for index, name in enumerate(("TS_01", "TS_02")):
        data = simulate_tomogram((16, 32, 32), seed=index)
        for half, volume in (("half1", data.even), ("half2", data.odd)):
            io.write(folder / f"rec_{name}_{half}.mrc", volume, voxel_size=10.0)
        rows.append({"rlnTomoName": name, "rlnTomoTiltSeriesStarFile": f"{name}.star",
                     "rlnTomoTiltSeriesPixelSize": 2.5,
                     "rlnTomoReconstructedTomogramHalf1":
                         f"Tomograms/job007/tomograms/rec_{name}_half1.mrc",
                     "rlnTomoReconstructedTomogramHalf2":
                         f"Tomograms/job007/tomograms/rec_{name}_half2.mrc"})
    starfile.write({"global": pd.DataFrame(rows)}, tmp_path / "Tomograms/job007/tomograms.star")
    return tmp_path


def test_paths_resolve_from_the_project_folder(project, monkeypatch, tmp_path_factory):
    # Run from somewhere else: the project is found from default_pipeline.star.
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    tomograms = relion.read_tomograms(project / "Tomograms/job007/tomograms.star")
    assert [t.name for t in tomograms] == ["TS_01", "TS_02"]
    assert all(t.half1.is_file() and t.half2.is_file() for t in tomograms)
    only = relion.read_tomograms(project / "Tomograms/job007/tomograms.star", names=["TS_02"])
    assert [t.name for t in only] == ["TS_02"]
    with pytest.raises(InputError, match="no tomogram named TS_99"):
        relion.read_tomograms(project / "Tomograms/job007/tomograms.star", names=["TS_99"])


@pytest.mark.slow
def test_denoise_star_writes_tomograms_and_updated_star(project, monkeypatch):
    monkeypatch.chdir(project)
    star = "Tomograms/job007/tomograms.star"
    before = (project / star).read_text()
    status = cli.main(["denoise", "--star", star, "--output", "Denoise/job009",
                       "--train-on", "TS_01", "--save-model", "Denoise/job009/model", *TINY])
    assert status == 0
    assert (project / star).read_text() == before  # input untouched
    table = starfile.read(project / "Denoise/job009/tomograms.star", always_dict=True)["global"]
    assert list(table["rlnTomoName"]) == ["TS_01", "TS_02"]
    assert list(table["rlnTomoReconstructedTomogramDenoised"]) == [
        "Denoise/job009/tomograms/rec_TS_01.mrc", "Denoise/job009/tomograms/rec_TS_02.mrc"]
    assert list(table["rlnTomoTiltSeriesPixelSize"]) == [2.5, 2.5]  # other columns kept
    for path in table["rlnTomoReconstructedTomogramDenoised"]:
        assert io.read(project / path).shape == (16, 32, 32)

    # predict --star with the saved model gives the same volumes (same weights, same tiles,
    # the same test-time augmentation as denoise's recipe).
    status = cli.main(["predict", "--star", star, "--model", "Denoise/job009/model",
                       "--output", "Denoise/job010", "--tta", "-q"])
    assert status == 0
    assert (io.read(project / "Denoise/job010/tomograms/rec_TS_02.mrc")
            == io.read(project / "Denoise/job009/tomograms/rec_TS_02.mrc")).all()

    # Run again (RELION's Continue): complete outputs are kept, not replaced or redone.
    stamp = (project / "Denoise/job010/tomograms/rec_TS_02.mrc").stat().st_mtime_ns
    assert cli.main(["predict", "--star", star, "--model", "Denoise/job009/model",
                     "--output", "Denoise/job010", "-q"]) == 0
    assert (project / "Denoise/job010/tomograms/rec_TS_02.mrc").stat().st_mtime_ns == stamp


def test_bad_star_input_is_one_line(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli.main(["denoise", "--star", "missing.star", "--output", "out", *TINY]) == 2
    assert "missing.star: no such STAR file" in capsys.readouterr().err
    starfile.write({"global": pd.DataFrame({"rlnTomoName": ["TS_01"]})}, project / "bare.star")
    assert cli.main(["train", "--star", "bare.star", "--output", "model", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "rlnTomoReconstructedTomogramHalf1" in err and len(err.splitlines()) == 1
