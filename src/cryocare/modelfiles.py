"""Models in every format: name, check without Keras, load.

Every face of cryocare (the command line, STAR files, the cryoCARE scripts,
notebooks) loads models through :func:`load_model`, so each of them takes
each format:

* a cryocare model folder, as :meth:`cryocare.model.CAREModel.save` writes it
  (``config.json`` with ``"format": "cryocare-model"``);
* a cryoCARE 0.3.0 model: the ``<model_name>.tar.gz`` archive that
  ``cryoCARE_train.py`` (and RELION 5's denoising job) writes, or the folder
  it was packed from;
* ``"pretrained"`` (or ``"pretrained:NAME"``): a general model shipped with
  the package (:mod:`cryocare.pretrained`). A folder that happens to be
  called ``pretrained`` is reached as ``./pretrained``. With ``wedge=``
  (the tilt range of the data), :func:`load_model` pairs the model with
  the shipped restorer ``"pretrained:wedge"`` (:mod:`cryocare.isotropic`);
* a saved :class:`cryocare.isotropic.WedgeRestorer` (``restoration.json``
  beside ``denoiser/``, ``restorer/`` and, with the shipped restorer, ``refiner/``).

:func:`inspect_model` checks that a model is there and complete, and reads
what the command line must know before anything heavy happens (the
dimensionality, the network configuration), without importing Keras: a bad
model path fails in a fraction of a second.

Examples
--------
>>> import json, tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> inspect_model(folder / "missing")
Traceback (most recent call last):
...
cryocare.errors.InputError: .../missing: no such model (expected a cryocare model folder, \
a cryoCARE .tar.gz archive or folder, or 'pretrained')
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .modelformat import FORMAT, WEIGHTS

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from .model import CAREModel

__all__ = ["ModelSource", "for_wedge", "inspect_model", "load_model", "with_wedge",
           "refiner_for", "PRETRAINED", "PRETRAINED_REFINER", "PRETRAINED_WEDGE", "RESTORER"]

#: The spec that names the shipped general model.
PRETRAINED = "pretrained"
#: ``ModelSource.kind`` of a saved two-scale wedge restoration (denoiser and restorer).
RESTORER = "cryocare-wedge"


@dataclass(frozen=True)
class ModelSource:
    """A model found on disk (or in the package), checked but not loaded.

    Attributes
    ----------
    spec : str
        What the user gave.
    path : Path
        The model folder or archive.
    kind : {"cryocare", "cryoCARE-0.3.0", "pretrained", "cryocare-wedge"}
        Its format (``"cryocare-wedge"``: a saved
        :class:`cryocare.isotropic.WedgeRestorer`, denoiser and restorer).
    n_dim : int
        2 or 3: what the model restores.
    config : dict
        Its network configuration as stored (CareConfig keys for cryocare
        models, CSBDeep keys for cryoCARE 0.3.0 models).
    """

    spec: str
    path: Path
    kind: str
    n_dim: int
    config: dict[str, Any] = field(default_factory=dict, repr=False)


def _pretrained_path(spec: str) -> Path:
    name = spec.partition(":")[2] or "general"
    try:
        from . import pretrained
    except ImportError:  # pragma: no cover - the package data is part of cryocare
        raise InputError(f"{spec}: no pretrained models are installed with this cryocare") \
            from None
    return pretrained.model_path(name)


def _json(path: Path, text: str | bytes, what: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except ValueError as error:
        raise InputError(f"{path}: unreadable {what} ({error})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: {what} is not a JSON object")
    return values


def _n_dim(path: Path, config: dict[str, Any]) -> int:
    n_dim = config.get("n_dim", 3)
    if n_dim not in (2, 3):
        raise InputError(f"{path}: expected a model for 2-D or 3-D images, found n_dim={n_dim!r}")
    return int(n_dim)


def _inspect_folder(spec: str, path: Path, kind: str) -> ModelSource:
    meta_path = path / "config.json"
    if meta_path.is_file():
        meta = _json(meta_path, meta_path.read_text(), "model description")
        if meta.get("format") == FORMAT:
            if not (path / WEIGHTS).is_file():
                raise InputError(f"{path}: incomplete cryocare model folder ({WEIGHTS} is "
                                 f"missing)")
            config = meta.get("config") or {}
            return ModelSource(spec, path, kind, _n_dim(path, config), config)
        folder = path
    else:  # the folder cryoCARE packed: <path>/<model_name>/config.json
        inner = [p for p in path.iterdir() if (p / "config.json").is_file()]
        if len(inner) != 1:
            raise InputError(f"{path}: not a model folder (expected config.json of a cryocare "
                             f"model, or one cryoCARE model folder inside, found {len(inner)})")
        folder = inner[0]
    config = _json(folder / "config.json", (folder / "config.json").read_text(),
                   "CSBDeep config.json")
    missing = [n for n in ("norm.json", "weights_best.h5") if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{path}: incomplete cryoCARE model folder ({', '.join(missing)} "
                         f"missing)")
    return ModelSource(spec, path, "cryoCARE-0.3.0", _n_dim(path, config), config)


def _inspect_archive(spec: str, path: Path) -> ModelSource:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name): m for m in tar.getmembers() if m.isfile()}
            configs = [name for name in members if name.name == "config.json"]
            if len(configs) != 1:
                raise InputError(f"{path}: expected one config.json in the cryoCARE model "
                                 f"archive, found {len(configs)}")
            folder = configs[0].parent
            missing = [n for n in ("norm.json", "weights_best.h5") if folder / n not in members]
            if missing:
                raise InputError(f"{path}: incomplete cryoCARE model archive "
                                 f"({', '.join(missing)} missing)")
            stream = tar.extractfile(members[configs[0]])
            text = stream.read() if stream is not None else b""
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable cryoCARE model archive (.tar.gz: {error})") \
            from None
    config = _json(path, text, "CSBDeep config.json in the archive")
    return ModelSource(spec, path, "cryoCARE-0.3.0", _n_dim(path, config), config)


def _inspect_restorer(spec: str, path: Path) -> ModelSource:
    """A saved :class:`cryocare.isotropic.WedgeRestorer`: its denoiser's config, its binning."""
    from .isotropic import read_description

    description = read_description(path)
    denoiser = _inspect_folder(spec, path / "denoiser", "cryocare")
    _inspect_folder(spec, path / "restorer", "cryocare")
    config = {**denoiser.config, "wedge_binning": description.get("binning", 1)}
    return ModelSource(spec, path, RESTORER, 3, config)


def inspect_model(spec: str | os.PathLike) -> ModelSource:
    """Find and check a model without loading it (no Keras import).

    Parameters
    ----------
    spec : path or str
        A cryocare model folder, a cryoCARE 0.3.0 archive (``.tar.gz``) or
        folder, or ``"pretrained"`` / ``"pretrained:NAME"``.

    Returns
    -------
    ModelSource

    Raises
    ------
    InputError
        The model is missing, incomplete or unreadable; the message names it.
    """
    text = os.fspath(spec)
    if text == PRETRAINED or text.startswith(PRETRAINED + ":"):
        return _inspect_folder(text, _pretrained_path(text), PRETRAINED)
    path = Path(text)
    if path.is_dir():
        from .isotropic import is_restorer_folder

        if is_restorer_folder(path):
            return _inspect_restorer(text, path)
        return _inspect_folder(text, path, "cryocare")
    if path.is_file():
        return _inspect_archive(text, path)
    raise InputError(f"{path}: no such model (expected a cryocare model folder, a cryoCARE "
                     f".tar.gz archive or folder, or 'pretrained')")


def load_model(spec: str | os.PathLike | ModelSource, *, weights: str = "best",
               wedge: Any = None) -> Any:
    """Load a model in any format (see the module docstring) on any Keras backend.

    Parameters
    ----------
    spec : path, str or ModelSource
        What :func:`inspect_model` takes, or what it returned.
    weights : {"best", "last"}
        The weights with the lowest validation loss (default) or those after
        the last epoch.
    wedge : str, path, (min, max), Wedge or None
        The tilt range of the data to restore (``"-60,60"`` or a ``.tlt``
        file, :func:`cryocare.wedge.parse_wedge`): restore the missing wedge
        too. The result is a :class:`cryocare.isotropic.WedgeRestorer`:
        ``"pretrained"`` denoises with the shipped general model and
        restores the wedge with the shipped restorer
        (``"pretrained:wedge"``); a Noise2Noise model of your own (any
        format) denoises, the shipped restorer restores the wedge; a
        restorer (``wedge_binning`` > 1) restores the wedge of what the
        general model denoised; a saved WedgeRestorer takes this range. The
        log warns when the range lies outside the ±40° to ±70° the shipped
        restorer was trained on. A model trained with the ``"wedge"``
        objective at full resolution restores on its own (a CAREModel).

    Returns
    -------
    CAREModel or WedgeRestorer
    """
    if wedge is not None:
        spec = for_wedge(spec, wedge)
    source = spec if isinstance(spec, ModelSource) else inspect_model(spec)
    if source.kind == RESTORER:
        from .isotropic import WedgeRestorer

        return WedgeRestorer.load(source.path, weights=weights, wedge=wedge)
    if source.kind == "cryoCARE-0.3.0":
        from .compat import load_archive

        model = load_archive(source.path, weights=weights)
    else:
        from .model import CAREModel

        model = CAREModel.load(source.path, weights=weights)
    return model if wedge is None else _with_restorer(model, wedge, weights=weights)


def with_wedge(model: Any, wedge: Any, *, weights: str = "best") -> Any:
    """A loaded ``model`` made to restore the missing wedge of data with the tilt range ``wedge``.

    A :class:`cryocare.isotropic.WedgeRestorer` takes the range; a restorer
    (``wedge_binning`` > 1) is paired with the shipped general model as its
    denoiser; a Noise2Noise model with the shipped restorer
    (``"pretrained:wedge"``); a model trained with the ``"wedge"``
    objective at full resolution is returned as it is.
    """
    if hasattr(model, "with_wedge"):  # a WedgeRestorer
        return model.with_wedge(wedge)
    return _with_restorer(model, wedge, weights=weights)


def _with_restorer(model: CAREModel, wedge: Any, *, weights: str) -> Any:
    """``model`` as a wedge restoration: paired with the shipped general model or restorer."""
    from .isotropic import WedgeRestorer

    if model.config.n_dim != 3:
        raise InputError("wedge: the model restores 2-D images; the missing wedge is 3-D")
    if model.config.wedge_binning > 1:  # a restorer: the general model denoises
        return WedgeRestorer(load_model(PRETRAINED), model, wedge,
                             refiner=refiner_for(model, weights=weights))
    if model.config.train_objective in ("wedge", "supervised"):
        return model  # restores the wedge at full resolution on its own
    log.info("the model denoises; the shipped restorer (%s) restores the missing wedge",
             PRETRAINED_WEDGE)
    restorer = load_model(PRETRAINED_WEDGE, weights=weights)
    return WedgeRestorer(model, restorer, wedge, refiner=refiner_for(restorer, weights=weights))


def refiner_for(restorer: CAREModel, *, weights: str = "best") -> CAREModel | None:
    """The shipped refiner (``"pretrained:wedge-refiner"``) for the shipped restorer (it
    learnt from that restorer's output, and from a fine-tuned one's still fits); None for
    any other restorer."""
    source = getattr(restorer, "source", None)
    shipped = _pretrained_path(PRETRAINED_WEDGE)
    if source is None or Path(source).resolve() != shipped.resolve():
        return None
    return load_model(PRETRAINED_REFINER, weights=weights)


#: The shipped wedge restorer and refiner, and the tilt range (degrees) of their family.
PRETRAINED_WEDGE = "pretrained:wedge"
PRETRAINED_REFINER = "pretrained:wedge-refiner"
_WEDGE_FAMILY = (40.0, 70.0)


def for_wedge(spec: str | os.PathLike | ModelSource, wedge: Any) -> ModelSource:
    """The model to restore data with the tilt range ``wedge``: ``"pretrained"`` becomes
    ``"pretrained:wedge"`` (the log warns about a range outside its training family);
    any other 3-D model is checked and kept (:func:`load_model` pairs a Noise2Noise one
    with the shipped restorer).

    Examples
    --------
    >>> for_wedge("pretrained", "-60,60").spec
    'pretrained:wedge'
    """
    from .wedge import parse_wedge

    wedge = parse_wedge(wedge)
    text = spec.spec if isinstance(spec, ModelSource) else os.fspath(spec)
    if text == PRETRAINED:
        low, high = _WEDGE_FAMILY
        if not (low <= -wedge.min_angle <= high and low <= wedge.max_angle <= high):
            log.warning("tilt range %g..%g: the pretrained wedge restorer was trained on ranges "
                        "from ±%g° to ±%g°; expect less outside them", wedge.min_angle,
                        wedge.max_angle, low, high)
        return inspect_model(PRETRAINED_WEDGE)
    source = spec if isinstance(spec, ModelSource) else inspect_model(spec)
    if source.n_dim != 3:
        raise InputError(f"{text}: restores 2-D images; the missing wedge is 3-D")
    return source
