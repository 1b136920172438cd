"""Training losses, written in ``keras.ops`` so that they run on every Keras backend.

``"mse"`` and ``"mae"`` are Keras' own. ``"fsc"`` adds a frequency-aware
term to the mean squared error: one minus the Fourier shell (ring, in 2-D)
correlation of prediction and target, averaged over the shells. The MSE is
dominated by the low frequencies where most of the power is; the FSC term
weighs every shell alike, so it asks the network to get the phases of the
fine detail right as well. Both terms are computed per patch.

Examples
--------
>>> import numpy as np
>>> loss = get("fsc", shape=(16, 16))
>>> x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
>>> round(float(loss(x, x)), 6)  # identical patches: zero MSE, FSC 1 in every ring
0.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from keras import ops

from .errors import InputError

__all__ = ["LOSSES", "fourier_masked_mse", "fsc_loss", "get", "shell_matrix"]

LOSSES = ("mse", "mae", "fsc")


def shell_matrix(shape: tuple[int, ...]) -> np.ndarray:
    """One-hot map from the voxels of an FFT of ``shape`` to its Fourier shells.

    Row ``i`` (voxels in C order) has a single 1 in the column of the shell
    ``round(|k|)`` the frequency belongs to; the zero frequency and the
    corners beyond the Nyquist sphere of the shortest axis are left out, so
    every column is a full shell.

    Examples
    --------
    >>> m = shell_matrix((8, 8))
    >>> m.shape, int(m.sum())  # 4 rings; the zero frequency and the corners are dropped
    ((64, 4), 58)
    """
    grids = np.meshgrid(*(np.fft.fftfreq(n) * min(shape) for n in shape), indexing="ij")
    radius = np.rint(np.sqrt(sum(g**2 for g in grids))).astype(int).ravel()
    n_shells = min(shape) // 2
    matrix = np.zeros((radius.size, n_shells), dtype=np.float32)
    inside = (radius >= 1) & (radius <= n_shells)
    matrix[np.flatnonzero(inside), radius[inside] - 1] = 1.0
    return matrix


def _fft(x):
    """Complex FFT over every axis but the first (batch) of a real tensor."""
    real, imag = x, ops.zeros_like(x)
    n = len(x.shape)
    for axis in range(1, n):
        order = [a for a in range(n) if a != axis] + [axis]
        back = list(np.argsort(order))
        real, imag = ops.fft((ops.transpose(real, order), ops.transpose(imag, order)))
        real, imag = ops.transpose(real, back), ops.transpose(imag, back)
    return real, imag


def fsc_loss(shape: tuple[int, ...], *, weight: float = 1.0, eps: float = 1e-6) -> Callable:
    """MSE + ``weight`` × (1 − mean Fourier shell correlation), for patches of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Spatial patch shape (2-D or 3-D), fixed for the whole training run.
    weight : float
        Weight of the FSC term.
    eps : float
        Keeps the correlation of an empty shell finite.

    Returns
    -------
    callable
        ``loss(y_true, y_pred)`` on batches ``(n, *shape, 1)``, a scalar.
    """
    matrix = shell_matrix(tuple(shape))

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")[..., 0]
        y_pred = ops.cast(y_pred, "float32")[..., 0]
        squared = ops.mean(ops.square(y_true - y_pred))
        (ar, ai), (br, bi) = _fft(y_true), _fft(y_pred)
        flat = (-1, matrix.shape[0])
        cross = ops.matmul(ops.reshape(ar * br + ai * bi, flat), matrix)
        power_a = ops.matmul(ops.reshape(ar * ar + ai * ai, flat), matrix)
        power_b = ops.matmul(ops.reshape(br * br + bi * bi, flat), matrix)
        correlation = cross / ops.sqrt(power_a * power_b + eps)
        return squared + weight * (1.0 - ops.mean(correlation))

    loss.__name__ = "fsc"
    return loss


def fourier_masked_mse(shape: tuple[int, ...]) -> Callable:
    """Squared error in Fourier space, weighted per frequency, for patches of ``shape``.

    The target carries two channels: the target itself and the weight of
    every frequency of its FFT (``fftn`` order over the spatial axes; 0
    where the target says nothing, e.g. outside the directions its tilt
    series measured). The loss is ``mean(w · |FFT(pred − target)|²) / N``
    over the batch and the ``N`` voxels of a patch: by Parseval's theorem
    the mean squared error when every weight is 1.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pred, target = rng.normal(size=(2, 2, 8, 8, 8, 1)).astype("float32")
    >>> full = np.concatenate([target, np.ones_like(target)], axis=-1)
    >>> loss = fourier_masked_mse((8, 8, 8))
    >>> bool(np.isclose(float(loss(full, pred)), np.mean((pred - target) ** 2), rtol=1e-5))
    True
    """
    size = float(np.prod(shape))

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        error = ops.cast(y_pred, "float32")[..., 0] - y_true[..., 0]
        real, imag = _fft(error)
        return ops.mean(y_true[..., 1] * (real * real + imag * imag)) / size

    loss.__name__ = "fourier_masked_mse"
    return loss


def get(name: str, *, shape: tuple[int, ...]) -> str | Callable:
    """The loss called ``name`` for Keras' ``compile``, for patches of spatial ``shape``."""
    if name in ("mse", "mae"):
        return name
    if name == "fsc":
        return fsc_loss(tuple(shape))
    raise InputError(f"loss: expected one of {', '.join(LOSSES)}, got {name!r}")
