"""The application shell around every command: logging, errors, a quiet backend start.

Every face of the command line (``cryocare <command>``, its ``--star`` and
``--config`` modes, the cryoCARE 0.3.0 scripts) runs its work through
:func:`run`, so all of them report errors the same way: one line on stderr
and exit status 2 for bad input or an existing output, 1 for a system error,
130 when interrupted.

The deep-learning backend is loaded by :func:`load_backend` *after* the
inputs have been checked, with its start-up chatter (TensorFlow's absl and
CUDA lines, which it writes straight to file descriptor 2) captured and
replayed as debug log records: they show with ``-v`` only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

from ..backends import ONEDNN_VARIABLE, current, enable_cpu_kernels
from ..errors import CryocareError

__all__ = ["configure_logging", "load_backend", "run"]

log = logging.getLogger("cryocare")
_backend_log = logging.getLogger("cryocare.backend")


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr: INFO by default, DEBUG with ``verbose``, WARNING with ``quiet``.

    The command line is an application, so it may configure logging; the
    library itself never does.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(level)


@contextlib.contextmanager
def _captured_fd2() -> Iterator[list[str]]:
    """Send what is written to file descriptor 2 to a list of lines instead."""
    lines: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


@contextlib.contextmanager
def _tensorflow_without_jax(backend: str) -> Iterator[None]:
    """Import TensorFlow without JAX: TF Lite imports JAX, if installed, for its converter.

    That costs 0.7 s and ~110 MB of the command's start-up on TensorFlow (measured with the
    ``jax`` extra installed) and serves nothing cryocare does. While TensorFlow is first
    imported here, ``import jax`` fails as if JAX were absent (TF Lite catches that); after,
    JAX imports as usual. A process that imported JAX already, or TensorFlow, is left alone.
    """
    block = backend == "tensorflow" and not {"tensorflow", "jax"} & set(sys.modules)
    if block:
        sys.modules["jax"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if block and "jax" in sys.modules and sys.modules["jax"] is None:
            del sys.modules["jax"]


def load_backend(*, device: str | None = None, strict: bool = True) -> str:
    """Import Keras and its backend quietly, and prepare the devices; returns the backend.

    Parameters
    ----------
    device : str, optional
        ``"cpu"``, ``"gpu"`` or ``"gpu:N"``: the device the process computes
        on (the N-th visible GPU); None leaves the choice to the backend.
        Only the command-line process does this: the library never changes
        device visibility.

    Notes
    -----
    On TensorFlow, its C++ log is silenced unless ``-v`` (the command line's
    own messages say what happens; backend errors arrive as exceptions), the
    CPU convolutions run in oneDNN unless the environment says otherwise
    (``TF_ENABLE_ONEDNN_OPTS``; TensorFlow on its own does so only on CPUs
    with AVX-512 VNNI/BF16 or AMX, and is ~3x slower on AVX2 CPUs without
    it), and GPU memory is allocated as needed (memory growth), not
    all at once, so that a shared node's other GPUs and jobs are untouched.
    """
    backend = current()  # KERAS_BACKEND, else keras.json, as Keras will choose
    if backend == "tensorflow" and "tensorflow" not in sys.modules:
        if enable_cpu_kernels():
            log.debug("TensorFlow's CPU convolutions run in oneDNN (%s=1)", ONEDNN_VARIABLE)
        if not _backend_log.isEnabledFor(logging.DEBUG):
            # TensorFlow's C++ log goes to file descriptor 2 for the whole run, not only at
            # import (e.g. oneDNN's "supports DT_INT32 only on platforms with AVX-512" on
            # AVX2 CPUs, or a failed bfloat16 probe); its errors reach us as exceptions.
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if device is not None and backend != "tensorflow" and "keras" not in sys.modules:
        # torch and JAX read the visible CUDA devices when they start.
        index = device.partition(":")[2] or "0"
        os.environ["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else index
    with _captured_fd2() as lines, _tensorflow_without_jax(backend):
        import keras

        backend = keras.backend.backend()
        if backend == "tensorflow":
            _prepare_tensorflow(device, strict)
    for line in lines:
        _backend_log.debug("%s", line)
    return backend


def _prepare_tensorflow(device: str | None, strict: bool) -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        if device == "cpu":
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        elif device is not None and device.startswith("gpu"):
            index = int(device.partition(":")[2] or 0)
            if index >= len(gpus) and not strict:
                log.info("GPU %d is not there (%d visible); computing on %s", index, len(gpus),
                         "the GPUs there are" if gpus else "the CPU")
            elif index >= len(gpus):
                raise CryocareError(f"--device {device}: this machine has {len(gpus)} GPU(s) "
                                    "visible to TensorFlow")
            else:
                tf.config.set_visible_devices(gpus[index], "GPU")
                gpus = [gpus[index]]
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:  # devices were initialised already (e.g. in a notebook)
        log.debug("devices left as they are: %s", error)


def run(prog: str, action: Callable[[], int]) -> int:
    """Run ``action`` and turn every failure into one line on stderr and an exit status."""
    try:
        return action()
    except CryocareError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
