"""Which arithmetic trains fastest on the device that trains: ``train_precision="auto"``.

A GPU is judged by its compute capability (bfloat16 tensor cores from 8.0,
Ampere); a CPU by measuring: one small 3-D convolution training step (two
layers of 32 filters on a batch of 8 × 24³, the width of a U-Net's inner
levels) in bfloat16 and in float32 on the device Keras uses, the faster
wins (bfloat16 only when clearly faster). With 16 filters the probe
understated bfloat16's gain on an AVX-512 BF16 CPU (0.8–0.94 of float32's
step, where the recipe's U-Net trains in 0.6 of it); with 32 it measured
0.26–0.58. CPUs without native bfloat16 (no AVX-512 BF16 or
AMX) emulate it slowly, and with oneDNN capped to an older instruction set
(``ONEDNN_MAX_CPU_ISA=AVX2``) bfloat16 convolutions fail outright: then
float32 is chosen. The measurement takes a few seconds once per process.

Examples
--------
>>> resolve("float32")
'float32'
>>> resolve("auto", gpu_capability=(8, 6))
'mixed_bfloat16'
>>> resolve("auto", gpu_capability=(7, 5))
'float32'
>>> seconds = {"float32": 1.0, "mixed_bfloat16": 0.5}
>>> resolve("auto", gpu_capability=None, probe=seconds.get)
'mixed_bfloat16'
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import keras
import numpy as np

from .. import backends

__all__ = ["BFLOAT16_SPEEDUP", "gpu_compute_capability", "measure_step", "resolve"]

log = logging.getLogger(__name__)

#: bfloat16 must take at most this share of float32's step time to be chosen on a CPU.
BFLOAT16_SPEEDUP = 0.8
_UNSET = object()
_CHOSEN: dict[tuple[str, tuple[int, int] | None], str] = {}  # per process: measured once


def gpu_compute_capability() -> tuple[int, int] | None:
    """Compute capability of the GPU Keras trains on, or None when it trains on a CPU."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tuple(tf.config.experimental.get_device_details(gpus[0])
                             .get("compute_capability", (0, 0)))
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability())
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return tuple(int(v) for v in str(device.compute_capability).split("."))
    except Exception as error:  # noqa: BLE001 - a device query is no reason to fail training
        log.debug("could not query the GPU (%s); treating the device as a CPU", error)
    return None


def measure_step(precision: str, *, size: int = 24, filters: int = 32, batch: int = 8,
                 repeats: int = 3) -> float:
    """Seconds of one training step of a small 3-D convolution network in ``precision``.

    The best of ``repeats`` timed steps after an untimed first (compiling)
    one; infinite when the step fails (no kernel for that arithmetic).
    """
    dtype = None if precision == "float32" else precision
    conv = keras.layers.Conv3D
    inputs = keras.Input(shape=(size, size, size, 1))
    x = conv(filters, 3, padding="same", activation="relu", dtype=dtype)(inputs)
    x = conv(filters, 3, padding="same", activation="relu", dtype=dtype)(x)
    outputs = conv(1, 1, dtype="float32")(x)
    network = keras.Model(inputs, outputs)
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    data = np.random.default_rng(0).normal(size=(batch, size, size, size, 1)).astype("float32")
    try:
        network.train_on_batch(data, data)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            network.train_on_batch(data, data)
            times.append(time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - e.g. oneDNN has no bfloat16 kernel here
        log.debug("a %s training step failed (%s)", precision, error)
        return math.inf
    return min(times)


def resolve(precision: str, *, gpu_capability: object = _UNSET,
            probe: Callable[[str], float] | None = None) -> str:
    """The concrete ``train_precision`` for ``precision`` (``"auto"`` is decided here).

    Parameters
    ----------
    precision : str
        A config's ``train_precision``; anything but ``"auto"`` is returned as
        is, unless the device cannot run it (then float32, with a warning).
    gpu_capability : tuple of int or None, optional
        The GPU's compute capability, None for a CPU; queried when not given.
    probe : callable, optional
        ``probe(precision) -> seconds per step``; default :func:`measure_step`.
        Results of the default probe are kept for the rest of the process.
    """
    if precision != "auto":
        if not backends.precision_runs(precision):
            log.warning("training precision %s has no convolution kernels on this device "
                        "(e.g. a CPU without AVX-512); training in float32", precision)
            return "float32"
        return precision
    capability = gpu_compute_capability() if gpu_capability is _UNSET else gpu_capability
    if capability is not None:
        chosen = "mixed_bfloat16" if tuple(capability) >= (8, 0) else "float32"
        log.info("training precision %s: GPU of compute capability %s", chosen,
                 ".".join(map(str, capability)))
        return chosen
    key = (keras.backend.backend(), None)
    if probe is None and key in _CHOSEN:
        return _CHOSEN[key]
    measure = probe or measure_step
    single, half = measure("float32"), measure("mixed_bfloat16")
    chosen = "mixed_bfloat16" if half <= BFLOAT16_SPEEDUP * single else "float32"
    reason = "bfloat16 steps fail on this CPU" if math.isinf(half) else \
        f"a bfloat16 step takes {half / single:.2f} of a float32 step on this CPU"
    log.info("training precision %s: %s", chosen, reason)
    if probe is None:
        _CHOSEN[key] = chosen
    return chosen
