"""Learned guided reaction-diffusion: NAD whose filters and edge-stopping are learned.

The ``"diffusion"`` network runs ``T`` gradient steps (stages) of a weighted
analysis energy (trainable nonlinear reaction-diffusion, Chen & Pock 2017,
with guided weights as in Gu et al. 2017)::

    x_0 = input,   w_i = exp(-beta_i |grad(G_sigma * g)|^2),   g = input
    x_t = x_{t-1} - sum_i K_i^T (w_i * phi_i(K_i x_{t-1})) - lambda_t (x_{t-1} - x_0)

with, per stage, ``diffusion_filters`` zero-mean filters ``K_i`` of size
``diffusion_kernel_size`` (the spatial mean is subtracted in every call),
``K_i^T`` the exact adjoint of the zero-padded ``"same"`` correlation
(correlation with the flipped kernel, channels swapped), influence functions
``phi_i`` that are mixtures of ``diffusion_n_rbf`` Gaussian radial basis
functions on a fixed grid over ``[-RBF_RANGE, RBF_RANGE]`` (intensities are
normalised to zero mean and unit variance; applied by linear interpolation
in a fine table of the mixture, see :meth:`DiffusionStage.table_influence`),
``lambda_t = sigmoid(.)`` in ``[0, 1]`` and ``beta_i = softplus(.) >= 0``.

Every stage is initialised to a mild, stable linear-then-redescending
smoothing: ``phi_i(z) ~ c z exp(-z^2 / 8)`` with ``c`` set so that the
smoothing gain at the most amplified frequency is 0.5. Because the Gaussian
mixture is bounded and ``0 <= w <= 1``, ``0 <= lambda <= 1``, every stage
moves a voxel by at most :meth:`DiffusionStage.step_bound` beyond the range
of its inputs, whatever the input: the network cannot blow up.

Train it like any other network with :func:`cryocare.training.train`, which
trains it greedily stage by stage, then jointly, both Noise2Noise
(:mod:`cryocare.training.stagewise`). :func:`influence_figure` and
:func:`filter_figure` draw what it learned; :func:`write_inspection` saves
both as PNGs.

References
----------
Y. Chen and T. Pock, "Trainable nonlinear reaction diffusion: a flexible
framework for fast and effective image restoration", IEEE TPAMI 39(6), 2017.
S. Gu, W. Zuo, S. Guo, Y. Chen, C. Chen and L. Zhang, "Learning dynamic
guidance for depth image enhancement", CVPR 2017.
P. Perona and J. Malik, "Scale-space and edge detection using anisotropic
diffusion", IEEE TPAMI 12(7), 1990.

Examples
--------
>>> import numpy as np
>>> from cryocare.config import CareConfig
>>> from cryocare import nets
>>> config = CareConfig(n_dim=2, network="diffusion", diffusion_stages=2,
...                     diffusion_filters=4)
>>> nets.halo(config), nets.multiple_of(config)
(8, 1)
>>> net = nets.build(config)
>>> noise = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype("float32")
>>> smoothed = np.asarray(net.predict_on_batch(noise))
>>> bool(smoothed[0, 8:-8, 8:-8].std() < noise[0, 8:-8, 8:-8].std())
True
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from ..errors import InputError, OutputExistsError
from .registry import register

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..config import CareConfig

__all__ = [
    "DiffusionStage",
    "GuideGradient",
    "diffusion",
    "diffusion_halo",
    "filter_figure",
    "influence_figure",
    "perona_malik_influence",
    "stages",
    "tukey_influence",
    "write_inspection",
]

log = logging.getLogger(__name__)

RBF_RANGE = 4.0  # grid of the influence functions: [-4, 4] normalised intensity units
INIT_GAIN = 0.5  # smoothing gain of an untrained stage at its most amplified frequency
INIT_WIDTH = 2.0  # z scale (normalised units) where an untrained influence function peaks
INIT_REACTION = 0.05  # lambda of an untrained stage
INIT_EDGE = 1.0  # beta of an untrained filter
TABLE_REFINE = 8  # influence table nodes per RBF grid step
TABLE_MARGIN = 4  # the table reaches this many RBF grid steps beyond the grid


def _guide_radius(sigma: float) -> int:
    return int(math.ceil(3 * sigma)) if sigma > 0 else 0


def diffusion_halo(config: CareConfig) -> int:
    """Receptive-field radius: ``T (k - 1)`` plus the guide's smoothing and gradient radius."""
    return (config.diffusion_stages * (config.diffusion_kernel_size - 1)
            + _guide_radius(config.diffusion_guide_sigma) + 1)


def _spatial_axes(n_dim: int) -> tuple[int, ...]:
    return tuple(range(n_dim))


def _along(axis: int, n_dim: int, values: np.ndarray) -> np.ndarray:
    """A 1-D kernel laid along ``axis`` as a (…, 1, 1) convolution kernel."""
    shape = [1] * n_dim + [1, 1]
    shape[axis] = len(values)
    return np.asarray(values, dtype="float32").reshape(shape)


@keras.saving.register_keras_serializable(package="cryocare")
class GuideGradient(keras.layers.Layer):
    """``|grad(G_sigma * g)|^2`` of a one-channel guide (central differences, zero padding).

    Parameters
    ----------
    n_dim : int
        2 or 3 spatial dimensions.
    sigma : float
        Width of the Gaussian in voxels; 0 does not smooth.
    """

    def __init__(self, *, n_dim: int, sigma: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_dim, self.sigma = int(n_dim), float(sigma)
        radius = _guide_radius(self.sigma)
        taps = np.arange(-radius, radius + 1, dtype="float64")
        gauss = np.exp(-taps**2 / (2 * self.sigma**2)) if radius else np.ones(1)
        gauss /= gauss.sum()
        self._smooth = [_along(a, self.n_dim, gauss) for a in range(self.n_dim)]
        self._diff = [_along(a, self.n_dim, [-0.5, 0.0, 0.5]) for a in range(self.n_dim)]

    def call(self, guide):
        for kernel in self._smooth if self.sigma > 0 else ():
            guide = ops.conv(guide, ops.convert_to_tensor(kernel), padding="same")
        total = 0.0
        for kernel in self._diff:
            total = total + ops.square(ops.conv(guide, ops.convert_to_tensor(kernel),
                                                padding="same"))
        return total

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_dim": self.n_dim, "sigma": self.sigma}


def _initial_kernel(rng: np.random.Generator, n_dim: int, size: int, filters: int) -> np.ndarray:
    """Random zero-mean filters of unit norm, shape ``(size,)*n_dim + (1, filters)``."""
    kernel = rng.normal(size=(size,) * n_dim + (1, filters))
    kernel -= kernel.mean(axis=_spatial_axes(n_dim), keepdims=True)
    kernel /= np.sqrt((kernel**2).sum(axis=_spatial_axes(n_dim), keepdims=True))
    return kernel


def _max_gain(kernel: np.ndarray, n_dim: int) -> float:
    """Largest eigenvalue of ``sum_i K_i^T K_i`` (periodic approximation, via the FFT)."""
    grid = (max(16, 4 * kernel.shape[0]),) * n_dim
    spectra = np.fft.rfftn(kernel[..., 0, :], s=grid, axes=_spatial_axes(n_dim))
    return float((np.abs(spectra) ** 2).sum(axis=-1).max())


def _rbf_grid(n_rbf: int) -> tuple[np.ndarray, float]:
    centres = np.linspace(-RBF_RANGE, RBF_RANGE, n_rbf)
    return centres, float(centres[1] - centres[0])


def _fit_rbf(target: Callable[[np.ndarray], np.ndarray], n_rbf: int) -> np.ndarray:
    """Least-squares RBF coefficients (with a tiny ridge) of ``target`` on the grid range."""
    centres, width = _rbf_grid(n_rbf)
    z = np.linspace(-RBF_RANGE - 2 * width, RBF_RANGE + 2 * width, 8 * n_rbf)
    basis = np.exp(-((z[:, None] - centres[None]) ** 2) / (2 * width**2))
    ridge = 1e-6 * np.eye(n_rbf)
    return np.linalg.solve(basis.T @ basis + ridge, basis.T @ target(z))


@keras.saving.register_keras_serializable(package="cryocare")
class DiffusionStage(keras.layers.Layer):
    """One reaction-diffusion step ``x - K^T (w * phi(K x)) - lambda (x - x0)``.

    Called on ``[x, x0, grad_sq]`` (each ``(batch, *spatial, 1)``, ``grad_sq``
    the guide's squared gradient magnitude) it returns the new ``x``.

    Parameters
    ----------
    n_dim : int
        2 or 3.
    filters : int
        Number of zero-mean filters.
    kernel_size : int
        Odd filter size.
    n_rbf : int
        Gaussian radial basis functions per influence function.
    use_weights : bool
        Multiply by the guided edge weights ``w`` (True) or by 1.
    seed : int
        Seed of the initial filters.

    Attributes
    ----------
    influence : callable or None
        If set, ``influence(z)`` (Keras ops, ``z`` of shape ``(..., filters)``)
        replaces the learned RBF influence functions; for analysis and tests,
        not saved.
    """

    def __init__(self, *, n_dim: int, filters: int, kernel_size: int, n_rbf: int,
                 use_weights: bool = True, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_dim, self.filters, self.kernel_size = int(n_dim), int(filters), int(kernel_size)
        self.n_rbf, self.use_weights, self.seed = int(n_rbf), bool(use_weights), int(seed)
        self.influence: Callable | None = None
        self.centres, self.width = _rbf_grid(self.n_rbf)

    def build(self, input_shape) -> None:
        rng = np.random.default_rng([self.seed, 1729])
        kernel = _initial_kernel(rng, self.n_dim, self.kernel_size, self.filters)
        slope = INIT_GAIN / _max_gain(kernel, self.n_dim)
        coefficients = _fit_rbf(lambda z: slope * z * np.exp(-z**2 / (2 * INIT_WIDTH**2)),
                                self.n_rbf)
        constant = keras.initializers.Constant
        self.kernel = self.add_weight(name="kernel", shape=kernel.shape,
                                      initializer=constant(kernel.astype("float32")))
        self.rbf_weights = self.add_weight(
            name="rbf_weights", shape=(self.filters, self.n_rbf),
            initializer=constant(np.tile(coefficients, (self.filters, 1)).astype("float32")))
        self.reaction_logit = self.add_weight(
            name="reaction_logit", shape=(),
            initializer=constant(math.log(INIT_REACTION / (1 - INIT_REACTION))))
        self.edge_raw = self.add_weight(
            name="edge_raw", shape=(self.filters,),
            initializer=constant(math.log(math.expm1(INIT_EDGE))))

    # -------------------------------------------------------- the parts, as used
    def zero_mean_kernel(self):
        """The filters with their spatial mean removed, ``(k,)*n + (1, filters)``."""
        return self.kernel - ops.mean(self.kernel, axis=_spatial_axes(self.n_dim), keepdims=True)

    def adjoint_kernel(self, kernel):
        """Kernel whose ``"same"`` correlation is the adjoint of that with ``kernel``."""
        flipped = kernel
        for axis in range(self.n_dim):
            flipped = ops.flip(flipped, axis=axis)
        order = list(range(self.n_dim)) + [self.n_dim + 1, self.n_dim]
        return ops.transpose(flipped, order)

    def rbf_influence(self, z):
        """The learned influence functions at ``z`` (``(..., filters)``)."""
        total = 0.0
        for j, centre in enumerate(self.centres):
            bump = ops.exp(ops.square(z - float(centre)) * (-0.5 / self.width**2))
            total = total + bump * self.rbf_weights[:, j]
        return total

    def influence_pieces(self):
        """The table of :meth:`table_influence`: ``(reach, step, size, intercept, slope)``.

        ``size`` nodes from ``-reach`` to ``reach``, ``step`` apart; interval
        ``j`` of filter ``f`` is ``intercept[f, j] + slope[f, j] * z``. The
        exported graphs of :mod:`cryocare.runtime` use the same table.
        """
        step = self.width / TABLE_REFINE
        reach = float(self.centres[-1]) + TABLE_MARGIN * self.width
        size = int(round(2 * reach / step)) + 1
        nodes = np.linspace(-reach, reach, size, dtype="float32")
        basis = np.exp(-((nodes[:, None] - self.centres[None]) ** 2) / (2 * self.width**2))
        table = ops.matmul(self.rbf_weights, ops.convert_to_tensor(basis.T.astype("float32")))
        slope = (table[:, 1:] - table[:, :-1]) / step  # interval j: [node j, node j + 1]
        intercept = table[:, :-1] - slope * ops.convert_to_tensor(nodes[None, :-1])
        return reach, step, size, intercept, slope

    def table_influence(self, z):
        """The influence functions by linear interpolation in a table of the RBF mixture.

        The table samples :meth:`rbf_influence` ``TABLE_REFINE`` times more
        finely than the RBF grid, out to ``TABLE_MARGIN`` grid steps beyond it
        (where the mixture has decayed to ``exp(-8)`` of its coefficients);
        responses beyond are clamped. Error: at most ``max|phi''| dz^2 / 8``,
        about 0.2 % of the coefficients; cost independent of ``n_rbf``.

        Each table interval is stored as an (intercept, slope) pair, so one
        gather and one multiply-add evaluate it: the per-voxel work of a
        stage is dominated by such passes over ``filters`` channels.
        """
        reach, step, size, intercept, slope = self.influence_pieces()
        # Row f * (size - 1) + j: filter f, interval j.
        pieces = ops.reshape(ops.stack([intercept, slope], axis=-1), (-1, 2))
        z = ops.clip(z, -reach, reach)
        # z >= -reach, so truncation is the floor; the last node falls in the last interval.
        index = ops.minimum(ops.cast(ops.stop_gradient((z + reach) * (1 / step)), "int32"),
                            size - 2)
        offsets = ops.convert_to_tensor(np.arange(self.filters, dtype="int32") * (size - 1))
        piece = ops.take(pieces, index + offsets, axis=0)
        return piece[..., 0] + piece[..., 1] * z

    def reaction(self):
        """``lambda`` of this stage, in ``[0, 1]``."""
        return ops.sigmoid(self.reaction_logit)

    def edge(self):
        """``beta_i >= 0`` of the edge weights ``exp(-beta_i |grad g_sigma|^2)``."""
        return ops.softplus(self.edge_raw)

    def call(self, inputs):
        x, x0, grad_sq = inputs
        kernel = self.zero_mean_kernel()
        response = ops.conv(x, kernel, padding="same")
        flux = (self.influence or self.table_influence)(response)
        if self.use_weights:
            flux = flux * ops.exp(-grad_sq * self.edge())
        diffusion = ops.conv(flux, self.adjoint_kernel(kernel), padding="same")
        return x - diffusion - self.reaction() * (x - x0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def step_bound(self) -> float:
        """Largest possible ``|K^T (w * phi(K x))|`` for any input (float)."""
        kernel = keras.ops.convert_to_numpy(self.zero_mean_kernel())[..., 0, :]
        l1 = np.abs(kernel).sum(axis=_spatial_axes(self.n_dim))
        peak = np.abs(keras.ops.convert_to_numpy(self.rbf_weights)).sum(axis=1)
        return float((l1 * peak).sum())

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_dim": self.n_dim, "filters": self.filters,
                "kernel_size": self.kernel_size, "n_rbf": self.n_rbf,
                "use_weights": self.use_weights, "seed": self.seed}


def diffusion_bytes(config: CareConfig) -> int:
    """Prediction memory per voxel: responses, influences and edge weights of one stage
    (``diffusion_filters`` channels each, float32), the input, the guide's gradient, the
    current and the next state; 25 % margin."""
    return int(1.25 * 4 * (3 * config.diffusion_filters + 4))


@register("diffusion", halo=diffusion_halo, bytes_per_voxel=diffusion_bytes)
def diffusion(config: CareConfig) -> keras.Model:
    """Build the learned diffusion network that ``config`` describes (one channel in and out).

    Stage ``t`` is the layer ``"stage_{t}"`` (1-based); the guide's squared
    gradient is the layer ``"guide"``. Runs in float32 even under mixed precision.
    """
    n_dim = config.n_dim
    inputs = keras.Input(shape=(None,) * n_dim + (1,), name="input")
    grad_sq = GuideGradient(n_dim=n_dim, sigma=config.diffusion_guide_sigma, dtype="float32",
                            name="guide")(inputs)
    x = inputs
    for t in range(1, config.diffusion_stages + 1):
        x = DiffusionStage(n_dim=n_dim, filters=config.diffusion_filters,
                           kernel_size=config.diffusion_kernel_size,
                           n_rbf=config.diffusion_n_rbf, seed=config.seed * 1000 + t,
                           dtype="float32", name=f"stage_{t}")([x, inputs, grad_sq])
    return keras.Model(inputs, x, name=f"diffusion{n_dim}d")


def stages(keras_model: keras.Model) -> list[DiffusionStage]:
    """The stages of a diffusion network, in order."""
    found = [layer for layer in keras_model.layers if isinstance(layer, DiffusionStage)]
    if not found:
        raise InputError(f"network {keras_model.name!r} is not a diffusion network "
                         f"(it has no diffusion stages)")
    return found


# ------------------------------------------------------------------- inspection
def perona_malik_influence(z: np.ndarray, *, kappa: float = 1.0) -> np.ndarray:
    """Perona–Malik influence ``z / (1 + (z / kappa)^2)`` (edge-stopping ``g`` times ``z``).

    Examples
    --------
    >>> float(perona_malik_influence(np.array(1.0), kappa=1.0))
    0.5
    """
    z = np.asarray(z, dtype="float64")
    return z / (1 + (z / kappa) ** 2)


def tukey_influence(z: np.ndarray, *, c: float = 2.0) -> np.ndarray:
    """Tukey's biweight influence ``z (1 - (z/c)^2)^2`` for ``|z| < c``, else 0 (Black et al. 1998).

    Examples
    --------
    >>> tukey_influence(np.array([0.0, 1.0, 3.0]), c=2.0).tolist()
    [0.0, 0.5625, 0.0]
    """
    z = np.asarray(z, dtype="float64")
    return np.where(np.abs(z) < c, z * (1 - (z / c) ** 2) ** 2, 0.0)


def _canvas(figure: Figure) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)


def influence_figure(keras_model: keras.Model) -> Figure:
    """Learned influence functions ``phi_i`` of every stage, with Perona–Malik and Tukey.

    Each stage's panel shows all its ``phi_i`` over the RBF grid (normalised
    intensity units); the last panel shows the classical edge-stopping
    influence functions for reference, scaled to the peak of the learned ones.

    Examples
    --------
    >>> from cryocare.config import CareConfig
    >>> from cryocare import nets
    >>> net = nets.build(CareConfig(n_dim=2, network="diffusion", diffusion_stages=2,
    ...                             diffusion_filters=3))
    >>> len(influence_figure(net).axes)
    3
    """
    from matplotlib.figure import Figure

    layers = stages(keras_model)
    z = np.linspace(-1.5 * RBF_RANGE, 1.5 * RBF_RANGE, 241).astype("float32")
    columns = min(3, len(layers) + 1)
    rows = -(-(len(layers) + 1) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), dpi=100, layout="constrained")
    _canvas(figure)
    peak = 0.0
    for t, layer in enumerate(layers, start=1):
        grid = np.repeat(z[:, None], layer.filters, axis=1)
        values = keras.ops.convert_to_numpy(layer.table_influence(ops.convert_to_tensor(grid)))
        peak = max(peak, float(np.abs(values).max()))
        axes = figure.add_subplot(rows, columns, t)
        axes.plot(z, values, linewidth=0.8)
        axes.axhline(0, color="0.6", linewidth=0.5)
        axes.set_title(f"stage {t}: $\\phi_i$ (λ={float(layer.reaction()):.3f})", fontsize=9)
        axes.set_xlabel("filter response z")
    axes = figure.add_subplot(rows, columns, len(layers) + 1)
    peak = peak or 1.0
    for name, values in (("Perona–Malik (κ=1)", perona_malik_influence(z, kappa=1.0)),
                         ("Tukey (c=2)", tukey_influence(z, c=2.0))):
        axes.plot(z, values * peak / np.abs(values).max(), label=name)
    axes.axhline(0, color="0.6", linewidth=0.5)
    axes.set_title("references (scaled)", fontsize=9)
    axes.set_xlabel("filter response z")
    axes.legend(fontsize=7)
    return figure


def filter_figure(keras_model: keras.Model) -> Figure:
    """Learned zero-mean filters: one row per stage (central slice of 3-D filters).

    Examples
    --------
    >>> from cryocare.config import CareConfig
    >>> from cryocare import nets
    >>> net = nets.build(CareConfig(n_dim=3, network="diffusion", diffusion_stages=2,
    ...                             diffusion_filters=3))
    >>> len(filter_figure(net).axes)
    6
    """
    from matplotlib.figure import Figure

    layers = stages(keras_model)
    count = max(layer.filters for layer in layers)
    figure = Figure(figsize=(0.7 * count + 0.5, 0.8 * len(layers) + 0.3), dpi=100,
                    layout="constrained")
    _canvas(figure)
    for t, layer in enumerate(layers):
        kernel = keras.ops.convert_to_numpy(layer.zero_mean_kernel())[..., 0, :]
        if layer.n_dim == 3:
            kernel = kernel[kernel.shape[0] // 2]
        limit = float(np.abs(kernel).max()) or 1.0
        for i in range(layer.filters):
            axes = figure.add_subplot(len(layers), count, t * count + i + 1)
            axes.imshow(kernel[..., i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes.set_xticks([])
            axes.set_yticks([])
            if i == 0:
                axes.set_ylabel(f"stage {t + 1}", fontsize=7)
    return figure


def write_inspection(keras_model: keras.Model, directory: str | os.PathLike, *,
                     overwrite: bool = False) -> list[Path]:
    """Write ``influence.png`` and ``filters.png`` of a diffusion network into ``directory``.

    The folder is created if missing (its parent must exist). Each file is
    written atomically and never replaced unless ``overwrite``.

    Examples
    --------
    >>> from cryocare.config import CareConfig
    >>> from cryocare import nets
    >>> net = nets.build(CareConfig(n_dim=2, network="diffusion", diffusion_stages=1,
    ...                             diffusion_filters=2))
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "inspect"
    >>> [path.name for path in write_inspection(net, folder)]
    ['influence.png', 'filters.png']
    """
    directory = Path(directory)
    figures = {"influence.png": influence_figure, "filters.png": filter_figure}
    if not directory.parent.is_dir():
        raise InputError(f"{directory.parent}: folder for the figures does not exist")
    if not overwrite:
        for name in figures:
            if (directory / name).exists():
                raise OutputExistsError(
                    f"{directory / name}: exists already (pass overwrite=True to replace it)")
    directory.mkdir(exist_ok=True)
    written = []
    for name, draw in figures.items():
        path = directory / name
        tmp = directory / f".{name}.{os.getpid()}.tmp.png"
        try:
            draw(keras_model).savefig(tmp, format="png")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written
