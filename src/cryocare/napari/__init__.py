"""The napari plugin ``cryocare-ng``: open tomograms, preview, fine-tune and save in napari.

``pip install "cryocare-ng[napari]"`` installs napari and a Qt binding;
napari then finds the plugin through its manifest (``napari.yaml``, the
``napari.manifest`` entry point):

* a reader for MRC and TIFF files (:func:`read_layers`, through
  :mod:`cryocare.io`), with the header's voxel size as the layer's scale;
* a dock widget (:class:`cryocare.napari._widget.CryocareWidget`, *Plugins →
  Denoise (cryocare)*) that restores the slab of slices in view with the
  pretrained model in seconds (:func:`preview_slab`), fine-tunes it on the
  halves within a time budget in a worker thread with a progress bar and a
  cancel button (:class:`FineTune`), adds the result as a layer and saves
  it (never over an existing file unless asked).

This package imports neither napari, Qt nor Keras: the reader and the
computing parts work without them; only the widget's module imports napari
and Qt (``docs/napari.md``).
"""

from ._reader import EXTENSIONS, napari_get_reader, read_layers
from ._slab import Slab, plan_slab, preview_slab
from ._training import FineTune

__all__ = ["EXTENSIONS", "FineTune", "Slab", "napari_get_reader", "plan_slab", "preview_slab",
           "read_layers"]
