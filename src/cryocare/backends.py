"""Which Keras backend runs the networks: TensorFlow, PyTorch or JAX.

Keras 3 picks its backend once, when it is first imported, from the
environment variable ``KERAS_BACKEND`` (else ``~/.keras/keras.json``, else
TensorFlow). cryocare never switches it behind the user's back: the library
only *checks* that the backend a configuration asks for is installed and is
the one Keras runs (or will run) on, and raises an
:class:`~cryocare.errors.InputError` otherwise. Applications (the command
line's ``--backend``) call :func:`select` before anything imports Keras.

This module does not import Keras itself.

Examples
--------
>>> from cryocare import backends
>>> backends.current() in backends.BACKENDS
True
>>> backends.check(backends.current()) == backends.current()
True
>>> backends.check("theano")
Traceback (most recent call last):
...
cryocare.errors.InputError: unknown Keras backend 'theano'; expected one of tensorflow, torch, jax
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["BACKENDS", "available", "current", "check", "select", "enable_cpu_kernels",
           "tensorflow_onednn", "warn_slow_cpu_kernels", "precision_runs", "computes_on_gpu",
           "compiled_inference", "no_grad", "gpu_free_memory", "cpu_count"]

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "torch", "jax")
#: TensorFlow reads this once, at import: "1" runs convolutions in oneDNN. Unset, TensorFlow
#: turns oneDNN on only for CPUs with AVX-512 VNNI/BF16, AVX-VNNI or AMX; everywhere else
#: (AVX2-only CPUs: many laptops, AMD Zen 2/3 servers) its convolutions run in Eigen.
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
_EXTRA = {"tensorflow": "tensorflow", "torch": "cryocare-ng[torch]", "jax": "cryocare-ng[jax]"}


def available() -> list[str]:
    """Backends whose framework is installed (found, not imported)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def _configured() -> str:
    """The backend Keras will pick when it is imported."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        name = json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    return name or "tensorflow"


def current() -> str:
    """The backend Keras runs on (if imported) or will run on (if not yet imported)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return _configured()


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask: ``taskset``, a batch system), at least 1.

    Examples
    --------
    >>> cpu_count() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_installed(name: str) -> None:
    if name not in BACKENDS:
        raise InputError(
            f"unknown Keras backend {name!r}; expected one of {', '.join(BACKENDS)}"
        )
    if importlib.util.find_spec(name) is None:
        raise InputError(
            f"Keras backend {name!r} is not installed (pip install {_EXTRA[name]})"
        )


def check(name: str) -> str:
    """Check that the backend ``name`` is known, installed and the one Keras uses.

    Returns ``name``; raises :class:`~cryocare.errors.InputError` otherwise.
    """
    _check_installed(name)
    running = current()
    if running != name:
        state = "runs on" if "keras" in sys.modules else "is set up for"
        raise InputError(
            f"Keras {state} the {running!r} backend, not {name!r}; set the environment "
            f"variable KERAS_BACKEND={name} before Python imports Keras"
        )
    return name


def select(name: str) -> str:
    """Make Keras use backend ``name``: for applications, before Keras is imported.

    Sets ``KERAS_BACKEND`` in this process' environment (the command line's
    ``--backend`` does this); a library should call :func:`check` instead.
    Raises :class:`~cryocare.errors.InputError` when the backend is unknown or
    not installed, or when Keras is already running on another backend.
    """
    _check_installed(name)
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = name
    return check(name)


def enable_cpu_kernels() -> bool:
    """For applications: have TensorFlow run its CPU convolutions in oneDNN.

    TensorFlow turns oneDNN on by itself only on CPUs with AVX-512
    VNNI/BF16, AVX-VNNI or AMX; on an AVX2-only CPU its 3-D convolutions then
    run in Eigen, about 3x slower (a depth-3 U-Net training step on 16 × 32³,
    one core: 4.9 s in Eigen, 1.7 s in oneDNN's AVX2 kernels). This sets
    ``TF_ENABLE_ONEDNN_OPTS=1`` in this process' environment unless the
    user set it, and must run before TensorFlow is imported (the command
    line does it; a library should leave the choice to its user, see
    :func:`warn_slow_cpu_kernels`). Returns whether oneDNN will be used.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault(ONEDNN_VARIABLE, "1")
    return os.environ.get(ONEDNN_VARIABLE, "").strip().lower() in ("1", "true")


def tensorflow_onednn() -> bool | None:
    """Whether the imported TensorFlow runs its CPU kernels in oneDNN; None if not imported."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without this probe
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


@functools.cache
def warn_slow_cpu_kernels() -> bool:
    """Log once per process when TensorFlow computes on the CPU without oneDNN.

    Returns whether it warned. Nothing is changed: the advice is to set
    ``TF_ENABLE_ONEDNN_OPTS=1`` before TensorFlow is imported.
    """
    if current() != "tensorflow" or tensorflow_onednn() is not False:
        return False
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return False
    log.warning("TensorFlow runs its CPU convolutions without oneDNN here (it turns oneDNN on "
                "by itself only for CPUs with AVX-512 VNNI/BF16 or AMX): about 3x slower on an "
                "AVX2 CPU. Set the environment variable %s=1 before TensorFlow is imported "
                "(the cryocare command line does)", ONEDNN_VARIABLE)
    return True


@functools.cache
def computes_on_gpu() -> bool:
    """Whether the Keras backend computes on a GPU (it sees one); read once per process."""
    backend = current()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
    except Exception as error:  # noqa: BLE001 - a broken device stack computes nowhere else
        log.debug("could not list the GPUs of %s: %s", backend, error)
    return False


def precision_runs(policy: str) -> bool:
    """Whether the device Keras computes on has convolution kernels for a mixed ``policy``.

    ``"float32"`` always runs. ``"mixed_bfloat16"`` does not everywhere: oneDNN
    has no bfloat16 convolution below AVX-512 (an AVX2-only CPU, or
    ``ONEDNN_MAX_CPU_ISA=AVX2``) and TensorFlow then fails when the network
    runs. One tiny 3-D convolution is run once per process and policy.
    """
    if policy == "float32":
        return True
    return _precision_runs(current(), policy)


@functools.cache
def _precision_runs(backend: str, policy: str) -> bool:
    import keras
    import numpy as np

    try:
        inputs = keras.Input(shape=(8, 8, 8, 1))
        outputs = keras.layers.Conv3D(2, 3, padding="same", dtype=policy)(inputs)
        keras.Model(inputs, outputs).predict_on_batch(np.zeros((1, 8, 8, 8, 1), "float32"))
    except Exception as error:  # noqa: BLE001 - any failure means: no kernel here
        log.debug("no %s convolution on this device (%s)", policy,
                  str(error).strip().splitlines()[0] if str(error).strip() else error)
        return False
    return True


# --------------------------------------------------------------- inference plumbing
class _Forward:
    """``model`` on a list of inputs, for ``tf.function``.

    A callable object, not a lambda: TensorFlow counts traces per code object and
    warns of "excessive retracing" when the parts' lambdas, one trace each, share one.
    """

    def __init__(self, model: keras.Model):
        self.model = model

    def __call__(self, inputs: list[Any]) -> Any:
        import tensorflow as tf

        # bfloat16 fields arrive as their bits (uint16): DLPack has no bfloat16
        inputs = [tf.bitcast(x, tf.bfloat16) if x.dtype == tf.uint16 else x for x in inputs]
        return self.model(inputs if len(inputs) > 1 else inputs[0], training=False)


def compiled_inference(model: keras.Model) -> Any:
    """A function of a list of NumPy inputs giving the model's output(s) as NumPy arrays.

    On TensorFlow one traced function for all shapes, whose inputs and outputs
    are shared with NumPy without a copy; elsewhere Keras' ``predict_on_batch``.
    """
    import keras
    import numpy as np

    if keras.backend.backend() != "tensorflow":
        def call(inputs: list[np.ndarray]) -> Any:
            return model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
        return call
    import tensorflow as tf

    # one trace for every box shape (retracing per shape cost seconds per prediction)
    spec = [tf.TensorSpec((None,) * (len(t.shape) - 1) + tuple(t.shape[-1:]),
                          "uint16" if t.dtype == "bfloat16" else t.dtype)
            for t in model.inputs]
    traced = tf.function(_Forward(model), input_signature=[spec], jit_compile=False)

    def shared(array: np.ndarray) -> Any:
        # DLPack and __array__ share the buffers (convert_to_tensor and .numpy() copy them);
        # DLPack knows no bfloat16 (an ml_dtypes type to NumPy): its bits go as uint16
        if array.dtype.name == "bfloat16":
            array = array.view(np.uint16)
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())

    several = len(model.outputs) > 1

    def call(inputs: list[np.ndarray]) -> Any:
        out = traced([shared(a) for a in inputs])
        # a model of several outputs gives a list, or TensorFlow's own wrapper of one
        return [np.asarray(t) for t in tf.nest.flatten(out)] if several else np.asarray(out)
    return call




@contextlib.contextmanager
def no_grad():
    """No autograd graph while layers are called outside training (PyTorch records one)."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def gpu_free_memory() -> int | None:
    """Free memory in bytes of the GPU the Keras backend computes on, or None if unknown.

    PyTorch and JAX report it themselves; for TensorFlow, which does not,
    ``nvidia-smi`` is asked (the first visible card). None where no GPU is used
    or nothing answers.
    """
    if not computes_on_gpu():
        return None
    backend = current()
    try:
        if backend == "torch":
            import torch

            return int(torch.cuda.mem_get_info()[0])
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
            return None
        import subprocess

        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        done = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,"
                               "nounits", f"--id={visible}"], capture_output=True, text=True,
                              timeout=10, check=True)
        return int(float(done.stdout.strip().splitlines()[0])) * 2**20
    except Exception as error:  # noqa: BLE001 - unknown is an answer: the caller falls back
        log.debug("could not read the GPU's free memory: %s", error)
        return None
