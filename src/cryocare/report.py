"""Write an :class:`~cryocare.evaluate.Evaluation` as Markdown, JSON and PNG figures.

:func:`write_report` writes into one folder:

* ``report.md`` — the metrics table, the reference-free estimates and the
  figures;
* ``metrics.json`` — the same numbers, machine-readable;
* ``orthoslices.png`` — central XY and XZ slices of every restored volume
  side by side (and of the reference and the wedge-free truth; YZ instead of
  XZ for a tilt about ``X``, so that the slice shows the missing wedge);
* ``fsc.png`` — FSC curves against the reference (if any) and half-map
  FSC curves, with the 0.5 and 0.143 thresholds;
* ``segmentation.png`` — the Otsu segmentation of every method on the
  central slice, coloured against the reference mask (true positives
  white, false positives red, missed voxels blue).

Figures are drawn with Matplotlib's object API (no pyplot, no global
state); every file is written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from .errors import OutputExistsError
from .evaluate import Evaluation

__all__ = ["REPORT_FILES", "write_report"]

logger = logging.getLogger(__name__)

#: Files written by :func:`write_report`, by role.
REPORT_FILES = {"markdown": "report.md", "json": "metrics.json", "orthoslices": "orthoslices.png",
                "fsc": "fsc.png", "segmentation": "segmentation.png"}

#: Column titles and number formats of the table; higher is better unless noted.
_COLUMNS = {
    "psnr": ("PSNR [dB]", "{:.2f}"),
    "ssim": ("SSIM", "{:.3f}"),
    "fsc_0.5": ("FSC 0.5 [Å] ↓", "{:.1f}"),
    "fsc_0.143": ("FSC 0.143 [Å] ↓", "{:.1f}"),
    "dice": ("Otsu Dice", "{:.3f}"),
    "iou": ("IoU", "{:.3f}"),
    "precision": ("precision", "{:.3f}"),
    "recall": ("recall", "{:.3f}"),
    "halves_r": ("halves r", "{:.3f}"),
    "fsc_halves_0.143": ("half-map FSC 0.143 [Å] ↓", "{:.1f}"),
    "psnr_isotropic": ("PSNR vs isotropic [dB]", "{:.2f}"),
    "cone_r": ("in-cone r", "{:.3f}"),
    "measured_r": ("measured r", "{:.3f}"),
    "z_ratio": ("Z/X res. FSC 0.5 ↓", "{:.2f}"),
    "z_ratio_0.143": ("Z/X res. FSC 0.143 ↓", "{:.2f}"),
    "seconds": ("time [s]", "{:.1f}"),
}


def _finite_or_none(value):
    """JSON has no inf/NaN: write them as null (e.g. an infinite SNR of identical halves)."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def _slices(volume: np.ndarray, across_y: bool = False) -> list[np.ndarray]:
    """The central XY slice and the central XZ (or, ``across_y``, YZ) slice."""
    if volume.ndim == 2:
        return [volume]
    side = volume[:, :, volume.shape[2] // 2] if across_y else volume[:, volume.shape[1] // 2, :]
    return [volume[volume.shape[0] // 2], side]


def _orthoslices(result: Evaluation, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = dict(result.volumes)
    if result.reference is not None:
        panels["reference"] = result.reference
    if result.isotropic is not None:
        panels["isotropic truth"] = result.isotropic
    across_y = result.wedge is not None and result.wedge.tilt_axis == "X"
    first = next(iter(panels.values()))
    rows = len(_slices(first))
    ratios = [first.shape[-2], first.shape[0]] if rows == 2 else [1]
    fig = Figure(figsize=(2.6 * len(panels), 2.6 * sum(ratios) / first.shape[-2] + 0.6),
                 layout="constrained")
    axes = fig.subplots(rows, len(panels), squeeze=False, height_ratios=ratios)
    for column, (name, volume) in enumerate(panels.items()):
        low, high = np.percentile(volume, [1, 99])
        for row, image in enumerate(_slices(volume, across_y)):
            ax = axes[row, column]
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(name)
    axes[0, 0].set_ylabel("XY (central Z)" if rows == 2 else "image")
    if rows == 2:
        axes[1, 0].set_ylabel("YZ (central X)" if across_y else "XZ (central Y)")
    fig.suptitle("Restored volumes, each shown with its own 1–99 % grey range")
    _save(fig, path)


def _fsc_figure(result: Evaluation, path: Path) -> None:
    from matplotlib.figure import Figure

    groups = [("against the reference", result.fsc_reference),
              ("half maps (even vs odd, each restored alone)", result.fsc_halves)]
    groups = [(title, curves) for title, curves in groups if curves]
    fig = Figure(figsize=(5.5 * len(groups), 4.0), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, groups, strict=True):
        for name, curve in curves.items():
            ax.plot(curve.frequency, curve.correlation, label=name)
        for threshold, style in ((0.5, "--"), (0.143, ":")):
            ax.axhline(threshold, color="grey", linestyle=style, linewidth=0.8)
            ax.text(0, threshold, f" {threshold}", va="bottom", fontsize=8, color="grey")
        ax.set_xlabel("spatial frequency [1/Å]")
        ax.set_ylabel("Fourier shell correlation")
        ax.set_ylim(-0.1, 1.02)
        ax.set_xlim(0, 0.5 / result.voxel_size)
        ax.set_title(title)
        ax.legend(fontsize=8)
    _save(fig, path)


def _segmentation_figure(result: Evaluation, path: Path) -> None:
    from matplotlib.figure import Figure

    names = list(result.masks)
    fig = Figure(figsize=(2.6 * len(names), 3.0), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    reference = result.reference_mask
    for ax, name in zip(axes, names, strict=True):
        mask = _slices(result.masks[name])[0]
        rgb = np.zeros((*mask.shape, 3), dtype=np.float32)
        if reference is not None:
            truth = _slices(reference)[0]
            rgb[mask & truth] = (1.0, 1.0, 1.0)
            rgb[mask & ~truth] = (0.9, 0.15, 0.15)
            rgb[~mask & truth] = (0.2, 0.4, 1.0)
        else:
            rgb[mask] = (1.0, 1.0, 1.0)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        score = result.scores[name].get("dice")
        ax.set_title(name if score is None else f"{name} (Dice {score:.3f})")
    caption = ("white: found, red: false positive, blue: missed" if reference is not None
               else "white: segmented")
    fig.suptitle(f"Otsu segmentation, central slice — {caption}")
    _save(fig, path)


def _table(result: Evaluation) -> list[str]:
    keys = [k for k in _COLUMNS if any(k in s for s in result.scores.values())]
    lines = ["| method | " + " | ".join(_COLUMNS[k][0] for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    best = {}
    for key in keys:
        if key == "seconds":
            continue
        values = {m: s[key] for m, s in result.scores.items() if key in s}
        lower_is_better = "↓" in _COLUMNS[key][0]
        best[key] = (min if lower_is_better else max)(values.values())
    for method, scores in result.scores.items():
        cells = []
        for key in keys:
            value = scores.get(key, math.nan)
            text = _COLUMNS[key][1].format(value)
            if key in best and value == best[key]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _markdown(result: Evaluation, title: str) -> str:
    shape = next(iter(result.volumes.values())).shape
    lines = [f"# {title}", "",
             f"Volume {' × '.join(map(str, shape))} voxels of {result.voxel_size:g} Å; "
             f"methods: {', '.join(result.volumes)}.", ""]
    lines += ["## Scores", ""]
    lines += _table(result)
    with_reference = bool(result.fsc_reference)
    lines += ["",
              "Bold: best in the column. ↓: lower is better (resolutions in Å). "
              + ("PSNR and SSIM are computed after the least-squares affine fit of each "
                 "volume to the reference, so intensity rescaling by a denoiser does not "
                 "count. " if with_reference else "No reference: reference-free scores "
                 "only. ")
              + "*halves r*: correlation of the even half restored alone with the "
              "raw odd half (reference-free; ranks methods like their correlation with "
              "the unknown clean signal). *half-map FSC*: FSC between the two halves, "
              "each restored alone. Segmentations: Otsu's threshold after Gaussian "
              "smoothing, dark foreground."
              + (" *vs isotropic*, *in-cone r*, *measured r*, *Z/X resolution*: against "
                 "the wedge-free truth (the same specimen imaged over ±90°): PSNR after "
                 "low-pass to 0.15 cycles/voxel and the affine fit; Fourier correlation "
                 "inside the missing wedge's cone (a denoiser that leaves the wedge alone "
                 "stays near the noiseless wedged reconstruction's value) and in the "
                 "measured directions; FSC 0.5 resolution against the truth along Z over that "
                 "across the "
                 "tilt axis (1 is isotropic)." if result.isotropic is not None else ""),
              ""]
    snr = "∞" if math.isinf(result.snr) else f"{result.snr:.3f}"
    lines += ["## Data", "",
              f"* SNR of one raw half from the even/odd correlation (Frank & Al-Ali): "
              f"{snr} (of the average: twice that).",
              *(f"* {note}" for note in result.notes), ""]
    lines += ["## Figures", "",
              f"![orthoslices]({REPORT_FILES['orthoslices']})", "",
              f"![FSC curves]({REPORT_FILES['fsc']})", "",
              f"![segmentations]({REPORT_FILES['segmentation']})", ""]
    return "\n".join(lines)


def write_report(
    result: Evaluation,
    output: str | os.PathLike,
    *,
    title: str = "cryocare evaluation",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the Markdown report, its JSON numbers and three PNG figures.

    Parameters
    ----------
    result : Evaluation
        What :func:`cryocare.evaluate.evaluate` returned.
    output : path
        Folder for the files of :data:`REPORT_FILES` (created if missing).
    title : str, optional
        Title of the Markdown page.
    overwrite : bool, optional
        Replace the files of an earlier report in `output`.

    Returns
    -------
    files : dict of str to Path
        The written files, by the roles of :data:`REPORT_FILES`.

    Raises
    ------
    OutputExistsError
        If a report file exists in `output` and `overwrite` is False
        (nothing is written then).

    Examples
    --------
    A report needs an evaluation, which trains a network when CARE is
    among the methods; without CARE it takes seconds::

        result = evaluate(even, odd, clean=clean, methods=["raw", "median"])
        files = write_report(result, "report", overwrite=True)
    """
    folder = Path(output)
    paths = {role: folder / name for role, name in REPORT_FILES.items()}
    if not overwrite:
        existing = [p.name for p in paths.values() if p.exists()]
        if existing:
            raise OutputExistsError(f"{folder}: holds {', '.join(existing)} from an earlier "
                                    "report (use --overwrite / overwrite=True to replace them)")
    folder.mkdir(parents=True, exist_ok=True)
    _orthoslices(result, paths["orthoslices"])
    _fsc_figure(result, paths["fsc"])
    _segmentation_figure(result, paths["segmentation"])
    numbers = {"voxel_size": result.voxel_size, "snr_half": result.snr,
               "scores": result.scores, "notes": result.notes}
    text = json.dumps(_finite_or_none(numbers), indent=2, allow_nan=False)
    _atomic_write_bytes(paths["json"], text.encode())
    _atomic_write_bytes(paths["markdown"], _markdown(result, title).encode())
    logger.info("report written to %s", folder)
    return paths
