"""Training objectives: what a batch of pairs is turned into, and what the loss compares.

The training entry (:func:`cryocare.training.train`) samples batches of
pairs ``(x, y)`` and hands them to the objective that
``config.train_objective`` names. An :class:`Objective` supplies three
things, and nothing else in the training path knows which one runs:

``patch_shape(sample_shape)``
    The network's patch shape for pairs sampled at ``sample_shape`` (and
    :meth:`~Objective.sample_shape`, its inverse, for whoever samples the
    pairs): an objective that rotates patches needs larger cubes than it
    trains on.
``batch(x, y, *, rng)``
    The per-batch transform, with the batch's own generator (so a resumed
    run sees the same batches): arrays ``(n, *sample_shape)`` in, network
    inputs and loss targets ``(n, *patch_shape, channels)`` out.
``loss(config, patch_shape)`` and ``validation(x, y, *, seed)``
    The Keras loss, and the validation inputs and targets (transformed once,
    deterministically).

Registered objectives (:data:`OBJECTIVES`):

``"n2n"``
    Noise2Noise, the default: the even half maps to the odd one or, chosen
    at random, the odd one to the even one; the config's ``train_loss``.
``"supervised"``
    The second volume of every pair is a clean target (e.g. the simulator's
    wedge-free truth): never swapped, the config's ``train_loss``.
``"wedge"``
    Self-supervised restoration of the missing wedge from even/odd halves
    (after DeepDeWedge, Wiedemann & Heckel, Nat. Commun. 2024): both
    sub-volumes of a pair are rotated by one random 3-D rotation and the
    centre cropped (cubes ``√3`` times the patch are sampled, so that no
    corner is empty); the original orientation's missing wedge is imposed
    on the rotated input; the target is the other rotated half and the loss
    is the squared error in Fourier space only where the *rotated* target
    was measured, weighted :data:`WEDGE_WEIGHT` times inside the input's
    missing wedge. The network so learns to fill the wedge from directions
    the rotations bring in. The weights travel with the target as its
    second channel (:func:`cryocare.losses.fourier_masked_mse`).

``"blindspot"``
    One noisy volume without halves (Noise2Void, Krull et al. 2019;
    Noise2Self, Batson & Royer 2019): both volumes of a pair are the same
    patch; at spaced, random *blind spots* the input is replaced by values
    drawn from elsewhere in the patch, and the loss is the squared error at
    the blind spots' centres only. A reconstruction's noise is correlated
    with its neighbours (back-projection smears it along Z, the ramp filter
    anticorrelates it across the tilt axis), so the replaced region is a box
    of :data:`BLIND_EXTENT` voxels each side — along Z, across and along the
    tilt axis — and the network cannot read a centre's noise from them.

A new objective is a subclass of :class:`Objective` added to
:data:`OBJECTIVES` (and its name to ``CareConfig``'s list).

Examples
--------
>>> import numpy as np
>>> from cryocare.config import CareConfig
>>> objective = get(CareConfig(train_objective="wedge", train_tilt_range=(-60, 60)))
>>> objective.sample_shape((32, 32, 32)), objective.patch_shape((56, 56, 56), multiple=4)
((56, 56, 56), (32, 32, 32))
>>> x = np.random.default_rng(0).normal(size=(2, 24, 24, 24)).astype(np.float32)
>>> inputs, targets = objective.batch(x, x, rng=np.random.default_rng(1), patch_shape=(12,) * 3)
>>> inputs.shape, targets.shape       # the target's second channel: the loss weights
((2, 12, 12, 12, 1), (2, 12, 12, 12, 2))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.fft
import scipy.ndimage
from scipy.spatial.transform import Rotation

from .. import losses
from ..config import CareConfig
from ..errors import InputError
from ..wedge import Wedge, measured_mask

__all__ = ["BLIND_EXTENT", "BLIND_SPACING", "OBJECTIVES", "WEDGE_WEIGHT", "BlindSpot",
           "Objective", "NoiseToNoise", "Supervised", "WedgeRestoration", "get",
           "rotated_measured_mask"]

#: Weight of the loss inside the input's missing wedge, relative to the measured
#: directions (DeepDeWedge's default).
WEDGE_WEIGHT = 2.0


class Objective:
    """What training minimises; the base class is Noise2Noise (``"n2n"``).

    Attributes
    ----------
    name : str
        The registry name (``config.train_objective``).
    symmetric : bool
        Whether the two volumes of a pair may be swapped (both noisy halves).
    """

    name = "n2n"
    symmetric = True

    def __init__(self, config: CareConfig):
        self.config = config

    def sample_shape(self, patch_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the pairs to sample for training patches of ``patch_shape``."""
        return tuple(patch_shape)

    def patch_shape(self, sample_shape: tuple[int, ...], *, multiple: int = 1) -> tuple[int, ...]:
        """The network's patch shape for pairs of ``sample_shape``."""
        return tuple(sample_shape)

    def batch(self, x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
              patch_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs and loss targets, with a channel axis, from a batch of pairs."""
        return x[..., None], y[..., None]

    def loss(self, patch_shape: tuple[int, ...]) -> str | Callable:
        """The loss for Keras' ``compile``."""
        return losses.get(self.config.train_loss, shape=patch_shape)

    def validation(self, x: np.ndarray, y: np.ndarray, *,
                   patch_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Validation inputs and targets (deterministic: seeded by ``config.seed``)."""
        return self.batch(x, y, rng=np.random.default_rng([self.config.seed, 2**31]),
                          patch_shape=patch_shape)


NoiseToNoise = Objective


class Supervised(Objective):
    """The pairs' second volume is a clean target: never swapped (``"supervised"``)."""

    name = "supervised"
    symmetric = False


class WedgeRestoration(Objective):
    """Self-supervised missing-wedge restoration from even/odd halves (``"wedge"``).

    See the module docstring. The tilt range and axis are the config's
    ``train_tilt_range`` and ``train_tilt_axis``.
    """

    name = "wedge"
    symmetric = True

    def __init__(self, config: CareConfig, *, weight: float = WEDGE_WEIGHT):
        super().__init__(config)
        if config.train_tilt_range is None:
            raise InputError("config key 'train_tilt_range': the 'wedge' objective needs the "
                             "tilt range of the training data")
        self.wedge = Wedge(*config.train_tilt_range, tilt_axis=config.train_tilt_axis)
        self.weight = float(weight)
        self._masks: dict[tuple[int, ...], np.ndarray] = {}

    def sample_shape(self, patch_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_cube(patch_shape)
        side = math.ceil(patch_shape[0] * math.sqrt(3))
        return (side + side % 2,) * 3

    def patch_shape(self, sample_shape: tuple[int, ...], *, multiple: int = 1) -> tuple[int, ...]:
        _check_cube(sample_shape, "pairs")
        side = math.floor(sample_shape[0] / math.sqrt(3) + 1e-9)
        side -= side % multiple
        if side < max(multiple, 1):
            raise InputError(f"wedge objective: pairs of {tuple(sample_shape)} are too small "
                             f"(a patch of side s needs cubes of side s√3)")
        return (side,) * 3

    def _measured(self, shape: tuple[int, ...]) -> np.ndarray:
        """The measured mask, less the Nyquist frequencies whose conjugate is missing.

        An even-sized FFT grid holds the Nyquist frequency once; an
        asymmetric wedge can keep it and drop its conjugate, and the masked
        volume would then not be real.
        """
        if shape not in self._masks:
            mask = measured_mask(shape, self.wedge)
            axes = tuple(range(mask.ndim))
            conjugate = np.roll(np.flip(mask, axes), 1, axes)
            self._masks[shape] = mask & conjugate
        return self._masks[shape]

    def batch(self, x, y, *, rng, patch_shape):
        inputs = np.empty((len(x), *patch_shape, 1), np.float32)
        targets = np.empty((len(x), *patch_shape, 2), np.float32)
        measured = self._measured(tuple(patch_shape))
        half = measured[..., : patch_shape[-1] // 2 + 1]
        for i in range(len(x)):
            rotation = Rotation.random(random_state=rng).as_matrix()
            a, b = (rotate_crop(v, rotation, patch_shape) for v in (x[i], y[i]))
            # the mask is Hermitian-symmetric: half the spectrum suffices (float32 throughout)
            inputs[i, ..., 0] = scipy.fft.irfftn(scipy.fft.rfftn(a) * half, s=a.shape)
            seen = rotated_measured_mask(patch_shape, self.wedge, rotation)
            targets[i, ..., 0] = b
            targets[i, ..., 1] = seen * np.where(measured, 1.0, self.weight)
        return inputs, targets

    def loss(self, patch_shape):
        return losses.fourier_masked_mse(tuple(patch_shape))


#: Half-widths (voxels) of a blind spot along Z, across and along the tilt axis: the lags at
#: which the noise of a simulated reconstruction is correlated by more than 0.15 (measured on
#: the difference of its halves: 0.38 at lag 1 along Z; -0.20 and -0.25 at lags 1 and 2
#: across the tilt axis; below 0.01 along it).
BLIND_EXTENT = (1, 2, 0)
#: Blind-spot centres: one at a random place in every block of this many voxels per axis.
BLIND_SPACING = 6


class BlindSpot(Objective):
    """Noise2Void-style training on single noisy volumes (``"blindspot"``).

    See the module docstring. The tilt axis (``config.train_tilt_axis``)
    orients the blind spot; 2-D images get single-pixel blind spots.

    Examples
    --------
    >>> from cryocare.config import CareConfig
    >>> objective = BlindSpot(CareConfig())
    >>> x = np.random.default_rng(0).normal(size=(2, 12, 12, 12)).astype(np.float32)
    >>> inputs, targets = objective.batch(x, x, rng=np.random.default_rng(1),
    ...                                   patch_shape=(12, 12, 12))
    >>> int(targets[..., 1].sum()) == 2 * 8, bool((inputs[..., 0] != x).any())
    (True, True)
    """

    name = "blindspot"
    symmetric = True

    def extent(self, n_dim: int) -> tuple[int, ...]:
        """Half-widths of the blind spot along each axis of ``n_dim``-D patches."""
        if n_dim != 3:
            return (0,) * n_dim
        along_z, across, along = BLIND_EXTENT
        return (along_z, along, across) if self.config.train_tilt_axis == "Y" else \
            (along_z, across, along)

    def batch(self, x, y, *, rng, patch_shape):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        inputs = x.copy()
        weights = np.zeros(x.shape, np.float32)
        size = tuple(2 * e + 1 for e in self.extent(x.ndim - 1))
        blocks = [range(0, n, BLIND_SPACING) for n in x.shape[1:]]
        for i in range(len(x)):
            starts = np.stack(np.meshgrid(*blocks, indexing="ij"), -1).reshape(-1, x.ndim - 1)
            offsets = rng.integers(0, BLIND_SPACING, size=starts.shape)
            centres = np.minimum(starts + offsets, np.array(x.shape[1:]) - 1)
            spots = np.zeros(x.shape[1:], bool)
            spots[tuple(centres.T)] = True
            weights[i][spots] = 1.0
            blind = scipy.ndimage.maximum_filter(spots, size=size, mode="constant")
            donors = rng.integers(0, x[i].size, size=int(blind.sum()))
            inputs[i][blind] = x[i].reshape(-1)[donors]
        return inputs[..., None], np.stack([y, weights], axis=-1)

    def loss(self, patch_shape):
        from keras import ops

        def blind_spot_mse(y_true, y_pred):
            y_true = ops.cast(y_true, "float32")
            error = ops.cast(y_pred, "float32")[..., 0] - y_true[..., 0]
            weights = y_true[..., 1]
            return ops.sum(weights * error * error) / ops.maximum(ops.sum(weights), 1.0)

        return blind_spot_mse


#: name -> objective class
OBJECTIVES: dict[str, type[Objective]] = {
    "n2n": Objective, "supervised": Supervised, "wedge": WedgeRestoration,
    "blindspot": BlindSpot}


def get(config: CareConfig) -> Objective:
    """The objective ``config.train_objective`` names, for ``config``."""
    try:
        kind = OBJECTIVES[config.train_objective]
    except KeyError:
        raise InputError(f"config key 'train_objective': expected one of "
                         f"{', '.join(OBJECTIVES)}, got {config.train_objective!r}") from None
    return kind(config)


def _check_cube(shape, what: str = "patches") -> None:
    if len(shape) != 3 or len(set(shape)) != 1:
        raise InputError(f"wedge objective: expected cubic 3-D {what}, got {tuple(shape)}")


def rotate_crop(volume: np.ndarray, rotation: np.ndarray,
                shape: tuple[int, ...]) -> np.ndarray:
    """The centre ``shape`` of ``volume`` rotated by ``rotation`` about its centre.

    ``rotation`` is a 3×3 matrix acting on ``(z, y, x)`` coordinates:
    ``out(c_out + p) = volume(c_in + Rᵀ p)`` (linear interpolation), so the
    content, and its spectrum, turn by ``R``. Only the output voxels are
    computed.
    """
    matrix = np.asarray(rotation, dtype=np.float64).T
    centre_in = (np.asarray(volume.shape, dtype=np.float64) - 1) / 2
    centre_out = (np.asarray(shape, dtype=np.float64) - 1) / 2
    offset = centre_in - matrix @ centre_out
    return scipy.ndimage.affine_transform(np.asarray(volume, dtype=np.float32), matrix,
                                          offset=offset, output_shape=tuple(shape), order=1,
                                          mode="nearest")


def rotated_measured_mask(shape: tuple[int, int, int], wedge: Wedge,
                          rotation: np.ndarray) -> np.ndarray:
    """Where a volume measured with ``wedge`` and then turned by ``rotation`` was measured.

    Frequency ``k`` (``fftn`` order over ``(Z, Y, X)``) of the turned volume
    is frequency ``Rᵀ k`` of the original, so it counts as measured when
    ``Rᵀ k`` lies in :func:`cryocare.wedge.measured_mask`'s region. The
    identity gives that mask back.

    Examples
    --------
    >>> from cryocare.wedge import Wedge, measured_mask
    >>> w = Wedge(-50, 60)
    >>> bool(np.array_equal(rotated_measured_mask((8, 8, 8), w, np.eye(3)),
    ...                     measured_mask((8, 8, 8), w)))
    True
    """
    grids = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    k = np.stack([g.ravel() for g in grids])  # (3, N): kz, ky, kx
    kz, ky, kx = np.asarray(rotation, dtype=np.float64).T @ k
    across = kx if wedge.tilt_axis == "Y" else ky
    scale = np.abs(k).max(axis=0)
    on_axis = np.hypot(kz, across) <= 1e-9 * np.maximum(scale, 1e-30)
    angle = np.degrees(np.arctan2(kz, across))
    angle = np.where(angle > 90, angle - 180, np.where(angle <= -90, angle + 180, angle))
    # the identity must give measured_mask back exactly: that mask works in float32
    angle = angle.astype(np.float32)
    low, high = wedge.min_angle, wedge.max_angle
    inside = ((angle >= low) & (angle <= high)) | ((angle - 180 >= low) & (angle - 180 <= high))
    return (inside | on_axis).reshape(shape)
