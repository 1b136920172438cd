"""Two-scale restoration of the missing wedge: a denoiser for what was measured, a coarse
network for the cone that was not.

A :class:`WedgeRestorer` couples two CARE models:

* the **denoiser** (a Noise2Noise model, e.g. the shipped general model or
  one fine-tuned on the user's halves) restores the tomogram at full
  resolution; it cleans the measured directions and leaves the missing
  wedge empty;
* the **restorer** (``pretrained:wedge``: trained supervised on simulated
  tomograms against their wedge-free truth) sees the mean of the halves
  binned by its config's ``wedge_binning`` (2 for the shipped one; the
  mean has less noise than either half), where a patch holds
  8 times the volume and the network's field of view reaches across whole
  membranes and particles: what the cone holds is inferred from their
  shape in the measured directions.

* the **refiner** (optional; ``pretrained:wedge-refiner`` with the shipped
  restorer) sees the full-resolution mean of the halves with its cone
  filled by the restorer and restores the cone above the binned grid's
  Nyquist frequency, which the restorer cannot reach.

The three are merged in Fourier space (:func:`cryocare.wedge.merge_cone`):
the denoiser's output everywhere except inside the missing wedge, where the
restorer's content goes in below the binned grid's Nyquist frequency and
the refiner's above it (without a refiner the denoiser's stays there). The
measured directions are therefore exactly the denoiser's — restoring the
wedge changes nothing that was measured. The restorer sees an eighth of the
denoiser's voxels, so it restores the mean of the binned halves averaged
over all 8 flips (``flips``) for about the cost of one plain denoiser pass:
held out at ±60°, that raised the in-cone correlation from 0.71 (each half
once) to 0.78 and the PSNR against the wedge-free truth by 0.6 dB. The
refiner makes one full-resolution pass (docs/wedge.md has the numbers).

Examples
--------
>>> import numpy as np
>>> from cryocare.config import CareConfig
>>> from cryocare.model import CAREModel
>>> from cryocare.wedge import Wedge
>>> tiny = CareConfig(unet_n_depth=1, unet_n_first=2)
>>> restorer = WedgeRestorer(CAREModel(tiny, None), CAREModel(tiny.replace(wedge_binning=2), None),
...                          Wedge(-60, 60))
>>> rng = np.random.default_rng(0)
>>> even, odd = rng.normal(size=(2, 16, 32, 32)).astype(np.float32)
>>> restorer.denoise(even, odd).shape
(16, 32, 32)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .config import PredictOptions
from .errors import InputError
from .wedge import Wedge, bin_volume, merge_cone, parse_wedge

__all__ = ["WedgeRestorer", "RESTORATION_FORMAT", "is_restorer_folder"]

log = logging.getLogger(__name__)

#: ``format`` of the ``restoration.json`` that marks a saved WedgeRestorer folder.
RESTORATION_FORMAT = "cryocare-wedge-restorer"
_DESCRIPTION = "restoration.json"
_PARTS = ("denoiser", "restorer")
_REFINER = "refiner"


def is_restorer_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by :meth:`WedgeRestorer.save`."""
    return (Path(path) / _DESCRIPTION).is_file()


class WedgeRestorer:
    """Denoise at full resolution, restore the missing wedge at a coarser one, merge.

    Parameters
    ----------
    denoiser : CAREModel
        A 3-D model that denoises (Noise2Noise); its output fills every
        measured direction.
    restorer : CAREModel
        A 3-D model that restores the missing wedge on data binned by its
        ``config.wedge_binning``.
    wedge : Wedge, str or (float, float)
        Tilt range and axis of the data (:func:`cryocare.wedge.parse_wedge`).
    flips : {8, 4, 2, 1}, optional
        Flips of the binned halves whose restorations the restorer averages
        (test-time augmentation; flips keep the wedge where it is). The
        denoiser's own follow the prediction options (``tta``).
    refiner : CAREModel, optional
        A 3-D model that restores, at full resolution, the wedge-free
        tomogram from the halves' mean with its cone filled by the
        restorer; its cone above the binned Nyquist frequency goes in
        (one pass, no flips). None: that part of the cone stays the
        denoiser's.

    Attributes
    ----------
    binning : int
        The restorer's binning.
    """

    def __init__(self, denoiser: Any, restorer: Any, wedge: Any, *, flips: int = 8,
                 refiner: Any = None) -> None:
        if isinstance(flips, bool) or flips not in (1, 2, 4, 8):
            raise InputError(f"flips: expected 1, 2, 4 or 8 flips of the binned halves, "
                             f"got {flips!r}")
        for name, model in (("denoiser", denoiser), ("restorer", restorer), ("refiner", refiner)):
            if model is not None and model.config.n_dim != 3:
                raise InputError(f"{name}: restoring the missing wedge needs a 3-D model, got "
                                 f"a {model.config.n_dim}-D one")
        self.denoiser = denoiser
        self.restorer = restorer
        self.wedge = parse_wedge(wedge)
        self.refiner = refiner
        self.binning = int(restorer.config.wedge_binning)
        self.flips = int(flips)

    def __repr__(self) -> str:
        return (f"WedgeRestorer(wedge={self.wedge.min_angle:g}..{self.wedge.max_angle:g} about "
                f"{self.wedge.tilt_axis}, binning={self.binning}, flips={self.flips}, "
                f"refiner={self.refiner is not None})")

    def with_wedge(self, wedge: Any) -> WedgeRestorer:
        """The same networks for data with another tilt range (nothing is copied)."""
        return WedgeRestorer(self.denoiser, self.restorer, wedge, flips=self.flips,
                             refiner=self.refiner)

    @property
    def config(self):
        """The denoiser's config (what restores the measured directions at full resolution)."""
        return self.denoiser.config

    # ----------------------------------------------------------------- prediction
    def predict(self, image: np.ndarray, options: PredictOptions | None = None, *,
                out: Any = None, **settings: Any) -> np.ndarray | None:
        """Restore one tomogram: :meth:`CAREModel.predict` with the wedge restored.

        ``options`` and ``settings`` go to both networks; ``out`` is an
        array or a :class:`cryocare.io.SlabWriter` (the merge needs the
        whole volume in memory first: about five times its size with a
        refiner, two and a half without).
        """
        return self._restore([image], options, settings, out)

    def denoise(self, even: np.ndarray, odd: np.ndarray, options: PredictOptions | None = None,
                *, out: Any = None, **settings: Any) -> np.ndarray | None:
        """Restore both halves and return their average, the wedge restored.

        ``options``, ``out`` and ``settings`` as for :meth:`predict`.
        """
        return self._restore([even, odd], options, settings, out)

    def _restore(self, images: list[np.ndarray], options: PredictOptions | None,
                 settings: dict[str, Any], out: Any) -> np.ndarray | None:
        options = PredictOptions.merged(options, **settings)
        shape = np.shape(images[0])
        if min(shape) < 2 * self.binning:
            raise InputError(f"tomogram of shape {shape}: too small to bin by {self.binning}")
        # the denoiser checks the halves (3-D, of one shape) before anything else runs
        full = self._run(self.denoiser, images, options)
        return _deliver(self._fill(full, images, options), out)

    def fill_cone(self, denoised: np.ndarray, even: np.ndarray, odd: np.ndarray | None = None,
                  options: PredictOptions | None = None, **settings: Any) -> np.ndarray:
        """Fill the missing wedge of a tomogram denoised already (by this denoiser or any).

        ``denoised`` keeps every measured direction; the restorer sees the
        mean of the halves ``even`` and ``odd`` (or one tomogram, ``even``
        alone) binned, averaged over ``flips``, and its cone goes in
        (:func:`cryocare.wedge.merge_cone`). What :meth:`denoise` does after
        its denoiser ran.

        Examples
        --------
        >>> import numpy as np
        >>> from cryocare.config import CareConfig
        >>> from cryocare.model import CAREModel
        >>> tiny = CareConfig(unet_n_depth=1, unet_n_first=2)
        >>> restorer = WedgeRestorer(CAREModel(tiny, None),
        ...                          CAREModel(tiny.replace(wedge_binning=2), None), "-60,60")
        >>> even, odd = np.random.default_rng(1).normal(size=(2, 16, 32, 32)).astype(np.float32)
        >>> denoised = restorer.denoiser.denoise(even, odd)
        >>> np.allclose(restorer.fill_cone(denoised, even, odd), restorer.denoise(even, odd))
        True
        """
        images = [even] if odd is None else [even, odd]
        if any(np.shape(image) != np.shape(denoised) for image in images):
            raise InputError(f"denoised and the halves differ in shape: {np.shape(denoised)} "
                             f"and {', '.join(str(np.shape(i)) for i in images)}")
        return self._fill(np.asarray(denoised, np.float32), images,
                          PredictOptions.merged(options, **settings))

    def _fill(self, full: np.ndarray, images: list[np.ndarray],
              options: PredictOptions) -> np.ndarray:
        # the restorer (and the refiner) see the halves' mean: less noise than either, and
        # one prediction
        mean = np.asarray(images[0], np.float32)
        if len(images) == 2:
            mean = (mean + np.asarray(images[1], np.float32)) * np.float32(0.5)
        coarse = self.restorer.predict(bin_volume(mean, self.binning), options.replace(
            progress=False, tta=self.flips, tta_seconds=None))
        # the refiner's input: the mean with the restorer's cone in it
        source = None if self.refiner is None else merge_cone(mean, coarse, self.wedge,
                                                              self.binning)
        del mean
        if source is not None:  # the cone above the binned Nyquist frequency
            fine = self.refiner.predict(source, options.replace(progress=False, tta=False,
                                                                tta_seconds=None))
            del source
            full = merge_cone(full, fine, self.wedge)
            del fine
        log.info("missing wedge %g..%g° about %s: restored at binning %d (%d flips)%s and merged",
                 self.wedge.min_angle, self.wedge.max_angle, self.wedge.tilt_axis, self.binning,
                 self.flips, ", refined above its Nyquist frequency" if self.refiner else "")
        return merge_cone(full, coarse, self.wedge, self.binning)

    @staticmethod
    def _run(model: Any, images: list[np.ndarray], options: PredictOptions) -> np.ndarray:
        if len(images) == 2:
            return model.denoise(images[0], images[1], options)
        return model.predict(images[0], options)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``directory/denoiser``, ``directory/restorer`` (and ``directory/refiner``)
        and ``restoration.json`` (the tilt range, binning, flips), atomically: built aside,
        then renamed into place."""
        from .model import staged_folder

        directory = Path(directory)
        with staged_folder(directory, overwrite=overwrite) as staging:
            parts = _parts(self.refiner is not None)
            for name in parts:
                getattr(self, name).save(staging / name)
            description = {"format": RESTORATION_FORMAT, "format_version": 1,
                           "wedge": self.wedge.to_dict(), "binning": self.binning,
                           "flips": self.flips, "refiner": self.refiner is not None}
            (staging / _DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")
        log.info("saved the wedge restoration (%s) to %s", ", ".join(parts), directory)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, *, weights: str = "best",
             wedge: Any = None) -> WedgeRestorer:
        """Load a folder written by :meth:`save`; ``wedge`` replaces the saved tilt range."""
        from .model import CAREModel

        directory = Path(directory)
        description = read_description(directory)
        parts = [CAREModel.load(directory / name, weights=weights) for name in _PARTS]
        refiner = (CAREModel.load(directory / _REFINER, weights=weights)
                   if description.get("refiner") else None)
        saved = Wedge.from_dict(description["wedge"])
        return cls(*parts, saved if wedge is None else parse_wedge(wedge),
                   flips=description.get("flips", 8), refiner=refiner)


def read_description(directory: Path) -> dict[str, Any]:
    """The checked ``restoration.json`` of a saved WedgeRestorer folder."""
    path = directory / _DESCRIPTION
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable description of a wedge restoration ({error})") \
            from None
    if not isinstance(description, dict) or description.get("format") != RESTORATION_FORMAT:
        raise InputError(f"{path}: expected \"format\": \"{RESTORATION_FORMAT}\"")
    if not isinstance(description.get("wedge"), dict):
        raise InputError(f"{path}: expected the tilt range under \"wedge\"")
    missing = [name for name in _parts(bool(description.get("refiner")))
               if not (directory / name / "config.json").is_file()]
    if missing:
        raise InputError(f"{directory}: incomplete wedge restoration ({', '.join(missing)} "
                         f"model folder missing)")
    return description


def _parts(refined: bool) -> tuple[str, ...]:
    """The model folders of a saved restoration (the refiner's only when it has one)."""
    return _PARTS + ((_REFINER,) if refined else ())


def _deliver(result: np.ndarray, out: Any) -> np.ndarray | None:
    """``result`` returned, copied into the array ``out``, or written to a slab writer
    (which takes it whole and keeps its statistics in chunks)."""
    if out is None:
        return result
    if isinstance(out, np.ndarray):
        if out.shape != result.shape:
            raise InputError(f"out: expected shape {result.shape}, got {out.shape}")
        out[...] = result
        return out
    out.write(result)
    return None
