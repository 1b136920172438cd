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

import importlib.util
import json
import os
import sys
from pathlib import Path

from .errors import InputError

__all__ = ["BACKENDS", "available", "current", "check", "select"]

BACKENDS = ("tensorflow", "torch", "jax")
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
