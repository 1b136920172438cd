"""The napari reader: MRC and TIFF files through :mod:`cryocare.io`, the voxel size as scale.

Pure :mod:`cryocare.io`; imports neither napari nor Qt, so that it can be
used (and tested) without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import io

__all__ = ["EXTENSIONS", "napari_get_reader", "read_layers"]

#: File endings the reader takes (any case): MRC and its IMOD/RELION names, and TIFF.
EXTENSIONS = (".mrc", ".mrcs", ".rec", ".st", ".map", ".ali", ".tif", ".tiff")

LayerData = tuple[Any, dict[str, Any], str]


def _ours(path: Any) -> bool:
    return isinstance(path, str | os.PathLike) and str(path).lower().endswith(EXTENSIONS)


def napari_get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for ``path`` (one file or several), or None when a file is not ours.

    napari calls this with what the user opened; None lets another plugin try.

    Examples
    --------
    >>> napari_get_reader("tomo.mrc") is read_layers
    True
    >>> napari_get_reader(["a.MRC", "b.tif"]) is read_layers
    True
    >>> napari_get_reader("notes.txt") is None
    True
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return read_layers if paths and all(_ours(p) for p in paths) else None


def read_layers(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[LayerData]:
    """Read MRC/TIFF files as napari image layers: ``(data, attributes, "image")`` each.

    The data is a read-only memory map in the file's own data type (a
    compressed TIFF is read into memory), so that a large tomogram opens at
    once and is read as it is shown. The layer's ``scale`` is the header's
    voxel size in Å, (Z, Y, X) as napari orders axes; a file that does not
    say (voxel size 0) gets napari's default scale of 1. The file and its
    voxel size are kept in ``metadata["cryocare"]`` (the widget saves
    results with the source's header).

    Parameters
    ----------
    path : str, path-like or sequence of them
        MRC or TIFF files.

    Returns
    -------
    list of tuple
        One ``(data, {"name", "scale", "metadata"}, "image")`` per file.

    Raises
    ------
    InputError
        As :func:`cryocare.io.read_info`: a missing, truncated or
        unsupported file, named in the message.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from cryocare.io import write
    >>> path = write(Path(tempfile.mkdtemp()) / "tomo.mrc", np.ones((4, 8, 8)),
    ...              voxel_size=(20.0, 10.0, 10.0))
    >>> [(data, attributes, kind)] = read_layers(path)
    >>> data.shape, attributes["name"], attributes["scale"], kind
    ((4, 8, 8), 'tomo', (20.0, 10.0, 10.0), 'image')
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers = []
    for item in paths:
        info = io.read_info(item)
        data = io.read(item, mmap=True)
        voxel_size = tuple(float(v) for v in info.voxel_size[-data.ndim:])
        attributes: dict[str, Any] = {
            "name": Path(item).stem,
            "metadata": {"cryocare": {"path": str(info.path),
                                      "voxel_size": tuple(info.voxel_size)}},
        }
        if all(v > 0 for v in voxel_size):
            attributes["scale"] = voxel_size
        layers.append((data, attributes, "image"))
    return layers
