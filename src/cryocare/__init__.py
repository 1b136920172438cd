"""cryocare: content-aware restoration of cryo-electron tomograms and projections.

Noise2Noise training of a CARE network on pairs of independently noisy
images of the same content (even/odd frame sums, even/odd tomograms), with
tiled prediction, baselines and Otsu segmentation.

Importing this package is cheap: it pulls in neither TensorFlow nor Keras.
The deep-learning framework is only imported by :mod:`cryocare.model` and
:mod:`cryocare.nets`.
"""

__version__ = "0.1.0"

from .errors import CryocareError, InputError

__all__ = ["__version__", "CryocareError", "InputError"]
