"""Prediction on a local Dask cluster with two workers equals single-process prediction."""

import numpy as np
import pytest

from cryocare import io
from cryocare.config import CareConfig
from cryocare.distributed import cluster_client, predict_chunked, predict_files
from cryocare.errors import InputError, OutputExistsError
from cryocare.model import CAREModel
from cryocare.normalize import Normalization


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    # Untrained but deterministic weights: equality of results does not need training.
    model = CAREModel(CareConfig(unet_n_depth=2, unet_n_first=4, seed=7),
                      Normalization(mean=2.0, std=3.0))
    model.save(folder / "model")
    rng = np.random.default_rng(8)
    for stem in ("a", "b"):
        for half in ("EVN", "ODD"):
            io.write(folder / f"{stem}_{half}.mrc",
                     rng.normal(2.0, 3.0, size=(45, 36, 28)).astype(np.float32), voxel_size=9.0)
    return folder, CAREModel.load(folder / "model")


@pytest.fixture(scope="module")
def client():
    # Two workers in threads: the same scheduler and task code as worker processes,
    # without paying a TensorFlow start-up per process in the test.
    with cluster_client(n_workers=2, processes=False) as client:
        yield client


def _single(model, folder, stem):
    return model.denoise(io.read(folder / f"{stem}_EVN.mrc"), io.read(folder / f"{stem}_ODD.mrc"),
                         tile_shape=None)


def test_many_tomograms_on_two_workers_equal_single_process(setup, client):
    folder, model = setup
    pairs = [(folder / f"{s}_EVN.mrc", folder / f"{s}_ODD.mrc") for s in ("a", "b")]
    outputs = [folder / f"{s}_denoised.mrc" for s in ("a", "b")]
    assert len(client.scheduler_info()["workers"]) == 2
    assert predict_files(folder / "model", pairs, outputs, scheduler=client) == outputs
    for stem, out in zip(("a", "b"), outputs, strict=True):
        expected = _single(model, folder, stem)
        # same network, different tile order: float32 rounding level
        assert np.abs(io.read(out) - expected).max() <= 1e-5 * np.ptp(expected)
        assert io.read_info(out).voxel_size == (9.0, 9.0, 9.0)
    with pytest.raises(OutputExistsError):
        predict_files(folder / "model", pairs, outputs, scheduler=client)


@pytest.mark.parametrize("normalize", ["training", "image"])
def test_one_volume_in_chunks_equals_single_process(setup, client, normalize):
    folder, model = setup
    out = folder / f"a_chunked_{normalize}.mrc"
    predict_chunked(folder / "model", folder / "a_EVN.mrc", folder / "a_ODD.mrc", out,
                    chunk=8, scheduler=client, normalize=normalize)
    even, odd = io.read(folder / "a_EVN.mrc"), io.read(folder / "a_ODD.mrc")
    expected = model.denoise(even, odd, tile_shape=None, normalize=normalize)
    # 6 chunks with margins: the same result up to float32 rounding
    assert np.abs(io.read(out) - expected).max() <= 1e-5 * np.ptp(expected)


def test_bad_scheduler_address_is_an_input_error():
    with pytest.raises(InputError, match="scheduler"), \
            cluster_client("tcp://127.0.0.1:9", timeout="1s"):
        pass


def test_outputs_are_checked_before_any_work_as_every_mrc_output(setup, tmp_path):
    """The outputs go through cryocare.io.check_output: extension, folder, existing file."""
    folder, _ = setup
    pair = (folder / "a_EVN.mrc", folder / "a_ODD.mrc")
    with pytest.raises(InputError, match="expected an MRC extension"):
        predict_chunked(folder / "model", *pair, tmp_path / "a.txt")
    with pytest.raises(InputError, match="expected an existing folder"):
        predict_files(folder / "model", [pair], [tmp_path / "none" / "a.mrc"])
    (tmp_path / "a.mrc").write_bytes(b"")
    with pytest.raises(OutputExistsError, match="exists already"):
        predict_chunked(folder / "model", *pair, tmp_path / "a.mrc")
