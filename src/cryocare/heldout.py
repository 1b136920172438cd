"""Which restoration to trust on the user's own halves: the model's, a filter's, or a blend.

There is no clean reference in real data, but there are two independently noisy halves. A
method that restores the even half *alone* never saw the odd half's noise, so its error
against the odd half is its error against the signal plus that noise, the same for every
method: :func:`cryocare.metrics.heldout_scores` turns this into an estimate of each method's
gain in dB over the raw average, with an uncertainty. :func:`assess` runs it on a bounded,
representative sub-volume for a model (any callable that restores one half), a Gaussian
filter (sigma 1 voxel) and nonlinear anisotropic diffusion (its iterations tuned on the
halves, :func:`cryocare.filters.tune`), and decides what to output: the model's restoration,
unless a filter is estimated ahead of it by more than the standard error of the difference;
then, with a warning, the better of that filter and its measured blend with the model. Where
the halves hold no measurable signal per voxel, the restorations are still ranked, by the
signal each explains.
:func:`denoise` does it all for a :class:`~cryocare.model.CAREModel`; ``cryocare predict``
and ``cryocare denoise`` log the estimate and write it with ``--report``.

This module is NumPy/SciPy only: the model enters as a callable.

Examples
--------
>>> import numpy as np
>>> from scipy import ndimage as ndi
>>> from cryocare.simulate import simulate_tomogram
>>> tomo = simulate_tomogram((32, 64, 64), seed=0, dose_per_tilt=0.5)
>>> smoothing_model = lambda half: ndi.uniform_filter(half, 3)  # stands for model.predict
>>> result = assess(tomo.even, tomo.odd, smoothing_model)
>>> sorted(result.scores)
['gaussian', 'model', 'model+gaussian', 'model+nad', 'nad']
>>> result.line().startswith("estimated gain over the raw average: ")
True
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import PredictOptions
from .errors import InputError, OutputExistsError
from .filters import _central_crop, _check_image, gaussian, nad, tune
from .io import read_region
from .metrics import HeldOutScore, heldout_scores

__all__ = ["DEFAULT_VOXELS", "FILTER_NAMES", "MIN_DECISION_VOXELS", "SWITCH_STANDARD_ERRORS",
           "Assessment", "NoSignalError", "assess", "denoise",
           "denoise_file", "report_entry", "representative_region", "validation_region",
           "write_report"]

logger = logging.getLogger(__name__)

#: Voxels of the sub-volume scored by default: a few seconds of prediction and filtering.
DEFAULT_VOXELS = 2**20
#: Voxels added around the scored sub-volume before restoring it, so that border effects of
#: the network and filters on the cut stay outside the scored voxels.
MARGIN = 8
#: A filter replaces the model only when its estimated lead exceeds this many standard
#: errors of the difference (1.5 kept the model where NAD was 0.3 dB better, its lead
#: estimated 0.08 ± 0.06 dB on 32 x 64 x 64 voxels: tests/test_heldout.py).
SWITCH_STANDARD_ERRORS = 1.0
#: Fewer voxels scored than this: the estimate is logged, the model's output always kept. A
#: 16 000-voxel validation slab (32 x 8 x 64) chose a blend that wrote 3.3 dB of gain where
#: the model gave 6.3 on the whole tomogram: a thin slab at the volume's edge is no sample.
MIN_DECISION_VOXELS = 2**17
#: The filters compared with the model, as named in scores and reports.
FILTER_NAMES = MappingProxyType({"gaussian": "Gaussian", "nad": "NAD"})
_SIGMA = 1.0  # the Gaussian filter's sigma in voxels


class NoSignalError(InputError):
    """The halves hold no measurable signal, not even in a restoration: nothing to rank."""


@dataclass(frozen=True)
class Assessment:
    """The held-out-halves estimate of the model and the filters, and the decision.

    Attributes
    ----------
    scores : dict of str to HeldOutScore
        ``"model"``, ``"gaussian"``, ``"nad"``, and the best blends ``"model+gaussian"`` and
        ``"model+nad"``: estimated gains over the raw average (dB of PSNR after the best
        affine fit to the signal) of each restoration of the pair.
    region : tuple of slice
        The sub-volume scored.
    nad_iterations : int
        NAD's iterations, tuned on the halves (for restoring one half).
    choice : str
        The key of `scores` whose restoration to output.
    warning : str or None
        Set when a filter beats the model by more than the standard error of the difference:
        what was written instead (logged as a warning), or that the model was kept, when
        `forced` (logged as an info line: the user asked for it).
    forced : bool
        The model's output was kept although a filter beat it.
    signal_measured : bool
        Whether the halves' covariance was measurable in the region. If not, no gain in dB
        can be estimated (the gains are NaN) and the restorations were ranked by the signal
        each explains (:meth:`cryocare.metrics.HeldOutScore.compare_explained`).
    """

    scores: dict[str, HeldOutScore]
    region: tuple[slice, ...]
    nad_iterations: int
    choice: str
    warning: str | None
    forced: bool
    signal_measured: bool = True

    @property
    def needs_model(self) -> bool:
        """Whether the chosen output holds the model's restoration."""
        return self.scores[self.choice].weights.get("model", 0.0) > 0

    def line(self) -> str:
        """The one line that the command line logs."""
        if not self.signal_measured:
            ranking = sorted(("model", *FILTER_NAMES), key=lambda k: -self.scores[k].explained)
            names = ", ".join(FILTER_NAMES.get(k, k) for k in ranking)
            return ("estimated gain over the raw average: not measurable (the halves hold no "
                    f"measurable signal per voxel); ranked by the signal explained: {names} "
                    "— from the halves")
        model = self.scores["model"]
        return (f"estimated gain over the raw average: {model.gain_db:.2f} dB "
                f"(± {model.uncertainty_db:.2f}), Gaussian {self.scores['gaussian'].gain_db:.2f}"
                f" dB, NAD {self.scores['nad'].gain_db:.2f} dB — from the halves")

    def lead(self) -> tuple[str, float, float]:
        """The better filter, and its lead over the model with the lead's standard error.

        In dB (:meth:`~cryocare.metrics.HeldOutScore.compare`) where the halves' signal was
        measured and the gains are finite, else in the signal explained
        (:meth:`~cryocare.metrics.HeldOutScore.compare_explained`; an estimated error at or
        below zero makes a gain infinite, and its difference meaningless).
        """
        best = max(FILTER_NAMES, key=lambda name: self.scores[name].explained)
        return best, *self.versus_model(best)

    def versus_model(self, name: str) -> tuple[float, float]:
        """The lead of restoration `name` over the model alone, and its standard error.

        In dB where :attr:`in_db`, else in the signal explained (the data's squared units).
        """
        score, model = self.scores[name], self.scores["model"]
        return score.compare(model) if self.in_db else score.compare_explained(model)

    @property
    def in_db(self) -> bool:
        """Whether the model and the filters are compared in dB (finite gains, measured signal)."""
        return self.signal_measured and all(
            math.isfinite(v) for name in ("model", *FILTER_NAMES)
            for v in (self.scores[name].gain_db, *self.scores[name].replicates))

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON-ready values (non-finite numbers as None)."""
        def number(value: float) -> float | None:
            return round(float(value), 4) if math.isfinite(value) else None

        best, difference, uncertainty = self.lead()
        lead = "best_filter_minus_model_db" if self.in_db else \
            "best_filter_minus_model_explained"
        return {
            "estimate": "gain in dB over the raw average (even + odd) / 2 of PSNR after the "
                        "best affine fit to the signal, estimated from the halves "
                        "(cryocare.metrics.heldout_scores); without a measurable signal "
                        "(signal_measured false) no gain, and the methods are ranked by the "
                        "signal variance each explains after the fit",
            "signal_measured": self.signal_measured,
            "region": [[s.start, s.stop] for s in self.region],
            "methods": {name: {"gain_db": number(score.gain_db),
                               "uncertainty_db": number(score.uncertainty_db),
                               "explained": _significant(score.explained),
                               "weights": {k: round(v, 4) for k, v in score.weights.items()}}
                        for name, score in self.scores.items()},
            "nad_iterations": self.nad_iterations,
            "best_filter": best,
            lead: [number(difference), number(uncertainty)] if self.in_db else
                  [_significant(difference), _significant(uncertainty)],
            "choice": self.choice,
            "written": {k: round(v, 4) for k, v in self.scores[self.choice].weights.items()},
            "forced": self.forced,
            "warning": self.warning,
        }

    def restore(self, even: npt.ArrayLike, odd: npt.ArrayLike,
                model_output: npt.ArrayLike | None = None) -> np.ndarray:
        """The chosen restoration of the whole pair.

        Parameters
        ----------
        even, odd : array_like
            The halves (the whole tomograms, not only the scored region).
        model_output : array_like, optional
            The model's restoration of the pair (``model.denoise(even, odd)``); needed when
            :attr:`needs_model`.

        Returns
        -------
        ndarray of float32
            ``sum(weight * output)`` over the chosen methods' outputs on the pair (each
            method's mean over the two halves, as scored).

        Raises
        ------
        InputError
            If the halves differ in shape, or the model's output is needed and missing or of
            another shape.
        """
        first, second = _check_halves(even, odd)
        weights = self.scores[self.choice].weights
        result = np.zeros(first.shape, dtype=np.float32)
        for method, weight in weights.items():
            if weight == 0:
                continue
            if method == "model":
                if model_output is None:
                    raise InputError("model_output: expected the model's restoration of the "
                                     "pair, found None")
                output = np.asarray(model_output, dtype=np.float32)
                if output.shape != first.shape:
                    raise InputError(f"model_output: expected shape {first.shape}, found "
                                     f"{output.shape}")
            else:
                output = _filter_pair(method, first, second, self.nad_iterations)
            result += np.float32(weight) * output
        return result


def _significant(value: float) -> float | None:
    """A value in the data's own units, to 6 significant digits (None if not finite)."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _describe(region: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


def _check_halves(even: npt.ArrayLike, odd: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    # values are checked in the region read (a memory-mapped tomogram stays on disk)
    first = _check_image(even, name="even", finite=False)
    second = _check_image(odd, name="odd", finite=False)
    if first.shape != second.shape:
        raise InputError(f"odd: expected the shape of even {first.shape}, found {second.shape}")
    return first, second


def _filter_pair(method: str, even: np.ndarray, odd: np.ndarray, iterations: int) -> np.ndarray:
    """The filter's output on the pair: the mean of its outputs on each half (as scored)."""
    if method == "gaussian":  # linear: the same as filtering the average, in one pass
        average = np.add(even, odd, dtype=np.float32)
        average *= np.float32(0.5)
        return gaussian(average, sigma=_SIGMA)
    result = nad(even, iterations=iterations)
    result += nad(odd, iterations=iterations)
    result *= np.float32(0.5)
    return result


def representative_region(shape: tuple[int, ...], *, max_voxels: int = DEFAULT_VOXELS,
                          within: tuple[slice, ...] | None = None) -> tuple[slice, ...]:
    """The central box of ``shape`` (or of `within`) of at most `max_voxels` voxels.

    The longest axes are shrunk first (to no less than 16), so a thin tomogram keeps its
    whole depth: the box holds the specimen's layers in the proportions of the volume.

    Parameters
    ----------
    shape : tuple of int
        Shape of the halves.
    max_voxels : int, optional
        Largest number of voxels of the box.
    within : tuple of slice, optional
        A region of ``shape`` to take the box from (e.g. :func:`validation_region`).

    Returns
    -------
    tuple of slice

    Raises
    ------
    InputError
        If `max_voxels` is not a positive integer or `within` is not a region of ``shape``.

    Examples
    --------
    >>> representative_region((64, 512, 512), max_voxels=2**20)
    (slice(0, 64, None), slice(192, 319, None), slice(192, 319, None))
    """
    if isinstance(max_voxels, bool) or not isinstance(max_voxels, numbers.Integral) \
            or max_voxels < 1:
        raise InputError(f"max_voxels: expected a positive integer, found {max_voxels!r}")
    if within is None:
        within = tuple(slice(0, n) for n in shape)
    if len(within) != len(shape) or any(
            not (0 <= s.start < s.stop <= n) for s, n in zip(within, shape, strict=True)):
        raise InputError(f"region: expected a non-empty region of shape {shape}, found {within}")
    crop = _central_crop(tuple(s.stop - s.start for s in within), max_voxels)
    return tuple(slice(w.start + c.start, w.start + c.stop)
                 for w, c in zip(within, crop, strict=True))


def validation_region(shape: tuple[int, ...], *, tilt_axis: str = "Y",
                      fraction: float = 0.1) -> tuple[slice, ...]:
    """The end of the tilt axis that training on the halves holds out for validation.

    :func:`cryocare.pairs.sample_pairs` keeps the last ``max(patch, fraction * length)``
    voxels of the tilt axis out of every training patch; the last ``fraction`` of it is
    inside that in every case, so a model trained on these halves never saw its noise as a
    target, and its held-out estimate there is not optimistic.

    Parameters
    ----------
    shape : tuple of int
        Shape of the halves (2-D or 3-D).
    tilt_axis : {"Y", "X", "Z"}
        As given to training.
    fraction : float
        The validation fraction of training (0.1, the default of ``sample_pairs``).

    Returns
    -------
    tuple of slice

    Raises
    ------
    InputError
        For an unknown axis or a fraction outside (0, 1).

    Examples
    --------
    >>> validation_region((64, 200, 300))
    (slice(0, 64, None), slice(180, 200, None), slice(0, 300, None))
    """
    axes = {3: {"Z": 0, "Y": 1, "X": 2}, 2: {"Y": 0, "X": 1}}.get(len(shape), {})
    if tilt_axis not in axes:
        raise InputError(f"tilt_axis: expected one of {', '.join(map(repr, axes))} for a "
                         f"{len(shape)}-D volume, found {tilt_axis!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
            or not 0 < fraction < 1:
        raise InputError(f"fraction: expected a number in (0, 1), found {fraction!r}")
    axis = axes[tilt_axis]
    length = shape[axis]
    held = max(1, round(length * fraction))
    return tuple(slice(length - held, length) if i == axis else slice(0, n)
                 for i, n in enumerate(shape))


def _grown(region: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[tuple[slice, ...],
                                                                      tuple[slice, ...]]:
    """``region`` grown by :data:`MARGIN` (within ``shape``), and ``region`` inside that."""
    outer = tuple(slice(max(0, s.start - MARGIN), min(n, s.stop + MARGIN))
                  for s, n in zip(region, shape, strict=True))
    inner = tuple(slice(s.start - o.start, s.stop - o.start)
                  for s, o in zip(region, outer, strict=True))
    return outer, inner


def assess(even: npt.ArrayLike, odd: npt.ArrayLike,
           predict_half: Callable[[np.ndarray], npt.ArrayLike], *,
           region: tuple[slice, ...] | None = None, max_voxels: int = DEFAULT_VOXELS,
           force_model: bool = False, blocks: int = 3) -> Assessment:
    """Score the model, a Gaussian filter and NAD on the halves, and choose what to output.

    On a sub-volume (:func:`representative_region`, or `region`), each half is restored
    alone by the model (`predict_half`), by a Gaussian filter of sigma 1 voxel and by NAD
    with its iterations tuned on the halves; :func:`cryocare.metrics.heldout_scores`
    estimates each restoration's gain over the raw average, and that of the best blends of
    the model with each filter. The model's output is chosen unless the better filter is
    estimated ahead of it by more than :data:`SWITCH_STANDARD_ERRORS` standard errors of
    their difference, on at least :data:`MIN_DECISION_VOXELS` voxels: then a warning is
    logged and the better of that filter and its measured blend with the model is chosen
    (unless `force_model`). A smaller lead keeps the model (an info line says so). Halves
    without a measurable covariance are ranked by the signal each restoration explains
    (no gain in dB; :attr:`Assessment.signal_measured` is False).

    Parameters
    ----------
    even, odd : array_like
        The two halves, same shape (memory maps fine: only the sub-volume is read).
    predict_half : callable
        Restores one half alone: ``predict_half(half) -> restored`` of the same shape (e.g.
        ``lambda half: model.predict(half, tta=...)``). It must not see the other half.
    region : tuple of slice, optional
        The sub-volume to score (default: the central box of at most `max_voxels`). It is
        restored with :data:`MARGIN` voxels of context around it.
    max_voxels : int, optional
        Largest sub-volume, when `region` is not given; the cost is that of predicting and
        filtering this many voxels a few times over.
    force_model : bool, optional
        Keep the model's output even when a filter beats it (the warning says so).
    blocks : int, optional
        Blocks per axis of the uncertainty (:func:`cryocare.metrics.heldout_scores`).

    Returns
    -------
    Assessment

    Raises
    ------
    InputError
        If the halves differ in shape or are not finite real 2-D/3-D arrays, the region is
        not one of them, or `predict_half` returns another shape.
    NoSignalError
        If neither the halves nor any restoration of them hold a measurable signal in the
        region (an InputError). Halves whose own covariance is not measurable (see
        :func:`cryocare.metrics.heldout_scores`) but whose restorations explain a measurable
        part of the signal are ranked by that (``signal_measured`` False): no gain in dB.

    Notes
    -----
    A model trained on these halves has seen the odd half's noise as a target and would
    score too high where it was trained; score it on :func:`validation_region`.
    """
    first, second = _check_halves(even, odd)
    if not isinstance(force_model, bool):
        raise InputError(f"force_model: expected True or False, found {force_model!r}")
    if region is None:
        region = representative_region(first.shape, max_voxels=max_voxels)
    else:
        region = representative_region(first.shape, max_voxels=math.prod(first.shape),
                                       within=tuple(region))
    outer, inner = _grown(region, first.shape)
    # read_region: a memory map's pages are dropped as they are read (indexing it would
    # leave pages mapped around every row: 0.6 GB of a 2 GiB pair for this sub-volume)
    halves = [np.array(read_region(h, outer), dtype=np.float32) for h in (first, second)]
    for half, name in zip(halves, ("even", "odd"), strict=True):
        _check_image(half, name=name)  # finite values in the region read
    scored = [h[inner] for h in halves]
    try:  # cheap: the halves only
        heldout_scores(scored[0], scored[1], {}, blocks=blocks)
        no_signal = None
    except InputError as error:  # rank by the signal each restoration explains instead
        no_signal = f"in the scored region {_describe(region)}: {error}"
    iterations = tune("nad", scored[0], scored[1], target="half").params["iterations"]
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    restored = []
    for half in halves:
        output = np.asarray(predict_half(half))
        if output.shape != half.shape:
            raise InputError(f"predict_half: expected an output of shape {half.shape}, found "
                             f"{output.shape}")
        restored.append(output[inner])
    outputs["model"] = (restored[0], restored[1])
    outputs["gaussian"] = tuple(gaussian(h, sigma=_SIGMA)[inner] for h in halves)
    outputs["nad"] = tuple(nad(h, iterations=iterations)[inner] for h in halves)
    scores = heldout_scores(scored[0], scored[1], outputs, blocks=blocks,
                            blends=[("model", name) for name in FILTER_NAMES],
                            require_signal=False)
    if no_signal is not None:
        _check_explained(scores, no_signal)
    result = Assessment(scores=scores, region=region, nad_iterations=int(iterations),
                        choice="model", warning=None, forced=False,
                        signal_measured=no_signal is None)
    best, difference, uncertainty = result.lead()
    # Beaten: ahead by more than SWITCH_STANDARD_ERRORS standard errors of the difference (a
    # smaller lead is too likely noise of the estimate), on enough voxels to generalise.
    ahead_enough = math.isfinite(uncertainty) and difference > SWITCH_STANDARD_ERRORS * uncertainty
    voxels = math.prod(s.stop - s.start for s in region)
    beaten = ahead_enough and voxels >= MIN_DECISION_VOXELS
    choice, warning = "model", None
    if result.in_db:
        ahead = (f"{FILTER_NAMES[best]} is estimated ahead of the model on these halves by "
                 f"{difference:.2f} dB (± {uncertainty:.2f})")
    else:
        why = ("the halves hold no measurable signal per voxel, but" if no_signal else
               "the model's or a filter's gain is too large to estimate in dB, and")
        ahead = (f"{why} {FILTER_NAMES[best]} explains more of the signal than the model by "
                 f"{difference / uncertainty:.1f} standard errors" if uncertainty > 0 else
                 f"{why} {FILTER_NAMES[best]} explains no less of the signal than the model")
    if beaten:
        blend = f"model+{best}"
        better = blend if scores[blend].weights.get("model", 0.0) > 0 else best
        weights = scores[better].weights
        gain = f" ({scores[better].gain_db:.2f} dB)" if result.in_db else ""
        what = (f"{FILTER_NAMES[best]} alone" if better == best else
                f"a blend of {weights['model']:.0%} model and {weights[best]:.0%} "
                f"{FILTER_NAMES[best]}{gain}")
        if force_model:  # asked for: an info line, not a warning on every run
            warning = f"{ahead}: keeping the model's output as asked"
            logger.info("%s", warning)
        else:
            choice = better
            warning = f"{ahead}: writing {what} instead; force the model to keep its output"
            logger.warning("%s", warning)
    elif ahead_enough:
        logger.info("%s, but on %d voxels only (%d to decide): keeping the model's output",
                    ahead, voxels, MIN_DECISION_VOXELS)
    else:
        if difference > 0:
            logger.info("%s, within the uncertainty: keeping the model", ahead)
        if not force_model and voxels >= MIN_DECISION_VOXELS:
            choice = _better_blend(result)
    result = dataclasses.replace(result, choice=choice, warning=warning,
                                 forced=force_model and beaten)
    logger.info("%s", result.line())
    return result


def _better_blend(result: Assessment) -> str:
    """The best blend of the model with a filter, if it leads the model alone, else "model".

    Where no filter beats the model, a measured blend of the two often beats both (their
    errors differ): it is written when its lead over the model alone is more than
    :data:`SWITCH_STANDARD_ERRORS` standard errors of the difference (an info line says so).
    """
    scores = result.scores
    # most signal explained = least error: the same order as by gain where gains exist
    name = max((f"model+{f}" for f in FILTER_NAMES), key=lambda k: scores[k].explained)
    difference, uncertainty = result.versus_model(name)
    weights = scores[name].weights
    if not (weights.get("model", 0.0) < 1.0 and math.isfinite(uncertainty)
            and difference > SWITCH_STANDARD_ERRORS * uncertainty):
        return "model"
    if result.in_db:
        lead = f"{difference:.2f} dB (± {uncertainty:.2f})"
    else:
        lead = (f"{difference / uncertainty:.1f} standard errors of the signal explained"
                if uncertainty > 0 else "a signal explained without spread")
    other = next(k for k in weights if k != "model")
    logger.info("a blend of %.0f%% model and %.0f%% %s is estimated ahead of the model alone "
                "by %s: writing it", 100 * weights["model"], 100 * weights[other],
                FILTER_NAMES[other], lead)
    return name


def _check_explained(scores: dict[str, HeldOutScore], reason: str) -> None:
    """Raise NoSignalError unless some restoration explains a measurable part of the signal.

    Without a measurable covariance of the halves, a restoration's explained signal can
    still be measurable (smoothing averages the noise away): it must be above twice its own
    jackknife standard error for the ranking to mean anything.
    """
    for score in scores.values():
        spread = score.explained_uncertainty
        if math.isfinite(spread) and score.explained > 2 * spread:
            return
    raise NoSignalError(f"{reason}; no restoration explains a measurable part of the signal "
                        "either")


def denoise(model: Any, even: npt.ArrayLike, odd: npt.ArrayLike,
            options: PredictOptions | None = None, *, force_model: bool = False,
            region: tuple[slice, ...] | None = None, max_voxels: int = DEFAULT_VOXELS,
            **settings: Any) -> tuple[np.ndarray, Assessment | None]:
    """``model.denoise(even, odd)``, unless a filter is estimated better on these halves.

    :func:`assess` with ``model.predict(half, options)``, then the chosen restoration of
    the whole pair: the model's (``model.denoise(even, odd, options)``), a filter's, or a
    measured blend of both.

    Parameters
    ----------
    model : CAREModel
        Anything with ``predict(half, options)`` and ``denoise(even, odd, options)``.
    even, odd : array_like
        The two halves.
    options : PredictOptions, optional
        How to predict (:class:`cryocare.config.PredictOptions`); ``settings`` change
        single options (``tta``, ``memory``, ...). The predictions of the sub-volume show
        no progress bar.
    force_model, region, max_voxels
        As in :func:`assess`.

    Returns
    -------
    restored : ndarray of float32
        The chosen restoration.
    assessment : Assessment or None
        The estimate and the decision (``assessment.to_dict()`` for a report); None without
        a measurable signal in the halves (:class:`NoSignalError`, logged as a warning):
        then the model's output is returned.

    Examples
    --------
    With the shipped model (loading Keras takes seconds, so this is not run)::

        model = cryocare.load_model("pretrained")
        restored, assessment = cryocare.heldout.denoise(model, even, odd)
        print(assessment.line())
    """
    options = PredictOptions.merged(options, **settings)
    assessment = _checked(model, even, odd, region=region, max_voxels=max_voxels,
                          force_model=force_model, options=options)
    if assessment is None or assessment.choice == "model":
        return np.asarray(model.denoise(even, odd, options), dtype=np.float32), assessment
    output = model.denoise(even, odd, options) if assessment.needs_model else None
    return assessment.restore(even, odd, model_output=output), assessment


def _checked(model: Any, even: Any, odd: Any, *, region: tuple[slice, ...] | None,
             max_voxels: int, force_model: bool, options: PredictOptions) -> Assessment | None:
    """:func:`assess` with ``model.predict``; None (and a warning) without signal."""
    # no progress bar; and the same kind of pass as the whole prediction will run where it
    # streams, so that the check adds no network memory of its own (a one-graph pass on
    # the sub-volume took ~0.8 GB more of a 2 GiB tomogram's prediction at --memory 450M)
    quiet = options.replace(progress=False, streaming=options.streaming
                            if options.streaming is not None else True)
    try:
        return assess(even, odd, lambda half: model.predict(half, quiet), region=region,
                      max_voxels=max_voxels, force_model=force_model)
    except NoSignalError as error:
        logger.warning("no quality estimate from the halves, the model's output is kept: %s",
                       error)
        return None


def write_report(path: str | os.PathLike, report: Any, *, overwrite: bool = False) -> Path:
    """Write an assessment (or a JSON-ready structure of them) to a JSON file, atomically.

    Parameters
    ----------
    path : path
        The file to write.
    report : Assessment or JSON-ready value
        An :class:`Assessment` is written as :meth:`Assessment.to_dict`.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputExistsError
        If the file exists and `overwrite` is False.
    InputError
        If its folder does not exist.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: exists already (pass overwrite to replace it)")
    if not target.parent.is_dir():
        raise InputError(f"{target}: folder for the report does not exist")
    data = report.to_dict() if isinstance(report, Assessment) else report
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def denoise_file(model: Any, even: str | os.PathLike, odd: str | os.PathLike,
                 output: str | os.PathLike, options: PredictOptions | None = None, *,
                 overwrite: bool = False, force_model: bool = False,
                 region: tuple[slice, ...] | None = None, max_voxels: int = DEFAULT_VOXELS,
                 check: bool = True, **settings: Any) -> tuple[Path, Assessment | None]:
    """:func:`cryocare.predict.denoise_file`, unless a filter is estimated better: the files' face.

    The halves are memory-mapped and :func:`assess` reads only its sub-volume. When the
    model's output is chosen, it streams to `output` slab by slab as
    :func:`cryocare.predict.denoise_file` does; otherwise the chosen restoration (a filter,
    or a blend with the model) is computed in memory and written atomically.

    Parameters
    ----------
    model : CAREModel
        Anything with ``predict`` and ``denoise``.
    even, odd, output : path
        Input halves and the output file (MRC).
    overwrite : bool
        Replace an existing output.
    force_model, region, max_voxels
        As in :func:`assess`.
    check : bool
        False: no estimate, the model's output (for a model that restores what the halves
        do not hold, such as the missing wedge, the halves are no reference).
    options : PredictOptions, optional
        How to predict (:class:`cryocare.config.PredictOptions`); ``settings`` change
        single options.

    Returns
    -------
    path : Path
        The file written.
    assessment : Assessment or None
        The estimate and the decision; None without a measurable signal in the halves
        (then the model's output is written, with a warning) or without `check`.
    """
    from . import io
    from .predict import denoise_file as model_denoise_file

    options = PredictOptions.merged(options, **settings)
    even_data, odd_data, info = io.read_pair(even, odd, mmap=True)
    if Path(output).exists() and not overwrite:
        raise OutputExistsError(f"{output}: exists already (pass overwrite to replace it)")
    assessment = _checked(model, even_data, odd_data, region=region, max_voxels=max_voxels,
                          force_model=force_model, options=options) if check else None
    if assessment is None or assessment.choice == "model":
        return model_denoise_file(model, even, odd, output, options,
                                  overwrite=overwrite), assessment
    restored_by_model = (model.denoise(even_data, odd_data, options)
                         if assessment.needs_model else None)
    restored = assessment.restore(even_data, odd_data, model_output=restored_by_model)
    weights = ", ".join(f"{w:.2f} {name}" for name, w in
                        assessment.scores[assessment.choice].weights.items() if w)
    return io.write(output, restored, like=info, overwrite=overwrite,
                    label=f"held-out choice: {weights}"), assessment


def report_entry(even: str | os.PathLike, odd: str | os.PathLike, output: str | os.PathLike,
                 assessment: Assessment | None, *,
                 reason: str = "no measurable signal in the halves") -> dict[str, Any]:
    """One tomogram's entry of a report: its files and :meth:`Assessment.to_dict`.

    Without an assessment, ``"choice"`` is ``"model"``, ``"methods"`` is None and
    ``"warning"`` gives the `reason`.
    """
    entry: dict[str, Any] = {"even": str(even), "odd": str(odd), "output": str(output)}
    if assessment is None:
        return {**entry, "methods": None, "choice": "model", "warning": f"no estimate: {reason}"}
    return {**entry, **assessment.to_dict()}
