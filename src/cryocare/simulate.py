"""Synthetic cryo-electron tomography data with known ground truth.

:func:`phantom` builds a crowded, cell-like scene in a lamella of vitreous
ice; :func:`simulate_tilt_series` images it the way a microscope does
(projection, weak-phase-object contrast transfer, dose-fractionated Poisson
counting, even/odd frame split) and :func:`simulate_tomogram` reconstructs
the even, odd and noiseless halves by weighted back-projection. Everything
is deterministic given the seed, and the noiseless ``clean`` output is on the
same intensity scale as ``even`` and ``odd``, with ``E[even] = E[odd] = clean``.
Beside ``clean`` comes ``isotropic``, the wedge-free truth: the same specimen
imaged noise-free over the full ±90° and reconstructed the same way.
See ``docs/simulate.md`` for the model, its defaults and measured SNR.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.fft
import scipy.ndimage

from .errors import InputError
from .reconstruct import project, weighted_backprojection

__all__ = [
    "Phantom",
    "SimulatedTiltSeries",
    "SimulatedTomogram",
    "phantom",
    "random_settings",
    "simulate_tilt_series",
    "simulate_tomogram",
]

logger = logging.getLogger(__name__)

# Densities are scattering potential above vitreous ice, in units of protein.
_CYTOSOL = 0.12  # mean of the crowded background inside the lamella
_CYTOSOL_TEXTURE = 0.08  # standard deviation of its texture
_LUMEN = 0.04  # vesicle contents
_HEADGROUP = 1.3  # peak of each lipid leaflet (head groups are dense)
_FILAMENT = 1.0
_MACROMOLECULE = 1.2  # ribosomes are RNA-rich, denser than average protein
# Amount of each kind of object: membrane area per lamella volume (nm² / nm³),
# filaments per nm² of lamella area, macromolecules per nm³ of lamella.
_MEMBRANE_PER_NM = 0.0145
_FILAMENTS_PER_NM2 = 1 / 4.0e3
_MACROMOLECULES_PER_NM3 = 4.0e-5
# Mean inner potential of protein above vitreous ice, in volts (≈ 7.1 V − 4.9 V
# rounded down for the partial volume of 1 nm voxels).
_PROTEIN_POTENTIAL_V = 2.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic specimen.

    Attributes
    ----------
    density : ndarray of float32, shape (Z, Y, X)
        Scattering potential above vitreous ice, ≥ 0, in units of protein
        (protein ≈ 1, lipid head groups ≈ 1.3, cytosol ≈ 0.1, ice 0).
    mask : ndarray of bool, shape (Z, Y, X)
        Where there is material: membranes, filaments and macromolecules
        (``labels > 0``); cytosol, vesicle lumen and ice are not material.
    labels : ndarray of uint8, shape (Z, Y, X)
        Class of every voxel, indexing :attr:`LABEL_NAMES`.
    slab : tuple of int
        ``(start, stop)`` of the lamella along ``Z``; outside it is ice.
    voxel_size : float
        Voxel size in Å.
    """

    LABEL_NAMES: ClassVar[tuple[str, ...]] = ("background", "membrane", "filament", "macromolecule")

    density: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    slab: tuple[int, int]
    voxel_size: float


@dataclass(frozen=True, eq=False)
class SimulatedTiltSeries:
    """Normalised even/odd/noiseless tilt series of a phantom.

    Attributes
    ----------
    even, odd, clean : ndarray of float32, shape (n_tilts, Y, X)
        Image contrast ``counts / expected_counts - 1`` of the even-frame sum,
        the odd-frame sum and the noise-free image; ``E[even] = E[odd] = clean``.
    angles : ndarray of float64, shape (n_tilts,)
        Tilt angles in degrees (about :attr:`tilt_axis`).
    isotropic : ndarray of float32, shape (n_isotropic, Y, X), or None
        The noise-free images over the full half circle: the tilt grid of
        :attr:`angles` extended with the same step to cover ``[-90°, 90°)``;
        ``isotropic[i] == clean[j]`` wherever the angles agree. None when
        simulated with ``isotropic=False``.
    isotropic_angles : ndarray of float64, shape (n_isotropic,), or None
        Their tilt angles in degrees, ascending; every angle of :attr:`angles`
        is among them.
    voxel_size : float
        Pixel size in Å.
    density, mask, labels : ndarray, shape (Z, Y, X)
        Ground truth of the imaged :class:`Phantom`.
    tilt_axis : {"Y", "X"}
        Axis the specimen was tilted about.
    """

    even: np.ndarray
    odd: np.ndarray
    clean: np.ndarray
    angles: np.ndarray
    isotropic: np.ndarray | None
    isotropic_angles: np.ndarray | None
    voxel_size: float
    density: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    tilt_axis: str = "Y"


@dataclass(frozen=True, eq=False)
class SimulatedTomogram:
    """Even/odd/noiseless tomograms of a phantom, with its ground truth.

    Attributes
    ----------
    even, odd, clean : ndarray of float32, shape (Z, Y, X)
        Weighted back-projections of the even, odd and noise-free tilt
        series; ``E[even] = E[odd] = clean``, dense material is dark.
    isotropic : ndarray of float32, shape (Z, Y, X), or None
        The wedge-free truth: the same phantom, CTF and normalisation imaged
        noise-free over the full ±90° with the same tilt step and
        reconstructed the same way, so that it differs from ``clean`` only by
        the missing wedge (the frequencies ``clean`` lacks, see
        :mod:`cryocare.wedge`). None when simulated with ``isotropic=False``.
    density, mask, labels : ndarray, shape (Z, Y, X)
        Ground truth of the imaged :class:`Phantom`.
    angles : ndarray of float64, shape (n_tilts,)
        Tilt angles in degrees (about :attr:`tilt_axis`).
    voxel_size : float
        Voxel size in Å.
    tilt_axis : {"Y", "X"}
        Axis the specimen was tilted about (the missing wedge lies along the
        other in-plane axis).
    """

    even: np.ndarray
    odd: np.ndarray
    clean: np.ndarray
    isotropic: np.ndarray | None
    density: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    angles: np.ndarray
    voxel_size: float
    tilt_axis: str = "Y"


def phantom(
    shape,
    *,
    seed,
    voxel_size: float = 10.0,
    slab_fraction: float = 0.75,
    crowding: float = 1.0,
    membranes: float = 1.0,
    filaments: float = 1.0,
    macromolecules: float = 1.0,
) -> Phantom:
    """Build a crowded cell-like scene in a lamella of vitreous ice.

    The lamella is a slab of ``slab_fraction`` × ``Z`` voxels centred in
    ``Z`` (objects are cut flat at its surfaces, as by FIB milling); outside
    it there is only ice (density 0). Inside it:

    * weak crowded cytosol: random texture smoothed over 1.5 nm, mean 0.12,
      standard deviation 0.08;
    * lipid vesicles: hollow spheres of radius 15–60 nm (log-uniform) whose
      wall is two Gaussian leaflets (σ 0.8 nm, peak 1.3) 4 nm apart, with a
      nearly empty lumen (0.04), not overlapping, added until the membrane
      area inside the lamella is 0.0145 nm² per nm³ (± 20 %);
    * actin-like filaments (1 per 4000 nm² of lamella area): 7 nm straight
      cylinders, 0.6–1.5 × the diagonal of the field of view long, in random
      directions at most 15° out of the plane of the lamella;
    * ribosome-like macromolecules (4·10⁻⁵ per nm³, "many"): clusters of 4–8
      Gaussians (σ 2–4.5 nm) 20–30 nm across, peak density 1.2 (RNA-rich),
      placed outside vesicles and not overlapping one another.

    Amounts scale with the lamella's volume (area for filaments), with
    ``crowding`` and with the amount of their own kind (``membranes``,
    ``filaments``, ``macromolecules``); expected counts are rounded at
    random. Sizes are in nm and converted with ``voxel_size``. Every object
    is drawn on its own bounding box only, and overlapping objects combine
    by maximum, so the density stays bounded.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(Z, Y, X)``, each ≥ 4.
    seed : int or numpy.random.Generator
        Seed (or generator) for :func:`numpy.random.default_rng`; the same
        seed gives the same phantom.
    voxel_size : float, optional
        Voxel size in Å (10 Å = 1 nm).
    slab_fraction : float, optional
        Thickness of the lamella as a fraction of ``Z``, in (0, 1].
    crowding : float, optional
        Multiplies the number of every kind of object; ≥ 0.
    membranes, filaments, macromolecules : float, optional
        Multiply the amount of one kind of object (membrane area, number of
        filaments, number of macromolecules) on top of ``crowding``; ≥ 0. At
        1 (the defaults) the phantom is the same as without them, seed for seed.

    Returns
    -------
    Phantom

    Raises
    ------
    InputError
        For a bad shape, a non-positive voxel size, ``slab_fraction`` outside
        (0, 1] or a negative ``crowding``, ``membranes``, ``filaments`` or
        ``macromolecules``.

    Examples
    --------
    >>> from cryocare.simulate import phantom
    >>> ph = phantom((32, 64, 64), seed=0)
    >>> ph.density.shape, ph.density.dtype, ph.mask.dtype
    ((32, 64, 64), dtype('float32'), dtype('bool'))
    >>> bool(ph.density.min() >= 0 and ph.mask.any())
    True
    """
    shape = _check_shape(shape)
    voxel_size = _positive(voxel_size, "voxel_size")
    if not 0.0 < _finite(slab_fraction, "slab_fraction") <= 1.0:
        raise InputError(f"slab_fraction: expected a number in (0, 1], found {slab_fraction!r}")
    for name, value in (("crowding", crowding), ("membranes", membranes),
                        ("filaments", filaments), ("macromolecules", macromolecules)):
        if not _finite(value, name) >= 0.0:
            raise InputError(f"{name}: expected a number >= 0, found {value!r}")
    rng = _rng(seed)
    nz, ny, nx = shape
    nm = 10.0 / voxel_size  # voxels per nm

    depth = max(1, round(slab_fraction * nz))
    z0 = (nz - depth) // 2
    slab = (z0, z0 + depth)
    density = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    lamella = (slice(z0, z0 + depth), slice(None), slice(None))
    density[lamella] = _cytosol(rng, (depth, ny, nx), sigma=1.5 * nm)

    volume_nm3 = depth * ny * nx / nm**3
    area_nm2 = ny * nx / nm**2
    # Expected numbers, rounded at random so that small volumes get a fair share.
    n_filaments, n_blobs = (
        int(math.floor(expected + rng.random()))
        for expected in (
            crowding * filaments * area_nm2 * _FILAMENTS_PER_NM2,
            crowding * macromolecules * volume_nm3 * _MACROMOLECULES_PER_NM3,
        )
    )

    low = np.array([z0, 0, 0], dtype=float)
    high = np.array([z0 + depth - 1, ny - 1, nx - 1], dtype=float)
    membrane = crowding * membranes * volume_nm3 * _MEMBRANE_PER_NM * nm**2  # voxel faces
    vesicles = _place_vesicles(rng, membrane, low, high, (15 * nm, 60 * nm), gap=2 * nm)
    for start, stop in _filament_paths(rng, n_filaments, low, high, nm):
        _draw_filament(density, labels, start, stop, radius=3.5 * nm)
    blobs = _place_blobs(rng, n_blobs, low, high, vesicles, (20 * nm, 30 * nm))
    for centre, offsets, sigmas in blobs:
        _draw_blob(density, labels, centre, offsets, sigmas)
    for centre, radius in vesicles:
        _draw_vesicle(density, labels, centre, radius, nm)

    # FIB milling: nothing but ice outside the lamella.
    density[: slab[0]] = 0
    density[slab[1] :] = 0
    labels[: slab[0]] = 0
    labels[slab[1] :] = 0
    logger.debug(
        "phantom %s: %d vesicles, %d filaments, %d macromolecules, %.1f%% material",
        shape,
        len(vesicles),
        n_filaments,
        len(blobs),
        100 * np.count_nonzero(labels) / labels.size,
    )
    return Phantom(
        density=density, mask=labels > 0, labels=labels, slab=slab, voxel_size=voxel_size
    )


def simulate_tilt_series(
    shape=(64, 128, 128),
    *,
    seed=0,
    voxel_size: float = 10.0,
    tilt_range=(-60.0, 60.0),
    tilt_step: float = 3.0,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    dose_per_tilt: float = 2.5,
    n_frames: int = 8,
    tilt_axis: str = "Y",
    slab_fraction: float = 0.75,
    crowding: float = 1.0,
    membranes: float = 1.0,
    filaments: float = 1.0,
    macromolecules: float = 1.0,
    isotropic: bool = True,
) -> SimulatedTiltSeries:
    """Simulate the even/odd/noiseless tilt series of a synthetic specimen.

    The :func:`phantom` built from ``shape`` and ``seed`` is imaged as follows.

    1. Projection about ``tilt_axis`` (:func:`cryocare.reconstruct.project`)
       gives the projected potential; the phase shift is
       ``φ = σ · 2.0 V · voxel_size · projection``, with ``σ`` the relativistic
       interaction constant at ``voltage_kv`` and 2.0 V the mean inner
       potential of protein above ice.
    2. Weak-phase-object image formation, per tilt in 2-D Fourier space:
       ``c = F⁻¹[2 · CTF · F[φ]]`` with
       ``CTF(k) = −(√(1 − A²) sin χ + A cos χ)``,
       ``χ = π λ Δf k² − π Cs λ³ k⁴ / 2``, ``Δf = defocus_um`` (positive is
       underfocus) and ``A = amplitude_contrast``. The image intensity is
       ``1 + c`` (clipped at 0, which never happens for weak objects); no
       envelope, no defocus gradient across the tilted field.
    3. Counting: ``dose_per_tilt`` e⁻/Å² per tilt image (the whole series
       receives ``n_tilts × dose_per_tilt``), fractionated into ``n_frames``
       equal frames. Even-indexed frames (0, 2, …; ``ceil(n_frames / 2)`` of
       them) form the even half, odd-indexed frames (``floor(n_frames / 2)``)
       the odd half. A sum of independent Poisson frames is Poisson, so each
       half is drawn at once as ``Poisson(d_h · (1 + c))`` with
       ``d_h = dose_per_tilt · voxel_size² · frames_in_half / n_frames``.
    4. Each half is normalised linearly by its known expected flat-field
       counts, ``counts / d_h − 1``, so ``E[even] = E[odd] = clean = c``
       exactly, whatever the split.

    Dense material is darker than the background (negative contrast at the
    default underfocus), as in raw cryo-EM images and IMOD reconstructions of
    them.

    Parameters
    ----------
    shape : tuple of 3 int, optional
        ``(Z, Y, X)`` of the specimen; projections are ``(Y, X)``.
    seed : int or numpy.random.Generator, optional
        Seeds the phantom and then the counting noise; the phantom equals
        ``phantom(shape, seed=seed, voxel_size=voxel_size, ...)`` with the
        specimen options below.
    voxel_size : float, optional
        Voxel and pixel size in Å.
    tilt_range : (float, float), optional
        First and last tilt angle in degrees, within [−90, 90].
    tilt_step : float, optional
        Angular increment in degrees, > 0.
    defocus_um : float, optional
        Defocus in µm, positive = underfocus (CTFFIND/RELION convention).
    voltage_kv : float, optional
        Acceleration voltage in kV.
    cs_mm : float, optional
        Spherical aberration in mm, ≥ 0.
    amplitude_contrast : float, optional
        Fraction of amplitude contrast, in [0, 1).
    dose_per_tilt : float, optional
        Electron dose per tilt image in e⁻/Å², > 0. The default 2.5 (about
        100 e⁻/Å² over the default 41 tilts) gives an even/odd tomogram
        correlation of 0.105 ± 0.02 with the default shape and 1 nm voxels;
        the correlation grows roughly in proportion to the dose at this level.
    n_frames : int, optional
        Frames per tilt movie, ≥ 2.
    tilt_axis : {"Y", "X"}, optional
        Axis the specimen is tilted about. ``"X"`` images the same phantom
        rotating in the ``Z``–``Y`` plane (its missing wedge lies along
        ``Y``); the noise draws are the same as for ``"Y"``.
    slab_fraction, crowding, membranes, filaments, macromolecules : float, optional
        The specimen, as in :func:`phantom`.
    isotropic : bool, optional
        Also image the noise-free specimen over the rest of the half circle
        (:attr:`SimulatedTiltSeries.isotropic`). False skips it, which saves
        the projection of the extra tilts; nothing else changes.

    Returns
    -------
    SimulatedTiltSeries

    Raises
    ------
    InputError
        For a bad shape, non-positive voxel size, dose, voltage or tilt step, a
        tilt range outside [−90, 90] or reversed, a negative ``cs_mm``, an
        amplitude contrast outside [0, 1), fewer than 2 frames, a tilt axis
        other than ``"Y"`` or ``"X"``, an ``isotropic`` that is not a bool, or
        a bad specimen option (see :func:`phantom`).

    Examples
    --------
    >>> from cryocare.simulate import simulate_tilt_series
    >>> ts = simulate_tilt_series((16, 32, 32), seed=1, tilt_step=10.0)
    >>> ts.even.shape, ts.angles.tolist()[:3]
    ((13, 32, 32), [-60.0, -50.0, -40.0])
    >>> ts.even.dtype == ts.odd.dtype == ts.clean.dtype == "float32"
    True
    """
    voxel_size = _positive(voxel_size, "voxel_size")
    angles = _tilt_angles(tilt_range, tilt_step)
    dose = _positive(dose_per_tilt, "dose_per_tilt")
    voltage = _positive(voltage_kv, "voltage_kv") * 1e3
    defocus = _finite(defocus_um, "defocus_um") * 1e4  # Å
    cs = _finite(cs_mm, "cs_mm") * 1e7  # Å
    if cs < 0:
        raise InputError(f"cs_mm: expected a number >= 0, found {cs_mm!r}")
    amplitude = _finite(amplitude_contrast, "amplitude_contrast")
    if not 0.0 <= amplitude < 1.0:
        raise InputError(
            f"amplitude_contrast: expected a fraction in [0, 1), found {amplitude_contrast!r}"
        )
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 2:
        raise InputError(f"n_frames: expected an integer >= 2, found {n_frames!r}")
    if tilt_axis not in ("Y", "X"):
        raise InputError(f"tilt_axis: expected 'Y' or 'X', found {tilt_axis!r}")
    if not isinstance(isotropic, bool):
        raise InputError(f"isotropic: expected True or False, found {isotropic!r}")
    shape = _check_shape(shape)
    rng = _rng(seed)
    specimen = phantom(shape, seed=rng, voxel_size=voxel_size, slab_fraction=slab_fraction,
                       crowding=crowding, membranes=membranes, filaments=filaments,
                       macromolecules=macromolecules)

    wavelength = 12.2643 / math.sqrt(voltage * (1 + 0.978466e-6 * voltage))  # Å
    rest_energy = 510998.95  # electron rest energy, eV
    sigma = (
        2 * math.pi / (wavelength * voltage) * (rest_energy + voltage) / (2 * rest_energy + voltage)
    )  # rad / (V Å)
    # The full half circle is projected once; the measured tilts are a subset of it, so
    # clean and isotropic images agree exactly where their angles do.
    full = _isotropic_angles(angles, float(tilt_step)) if isotropic else angles
    measured = np.searchsorted(full, angles)
    phase = project(specimen.density, full, tilt_axis=tilt_axis)
    phase *= np.float32(sigma * _PROTEIN_POTENTIAL_V * voxel_size)

    ky = scipy.fft.fftfreq(shape[1], d=voxel_size)[:, None]
    kx = scipy.fft.rfftfreq(shape[2], d=voxel_size)[None, :]
    k2 = ky**2 + kx**2
    chi = math.pi * wavelength * defocus * k2 - 0.5 * math.pi * cs * wavelength**3 * k2**2
    ctf = -(math.sqrt(1 - amplitude**2) * np.sin(chi) + amplitude * np.cos(chi))
    spectrum = scipy.fft.rfft2(phase, workers=-1)
    spectrum *= (2 * ctf).astype(np.complex64)
    contrast = scipy.fft.irfft2(spectrum, s=shape[1:], workers=-1).astype(np.float32)
    images = np.maximum(contrast, np.float32(-1.0))  # intensity 1 + c cannot be negative
    clean = np.ascontiguousarray(images[measured]) if isotropic else images

    electrons = dose * voxel_size**2  # per pixel per tilt image
    halves = []
    for frames in ((n_frames + 1) // 2, n_frames // 2):
        expected = electrons * frames / n_frames
        counts = rng.poisson(expected * (1.0 + clean.astype(np.float64)))
        halves.append((counts / expected - 1.0).astype(np.float32))
    logger.debug(
        "tilt series: %d tilts of %s, %.1f e/pixel per tilt, %d frames, contrast std %.3g",
        angles.size,
        shape[1:],
        electrons,
        n_frames,
        float(clean.std()),
    )
    return SimulatedTiltSeries(
        even=halves[0],
        odd=halves[1],
        clean=clean,
        angles=angles,
        isotropic=images if isotropic else None,
        isotropic_angles=full if isotropic else None,
        voxel_size=voxel_size,
        density=specimen.density,
        mask=specimen.mask,
        labels=specimen.labels,
        tilt_axis=tilt_axis,
    )


def simulate_tomogram(
    shape=(64, 128, 128),
    *,
    seed=0,
    voxel_size: float = 10.0,
    tilt_range=(-60.0, 60.0),
    tilt_step: float = 3.0,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    dose_per_tilt: float = 2.5,
    n_frames: int = 8,
    tilt_axis: str = "Y",
    slab_fraction: float = 0.75,
    crowding: float = 1.0,
    membranes: float = 1.0,
    filaments: float = 1.0,
    macromolecules: float = 1.0,
    isotropic: bool = True,
) -> SimulatedTomogram:
    """Simulate even, odd and noiseless tomograms of a synthetic specimen.

    Runs :func:`simulate_tilt_series` (see there for the physics and every
    parameter) and reconstructs each of its three tilt series, and its
    noise-free series over the full half circle (``isotropic``), with
    :func:`cryocare.reconstruct.weighted_backprojection` (Ram-Lak filter, no
    low-pass, thickness ``Z``). The reconstruction is linear, so ``clean`` is
    on the same intensity scale as ``even``, ``odd`` and ``(even + odd) / 2``,
    with ``E[even] = E[odd] = clean``: PSNR or correlation of a denoised
    volume against ``clean`` is meaningful. Dense material is darker than the
    background, the convention of IMOD-reconstructed cryo-tomograms. At the
    defaults the Pearson correlation of ``even`` and ``odd`` is about 0.1.

    Parameters
    ----------
    shape : tuple of 3 int, optional
        ``(Z, Y, X)`` of the specimen and of the tomograms.
    seed : int or numpy.random.Generator, optional
        Same seed, same output.
    voxel_size, tilt_range, tilt_step, defocus_um, voltage_kv, cs_mm, \
amplitude_contrast, dose_per_tilt, n_frames, tilt_axis, slab_fraction, crowding, \
membranes, filaments, macromolecules
        As in :func:`simulate_tilt_series`; the reconstruction is about
        ``tilt_axis`` too.
    isotropic : bool, optional
        Also make the wedge-free truth ``isotropic`` (the default). It costs
        one projection of the extra tilts and one more reconstruction, more
        for a narrow range in fine steps (±40° in 1°: 180 tilts instead of
        81; ``docs/simulate.md`` has the timings); False leaves it None and
        ``even``, ``odd`` and ``clean`` unchanged.

    Returns
    -------
    SimulatedTomogram

    Raises
    ------
    InputError
        As :func:`simulate_tilt_series`.

    Examples
    --------
    >>> import numpy as np
    >>> from cryocare.simulate import simulate_tomogram
    >>> tomo = simulate_tomogram(seed=0)  # (64, 128, 128), about 0.2 s
    >>> tomo.even.shape, tomo.even.dtype
    ((64, 128, 128), dtype('float32'))
    >>> r = np.corrcoef(tomo.even.ravel(), tomo.odd.ravel())[0, 1]
    >>> bool(0.05 < r < 0.2)
    True
    >>> tomo.isotropic.shape == tomo.clean.shape   # the wedge-free truth
    True
    """
    series = simulate_tilt_series(
        shape,
        seed=seed,
        voxel_size=voxel_size,
        tilt_range=tilt_range,
        tilt_step=tilt_step,
        defocus_um=defocus_um,
        voltage_kv=voltage_kv,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        dose_per_tilt=dose_per_tilt,
        n_frames=n_frames,
        tilt_axis=tilt_axis,
        slab_fraction=slab_fraction,
        crowding=crowding,
        membranes=membranes,
        filaments=filaments,
        macromolecules=macromolecules,
        isotropic=isotropic,
    )
    thickness = series.density.shape[0]
    even, odd, clean = (
        weighted_backprojection(s, series.angles, thickness=thickness, tilt_axis=tilt_axis)
        for s in (series.even, series.odd, series.clean)
    )
    truth = None if series.isotropic is None else weighted_backprojection(
        series.isotropic, series.isotropic_angles, thickness=thickness, tilt_axis=tilt_axis)
    return SimulatedTomogram(
        even=even,
        odd=odd,
        clean=clean,
        isotropic=truth,
        density=series.density,
        mask=series.mask,
        labels=series.labels,
        angles=series.angles,
        voxel_size=series.voxel_size,
        tilt_axis=tilt_axis,
    )

def random_settings(
    rng: np.random.Generator,
    *,
    voxel_size=(4.0, 20.0),
    thickness_nm=(30.0, 300.0),
    depth=(40, 96),
    lateral=(128, 192),
    max_tilt=(40.0, 70.0),
    tilt_step=(1.0, 4.0),
    defocus_um=(1.5, 5.5),
    total_dose=(60.0, 180.0),
    crowding=(0.3, 1.6),
    amount=(0.25, 2.5),
    p_absent: float = 0.15,
    tilt_axes=("Y", "X"),
) -> dict:
    """Draw the settings of one simulated tomogram from a broad family.

    The defaults are the family the shipped pretrained model was trained on
    (``docs/pretrained.md``). Every draw is independent:

    * ``voxel_size`` log-uniform in Å; the two lateral sizes ``Y`` and ``X``
      uniform in ``lateral`` (multiples of 16);
    * the specimen thickness log-uniform in ``thickness_nm``; ``Z`` is that
      thickness divided by a fraction drawn uniformly in [0.45, 0.95],
      clipped to ``depth``, and ``slab_fraction`` is thickness / ``Z``, or 1
      when the specimen is thicker than the volume (a crop from inside a
      thick cell);
    * tilt range from ``−a`` to ``+b`` with ``a`` and ``b`` drawn apart
      uniformly in ``max_tilt`` (asymmetric, as after a lamella pre-tilt),
      ``tilt_step`` uniform in steps of 0.5°, the tilt axis one of
      ``tilt_axes`` at random;
    * ``defocus_um`` uniform; the total dose uniform in ``total_dose``
      (e⁻/Å², spread evenly over the tilts); 300 kV (4 in 5) or 200 kV;
      amplitude contrast uniform in [0.07, 0.10]; 4 to 12 frames;
    * ``crowding`` uniform and the amounts of membranes, filaments and
      macromolecules each log-uniform in ``amount``, or absent with
      probability ``p_absent``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every draw (pass ``numpy.random.default_rng(seed)``).
    voxel_size, thickness_nm, depth, lateral, max_tilt, tilt_step, defocus_um, \
total_dose, crowding, amount : (low, high)
        Ranges, as described above.
    p_absent : float
        Probability that one kind of object is left out, in [0, 1).
    tilt_axes : sequence of {"Y", "X"}
        Tilt axes to draw from.

    Returns
    -------
    dict
        Keyword arguments of :func:`simulate_tomogram` (``shape`` included,
        ``seed`` not), JSON-serialisable.

    Raises
    ------
    InputError
        For a generator that is not one, a reversed or non-positive range,
        a ``p_absent`` outside [0, 1) or an unknown tilt axis.

    Examples
    --------
    >>> import numpy as np
    >>> from cryocare.simulate import random_settings, simulate_tomogram
    >>> settings = random_settings(np.random.default_rng(0), depth=(32, 40), lateral=(64, 64))
    >>> sorted(settings)[:4]
    ['amplitude_contrast', 'crowding', 'defocus_um', 'dose_per_tilt']
    >>> tomo = simulate_tomogram(**settings, seed=0)
    >>> tomo.even.shape == tuple(settings["shape"])
    True
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng: expected a numpy.random.Generator, found {type(rng).__name__}")
    ranges = {}
    for name, value in (("voxel_size", voxel_size), ("thickness_nm", thickness_nm),
                        ("depth", depth), ("lateral", lateral), ("max_tilt", max_tilt),
                        ("tilt_step", tilt_step), ("defocus_um", defocus_um),
                        ("total_dose", total_dose), ("crowding", crowding),
                        ("amount", amount)):
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"{name}: expected a range (low, high), found {value!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise InputError(f"{name}: expected 0 < low <= high, found {value!r}")
        ranges[name] = (low, high)
    if ranges["max_tilt"][1] > 90:
        raise InputError(f"max_tilt: expected angles up to 90 degrees, found {max_tilt!r}")
    if ranges["depth"][0] < 4 or ranges["lateral"][0] < 16:
        raise InputError("depth and lateral: expected sizes of at least 4 and 16 voxels")
    if not 0.0 <= _finite(p_absent, "p_absent") < 1.0:
        raise InputError(f"p_absent: expected a probability in [0, 1), found {p_absent!r}")
    axes = tuple(tilt_axes) if not isinstance(tilt_axes, str) else (tilt_axes,)
    if not axes or any(a not in ("Y", "X") for a in axes):
        raise InputError(f"tilt_axes: expected some of 'Y' and 'X', found {tilt_axes!r}")

    def log_uniform(name: str) -> float:
        low, high = ranges[name]
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    size = log_uniform("voxel_size")
    ny, nx = (16 * int(rng.integers(math.ceil(ranges["lateral"][0] / 16),
                                    math.floor(ranges["lateral"][1] / 16) + 1))
              for _ in range(2))
    thickness = log_uniform("thickness_nm") * 10.0 / size  # in voxels
    nz = round(thickness / rng.uniform(0.45, 0.95))
    nz = int(min(max(nz, round(ranges["depth"][0])), round(ranges["depth"][1])))
    slab = min(1.0, max(thickness / nz, 2.0 / nz))
    first, last = (float(rng.uniform(*ranges["max_tilt"])) for _ in range(2))
    steps = np.arange(ranges["tilt_step"][0], ranges["tilt_step"][1] + 1e-9, 0.5)
    step = float(rng.choice(steps)) if steps.size else ranges["tilt_step"][0]
    n_tilts = _tilt_angles((-first, last), step).size
    dose = float(rng.uniform(*ranges["total_dose"])) / n_tilts
    kinds = {}
    for kind in ("membranes", "filaments", "macromolecules"):
        present = rng.random() >= p_absent
        kinds[kind] = log_uniform("amount") if present else 0.0
    return {
        "shape": (nz, ny, nx),
        "voxel_size": round(size, 3),
        "slab_fraction": round(slab, 4),
        "tilt_range": (round(-first, 2), round(last, 2)),
        "tilt_step": step,
        "tilt_axis": str(axes[int(rng.integers(len(axes)))]),
        "defocus_um": round(float(rng.uniform(*ranges["defocus_um"])), 3),
        "voltage_kv": 300.0 if rng.random() < 0.8 else 200.0,
        "amplitude_contrast": round(float(rng.uniform(0.07, 0.10)), 4),
        "dose_per_tilt": round(dose, 4),
        "n_frames": int(rng.integers(4, 13)),
        "crowding": round(float(rng.uniform(*ranges["crowding"])), 3),
        **{k: round(v, 3) for k, v in kinds.items()},
    }


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
        exact = all(int(s) == s for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape: expected 3 integers (Z, Y, X), found {shape!r}") from None
    if len(dims) != 3 or not exact or min(dims) < 4:
        raise InputError(f"shape: expected 3 integers (Z, Y, X) each >= 4, found {shape!r}")
    return dims  # type: ignore[return-value]


def _positive(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a positive number, found {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise InputError(f"{name}: expected a positive number, found {value!r}")
    return number


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, bool) or seed is None:
        raise InputError(f"seed: expected an integer or a numpy Generator, found {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise InputError(
            f"seed: expected an integer or a numpy Generator, found {seed!r}"
        ) from None


def _finite(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a finite number, found {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name}: expected a finite number, found {value!r}")
    return number


def _tilt_angles(tilt_range, tilt_step) -> np.ndarray:
    """Angles from the first to the last of ``tilt_range`` in steps of ``tilt_step``."""
    step = _positive(tilt_step, "tilt_step")
    try:
        first, last = (float(a) for a in tilt_range)
    except (TypeError, ValueError):
        raise InputError(
            f"tilt_range: expected (first, last) in degrees, found {tilt_range!r}"
        ) from None
    if not (-90.0 <= first <= last <= 90.0):
        raise InputError(
            f"tilt_range: expected -90 <= first <= last <= 90 degrees, found {tilt_range!r}"
        )
    count = math.floor((last - first) / step + 1e-9) + 1
    return first + step * np.arange(count, dtype=np.float64)


def _isotropic_angles(angles: np.ndarray, step: float) -> np.ndarray:
    """The grid of ``angles`` (first + k · step) extended to cover ``[-90°, 90°)``, ascending.

    ``-90°`` and ``90°`` are one direction, so the extension stops short of
    ``90°``; the measured angles are all kept (a series over the full
    ``[-90°, 90°]`` is its own isotropic series). Every angle then covers one
    step in :func:`cryocare.reconstruct.weighted_backprojection`, as the
    measured ones do.
    """
    first = float(angles[0])
    low = -math.floor((first + 90.0) / step + 1e-9)
    high = math.ceil((90.0 - first) / step - 1e-9) - 1
    grid = first + step * np.arange(low, high + 1, dtype=np.float64)
    return np.union1d(grid, angles)


def _cytosol(rng: np.random.Generator, shape, *, sigma: float) -> np.ndarray:
    """Non-negative smooth random texture with mean ≈ ``_CYTOSOL``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = scipy.ndimage.gaussian_filter(noise, sigma=max(sigma, 0.5), mode="wrap")
    field *= _CYTOSOL_TEXTURE / max(float(field.std()), 1e-12)
    field += _CYTOSOL
    return np.maximum(field, 0, out=field)


def _box(centre, half: float, shape):
    """Slices of the bounding box of a ball and the centred coordinates along each axis."""
    slices, coords = [], []
    for axis, (c, n) in enumerate(zip(centre, shape, strict=True)):
        lo = max(0, math.floor(c - half))
        hi = min(n, math.ceil(c + half) + 1)
        if lo >= hi:
            return None
        slices.append(slice(lo, hi))
        shape_1d = [1, 1, 1]
        shape_1d[axis] = hi - lo
        coords.append((np.arange(lo, hi, dtype=np.float32) - np.float32(c)).reshape(shape_1d))
    return tuple(slices), coords


def _random_points(rng, n: int, low, high) -> np.ndarray:
    return low + rng.random((n, 3)) * (high - low)


def _place_vesicles(rng, area: float, low, high, radii, *, gap: float):
    """Non-overlapping (centre, radius) pairs with about ``area`` of membrane in the lamella.

    Aiming at a membrane area rather than a number of vesicles keeps the
    amount of membrane, which carries most of the contrast, steady from seed
    to seed. The area of a sphere between the two lamella surfaces is
    ``2 π R h`` (Archimedes), ``h`` the height of the part inside.
    """
    placed: list[tuple[np.ndarray, float]] = []
    candidates = _random_points(rng, 200, low, high)
    sizes = np.exp(rng.uniform(np.log(radii[0]), np.log(radii[1]), 200))
    total = 0.0
    for centre, radius in zip(candidates, sizes, strict=True):
        if total >= 0.8 * area:
            break
        inside = min(centre[0] + radius, high[0] + 1) - max(centre[0] - radius, low[0])
        extra = 2 * np.pi * radius * inside
        if total + extra > 1.2 * area:
            continue
        if all(np.linalg.norm(centre - c) > radius + r + gap for c, r in placed):
            placed.append((centre, float(radius)))
            total += extra
    return placed


def _filament_paths(rng, n: int, low, high, nm: float):
    """Straight segments through random points, at most 15° out of the lamella plane."""
    extent = float(np.hypot(high[1] - low[1], high[2] - low[2]))
    paths = []
    for _ in range(n):
        middle = _random_points(rng, 1, low, high)[0]
        azimuth = rng.uniform(0, np.pi)
        elevation = np.deg2rad(rng.uniform(-15, 15))
        direction = np.array(
            [
                np.sin(elevation),
                np.cos(elevation) * np.sin(azimuth),
                np.cos(elevation) * np.cos(azimuth),
            ]
        )
        half = 0.5 * rng.uniform(0.6, 1.5) * max(extent, 20 * nm)
        paths.append((middle - half * direction, middle + half * direction))
    return paths


def _draw_filament(density, labels, start, stop, *, radius: float) -> None:
    """Draw a soft-edged cylinder, piece by piece so that each box stays small."""
    length = float(np.linalg.norm(stop - start))
    pieces = max(1, math.ceil(length / max(8 * radius, 4.0)))
    direction = (stop - start) / length
    step = length / pieces
    for k in range(pieces):
        a = start + k * step * direction
        box = _box(a + 0.5 * step * direction, 0.5 * step + radius + 1.0, density.shape)
        if box is None:
            continue
        slices, (dz, dy, dx) = box
        # Coordinates relative to the piece's start point a.
        offset = (a - (a + 0.5 * step * direction)).astype(np.float32)
        wz, wy, wx = dz - offset[0], dy - offset[1], dx - offset[2]
        along = wz * np.float32(direction[0]) + wy * np.float32(direction[1])
        along = along + wx * np.float32(direction[2])
        t = np.clip(along, 0, np.float32(step))
        dist2 = wz * wz + wy * wy + wx * wx - 2 * t * along + t * t
        dist = np.sqrt(np.maximum(dist2, 0))
        value = np.clip(np.float32(radius + 0.5) - dist, 0, 1) * np.float32(_FILAMENT)
        np.maximum(density[slices], value, out=density[slices])
        labels[slices][dist <= radius] = 2


def _place_blobs(rng, n: int, low, high, vesicles, diameters):
    """Ribosome-like clusters outside vesicles, not overlapping one another."""
    blobs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if n == 0:
        return blobs
    centres = _random_points(rng, 10 * n, low, high)
    sizes = rng.uniform(diameters[0], diameters[1], 10 * n)
    accepted_centres: list[np.ndarray] = []
    accepted_radii: list[float] = []
    for centre, diameter in zip(centres, sizes, strict=True):
        if len(blobs) == n:
            break
        radius = 0.5 * diameter
        if any(np.linalg.norm(centre - c) < r + radius for c, r in vesicles):
            continue
        if accepted_centres:
            gaps = np.linalg.norm(np.asarray(accepted_centres) - centre, axis=1)
            if np.any(gaps < 0.9 * (np.asarray(accepted_radii) + radius)):
                continue
        k = int(rng.integers(4, 9))
        # Lobes of σ 2-4.5 nm scattered inside the particle's diameter.
        sigmas = rng.uniform(0.10, 0.15, k) * diameter
        directions = rng.standard_normal((k, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        offsets = directions * rng.uniform(0.0, 1.0, (k, 1)) * (radius - 1.5 * sigmas[:, None])
        accepted_centres.append(centre)
        accepted_radii.append(radius)
        blobs.append((centre, offsets, sigmas))
    return blobs


def _draw_blob(density, labels, centre, offsets, sigmas) -> None:
    """Sum of separable Gaussians, saturated softly towards ``_MACROMOLECULE`` inside."""
    half = float(np.max(np.linalg.norm(offsets, axis=1) + 2.5 * sigmas))
    box = _box(centre, half, density.shape)
    if box is None:
        return
    slices, (dz, dy, dx) = box
    total = np.zeros(np.broadcast_shapes(dz.shape, dy.shape, dx.shape), dtype=np.float32)
    for offset, sigma in zip(offsets, sigmas, strict=True):
        scale = np.float32(-0.5 / sigma**2)
        gz = np.exp(scale * (dz - np.float32(offset[0])) ** 2)
        gy = np.exp(scale * (dy - np.float32(offset[1])) ** 2)
        gx = np.exp(scale * (dx - np.float32(offset[2])) ** 2)
        total += gz * gy * gx
    value = np.float32(_MACROMOLECULE) * (1 - np.exp(-np.float32(2.0) * total))
    np.maximum(density[slices], value, out=density[slices])
    labels[slices][value > 0.3 * _MACROMOLECULE] = 3


def _draw_vesicle(density, labels, centre, radius: float, nm: float) -> None:
    """Bilayer: two Gaussian leaflets 4 nm apart around ``radius``, nearly empty lumen."""
    sigma = max(0.8 * nm, 0.6)
    half_gap = 2.0 * nm
    box = _box(centre, radius + half_gap + 3 * sigma + 1, density.shape)
    if box is None:
        return
    slices, (dz, dy, dx) = box
    r = np.sqrt(dz * dz + dy * dy + dx * dx)
    inner = np.exp(np.float32(-0.5 / sigma**2) * (r - np.float32(radius - half_gap)) ** 2)
    outer = np.exp(np.float32(-0.5 / sigma**2) * (r - np.float32(radius + half_gap)) ** 2)
    wall = np.float32(_HEADGROUP) * np.maximum(inner, outer)
    region = density[slices]
    lumen = r < radius - half_gap
    region[lumen] = _LUMEN
    np.maximum(region, wall, out=region)
    box_labels = labels[slices]
    box_labels[lumen] = 0
    box_labels[(np.abs(r - np.float32(radius)) <= half_gap) | (wall >= 0.3 * _HEADGROUP)] = 1
