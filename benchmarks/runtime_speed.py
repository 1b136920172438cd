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

With ``--tta-margins`` it measures instead, on a model trained for
``--budget`` seconds (``cryocare.recipe.train_on_pair``, from ``--init``, default
random weights) on a
seeded simulated tomogram of ``--sim-shape`` (kept in ``--model-dir`` and
reused), what decides two prediction defaults:

- item 5, TTA: PSNR against the noiseless volume of the even/odd average
  denoised without flips and averaged over subsets of the 8 flips;
- item 2, margins: the largest difference between tiled and untiled
  prediction, relative to the output's standard deviation, when every
  ``--core``-sized tile reads a margin of ``m`` voxels (on the pooling
  grid) instead of the whole receptive field.

Run, then write the table of all runs in ``--out``::

    python benchmarks/runtime_speed.py --label avx512
    ONEDNN_MAX_CPU_ISA=AVX2 taskset -c 0 python benchmarks/runtime_speed.py --label avx2-1core
    python benchmarks/runtime_speed.py --report
    python benchmarks/runtime_speed.py --shape 16,32,32 --repeats 1 --out /tmp/rt   # smoke test
    python benchmarks/runtime_speed.py --tta-margins --budget 180 --model-dir /tmp/rt-model
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


def engines_for(name: str, config, only: str | None = None) -> dict:
    """name -> compiled network, for every engine that runs here (or just ``only``)."""
    from cryocare import nets, runtime

    def wanted(key: str) -> bool:
        return only is None or key == only

    model = nets.build(config)
    found = {}
    if wanted("keras-f32"):
        found["keras-f32"] = runtime.compile(model, engine="keras")
    if wanted("keras-bf16"):
        twin = nets.build(config.replace(train_precision="mixed_bfloat16"))
        twin.set_weights(model.get_weights())
        found["keras-bf16"] = runtime.compile(twin, engine="keras")
    here = runtime.available()
    if "onnxruntime" in here and wanted("onnxruntime-f32"):
        found["onnxruntime-f32"] = runtime.compile(model, engine="onnxruntime")
    if "openvino" in here:
        if wanted("openvino-f32"):
            found["openvino-f32"] = runtime.compile(model, engine="openvino")
        if wanted("openvino-bf16"):
            bf16 = runtime.compile(model, engine="openvino", precision="bfloat16")
            if bf16.precision == "bfloat16":
                found["openvino-bf16"] = bf16
    return found


def measure(name: str, *, shape: tuple[int, ...], batch: int, repeats: int,
            measure_memory: bool = True) -> dict:
    from cryocare.config import CareConfig

    config = CareConfig(**NETWORKS[name])
    engines = engines_for(name, config)
    x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
    reference = engines["keras-f32"](x)
    scale = float(reference.std())
    times: dict[str, list[float]] = {key: [] for key in engines}
    cpu: dict[str, list[float]] = {key: [] for key in engines}
    errors, failed = {}, {}
    for key, network in list(engines.items()):
        try:
            errors[key] = float(np.abs(network(x) - reference).max() / scale)  # also warm-up
        except Exception as error:  # noqa: BLE001 - e.g. bfloat16 under an ISA cap
            failed[key] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            del engines[key], times[key], cpu[key]
    order = list(engines)
    for round_ in range(repeats):
        for key in order[round_ % len(order):] + order[:round_ % len(order)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            engines[key](x)
            times[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    voxels = x.size / 1e6
    result = {"network": name, "config": NETWORKS[name], "engines": {}, "failed": failed}
    for key, values in times.items():
        result["engines"][key] = {
            "mvox_s_median": voxels / statistics.median(values),
            "mvox_s_best": voxels / min(values),
            "seconds": values,
            "cpu_seconds": cpu[key],
            # per round, Keras float32's time over this engine's: paired, so that load
            # from other processes during one round cancels
            "speedup_paired_median": float(np.median(
                np.asarray(times["keras-f32"]) / np.asarray(values))),
            "max_rel_error": errors[key],
            "threads": engines[key].threads,
        }
        if key.startswith("openvino"):
            result["engines"][key]["kernels"] = openvino_kernels(engines[key])
        if measure_memory:
            result["engines"][key]["memory"] = memory(name, key, shape=shape, batch=batch)
    return result


def memory_probe(name: str, engine: str, *, shape: tuple[int, ...], batch: int) -> dict:
    """Peak resident memory added by one forward pass (run in a fresh process).

    The kernel's peak (VmHWM) is reset just before the pass (``clear_refs``),
    so the import and compile peaks do not count; the input and output
    arrays are counted.
    """
    from cryocare.config import CareConfig

    def status(key: str) -> int:
        with open("/proc/self/status") as file:
            return next(int(line.split()[1]) * 1024 for line in file if line.startswith(key))

    engines = engines_for(name, CareConfig(**NETWORKS[name]), only=engine)
    network = engines[engine]
    x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
    network(x[:, :16, :16, :16])  # compiled, warmed up
    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")
    network(x)
    added = status("VmHWM:") - before
    return {"peak_added_bytes": added, "bytes_per_voxel": added / x.size}


def memory(name: str, engine: str, *, shape: tuple[int, ...], batch: int) -> dict | None:
    import subprocess
    import sys

    command = [sys.executable, __file__, "--memory-probe", name, engine,
               "--shape", ",".join(map(str, shape)), "--batch", str(batch)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    import keras
    import onnxruntime
    import openvino

    shape = tuple(int(v) for v in args.shape.split(","))
    results = [measure(name, shape=shape, batch=args.batch, repeats=args.repeats,
                       measure_memory=not args.no_memory)
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
    lines = ["# Inference engines: throughput (Mvoxel/s of output, median of the rounds)", "",
             "In brackets: speed relative to keras-f32, the median over rounds of the ratio "
             "within a round (paired: load from other processes during a round cancels); "
             "largest deviation from keras-f32 relative to its output's std; peak memory "
             "added by one pass per voxel of the batch.", ""]
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
            keras_times = np.asarray(result["engines"]["keras-f32"]["seconds"])
            for key in engines:
                entry = result["engines"].get(key)
                if entry is None:
                    cells.append("–")
                    continue
                speed = entry["mvox_s_median"]
                paired = float(np.median(keras_times / np.asarray(entry["seconds"])))
                peak = (entry.get("memory") or {}).get("bytes_per_voxel")
                cells.append(f"{speed:.2f} ({paired:.2f}×, err "
                             f"{entry['max_rel_error']:.0e}"
                             + (f", {peak:.0f} B/voxel" if peak is not None else "") + ")")
            base[result["network"]] = result["engines"]
            lines.append(f"| {result['network']} | " + " | ".join(cells) + " |")
        for result in data["results"]:
            entries = result["engines"]
            if "cpu_seconds" in entries["keras-f32"]:
                keras_cpu = np.asarray(entries["keras-f32"]["cpu_seconds"])
                ratios = {key: np.median(keras_cpu / np.asarray(e["cpu_seconds"]))
                          for key, e in entries.items()}
                lines.append(f"\n{result['network']}, CPU time relative to keras-f32 (paired "
                             f"median; free of other processes' load): " + ", ".join(
                                 f"{key} {ratio:.2f}×" for key, ratio in ratios.items()))
        if "diffusion" in base and "unet2" in base:
            ratios = {key: base["diffusion"][key]["mvox_s_median"]
                      / base["unet2"][key]["mvox_s_median"]
                      for key in engines if key in base["diffusion"] and key in base["unet2"]}
            lines += ["", "diffusion / U-Net depth 2, same engine: " + ", ".join(
                f"{key} {ratio:.2f}×" for key, ratio in ratios.items())]
        failed = {f"{r['network']} {key}": why for r in data["results"]
                  for key, why in r.get("failed", {}).items()}
        if failed:
            lines += ["", "Failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items())]
        kernels = {key: entry.get("kernels") for r in data["results"]
                   for key, entry in r["engines"].items() if entry.get("kernels")}
        if kernels:
            lines += ["", "OpenVINO convolution kernels: " + "; ".join(
                f"{key}: {', '.join(value)}" for key, value in kernels.items())]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------- TTA and tile margins
#: Flip subsets (axes of a (Z, Y, X) volume; () is the identity). Two flips of
#: an axis pair are a 180° rotation about the third axis.
FLIP_SETS = {
    "1 (none)": [()],
    "2: +X": [(), (2,)],
    "2: +Y": [(), (1,)],
    "2: +Z": [(), (0,)],
    "2: +XYZ (point reflection)": [(), (0, 1, 2)],
    "4: +X, Y, XY": [(), (2,), (1,), (1, 2)],
    "4: +X, Z, XZ": [(), (2,), (0,), (0, 2)],
    "4: +Y, Z, YZ": [(), (1,), (0,), (0, 1)],
    "4: +XY, XZ, YZ (rotations)": [(), (1, 2), (0, 2), (0, 1)],
    "8 (all)": [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)],
}


def trained_model(shape: tuple[int, ...], *, seed: int, budget: float, folder: Path,
                  init: str = "none", network: tuple[int, int] | None = None):
    """A model trained with the recipe on a simulated tomogram (cached in ``folder``).

    ``network`` = (depth, filters) fixes the U-Net (no fitting to the machine's speed).
    """
    from cryocare import recipe
    from cryocare.model import CAREModel
    from cryocare.simulate import simulate_tomogram

    data = simulate_tomogram(shape, seed=seed)
    if (folder / "model").exists():
        return CAREModel.load(folder / "model"), data, None
    start = time.perf_counter()
    chosen = recipe.DEFAULT_RECIPE
    if network is not None:
        chosen = chosen.override(config=chosen.config.replace(unet_n_depth=network[0],
                                                              unet_n_first=network[1]))
    model = recipe.train_on_pair(data.even, data.odd, budget=budget, seed=seed, init=init,
                                 recipe=chosen, fit=network is None)
    seconds = time.perf_counter() - start
    model.save(folder / "model")
    return model, data, seconds


def tta_gains(model, data) -> dict:
    """PSNR (dB) against the noiseless volume for every subset in :data:`FLIP_SETS`."""
    from cryocare.metrics import psnr

    outputs, seconds = {}, {}
    for axes in FLIP_SETS["8 (all)"]:
        even = np.ascontiguousarray(np.flip(data.even, axes))
        odd = np.ascontiguousarray(np.flip(data.odd, axes))
        start = time.perf_counter()
        outputs[axes] = np.flip(model.denoise(even, odd), axes)
        seconds[axes] = time.perf_counter() - start
    raw = psnr(data.clean, (data.even + data.odd) / 2)
    scores = {name: psnr(data.clean, np.mean([outputs[a] for a in axes], axis=0))
              for name, axes in FLIP_SETS.items()}
    single = {str(axes): psnr(data.clean, outputs[axes]) for axes in outputs}
    return {"raw_psnr": raw, "psnr": scores,
            "gain_db": {name: value - scores["1 (none)"] for name, value in scores.items()},
            "psnr_each_flip": single,
            "seconds_per_flip": float(statistics.median(seconds.values()))}


def margin_errors(model, data, *, core: int, engine: str) -> dict:
    """Tiled-vs-untiled difference (relative to the output's std) for each tile margin."""
    from cryocare import nets, runtime

    network = runtime.compile(model.keras_model, engine=engine)
    norm = model.normalization
    volume = ((data.even - norm.mean) / norm.std).astype(np.float32)
    full = network(volume[None])[0]
    scale = float(full.std())
    grid = nets.multiple_of(model.config)
    halo = nets.halo(model.config)
    exact = -(-halo // grid) * grid
    if any(size % grid or size % core for size in volume.shape) or core % grid:
        raise SystemExit(f"--core {core} and the volume {volume.shape} must be multiples of "
                         f"the pooling grid {grid} (and the volume of the core)")
    starts = [np.arange(0, size, core) for size in volume.shape]
    tiles = [tuple(int(v) for v in point) for point in
             np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, volume.ndim)]
    rows = []
    for margin in range(0, exact + grid, grid):
        worst, total = 0.0, []
        for start in tiles:
            low = [max(0, s - margin) for s in start]
            high = [min(n, s + core + margin) for s, n in zip(start, volume.shape, strict=True)]
            crop = volume[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
            out = network(crop[None])[0]
            inner = tuple(slice(s - a, s - a + core) for s, a in zip(start, low, strict=True))
            target = full[tuple(slice(s, s + core) for s in start)]
            diff = np.abs(out[inner] - target) / scale
            worst = max(worst, float(diff.max()))
            total.append(float(diff.mean()))
        rows.append({"margin": margin, "max_rel": worst,
                     "mean_rel": float(np.mean(total)),
                     **{f"read_per_output_core{c}": ((c + 2 * margin) / c) ** volume.ndim
                        for c in (64, 96, 128)}})
    return {"halo": halo, "exact_margin": exact, "grid": grid, "core": core,
            "tiles": len(tiles), "engine": network.engine, "rows": rows,
            "margin_for": {str(eps): next((r["margin"] for r in rows if r["max_rel"] <= eps),
                                          None) for eps in (1e-3, 1e-4, 1e-5)}}


def tta_margins(args: argparse.Namespace) -> dict:
    shape = tuple(int(v) for v in args.sim_shape.split(","))
    folder = Path(args.model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model, data, seconds = trained_model(shape, seed=args.seed, budget=args.budget,
                                         folder=folder, init=args.init,
                                         network=tuple(args.unet) if args.unet else None)
    config = model.config
    result = {"sim_shape": shape, "seed": args.seed, "budget": args.budget, "init": args.init,
              "training_seconds": seconds, "model": str(folder / "model"),
              "network": {key: getattr(config, key) for key in
                          ("network", "n_dim", "unet_n_depth", "unet_n_first",
                           "unet_kern_size", "unet_n_conv_per_depth", "train_precision")},
              "cpu": cpu_name(), "affinity": sorted(os.sched_getaffinity(0))}
    result["tta"] = tta_gains(model, data)
    result["margins"] = margin_errors(model, data, core=args.core, engine=args.engine)
    return result


def tta_margins_report(data: dict) -> str:
    tta, margins = data["tta"], data["margins"]
    lines = ["# TTA gain and tile margins of a trained network", "",
             f"Simulated tomogram {'×'.join(map(str, data['sim_shape']))}, seed {data['seed']}; "
             f"model: `recipe.train_on_pair(..., budget={data['budget']:.0f}, "
             f"init={data['init']!r})` "
             f"({data['network']}); {data['cpu']}, CPUs {data['affinity']}.", "",
             f"## TTA (raw even/odd average: {tta['raw_psnr']:.2f} dB; one flip of both "
             f"halves: {tta['seconds_per_flip']:.1f} s)", "",
             "| flips | PSNR (dB) | gain over none (dB) |", "|---|---|---|"]
    for name, value in tta["psnr"].items():
        lines.append(f"| {name} | {value:.3f} | {tta['gain_db'][name]:+.3f} |")
    lines += ["", f"## Tile margins (halo {margins['halo']}, exact margin "
                  f"{margins['exact_margin']}, pooling grid {margins['grid']}, "
                  f"{margins['tiles']} tiles of {margins['core']}³, {margins['engine']})", "",
              r"| margin m | max \|tiled − untiled\| / std | mean | "
              "voxels read per output voxel (core 64³ / 96³ / 128³) |", "|---|---|---|---|"]
    for row in margins["rows"]:
        lines.append(f"| {row['margin']} | {row['max_rel']:.1e} | {row['mean_rel']:.1e} | "
                     f"{row['read_per_output_core64']:.2f} / {row['read_per_output_core96']:.2f}"
                     f" / {row['read_per_output_core128']:.2f} |")
    lines += ["", "Smallest margin for a bound ε: " + ", ".join(
        f"ε = {eps}: {m}" for eps, m in margins["margin_for"].items()), ""]
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
    parser.add_argument("--tta-margins", action="store_true",
                        help="measure TTA gain and tile margins on a trained model instead")
    parser.add_argument("--sim-shape", default="64,128,128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=180.0)
    parser.add_argument("--model-dir", default="/tmp/cryocare-runtime-model")
    parser.add_argument("--core", type=int, default=32)
    parser.add_argument("--unet", type=int, nargs=2, metavar=("DEPTH", "FILTERS"),
                        help="train this U-Net instead of the recipe's fitted one")
    parser.add_argument("--init", default="none",
                        help="starting weights of the training (recipe.train_on_pair's init)")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory probes (one fresh process per engine)")
    parser.add_argument("--memory-probe", nargs=2, metavar=("NETWORK", "ENGINE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        shape = tuple(int(v) for v in args.shape.split(","))
        print(json.dumps(memory_probe(*args.memory_probe, shape=shape, batch=args.batch)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tta_margins:
        data = tta_margins(args)
        (args.out / f"tta_margins_{args.label}.json").write_text(json.dumps(data, indent=1))
        text = tta_margins_report(data)
        (args.out / f"tta_margins_{args.label}.md").write_text(text)
        print(text)
        return 0
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
