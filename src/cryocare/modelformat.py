"""The on-disk format of a cryocare model folder: its name, version and weights file.

One definition for the module that writes and loads models (:mod:`cryocare.model`,
with Keras) and the one that recognises them without Keras
(:mod:`cryocare.modelfiles`). A model folder holds ``config.json`` with
``{"format": FORMAT, "format_version": FORMAT_VERSION, ...}`` and the best
weights in ``WEIGHTS``.
"""

__all__ = ["FORMAT", "FORMAT_VERSION", "WEIGHTS"]

#: The ``"format"`` of a model's ``config.json``.
FORMAT = "cryocare-model"
#: The newest ``"format_version"`` this version writes and reads.
FORMAT_VERSION = 1
#: The file of the best weights (by validation loss).
WEIGHTS = "weights.weights.h5"
