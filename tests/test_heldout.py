"""The quality estimate from the halves (issue 30): metrics.heldout_scores and cryocare.heldout.

Truth is PSNR after the best affine fit against the simulator's noiseless tomogram
(``metrics.psnr_affine``), the project's score; the estimate never sees it.
"""

import dataclasses
import json
import logging

import numpy as np
import pytest
from scipy import ndimage as ndi

from cryocare import InputError, io
from cryocare.filters import gaussian, nad
from cryocare.heldout import (
    NoSignalError,
    assess,
    denoise,
    representative_region,
    validation_region,
    write_report,
)
from cryocare.metrics import heldout_scores, pearson, psnr_affine
from cryocare.simulate import simulate_tomogram

# Doses per tilt that give an even/odd correlation of about 0.02, 0.05 and 0.1 at the
# simulator's defaults on this shape (measured: 0.022, 0.048, 0.094 at seed 1).
DOSES = {0.02: 0.5, 0.05: 1.25, 0.1: 2.5}
#: The estimate's standard error grows as the correlation falls and shrinks with the voxels
#: scored (docs/heldout.md): the lowest dose gets 3 times the voxels (0.40 dB there, against
#: 0.48 dB on 48 x 128 x 128, where this seed's estimate missed by 0.59 dB).
SHAPES = {0.02: (64, 192, 192), 0.05: (48, 128, 128), 0.1: (48, 128, 128)}
#: Largest allowed distance between estimated and true gain (the issue's bar). Measured on
#: these volumes: at most 0.37 dB.
TOLERANCE_DB = 0.5


@pytest.fixture(scope="module")
def pretrained():
    import cryocare

    return cryocare.load_model("pretrained")


@pytest.fixture(scope="module", params=sorted(DOSES))
def case(request, pretrained):
    """A simulated tomogram at one noise level, the assessment and the true gains."""
    shape = SHAPES[request.param]
    tomo = simulate_tomogram(shape, seed=1, dose_per_tilt=DOSES[request.param])
    even, odd, clean = tomo.even, tomo.odd, tomo.clean
    r = pearson(even, odd)
    assert abs(r - request.param) < 0.4 * request.param  # the noise level asked for
    predicted = {}

    def predict_half(half):
        predicted[len(predicted)] = out = pretrained.predict(half)
        return out

    # The whole volume is the region: the truth is scored on the same voxels.
    result = assess(even, odd, predict_half, max_voxels=even.size)
    assert result.region == tuple(slice(0, n) for n in shape)
    outputs = {"model": (predicted[0] + predicted[1]) / 2}
    for name in ("gaussian", "nad"):  # each filter's output on the pair, as written
        outputs[name] = dataclasses.replace(result, choice=name).restore(even, odd)
    raw = psnr_affine(clean, (even + odd) / 2)
    truth = {name: psnr_affine(clean, sum(w * outputs[m] for m, w in score.weights.items()))
             - raw for name, score in result.scores.items()}
    return request.param, result, truth


def test_the_estimate_ranks_model_gaussian_and_nad_as_the_truth_does(case):
    r, result, truth = case
    methods = ("model", "gaussian", "nad")
    estimated = sorted(methods, key=lambda m: result.scores[m].gain_db)
    true = sorted(methods, key=lambda m: truth[m])
    assert estimated == true, (r, {m: (result.scores[m].gain_db, truth[m]) for m in methods})


def test_the_estimated_gain_is_within_half_a_db_of_the_true_gain(case):
    r, result, truth = case
    for name, score in result.scores.items():
        assert abs(score.gain_db - truth[name]) < TOLERANCE_DB, (r, name, score, truth[name])
        # the uncertainty is a standard error of the right size, not a blanket
        assert 0 < score.uncertainty_db < 1.0


def test_what_is_written_is_at_least_as_good_as_either_filter(case):
    r, result, truth = case
    chosen = truth[result.choice]
    assert chosen >= max(truth["gaussian"], truth["nad"]) - 0.05, (r, result.choice, truth)


def test_the_identity_gains_nothing_and_the_signal_gains_what_it_should():
    rng = np.random.default_rng(0)
    clean = ndi.gaussian_filter(rng.normal(size=(32, 48, 48)), 2) * 5
    even = clean + rng.normal(size=clean.shape)
    odd = clean + rng.normal(size=clean.shape)
    scores = heldout_scores(even, odd, {"raw": (even, odd), "oracle": (clean, clean)})
    # f = identity: the pair output is the raw average itself, exactly 0 dB
    assert scores["raw"].gain_db == pytest.approx(0.0, abs=1e-9)
    # f = the signal: the true affine error is 0, the estimate is small and the gain large
    assert scores["oracle"].gain_db > 15
    # the raw average's affine error: var(s) (1 - corr(s, average)^2), within sampling error
    assert scores["oracle"].raw_error == pytest.approx(
        np.var(clean) * (1 - pearson(clean, (even + odd) / 2) ** 2), rel=0.1)


def test_paired_comparison_is_tighter_than_either_uncertainty():
    rng = np.random.default_rng(1)
    clean = ndi.gaussian_filter(rng.normal(size=(32, 48, 48)), 2) * 10  # SNR about 0.3
    even = clean + rng.normal(size=clean.shape)
    odd = clean + rng.normal(size=clean.shape)
    outputs = {s: (ndi.gaussian_filter(even, s), ndi.gaussian_filter(odd, s)) for s in (1, 1.5)}
    scores = heldout_scores(even, odd, outputs, blends=[(1, 1.5)])
    difference, uncertainty = scores[1.5].compare(scores[1])
    assert difference == pytest.approx(scores[1.5].gain_db - scores[1].gain_db)
    assert uncertainty < min(scores[1].uncertainty_db, scores[1.5].uncertainty_db)
    blend = scores["1+1.5"]
    assert sum(blend.weights.values()) == pytest.approx(1.0)
    assert blend.gain_db >= max(scores[1].gain_db, scores[1.5].gain_db) - 1e-12


def test_bad_input_is_named():
    rng = np.random.default_rng(2)
    even, odd = rng.normal(size=(2, 16, 16, 16))
    with pytest.raises(InputError, match="no measurable signal"):
        heldout_scores(even, odd, {})
    signal = ndi.gaussian_filter(rng.normal(size=(16, 16, 16)), 2) * 20
    with pytest.raises(InputError, match=r"outputs\['a'\] on the odd half.*shape"):
        heldout_scores(signal + even, signal + odd, {"a": (even, odd[:8])})
    with pytest.raises(InputError, match="blends.*'b'"):
        heldout_scores(signal + even, signal + odd, {"a": (even, odd)}, blends=[("a", "b")])
    with pytest.raises(InputError, match="blocks"):
        heldout_scores(signal + even, signal + odd, {}, blocks=0)
    with pytest.raises(NoSignalError, match="no measurable signal"):
        assess(even, odd, lambda half: half)


class _Blurring:
    """A stand-in model that smooths too little: both filters beat it."""

    def predict(self, half, options=None, **settings):  # as CAREModel.predict
        return ndi.uniform_filter(np.asarray(half, dtype=np.float32), 2)

    def denoise(self, even, odd, options=None, **settings):
        return (self.predict(even) + self.predict(odd)) / 2


def test_a_model_beaten_by_a_filter_is_replaced_with_a_warning_unless_forced(caplog):
    tomo = simulate_tomogram((32, 64, 64), seed=4, dose_per_tilt=1.0)
    model = _Blurring()
    with caplog.at_level(logging.INFO, logger="cryocare.heldout"):
        restored, result = denoise(model, tomo.even, tomo.odd)
    assert result.choice != "model" and result.warning is not None
    assert any(r.levelno == logging.WARNING and "force" in r.message for r in caplog.records)
    assert any("estimated gain over the raw average" in r.message for r in caplog.records)
    raw = psnr_affine(tomo.clean, (tomo.even + tomo.odd) / 2)
    gains = {name: psnr_affine(tomo.clean, dataclasses.replace(result, choice=name).restore(
        tomo.even, tomo.odd, model.denoise(tomo.even, tomo.odd))) - raw
        for name in ("model", "gaussian", "nad")}
    written = psnr_affine(tomo.clean, restored) - raw
    assert written > gains["model"] + 0.5 and written >= max(gains.values()) - 0.05
    forced, kept = denoise(model, tomo.even, tomo.odd, force_model=True)
    np.testing.assert_array_equal(forced, model.denoise(tomo.even, tomo.odd))
    assert kept.choice == "model" and kept.forced and "as asked" in kept.warning


def test_regions_are_bounded_central_and_inside_the_validation_slab():
    assert representative_region((40, 64, 64)) == (slice(0, 40), slice(0, 64), slice(0, 64))
    box = representative_region((64, 512, 512), max_voxels=2**20)
    assert np.prod([s.stop - s.start for s in box]) <= 2**20 and box[0] == slice(0, 64)
    held = validation_region((64, 200, 300), tilt_axis="X")
    assert held == (slice(0, 64), slice(0, 200), slice(270, 300))
    inside = representative_region((64, 200, 300), max_voxels=10_000, within=held)
    assert all(h.start <= s.start < s.stop <= h.stop for s, h in zip(inside, held, strict=True))
    with pytest.raises(InputError, match="tilt_axis"):
        validation_region((64, 64), tilt_axis="Z")


def test_the_report_is_json_written_once_unless_overwrite(tmp_path):
    tomo = simulate_tomogram((24, 48, 48), seed=5, dose_per_tilt=2.5)
    result = assess(tomo.even, tomo.odd, lambda half: gaussian(half, sigma=1.5))
    path = write_report(tmp_path / "r.json", result)
    data = json.loads(path.read_text())
    assert data["methods"]["nad"]["gain_db"] == pytest.approx(result.scores["nad"].gain_db,
                                                              abs=1e-4)
    assert data["choice"] in data["methods"] and data["nad_iterations"] >= 1
    with pytest.raises(InputError, match="exists"):
        write_report(path, result)
    write_report(path, {"other": 1}, overwrite=True)
    assert json.loads(path.read_text()) == {"other": 1}
    assert not list(tmp_path.glob(".*tmp"))


def test_predict_logs_the_line_writes_the_report_and_never_loses_to_a_filter(tmp_path,
                                                                            pretrained):
    from cryocare.cli import main

    tomo = simulate_tomogram((32, 64, 64), seed=6, dose_per_tilt=0.5)
    io.write(tmp_path / "t_even.mrc", tomo.even)
    io.write(tmp_path / "t_odd.mrc", tomo.odd)
    out, report = tmp_path / "d.mrc", tmp_path / "r.json"
    argv = ["predict", "--model", "pretrained", "--even", str(tmp_path / "t_even.mrc"),
            "--odd", str(tmp_path / "t_odd.mrc"), "--output", str(out), "--report",
            str(report), "--tiles", "none"]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("cryocare").addHandler(handler)
    try:
        assert main(argv) == 0
    finally:
        logging.getLogger("cryocare").removeHandler(handler)
    lines = [r.getMessage() for r in records
             if r.getMessage().startswith("estimated gain over the raw average")]
    assert len(lines) == 1 and "Gaussian" in lines[0] and "NAD" in lines[0]
    entry, = json.loads(report.read_text())["tomograms"]
    assert entry["output"] == str(out) and set(entry["methods"]) >= {"model", "gaussian", "nad"}
    raw = psnr_affine(tomo.clean, (tomo.even + tomo.odd) / 2)
    written = psnr_affine(tomo.clean, io.read(out)) - raw
    filters = [psnr_affine(tomo.clean, gaussian((tomo.even + tomo.odd) / 2)) - raw,
               psnr_affine(tomo.clean, (nad(tomo.even, iterations=entry["nad_iterations"])
                                        + nad(tomo.odd, iterations=entry["nad_iterations"]))
                           / 2) - raw]
    assert written >= max(filters) - 0.05
    # At this dose zero-shot loses to NAD (measured: 0.96 dB against 1.46 written): the check
    # is what lifts it.
    zero_shot = psnr_affine(tomo.clean, pretrained.denoise(tomo.even, tomo.odd)) - raw
    assert written > zero_shot + 0.2
    # the report is an output: never replaced unless asked
    assert main([*argv[:-5], str(tmp_path / "d2.mrc"), "--report", str(report)]) == 2


def test_denoise_scores_its_model_on_the_validation_slab_and_writes_the_report(
        tmp_path, monkeypatch, pretrained):
    from cryocare import recipe
    from cryocare.cli import main

    # Training is not what is tested here: the "fine-tuned" model is the pretrained one.
    monkeypatch.setattr(recipe, "train_on_pair", lambda *args, **kwargs: pretrained)
    tomo = simulate_tomogram((32, 80, 64), seed=7, dose_per_tilt=2.5)
    io.write(tmp_path / "t_even.mrc", tomo.even)
    io.write(tmp_path / "t_odd.mrc", tomo.odd)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("cryocare").addHandler(handler)
    try:
        assert main(["denoise", "--even", str(tmp_path / "t_even.mrc"), "--odd",
                     str(tmp_path / "t_odd.mrc"), "--output", str(tmp_path / "d.mrc"),
                     "--report", str(tmp_path / "r.json"), "--no-tta"]) == 0
    finally:
        logging.getLogger("cryocare").removeHandler(handler)
    assert sum(r.getMessage().startswith("estimated gain over the raw average")
               for r in records) == 1
    entry, = json.loads((tmp_path / "r.json").read_text())["tomograms"]
    # the last tenth of Y (the tilt axis), which training holds out for validation
    assert entry["region"] == [[0, 32], [72, 80], [0, 64]]
    assert entry["choice"] == "model" and entry["methods"]["model"]["gain_db"] > 1
    np.testing.assert_allclose(io.read(tmp_path / "d.mrc"), pretrained.denoise(
        tomo.even, tomo.odd), atol=1e-5 * float(np.ptp(tomo.clean)))


@pytest.mark.parametrize("amplitude", [0.03, 0.1])
def test_halves_without_a_measurable_signal_per_voxel_are_still_ranked(amplitude):
    """A faint smooth signal: at 0.03 the halves' covariance is not measurable (r = -0.003),
    at 0.1 it is (r = 0.006) but NAD's estimated error falls to zero (an infinite gain). In
    both, a restoration that leaves the noise (the identity as the model) is ranked below the
    filters by the signal each explains, and a filter is written instead."""
    rng = np.random.default_rng(3)
    base = ndi.gaussian_filter(rng.normal(size=(64, 64, 64)), 4)
    clean = base / base.std() * amplitude
    even = (clean + rng.normal(size=clean.shape)).astype(np.float32)
    odd = (clean + rng.normal(size=clean.shape)).astype(np.float32)
    result = assess(even, odd, lambda half: half)
    assert result.signal_measured is (amplitude == 0.1)
    assert not result.in_db
    ranking = sorted(("model", "gaussian", "nad"), key=lambda k: -result.scores[k].explained)
    assert ranking[-1] == "model"
    assert result.choice != "model" and result.warning is not None
    raw = psnr_affine(clean, (even + odd) / 2)
    written = psnr_affine(clean, result.restore(even, odd, (even + odd) / 2)) - raw
    assert written > 1.5  # the identity gains nothing
    report = result.to_dict()
    assert report["signal_measured"] is result.signal_measured
    difference, uncertainty = report["best_filter_minus_model_explained"]
    assert difference > uncertainty > 0
    if not result.signal_measured:
        assert "not measurable" in result.line()
        assert all(v["gain_db"] is None for v in report["methods"].values())


def test_a_blend_that_leads_the_model_is_written_without_a_warning(pretrained, caplog):
    """Where no filter beats the model, the measured blend of both may still lead it (their
    errors differ): here the model leads NAD by 0.06 dB in truth and the 60/40 blend leads
    both (measured: 2.17 dB against 2.02 and 1.96 over the raw average)."""
    tomo = simulate_tomogram((32, 64, 64), seed=6, dose_per_tilt=1.0)
    even, odd, clean = tomo.even, tomo.odd, tomo.clean
    with caplog.at_level(logging.INFO, logger="cryocare.heldout"):
        restored, result = denoise(pretrained, even, odd)
    assert result.choice.startswith("model+") and result.warning is None
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert any("estimated ahead of the model alone" in r.message for r in caplog.records)
    raw = psnr_affine(clean, (even + odd) / 2)
    model_output = pretrained.denoise(even, odd)
    true = {name: psnr_affine(clean, dataclasses.replace(result, choice=name).restore(
        even, odd, model_output)) - raw for name in ("model", "gaussian", "nad")}
    written = psnr_affine(clean, restored) - raw
    assert written > max(true.values()) + 0.05, (written, true)
    kept, _ = denoise(pretrained, even, odd, force_model=True)  # forced: the model alone
    np.testing.assert_array_equal(kept, model_output)
