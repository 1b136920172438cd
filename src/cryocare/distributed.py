"""Prediction on a Dask cluster: many tomograms, or one huge tomogram in chunks.

Two entry points, both with the single-process result:

* :func:`predict_files` denoises many even/odd pairs, one task per tomogram;
  each worker streams its output to disk (:func:`cryocare.predict.denoise_file`).
* :func:`predict_chunked` denoises one tomogram in overlapping chunks along
  Z. A chunk is read with a margin of the network's receptive field and
  starts on a multiple of its pooling factor, so chunked output equals
  whole-volume output (to float32 rounding). The client writes the chunks
  in order with :func:`cryocare.io.open_writer` and keeps only a few in flight.

The cluster is a :class:`distributed.LocalCluster` by default, or whatever
``scheduler`` names: the address of a running scheduler (e.g. one started by
``dask-jobqueue`` on SLURM) or a :class:`distributed.Client`. Workers load the
model from its folder (shared file systems assumed, as on any cluster) and
keep it for later tasks. Needs the ``distributed`` extra:
``pip install "cryocare-ng[distributed]"``.

Examples
--------
On two local worker processes (shown, not run: starting workers takes seconds)::

    from cryocare.distributed import predict_files
    predict_files("model/", [("a_EVN.mrc", "a_ODD.mrc")], ["a_denoised.mrc"], n_workers=2)
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import io
from .config import PredictOptions
from .errors import InputError

__all__ = ["cluster_client", "predict_files", "predict_chunked"]

log = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def cluster_client(scheduler=None, *, n_workers: int = 2, processes: bool = True,
                   timeout: str = "30s") -> Iterator[Any]:
    """A :class:`distributed.Client`: given, connected to ``scheduler``, or on a new local cluster.

    Connecting to a scheduler address gives up after ``timeout``. A local
    cluster (``n_workers`` workers of one thread each, no dashboard) is closed
    on exit; a given client or remote scheduler is left running.
    """
    try:
        import distributed
    except ImportError:
        raise InputError("distributed prediction needs dask.distributed; install it with "
                         "pip install 'cryocare-ng[distributed]'") from None
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = distributed.Client(str(scheduler), timeout=timeout)
        except OSError as error:
            raise InputError(f"scheduler {scheduler}: cannot connect ({error})") from None
        with client:
            yield client
        return
    if n_workers < 1:
        raise InputError(f"n_workers: expected at least 1, got {n_workers}")
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                  processes=processes, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@functools.lru_cache(maxsize=2)
def _cached_model(directory: str, stamp: float):
    from .modelfiles import load_model

    return load_model(directory)


def _load_model(directory: str):
    """The model in ``directory``, loaded once per worker (reloaded if it changes)."""
    with _LOAD_LOCK:
        return _cached_model(directory, os.stat(Path(directory) / "config.json").st_mtime)


def _predict_file(model_dir: str, even: str, odd: str, output: str, overwrite: bool,
                  options: PredictOptions) -> str:
    from .predict import denoise_file

    return str(denoise_file(_load_model(model_dir), even, odd, output, options,
                            overwrite=overwrite))


def _predict_region(model_dir: str, even: str, odd: str, read: tuple[int, int],
                    keep: tuple[int, int], options: PredictOptions):
    even_data, odd_data, _ = io.read_pair(even, odd, mmap=True)
    model = _load_model(model_dir)
    result = model.denoise(even_data[read[0]:read[1]], odd_data[read[0]:read[1]], options)
    return result[keep[0] - read[0]:keep[1] - read[0]]


def predict_files(
    model: str | os.PathLike,
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    outputs: Sequence[str | os.PathLike],
    *,
    scheduler=None,
    n_workers: int = 2,
    processes: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    options: PredictOptions | None = None,
    **settings: Any,
) -> list[Path]:
    """Denoise many even/odd pairs on a Dask cluster, one task per tomogram.

    Parameters
    ----------
    model : path
        Model folder (readable by every worker).
    pairs : sequence of (even, odd) paths
        The tomograms, e.g. from :func:`cryocare.halves.find_halves`.
    outputs : sequence of paths
        One output file per pair.
    scheduler : str or distributed.Client, optional
        Scheduler address or client; None starts a local cluster.
    n_workers, processes : int, bool
        Size and kind of the local cluster (ignored with ``scheduler``).
    overwrite : bool
        Replace existing outputs.
    progress : bool
        Progress bar over tomograms.
    options : PredictOptions, optional
        How each worker predicts (:class:`cryocare.config.PredictOptions`;
        ``memory`` is per worker); ``settings`` change single options.

    Returns
    -------
    list of Path
        The outputs, in the order of ``pairs``.
    """
    # the workers show no progress bars: the client has one over the work
    options = PredictOptions.merged(options, **settings, progress=False)
    outputs = [Path(o) for o in outputs]
    if len(outputs) != len(pairs):
        raise InputError(f"expected one output per pair, got {len(outputs)} outputs for "
                         f"{len(pairs)} pairs")
    for output in outputs:
        io.check_output(output, overwrite=overwrite)
    model_dir = str(Path(model).resolve())
    with cluster_client(scheduler, n_workers=n_workers, processes=processes) as client:
        import distributed

        futures = [client.submit(_predict_file, model_dir, str(Path(e).resolve()),
                                 str(Path(o).resolve()), str(out.resolve()), overwrite,
                                 options, pure=False)
                   for (e, o), out in zip(pairs, outputs, strict=True)]
        with tqdm(total=len(futures), desc="tomograms", unit="tomogram",
                  disable=not progress) as bar:
            for future in distributed.as_completed(futures):
                log.info("denoised %s", future.result())
                bar.update(1)
    return outputs


def predict_chunked(
    model: str | os.PathLike,
    even: str | os.PathLike,
    odd: str | os.PathLike,
    output: str | os.PathLike,
    *,
    chunk: int = 64,
    scheduler=None,
    n_workers: int = 2,
    processes: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    options: PredictOptions | None = None,
    **settings: Any,
) -> Path:
    """Denoise one tomogram in overlapping chunks of ``chunk`` slices on a Dask cluster.

    Parameters are those of :func:`predict_files`, plus ``chunk`` (slices per
    task, rounded up to the network's pooling factor). With
    ``normalize="image"`` the statistics are computed once, over the whole
    tomogram, so every chunk uses the same. At most two chunks per worker are
    in flight; the client writes them in order, so its memory holds a few
    chunks, never the tomogram.

    Returns
    -------
    Path
        The output file.
    """
    from . import nets
    from .normalize import compute_normalization
    from .tiling import plan_tiles

    # the workers show no progress bars: the client has one over the work
    options = PredictOptions.merged(options, **settings, progress=False)
    output = Path(output)
    io.check_output(output, overwrite=overwrite)
    model_dir = str(Path(model).resolve())
    even, odd = str(Path(even).resolve()), str(Path(odd).resolve())
    even_data, odd_data, info = io.read_pair(even, odd, mmap=True)
    loaded = _load_model(model_dir)
    config, config_normalization = loaded.config, loaded.normalization
    if options.normalize == "image" or config_normalization is None:
        options = options.replace(normalize=compute_normalization([even_data, odd_data]))
    depth = info.shape[0]
    # A tile plan along Z; the worker's model pads a chunk at the far end itself, so
    # reads stop at the last slice.
    plan = plan_tiles((depth,), tile_shape=(max(int(chunk), 1),), halo=nets.halo(config),
                      multiple_of=nets.multiple_of(config))
    regions = [((t.read[0].start, min(depth, t.read[0].stop)), (t.write[0].start, t.write[0].stop))
               for t in plan.tiles]
    log.info("predicting %s in %d chunks of %d slices (+%d margin)", even, len(regions),
             plan.tile_shape[0], plan.halo)
    with cluster_client(scheduler, n_workers=n_workers, processes=processes) as client, \
            io.open_writer(output, info.shape, like=info, overwrite=overwrite,
                           label=f"CARE denoised from {Path(even).name}") as writer, \
            tqdm(total=depth, desc="predicting", unit="slice", disable=not progress) as bar:
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})) or n_workers)
        pending: collections.deque = collections.deque()
        for read, keep in regions:
            pending.append(client.submit(_predict_region, model_dir, even, odd, read, keep,
                                         options, pure=False))
            if len(pending) >= window:
                _write_next(pending, writer, bar)
        while pending:
            _write_next(pending, writer, bar)
    return output


def _write_next(pending: collections.deque, writer, bar) -> None:
    slab = pending.popleft().result()
    writer.write(slab)
    bar.update(len(slab))

