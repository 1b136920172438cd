"""Shared fixtures: small seeded synthetic data, built once per session."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryocare.backends import enable_cpu_kernels

# As the command line does: TensorFlow's oneDNN convolutions also on CPUs without AVX-512
# VNNI/BF16 or AMX, where TensorFlow would otherwise use Eigen's (~3x slower on AVX2).
enable_cpu_kernels()


@pytest.fixture(scope="session")
def smooth_pair():
    """A smooth 3-D signal with two independent Gaussian noise realisations.

    Returns (clean, even, odd), float32, shape (32, 48, 40).
    """
    rng = np.random.default_rng(1234)
    clean = (8 * gaussian_filter(rng.normal(size=(32, 48, 40)), 2)).astype(np.float32)
    even = clean + rng.normal(size=clean.shape).astype(np.float32)
    odd = clean + rng.normal(size=clean.shape).astype(np.float32)
    return clean, even, odd
