"""The zero-shot preview of the visible slab: a few slices, with what the network needs around.

Pure NumPy planning (:func:`plan_slab`) and one prediction
(:func:`preview_slab`); imports neither napari nor Qt. The slab is read
with the network's receptive-field radius (its *halo*) of context above
and below, clipped at the volume's ends, and starting on the network's
pooling grid (:func:`cryocare.tiling.aligned_margin`, as every tile of the
prediction engine does), so its slices are restored as they would be in
the whole volume; the intensities are normalised with the whole volume's
statistics for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..normalize import Normalization, compute_normalization

if TYPE_CHECKING:  # pragma: no cover
    from ..model import CAREModel

__all__ = ["Slab", "plan_slab", "preview_slab"]


@dataclass(frozen=True)
class Slab:
    """Slices ``[start, stop)`` to show, read as ``[read_start, read_stop)``.

    Examples
    --------
    >>> slab = Slab(start=10, stop=15, read_start=2, read_stop=23)
    >>> slab.crop, slab.depth
    (slice(8, 13, None), 5)
    """

    start: int
    stop: int
    read_start: int
    read_stop: int

    @property
    def crop(self) -> slice:
        """Where the shown slices lie in what is read."""
        return slice(self.start - self.read_start, self.stop - self.read_start)

    @property
    def depth(self) -> int:
        return self.stop - self.start


def plan_slab(depth: int, z: int, *, half_width: int, halo: int, multiple_of: int = 1) -> Slab:
    """The slab of slices ``z ± half_width`` of a volume ``depth`` slices deep.

    Parameters
    ----------
    depth : int
        Number of slices of the volume.
    z : int
        The slice in view; clipped into the volume.
    half_width : int
        Slices shown on each side of ``z`` (0: that slice alone).
    halo : int
        Slices of context read on each side (the network's receptive-field radius).
    multiple_of : int
        The network's pooling factor: the read starts on a multiple of it.

    Returns
    -------
    Slab
        Clipped at the volume's ends.

    Examples
    --------
    >>> plan_slab(64, 30, half_width=2, halo=23, multiple_of=4)
    Slab(start=28, stop=33, read_start=4, read_stop=57)
    >>> plan_slab(64, 0, half_width=2, halo=23, multiple_of=4)
    Slab(start=0, stop=3, read_start=0, read_stop=27)
    """
    from ..tiling import aligned_margin

    if depth < 1:
        raise InputError(f"expected a volume with at least one slice, got {depth}")
    if half_width < 0 or halo < 0 or multiple_of < 1:
        raise InputError(f"half_width, halo, multiple_of: expected numbers >= 0, 0 and 1, "
                         f"got {half_width}, {halo} and {multiple_of}")
    z = min(max(int(z), 0), depth - 1)
    start, stop = max(z - half_width, 0), min(z + half_width + 1, depth)
    read_start = max((start - halo) // multiple_of * multiple_of, 0)
    return Slab(start, stop, read_start, min(stop + aligned_margin(halo, multiple_of), depth))


def preview_slab(model: CAREModel, even: np.ndarray, odd: np.ndarray | None = None, *, z: int,
                 half_width: int = 4, normalization: Normalization | None = None,
                 **options) -> tuple[Slab, np.ndarray]:
    """Restore slices ``z ± half_width`` of a volume (or of its two halves) with ``model``.

    Parameters
    ----------
    model : CAREModel
        A 3-D model (``cryocare.load_model("pretrained")`` for a zero-shot result).
    even : ndarray
        The volume (Z, Y, X), or its even half; memory maps fine (only the
        slab is read).
    odd : ndarray, optional
        The odd half: both halves are restored and averaged
        (:meth:`~cryocare.model.CAREModel.denoise`), else the volume alone
        (:meth:`~cryocare.model.CAREModel.predict`).
    z : int
        The slice in view.
    half_width : int
        Slices on each side of ``z``.
    normalization : Normalization, optional
        The intensity statistics; default the model's own, or, for a model
        without (the pretrained one), the whole volume's (both halves),
        computed here. Pass them when previewing the same volume again.
    **options
        Further options of :meth:`~cryocare.model.CAREModel.predict`
        (``tta``, ``precision``, ``memory``).

    Returns
    -------
    slab : Slab
        The slices restored.
    restored : ndarray
        float32, ``(slab.depth, Y, X)``: equal, to rounding, to those
        slices of the whole volume restored at once.
    """
    from .. import nets

    if np.ndim(even) != 3 or model.config.n_dim != 3:
        raise InputError(f"the slab preview needs a 3-D volume and a 3-D model, got a volume "
                         f"of shape {np.shape(even)} and a {model.config.n_dim}-D model")
    if odd is not None and np.shape(odd) != np.shape(even):
        raise InputError(f"even and odd halves differ in shape: {np.shape(even)} and "
                         f"{np.shape(odd)}")
    halves = [even] if odd is None else [even, odd]
    if normalization is None:
        normalization = model.normalization or compute_normalization(halves)
    slab = plan_slab(np.shape(even)[0], z, half_width=half_width, halo=nets.halo(model.config),
                     multiple_of=nets.multiple_of(model.config))
    read = [np.asarray(h[slab.read_start:slab.read_stop], dtype=np.float32) for h in halves]
    options = {"normalize": normalization, **options}
    restored = (model.predict(read[0], **options) if odd is None
                else model.denoise(read[0], read[1], **options))
    return slab, np.ascontiguousarray(restored[slab.crop])
