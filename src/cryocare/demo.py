"""The end-to-end demonstration: simulate → pairs → train → denoise → segment.

:func:`run_demo` simulates a small crowded tomogram with a known noiseless
version, fine-tunes the shipped pretrained network Noise2Noise on its
even/odd halves for a few minutes on the CPU (with the recipe of ``cryocare
denoise``, fitted to the machine), denoises, segments by Otsu thresholding, writes MRC
files and a PNG of orthoslices, and returns the scores. ``cryocare demo``
prints them.

Beside it, the shipped restorer and refiner fill the missing wedge of CARE's
result zero-shot (:meth:`cryocare.isotropic.WedgeRestorer.fill_cone`, with the
simulation's tilt range; no training), and both results are scored against the wedge-free
truth: the in-cone correlation (:func:`cryocare.metrics.wedge_correlation`)
and the ``Z``/``X`` resolution ratio
(:func:`cryocare.metrics.directional_resolution`). The figure shows both, and
the truth, in XY and XZ, where the wedge shows.

Examples
--------
The demo trains for minutes, so this is shown, not run::

    result = run_demo("demo_output", overwrite=True)
    print(result.scores["CARE"]["psnr"], result.scores["raw"]["psnr"])
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .errors import OutputExistsError
from .filters import filter_halves, median
from .metrics import dice, directional_resolution, psnr, ssim_affine, wedge_correlation
from .recipe import DEFAULT_RECIPE, Recipe, train_on_pair
from .segment import segment_otsu
from .simulate import simulate_tomogram
from .wedge import Wedge

__all__ = ["DemoResult", "DEMO_SHAPE", "DEMO_TIME_BUDGET", "run_demo", "orthoslice_figure",
           "wedge_scores"]

log = logging.getLogger(__name__)

DEMO_SHAPE = (64, 192, 192)
#: Training time of the demo (seconds): the recipe of ``cryocare denoise`` (see
#: docs/recipe.md), for two and a half minutes instead of twelve, from the pretrained model.
DEMO_TIME_BUDGET = 150.0


@dataclass
class DemoResult:
    """What the demo produced: output files, scores, timings (seconds), chosen settings."""

    output: Path
    files: dict[str, Path] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict[str, dict] = field(default_factory=dict)


def orthoslice_figure(panels: dict[str, np.ndarray], path: str | os.PathLike, *,
                      masks: dict[str, np.ndarray] | None = None, title: str = "") -> Path:
    """Save a PNG with the central XY and XZ slices of each volume in ``panels``.

    Each volume is shown with its own 1st–99th percentile grey range; volumes in
    ``masks`` are drawn as binary images.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state

    masks = masks or {}
    items = list(panels.items()) + list(masks.items())
    fig = Figure(figsize=(3.2 * len(items), 4.6), layout="constrained")
    axes = fig.subplots(2, len(items), squeeze=False,
                        height_ratios=[items[0][1].shape[1], items[0][1].shape[0]])
    for column, (name, volume) in enumerate(items):
        is_mask = name in masks
        z, y = volume.shape[0] // 2, volume.shape[1] // 2
        lo, hi = (0, 1) if is_mask else np.percentile(volume, [1, 99])
        for row, image in enumerate((volume[z], volume[:, y, :])):
            ax = axes[row, column]
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(name)
    axes[0, 0].set_ylabel("XY (central Z)")
    axes[1, 0].set_ylabel("XZ (central Y)")
    if title:
        fig.suptitle(title)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def wedge_scores(truth: np.ndarray, volume: np.ndarray, wedge: Wedge) -> dict[str, float]:
    """``cone_r``, the Fourier correlation with the wedge-free ``truth`` inside the missing
    cone, and ``z_ratio``, the resolution along ``Z`` over that across the tilt axis (FSC
    against the truth at 0.5), as ``cryocare evaluate`` scores them."""
    resolution = directional_resolution(volume, truth, threshold=0.5)
    across = resolution.x if wedge.tilt_axis == "Y" else resolution.y
    return {"cone_r": wedge_correlation(truth, volume, wedge).missing,
            "z_ratio": resolution.z / across}


def run_demo(output: str | os.PathLike, *, shape: tuple[int, int, int] = DEMO_SHAPE,
             recipe: Recipe | None = None, budget: float = DEMO_TIME_BUDGET,
             init: Any = "pretrained", seed: int = 2019, overwrite: bool = False,
             progress: bool = False) -> DemoResult:
    """Run the whole pipeline on simulated data and score it against the truth.

    Parameters
    ----------
    output : path
        Folder for the MRC files and the figure (created if missing).
    shape : (int, int, int)
        Shape of the simulated tomogram (Z, Y, X).
    recipe : Recipe, optional
        Network, training and prediction settings (default: the recipe of
        ``cryocare denoise``, :data:`cryocare.recipe.DEFAULT_RECIPE`).
    budget : float
        Training time in seconds (sampling and measuring the machine included);
        0: no budget, the recipe's step cap ends training.
    init : "pretrained", "none", path or CAREModel
        Starting weights, as for :func:`cryocare.recipe.train_on_pair`.
    seed : int
        Seed of the simulation (and of sampling and training).
    overwrite : bool
        Replace the files of an earlier run in ``output``.
    progress : bool
        Show progress bars.

    Returns
    -------
    DemoResult
        ``scores[name]`` holds ``psnr`` (dB, against the noiseless tomogram),
        ``ssim`` (after the best affine fit), ``dice`` (Otsu segmentation
        against the Otsu segmentation of the noiseless tomogram) and
        ``dice_mask`` (against the simulator's object mask) for ``raw`` (the
        even/odd average), ``median`` (3×3×3), ``NAD`` (iterations tuned on
        the halves, in ``settings``), ``CARE`` and ``CARE wedge`` (CARE's
        result, its missing wedge filled by the shipped restorer and refiner zero-shot,
        :mod:`cryocare.isotropic`); for the last two also
        ``cone_r`` and ``z_ratio`` against the wedge-free truth
        (:func:`wedge_scores`).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    names = ("even.mrc", "odd.mrc", "clean.mrc", "isotropic.mrc", "denoised.mrc",
             "restored.mrc", "segmentation.mrc", "demo.png")
    if not overwrite:
        existing = [n for n in names if (output / n).exists()]
        if existing:
            raise OutputExistsError(
                f"{output}: holds {', '.join(existing)} from an earlier run "
                "(pass overwrite=True / --overwrite to replace them)"
            )
    result = DemoResult(output=output)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.timings[stage] = now - clock
        clock = now
        log.info("%s took %.1f s", stage, result.timings[stage])

    data = simulate_tomogram(shape, seed=seed)
    labels = {"clean": "demo noiseless tomogram",
              "isotropic": "demo noiseless tomogram, no missing wedge"}
    for name, volume in (("even", data.even), ("odd", data.odd), ("clean", data.clean),
                         ("isotropic", data.isotropic)):
        result.files[name] = io.write(output / f"{name}.mrc", volume,
                                      voxel_size=data.voxel_size, overwrite=overwrite,
                                      label=labels.get(name, f"demo {name} half"))
    lap("simulate")

    model = train_on_pair(data.even, data.odd, recipe=recipe, budget=budget, init=init,
                          seed=seed, progress=progress)
    lap("train")
    # As cryocare denoise: as many flips as take at most a quarter of the training budget.
    tta = "auto" if (recipe or DEFAULT_RECIPE).tta else False
    denoised = model.denoise(data.even, data.odd, tta=tta, progress=progress,
                             tta_seconds=budget / 4 if budget else None)
    lap("predict")

    # The missing wedge: CARE's result with its cone filled by the shipped restorer (on the
    # halves' mean binned by 2) and refiner, zero-shot (cryocare.isotropic), with its own tilt
    # range; both results scored against the wedge-free truth.
    from .modelfiles import with_wedge

    wedge = Wedge(float(data.angles.min()), float(data.angles.max()), data.tilt_axis)
    restored = with_wedge(model, wedge).fill_cone(denoised, data.even, data.odd)
    cone = {name: wedge_scores(data.isotropic, volume, wedge)
            for name, volume in (("CARE", denoised), ("CARE wedge", restored))}
    lap("wedge")

    raw = (data.even + data.odd) / np.float32(2)
    filtered = median(raw, size=3)
    lap("median")
    # The fair baseline picks its own strength: iterations tuned on the two halves.
    diffused, result.settings["NAD"] = filter_halves(data.even, data.odd, "nad")
    lap("NAD")
    truth = segment_otsu(data.clean, sigma=1.0)
    segmentation = segment_otsu(denoised, sigma=1.0)
    for name, volume in (("raw", raw), ("median", filtered), ("NAD", diffused),
                         ("CARE", denoised), ("CARE wedge", restored)):
        mask = segmentation if name == "CARE" else segment_otsu(volume, sigma=1.0)
        result.scores[name] = {"psnr": psnr(data.clean, volume),
                               "ssim": ssim_affine(data.clean, volume),
                               "dice": dice(mask, truth), "dice_mask": dice(mask, data.mask),
                               **cone.get(name, {})}
    lap("score")

    result.files["denoised"] = io.write(output / "denoised.mrc", denoised,
                                        voxel_size=data.voxel_size, overwrite=overwrite,
                                        label="CARE denoised (mean of even and odd)")
    result.files["restored"] = io.write(output / "restored.mrc", restored,
                                        voxel_size=data.voxel_size, overwrite=overwrite,
                                        label="CARE + wedge restorer and refiner (zero-shot)")
    result.files["segmentation"] = io.write(output / "segmentation.mrc",
                                            segmentation.astype(np.float32),
                                            voxel_size=data.voxel_size, overwrite=overwrite,
                                            label="Otsu segmentation of CARE output")
    result.files["figure"] = orthoslice_figure(
        {"raw (even+odd)/2": raw, "median 3x3x3": filtered, "NAD": diffused, "CARE": denoised,
         "CARE wedge (restorer zero-shot)": restored, "noiseless": data.clean,
         "no wedge (truth)": data.isotropic},
        output / "demo.png", masks={"Otsu on CARE": segmentation},
        title=f"cryocare demo: simulated tomogram {'x'.join(map(str, shape))}, tilts "
              f"{wedge.min_angle:g}..{wedge.max_angle:g}° about {wedge.tilt_axis}",
    )
    lap("write")
    return result
