"""Throughput of the inference engines of :mod:`cryocare.runtime` (issue 18, item 3).

For each network (``unet2``: the default U-Net, depth 2, 16 filters;
``unet3``: cryoCARE's, depth 3, 16 filters; ``diffusion``: the default
learned diffusion network) one forward pass of a ``--batch`` × ``--shape``
float32 batch (default 2 × 64×128×128: even + odd tile) is timed in

- ``keras-f32``: ``CAREModel._network("float32")``'s way (``predict_on_batch``);
- ``keras-bf16``: the mixed-bfloat16 twin, as ``CAREModel._network("bfloat16")``;
- ``onnxruntime-f32``, ``openvino-f32``, ``openvino-bf16``: :func:`cryocare.runtime.compile`.

Untrained, seeded weights (speed does not depend on them). Every engine is
warmed up once, then the engines take turns, ``--repeats`` rounds, so that
load from other processes hits all of them alike; the median and the best
are kept, in Mvoxel/s of output. The largest deviation from keras-f32,
relative to its output's standard deviation, is recorded too.

Run, then write the table of all runs in ``--out``::

    python benchmarks/runtime_speed.py --label avx512
    ONEDNN_MAX_CPU_ISA=AVX2 taskset -c 0 python benchmarks/runtime_speed.py --label avx2-1core
    python benchmarks/runtime_speed.py --report
    python benchmarks/runtime_speed.py --shape 16,32,32 --repeats 1 --out /tmp/rt   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "runtime"
NETWORKS = {
    "unet2": {"unet_n_depth": 2, "unet_n_first": 16},
    "unet3": {"unet_n_depth": 3, "unet_n_first": 16},
    "diffusion": {"network": "diffusion"},
}


def cpu_flags() -> list[str]:
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("flags"):
                return line.split(":", 1)[1].split()
    return []


def cpu_name() -> str:
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def openvino_kernels(network) -> list[str]:
    """Primitive types of OpenVINO's compiled convolutions (shows the ISA it took)."""
    model = network.handle.get_runtime_model()
    kinds = set()
    for op in model.get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            kinds.add(info["primitiveType"].astype(str))
    return sorted(kinds)


def engines_for(name: str, config) -> dict:
    """name -> (callable on (n, *spatial), note) for every engine that runs here."""
    from cryocare import nets, runtime

    model = nets.build(config)
    twin = nets.build(config.replace(train_precision="mixed_bfloat16"))
    twin.set_weights(model.get_weights())
    found = {"keras-f32": runtime.compile(model, engine="keras"),
             "keras-bf16": runtime.compile(twin, engine="keras")}
    here = runtime.available()
    if "onnxruntime" in here:
        found["onnxruntime-f32"] = runtime.compile(model, engine="onnxruntime")
    if "openvino" in here:
        found["openvino-f32"] = runtime.compile(model, engine="openvino")
        bf16 = runtime.compile(model, engine="openvino", precision="bfloat16")
        if bf16.precision == "bfloat16":
            found["openvino-bf16"] = bf16
    return found


def measure(name: str, *, shape: tuple[int, ...], batch: int, repeats: int) -> dict:
    from cryocare.config import CareConfig

    config = CareConfig(**NETWORKS[name])
    engines = engines_for(name, config)
    x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
    reference = engines["keras-f32"](x)
    scale = float(reference.std())
    times: dict[str, list[float]] = {key: [] for key in engines}
    errors = {}
    for key, network in engines.items():
        errors[key] = float(np.abs(network(x) - reference).max() / scale)  # also the warm-up
    order = list(engines)
    for round_ in range(repeats):
        for key in order[round_ % len(order):] + order[:round_ % len(order)]:
            start = time.perf_counter()
            engines[key](x)
            times[key].append(time.perf_counter() - start)
    voxels = x.size / 1e6
    result = {"network": name, "config": NETWORKS[name], "engines": {}}
    for key, values in times.items():
        result["engines"][key] = {
            "mvox_s_median": voxels / statistics.median(values),
            "mvox_s_best": voxels / min(values),
            "seconds": values,
            "max_rel_error": errors[key],
            "threads": engines[key].threads,
        }
        if key.startswith("openvino"):
            result["engines"][key]["kernels"] = openvino_kernels(engines[key])
    return result


def run(args: argparse.Namespace) -> dict:
    import keras

    import onnxruntime
    import openvino

    shape = tuple(int(v) for v in args.shape.split(","))
    results = [measure(name, shape=shape, batch=args.batch, repeats=args.repeats)
               for name in args.networks.split(",")]
    return {
        "label": args.label, "shape": shape, "batch": args.batch, "repeats": args.repeats,
        "cpu": cpu_name(), "flags": " ".join(cpu_flags()),
        "affinity": sorted(os.sched_getaffinity(0)),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(),
                     "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__},
        "results": results,
    }


def report(folder: Path) -> str:
    lines = ["# Inference engines: throughput (Mvoxel/s of output, median of the rounds)", ""]
    for path in sorted(folder.glob("speed_*.json")):
        data = json.loads(path.read_text())
        lines += [f"## {data['label']}: {data['cpu']}, CPUs {data['affinity']}, "
                  f"ONEDNN_MAX_CPU_ISA={data['ONEDNN_MAX_CPU_ISA']}", "",
                  f"batch {data['batch']} × {'×'.join(map(str, data['shape']))}, "
                  f"{data['repeats']} alternating rounds; {data['versions']}", ""]
        engines = sorted({key for r in data["results"] for key in r["engines"]},
                         key=lambda k: ("keras-f32", "keras-bf16", "onnxruntime-f32",
                                        "openvino-f32", "openvino-bf16").index(k))
        lines.append("| network | " + " | ".join(engines) + " |")
        lines.append("|---" * (len(engines) + 1) + "|")
        base = {}
        for result in data["results"]:
            cells = []
            keras_speed = result["engines"]["keras-f32"]["mvox_s_median"]
            for key in engines:
                entry = result["engines"].get(key)
                if entry is None:
                    cells.append("–")
                    continue
                speed = entry["mvox_s_median"]
                cells.append(f"{speed:.2f} ({speed / keras_speed:.2f}×, err "
                             f"{entry['max_rel_error']:.0e})")
            base[result["network"]] = result["engines"]
            lines.append(f"| {result['network']} | " + " | ".join(cells) + " |")
        if "diffusion" in base and "unet2" in base:
            lines += ["", "diffusion / U-Net depth 2, same engine: " + ", ".join(
                f"{key} {base['diffusion'][key]['mvox_s_median'] / base['unet2'][key]['mvox_s_median']:.2f}×"
                for key in engines if key in base["diffusion"] and key in base["unet2"])]
        kernels = {key: entry.get("kernels") for r in data["results"]
                   for key, entry in r["engines"].items() if entry.get("kernels")}
        if kernels:
            lines += ["", "OpenVINO convolution kernels: " + "; ".join(
                f"{key}: {', '.join(value)}" for key, value in kernels.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64,128,128")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--networks", default="unet2,unet3,diffusion")
    parser.add_argument("--label", default="this-machine")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true",
                        help="only write speed.md from the speed_*.json in --out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        data = run(args)
        path = args.out / f"speed_{args.label}.json"
        path.write_text(json.dumps(data, indent=1))
        print(f"wrote {path}")
    text = report(args.out)
    (args.out / "speed.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
