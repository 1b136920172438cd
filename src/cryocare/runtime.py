"""Fast CPU inference of a trained network: ONNX export, ONNX Runtime or OpenVINO, Keras fallback.

:func:`compile` turns a Keras network (one input channel, one output
channel, channels last, as :mod:`cryocare.nets` builds them) into a
:class:`CompiledNetwork`: a function from a float32 batch ``(n, *spatial)``
to the restored batch of the same shape, the form :mod:`cryocare.predict` calls.
It is run by

- ``"openvino"``: OpenVINO's CPU plugin (float32, or bfloat16 where the CPU
  has it), as fast as TensorFlow or faster, with less memory
  (``docs/runtime.md``); ``engine="auto"`` takes it when installed;
- ``"onnxruntime"``: ONNX Runtime's CPU provider;
- ``"keras"``: the Keras model itself (every backend), the fallback.

The exported engines run an ONNX graph that :func:`export_onnx` writes
straight from the layers and weights (no TensorFlow tracing, so it works
with every Keras backend): channels first, batch and spatial sizes left
open, the channel axis added and removed inside the graph. With
``cache_dir`` the graph is kept there (beside the model's weights) under a
name holding a hash of the weights and architecture, written atomically; a
stale graph is replaced and a corrupt one rebuilt.

Threads: the exported engines use one thread per CPU in the process's
affinity mask (``os.sched_getaffinity``), so ``taskset`` and batch-system
CPU sets are respected; nothing global is changed (no environment
variables; the Keras engine uses the framework's own thread pools as
configured by the caller).

Nothing heavy is imported until a network is compiled.

Examples
--------
>>> import numpy as np
>>> from cryocare.config import CareConfig
>>> from cryocare import nets, runtime
>>> net = nets.build(CareConfig(n_dim=2, unet_n_depth=1, unet_n_first=4))
>>> fast = runtime.compile(net, engine="keras")
>>> fast.engine, fast(np.zeros((2, 8, 12), np.float32)).shape
('keras', (2, 8, 12))
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import cpu_count
from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["ENGINES", "PRECISIONS", "CompiledNetwork", "UnsupportedLayerError", "available",
           "cache_key", "choose_engine", "compile", "export_onnx"]

log = logging.getLogger(__name__)

ENGINES = ("keras", "onnxruntime", "openvino")
PRECISIONS = ("float32", "bfloat16")
OPSET = 17
#: Bumped whenever :func:`export_onnx` writes a different graph for the same network.
EXPORT_VERSION = 1
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
_PROBE = 64  # probe size per axis: a multiple of every pooling factor the nets allow (2**6)
_ALLOCATION = ("bad_alloc", "bad allocation", "Failed to allocate", "out of memory",
               "Cannot allocate")


class UnsupportedLayerError(InputError):
    """The network has a layer that :func:`export_onnx` cannot translate."""


# ------------------------------------------------------------------------ engines
def available() -> list[str]:
    """Engines that can run here: ``"keras"`` always, the exported ones when installed.

    The exported engines also need the ``onnx`` package (to write the graph).
    """
    has_onnx = importlib.util.find_spec("onnx") is not None
    return ["keras"] + [name for name, module in _MODULES.items()
                        if has_onnx and importlib.util.find_spec(module) is not None]


def choose_engine(precision: str = "float32", engines: Sequence[str] | None = None) -> str:
    """The engine ``engine="auto"`` takes: OpenVINO when installed, else Keras.

    Measured (``docs/runtime.md``, U-Net depth 2 and 3, 2 × 64×128×128):
    on an AVX-512 CPU OpenVINO does the same work as TensorFlow 2.21 in
    float32 (CPU time 1.02× faster on one core) and a little less in
    bfloat16 (1.89-1.93× against Keras' 1.82-1.83×); on its AVX2 proxy
    (oneDNN capped, one core) the two are level (1.01-1.05×); on a real
    2-core AVX2 machine issue 18 measured OpenVINO 2.2-2.3× faster. OpenVINO
    also needs 14-19 % (float32) to 30 % (bfloat16) less memory per voxel,
    reports a failed allocation as an error instead of aborting the
    process, and falls back to float32 where bfloat16 cannot run. ONNX
    Runtime's 3-D convolutions run at 0.4-0.5× TensorFlow's, so it is never
    chosen automatically. ``precision`` does not change the choice.
    """
    engines = available() if engines is None else list(engines)
    return "openvino" if "openvino" in engines else "keras"


# ---------------------------------------------------------------------- the network
@dataclass
class CompiledNetwork:
    """A compiled network: call it on a float32 batch ``(n, *spatial)``.

    Attributes
    ----------
    engine : str
        ``"keras"``, ``"onnxruntime"`` or ``"openvino"``.
    precision : str
        Arithmetic actually used (``"float32"`` or ``"bfloat16"``).
    n_dim : int
        Spatial dimensions.
    threads : int
        Threads of the exported engines (None for Keras: the framework's own).
    graph : Path or None
        The cached ONNX graph, if any.
    handle : object
        What runs it, for inspection: the ``keras.Model``, the
        ``onnxruntime.InferenceSession`` or the ``openvino.CompiledModel``.
    """

    engine: str
    precision: str
    n_dim: int
    threads: int | None
    graph: Path | None
    handle: Any = field(repr=False)
    _run: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != self.n_dim + 1:
            raise InputError(f"expected a batch of {self.n_dim}-D images, shape (n, "
                             f"{', '.join('…' * self.n_dim)}), got shape {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:  # an engine's request object serves one call at a time
            try:
                result = self._run(batch)
            except RuntimeError as error:
                if any(key in str(error) for key in _ALLOCATION):
                    raise MemoryError(f"{self.engine}: {error}") from error
                raise
        if result.shape != batch.shape:
            raise RuntimeError(f"{self.engine} returned shape {result.shape} for a batch of "
                               f"shape {batch.shape}")
        return result


def compile(keras_model: keras.Model, *, engine: str = "auto", precision: str = "float32",
            cache_dir: str | os.PathLike | None = None, n_dim: int | None = None,
            num_threads: int | None = None) -> CompiledNetwork:
    """A fast batch function running ``keras_model`` (see the module docstring).

    Parameters
    ----------
    keras_model : keras.Model
        One input and one output of shape ``(batch, *spatial, 1)``.
    engine : {"auto", "keras", "onnxruntime", "openvino"}
        ``"auto"`` takes :func:`choose_engine`, and Keras when the network
        has a layer that cannot be exported.
    precision : {"float32", "bfloat16"}
        Arithmetic of the exported engines. ``"bfloat16"`` needs OpenVINO on
        a CPU with AVX-512 BF16 or AMX; elsewhere OpenVINO runs float32 (the
        :attr:`CompiledNetwork.precision` says which). The Keras engine computes in
        the model's own dtype policy.
    cache_dir : path, optional
        Folder for the exported graph (created if missing); None exports in memory.
    n_dim : int, optional
        Spatial dimensions; checked against the model's input when given.
    num_threads : int, optional
        Threads of the exported engines; default :func:`threads`.

    Returns
    -------
    CompiledNetwork
    """
    model_dim = _model_n_dim(keras_model)
    if n_dim is not None and n_dim != model_dim:
        raise InputError(f"n_dim={n_dim}, but the network takes {model_dim}-D images")
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    if num_threads is not None and int(num_threads) < 1:
        raise InputError(f"num_threads: expected a positive number, got {num_threads!r}")
    choices = ("auto", *ENGINES)
    if engine not in choices:
        raise InputError(f"engine: expected one of {', '.join(choices)}, got {engine!r}")
    here = available()
    if engine not in ("auto", "keras") and engine not in here:
        raise InputError(f"engine {engine!r} is not installed (pip install 'cryocare-ng[fast]')")
    auto = engine == "auto"
    if auto:
        engine = choose_engine(precision, here)
    if engine == "keras":
        return _keras_network(keras_model, model_dim)
    try:
        graph, path = _graph(keras_model, cache_dir)
    except UnsupportedLayerError as error:
        if not auto:
            raise
        log.info("running the network in Keras: %s", error)
        return _keras_network(keras_model, model_dim)
    count = int(num_threads) if num_threads is not None else cpu_count()
    if engine == "onnxruntime" and precision != "float32":
        raise InputError("ONNX Runtime runs float32 only; use engine='openvino' for bfloat16")
    try:
        if engine == "onnxruntime":
            run, handle = _onnxruntime(graph, count)
        else:
            run, handle, precision = _openvino(graph, count, precision)
    except Exception as error:  # noqa: BLE001 - an engine that cannot run here
        if not auto:
            raise
        log.warning("%s cannot run the network here, running it in Keras: %s", engine, error)
        return _keras_network(keras_model, model_dim)
    log.info("network runs in %s (%s, %d threads)", engine, precision, count)
    return CompiledNetwork(engine=engine, precision=precision, n_dim=model_dim, threads=count,
                           graph=path, handle=handle, _run=run)


def _model_n_dim(keras_model: keras.Model) -> int:
    shapes = [tuple(tensor.shape) for tensor in (*keras_model.inputs, *keras_model.outputs)]
    if len(shapes) != 2 or len(shapes[0]) not in (4, 5) or shapes[0][-1] != 1 \
            or shapes[1][-1] != 1 or len(shapes[1]) != len(shapes[0]):
        raise InputError(f"expected a network with one input and one output of one channel, "
                         f"shapes (batch, *spatial, 1); got {shapes}")
    return len(shapes[0]) - 2


def _keras_network(keras_model: keras.Model, n_dim: int) -> CompiledNetwork:
    import keras

    def run(batch: np.ndarray) -> np.ndarray:
        result = keras_model.predict_on_batch(batch[..., None])
        return np.asarray(keras.ops.convert_to_numpy(result), dtype=np.float32)[..., 0]

    policy = getattr(keras_model, "dtype_policy", None)
    compute = getattr(policy, "compute_dtype", "float32")
    precision = "bfloat16" if compute == "bfloat16" else "float32"
    return CompiledNetwork(engine="keras", precision=precision, n_dim=n_dim, threads=None,
                           graph=None, handle=keras_model, _run=run)


def _onnxruntime(graph: bytes, count: int) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = count
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return run, session


def _openvino(graph: bytes, count: int,
              precision: str) -> tuple[Callable[[np.ndarray], np.ndarray], Any, str]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(graph)
    # No pinning: on a shared machine a pinned thread waits for its busy core (measured
    # stalls of 3-6× a pass under load); unpinned costs nothing on a quiet one.
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": count, "NUM_STREAMS": 1,
                              "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    compiled = None
    if precision == "bfloat16":
        if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            try:
                compiled = core.compile_model(model, "CPU",
                                              {**config, "INFERENCE_PRECISION_HINT": "bf16"})
                _probe(compiled)
            except RuntimeError as error:  # e.g. oneDNN capped below AVX-512 BF16
                compiled = None
                log.warning("OpenVINO cannot run bfloat16 here, running float32: %s",
                            str(error).strip().splitlines()[-1])
        else:
            log.warning("this CPU has no bfloat16 arithmetic; OpenVINO runs float32")
    if compiled is None:
        precision = "float32"
        compiled = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return request.infer({0: batch}, share_inputs=True, share_outputs=False)[0]

    return run, compiled, precision


def _probe(compiled: Any) -> None:
    """Run a small batch once: with oneDNN capped below the CPU's ISA
    (``ONEDNN_MAX_CPU_ISA``), OpenVINO compiles some bfloat16 graphs that then
    fail, or return nothing, when run."""
    n_dim = len(compiled.inputs[0].get_partial_shape()) - 1
    batch = np.zeros((1,) + (_PROBE,) * n_dim, np.float32)
    result = compiled.create_infer_request().infer({0: batch})[0]
    if result.shape != batch.shape or not np.isfinite(result).all():
        raise RuntimeError(f"a probe of shape {batch.shape} gave shape {result.shape}")


# ------------------------------------------------------------------------- the cache
def cache_key(keras_model: keras.Model) -> str:
    """SHA-256 of what the exported graph depends on: architecture, weights, exporter.

    Dtype policies are left out: the exported graph is float32 whatever the
    model computes in (mixed-precision variables are float32 too).
    """
    digest = hashlib.sha256()
    config = _without_dtypes(json.loads(keras_model.to_json()))
    digest.update(json.dumps({"config": config, "export": EXPORT_VERSION, "opset": OPSET},
                             sort_keys=True).encode())
    for weight in keras_model.weights:
        value = np.ascontiguousarray(_numpy(weight), dtype=np.float32)
        digest.update(f"{weight.path}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _without_dtypes(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_dtypes(item) for key, item in value.items() if key != "dtype"}
    if isinstance(value, list):
        return [_without_dtypes(item) for item in value]
    return value


def _graph(keras_model: keras.Model, cache_dir: str | os.PathLike | None
           ) -> tuple[bytes, Path | None]:
    """The exported graph, from ``cache_dir`` when it holds a sound one for this model."""
    if cache_dir is None:
        return export_onnx(keras_model), None
    key = cache_key(keras_model)
    folder = Path(cache_dir)
    path = folder / f"runtime-{key[:16]}.onnx"
    if path.exists():
        graph = path.read_bytes()
        if _graph_key(graph) == key:
            log.debug("exported graph from %s", path)
            return graph, path
        log.warning("%s: corrupt or stale exported graph, rebuilding it", path)
    graph = export_onnx(keras_model, key=key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, graph)
    except OSError as error:  # a read-only model folder: run from memory
        log.warning("cannot cache the exported graph in %s: %s", folder, error)
        return graph, None
    for stale in folder.glob("runtime-*.onnx"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return graph, path


def _graph_key(graph: bytes) -> str | None:
    import onnx

    try:
        model = onnx.load_from_string(graph)
    except Exception:  # noqa: BLE001 - any parse failure means a corrupt file
        return None
    return {prop.key: prop.value for prop in model.metadata_props}.get("cryocare.key")


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------- the export
def _numpy(value: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


class _Graph:
    """ONNX nodes and constants under construction (names are unique strings)."""

    def __init__(self):
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: Any, hint: str = "const", dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, *inputs: str, hint: str | None = None, **attributes: Any) -> str:
        from onnx import helper

        output = self.name(hint or kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [output], **attributes))
        return output


def export_onnx(keras_model: keras.Model, *, key: str | None = None) -> bytes:
    """The network as a serialised ONNX model (opset 17), float32, channels first inside.

    The graph's input ``"input"`` and output ``"output"`` have shape
    ``(batch, *spatial)``, all sizes open. Layers translated: convolutions
    and stride-1 transposed convolutions (any kernel, ``"same"``/``"valid"``),
    max-pooling, nearest up-sampling, concatenation, element-wise merges,
    ReLU/sigmoid/tanh activations, identity layers, and the stages of
    :mod:`cryocare.nets.diffusion`. Any other layer raises
    :class:`UnsupportedLayerError`.

    ``key`` is stored in the model's metadata (``cryocare.key``) so a
    cached file can be checked.
    """
    import onnx
    from onnx import TensorProto, helper

    n_dim = _model_n_dim(keras_model)
    graph = _Graph()
    axes = graph.const([1], "axis", np.int64)
    names: dict[int, str] = {id(keras_model.inputs[0]): graph.op("Unsqueeze", "input", axes)}
    pending = [layer for layer in keras_model.layers if not _is_input(layer)]
    while pending:
        progress = False
        for layer in list(pending):
            inputs = _as_list(_layer_tensors(layer, "input"))
            if not all(id(tensor) in names for tensor in inputs):
                continue
            output = _convert(graph, layer, [names[id(tensor)] for tensor in inputs], n_dim)
            names[id(_layer_tensors(layer, "output"))] = output
            pending.remove(layer)
            progress = True
        if not progress:
            raise UnsupportedLayerError(f"cannot order the layers "
                                        f"{', '.join(layer.name for layer in pending)}")
    result = names.get(id(keras_model.outputs[0]))
    if result is None:
        raise UnsupportedLayerError("the network's output is not reached from its input")
    graph.nodes.append(helper.make_node("Squeeze", [result, axes], ["output"]))
    dims = ["batch"] + [f"size_{axis}" for axis in range(n_dim)]
    onnx_graph = helper.make_graph(
        graph.nodes, keras_model.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        initializer=graph.constants)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cryocare.runtime",
                              producer_version=str(EXPORT_VERSION))
    model.ir_version = 8
    helper.set_model_props(model, {"cryocare.key": key or ""})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _layer_tensors(layer: Any, which: str) -> Any:
    try:
        return getattr(layer, which)
    except (AttributeError, ValueError) as error:  # a layer called more than once
        raise UnsupportedLayerError(f"layer {layer.name!r}: {error}") from None


def _convert(graph: _Graph, layer: Any, inputs: list[str], n_dim: int) -> str:
    import keras

    from .nets import diffusion

    L = keras.layers  # noqa: N806
    if isinstance(layer, (L.Conv2D, L.Conv3D, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _conv_layer(graph, layer, inputs[0], n_dim)
    if isinstance(layer, (L.MaxPooling2D, L.MaxPooling3D)):
        if layer.padding != "valid" or layer.data_format != "channels_last":
            raise UnsupportedLayerError(f"layer {layer.name!r}: only 'valid', channels-last "
                                        f"pooling")
        return graph.op("MaxPool", inputs[0], kernel_shape=list(layer.pool_size),
                        strides=list(layer.strides))
    if isinstance(layer, (L.UpSampling2D, L.UpSampling3D)):
        if getattr(layer, "interpolation", "nearest") != "nearest" \
                or layer.data_format != "channels_last":
            raise UnsupportedLayerError(f"layer {layer.name!r}: only nearest, channels-last "
                                        f"up-sampling")
        scales = graph.const([1.0, 1.0, *layer.size], "scales")
        return graph.op("Resize", inputs[0], "", scales, mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if isinstance(layer, L.Concatenate):
        return graph.op("Concat", *inputs, axis=_channels_first_axis(layer.axis, n_dim))
    merges = {L.Add: "Add", L.Subtract: "Sub", L.Multiply: "Mul", L.Maximum: "Max",
              L.Minimum: "Min"}
    for kind, onnx_op in merges.items():
        if isinstance(layer, kind):
            result = inputs[0]
            for other in inputs[1:]:
                result = graph.op(onnx_op, result, other)
            return result
    if isinstance(layer, L.ReLU):
        if layer.max_value is not None or layer.negative_slope or layer.threshold:
            raise UnsupportedLayerError(f"layer {layer.name!r}: only plain ReLU")
        return graph.op("Relu", inputs[0])
    if isinstance(layer, L.Activation):
        return _activation(graph, layer.activation, inputs[0], layer.name)
    if isinstance(layer, (L.Identity, L.Dropout, L.SpatialDropout2D, L.SpatialDropout3D)):
        return inputs[0]
    if isinstance(layer, diffusion.GuideGradient):
        return _guide_gradient(graph, layer, inputs[0])
    if isinstance(layer, diffusion.DiffusionStage):
        return _diffusion_stage(graph, layer, inputs, n_dim)
    raise UnsupportedLayerError(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX "
                                f"translation")


def _channels_first_axis(axis: int, n_dim: int) -> int:
    axis = axis % (n_dim + 2)
    return 0 if axis == 0 else 1 if axis == n_dim + 1 else axis + 1


def _activation(graph: _Graph, activation: Any, name: str, layer: str) -> str:
    import keras

    kind = keras.activations.serialize(activation)
    kind = kind if isinstance(kind, str) else kind.get("config", {}).get("name", kind)
    ops = {"linear": None, "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    if kind not in ops:
        raise UnsupportedLayerError(f"layer {layer!r}: activation {kind!r} has no ONNX "
                                    f"translation")
    return name if ops[kind] is None else graph.op(ops[kind], name)


def _same_pads(kernel: Sequence[int], dilation: Sequence[int]) -> list[int]:
    """ONNX pads (all begins, then all ends) of Keras' stride-1 ``"same"`` padding."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


def _conv(graph: _Graph, x: str, weights: np.ndarray, bias: np.ndarray | None, *,
          padding: str, dilation: Sequence[int], hint: str) -> str:
    """Stride-1 correlation of ``x`` with Keras-layout ``weights`` ``(k..., in, out)``."""
    n_dim = weights.ndim - 2
    kernel = list(weights.shape[:n_dim])
    onnx_weights = np.transpose(weights, (n_dim + 1, n_dim, *range(n_dim)))
    inputs = [x, graph.const(onnx_weights, f"{hint}_w")]
    if bias is not None:
        inputs.append(graph.const(bias, f"{hint}_b"))
    pads = _same_pads(kernel, dilation) if padding == "same" else [0] * (2 * n_dim)
    return graph.op("Conv", *inputs, hint=hint, kernel_shape=kernel, pads=pads,
                    dilations=list(dilation), strides=[1] * n_dim)


def _conv_layer(graph: _Graph, layer: Any, x: str, n_dim: int) -> str:
    import keras

    transposed = isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose))
    dilation = list(layer.dilation_rate)
    if (layer.data_format != "channels_last" or any(s != 1 for s in layer.strides)
            or layer.padding not in ("same", "valid") or getattr(layer, "groups", 1) != 1
            or (transposed and (any(d != 1 for d in dilation) or layer.padding != "same"
                                or any(k % 2 == 0 for k in layer.kernel_size)))):
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: only stride-1, ungrouped, channels-last convolutions "
            f"(transposed: 'same', odd kernel, no dilation)")
    weights = _numpy(layer.kernel).astype(np.float32)
    if transposed:  # stride 1: correlation with the flipped kernel, channels swapped
        weights = np.flip(weights, axis=tuple(range(n_dim)))
        weights = np.swapaxes(weights, n_dim, n_dim + 1)
    bias = _numpy(layer.bias).astype(np.float32) if layer.use_bias else None
    out = _conv(graph, x, weights, bias, padding=layer.padding, dilation=dilation,
                hint=layer.name)
    return _activation(graph, layer.activation, out, layer.name)


def _guide_gradient(graph: _Graph, layer: Any, x: str) -> str:
    for kernel in layer._smooth if layer.sigma > 0 else ():
        x = _conv(graph, x, kernel, None, padding="same", dilation=[1] * layer.n_dim,
                  hint=f"{layer.name}_smooth")
    total = None
    for kernel in layer._diff:
        slope = _conv(graph, x, kernel, None, padding="same", dilation=[1] * layer.n_dim,
                      hint=f"{layer.name}_diff")
        square = graph.op("Mul", slope, slope)
        total = square if total is None else graph.op("Add", total, square)
    return total


def _diffusion_stage(graph: _Graph, layer: Any, inputs: list[str], n_dim: int) -> str:
    """``x - K^T (w * phi(K x)) - lambda (x - x0)`` with ``phi`` by table, as in Keras."""
    if layer.influence is not None:
        raise UnsupportedLayerError(f"layer {layer.name!r}: a replaced influence function")
    x, x0, grad_sq = inputs
    kernel = layer.zero_mean_kernel()
    response = _conv(graph, x, _numpy(kernel), None, padding="same", dilation=[1] * n_dim,
                     hint=f"{layer.name}_k")
    # The table of DiffusionStage.table_influence, the same one.
    reach, step, size, intercept, slope = layer.influence_pieces()
    channel = (1, layer.filters) + (1,) * n_dim
    z = graph.op("Clip", response, graph.const(-reach, "low"), graph.const(reach, "high"))
    scaled = graph.op("Mul", graph.op("Add", z, graph.const(reach, "reach")),
                      graph.const(np.float32(1 / step), "inv_step"))
    index = graph.op("Cast", graph.op("Floor", scaled), to=6)  # int32; scaled >= 0
    index = graph.op("Min", index, graph.const(size - 2, "last", np.int32))
    offsets = np.arange(layer.filters, dtype=np.int32).reshape(channel) * (size - 1)
    index = graph.op("Add", index, graph.const(offsets, "offsets", np.int32))
    # GatherElements on the flattened index, not Gather: OpenVINO 2026.4's multi-threaded
    # Gather returns wrong values at the end of tensors of ~2**25 elements or more.
    shape = graph.op("Shape", z)
    flat = graph.op("Reshape", index, graph.const([1, -1], "row", np.int64))

    def lookup(values: Any, hint: str) -> str:
        table = graph.const(_numpy(values).reshape(1, -1), hint)
        return graph.op("Reshape", graph.op("GatherElements", table, flat, axis=1), shape)

    low, rise = lookup(intercept, "intercept"), lookup(slope, "slope")
    flux = graph.op("Add", low, graph.op("Mul", rise, z))
    if layer.use_weights:
        edge = graph.const(-_numpy(layer.edge()).reshape(channel), "edge")
        flux = graph.op("Mul", flux, graph.op("Exp", graph.op("Mul", grad_sq, edge)))
    change = _conv(graph, flux, _numpy(layer.adjoint_kernel(kernel)), None, padding="same",
                   dilation=[1] * n_dim, hint=f"{layer.name}_kt")
    reaction = graph.const(_numpy(layer.reaction()), "reaction")
    pulled = graph.op("Mul", reaction, graph.op("Sub", x, x0))
    return graph.op("Sub", graph.op("Sub", x, change), pulled)
