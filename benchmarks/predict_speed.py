"""Prediction speed and peak memory, against cryoCARE 0.3.0 when it is installed.

Measures, each in a fresh process (wall time includes start-up and model
loading, as for a user; peak memory is the process's maximum resident set):

1. voxels/s and peak memory of ``cryocare`` denoising an even/odd pair of
   ``--shape`` (default 256×512×512) with cryoCARE's default network (U-Net
   depth 3, 16 first filters, kernel 3; untrained weights: speed and memory
   do not depend on the weights), for every ``--memory`` budget and every
   ``--precision`` (float32, bfloat16), and the same for cryoCARE 0.3.0's
   ``cryoCARE_predict.py`` if ``benchmarks/reference.py`` finds it
   (``benchmarks/setup_reference.sh`` installs it ``--no-deps`` next to the same
   TensorFlow); otherwise its row is missing;
2. peak memory of ``cryocare`` denoising a ``--big-shape`` float32 pair
   (default 512×1024×1024 = 2 GiB per half) with ``--big-memory`` (default
   450M; TensorFlow, Keras and their libraries add about 800 MiB) and our
   default U-Net (depth 2, 16 filters) in ``--big-precision`` (bfloat16).

``--json FILE`` also writes the results (and the table) to ``FILE``.

Run on a quiet machine::

    python benchmarks/predict_speed.py                       # full size (slow on a CPU)
    python benchmarks/predict_speed.py --memory auto,4.5G --precision bfloat16
    python benchmarks/predict_speed.py --shape 32,64,64 --big-shape 32,128,128 \
        --memory auto,200M --big-memory 100M --skip-reference            # smoke test

Input files go to ``--workdir`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def write_pair(folder: Path, shape: tuple[int, ...], *, seed: int) -> tuple[Path, Path]:
    """Random even/odd halves, written slab by slab (never the whole volume in memory)."""
    from cryocare import io

    rng = np.random.default_rng(seed)
    paths = []
    for half in ("EVN", "ODD"):
        path = folder / f"tomo_{half}.mrc"
        with io.open_writer(path, shape, voxel_size=10.0, overwrite=True) as writer:
            for z in range(0, shape[0], 16):
                n = min(16, shape[0] - z)
                writer.write(rng.normal(size=(n, *shape[1:])).astype(np.float32))
        paths.append(path)
    return paths[0], paths[1]


def make_model(folder: Path, *, depth: int = 3, n_first: int = 16, name: str = "model") -> Path:
    """A U-Net (depth 3, 16 filters, kernel 3 is cryoCARE's default), untrained, saved."""
    from cryocare.config import CareConfig
    from cryocare.model import CAREModel
    from cryocare.normalize import Normalization

    model = CAREModel(CareConfig(unet_n_depth=depth, unet_n_first=n_first, unet_kern_size=3,
                                 seed=0),
                      Normalization(mean=0.0, std=1.0))
    return model.save(folder / name, overwrite=True)


def child(args) -> None:
    """Run inside the measured process, as ``cryocare predict`` does: backend, load, denoise."""
    start = time.perf_counter()
    from cryocare.cli.app import load_backend
    from cryocare.modelfiles import load_model
    from cryocare.predict import denoise_file

    load_backend()  # as the command line: oneDNN's CPU kernels unless the user chose
    from cryocare import io
    from cryocare.config import PredictOptions
    from cryocare.predict import Device, plan_prediction

    model = load_model(args.model)
    options = PredictOptions(memory=None if args.memory == "auto" else args.memory,
                             precision=args.precision, engine=args.engine,
                             streaming={"auto": None, "on": True, "off": False}[args.streaming])
    # the plan denoise_file makes (same inputs, so the same plan): what it reads and runs
    plan = plan_prediction(io.validate(args.even).shape, model.spec(options.engine),
                           options.replace(precision=model._precision(options.precision,
                                                                      options.engine)),
                           images=2, device=Device.current(engine=options.engine))
    denoise_file(model, args.even, args.odd, args.output, options, overwrite=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"wall": wall, "peak_mb": peak, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "read_per_written": plan.read_factor, "streamed": plan.streamed,
                      "separate": plan.separate, "chunk_mb": plan.chunk_bytes / 2**20,
                      "tiles": len(plan.tiles.tiles)}))


def run_ours(model: Path, even: Path, odd: Path, output: Path, memory: str = "auto",
             precision: str = "float32", engine: str = "keras", streaming: str = "auto") -> dict:
    argv = [sys.executable, __file__, "--child", str(model), str(even), str(odd), str(output),
            "--memory", memory, "--precision", precision, "--engine", engine,
            "--streaming", streaming]
    started = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"cryocare prediction failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall"] = time.perf_counter() - started
    return result


def correlation(a: Path, b: Path) -> float:
    """Pearson r of two MRC volumes (read through memory maps)."""
    import mrcfile

    from cryocare.metrics import pearson

    with mrcfile.mmap(a, permissive=True) as ma, mrcfile.mmap(b, permissive=True) as mb:
        return pearson(ma.data, mb.data)


def run_reference(work: Path, even: Path, odd: Path, shape, n_tiles,
                  onednn: str = "default") -> dict | None:
    """cryoCARE 0.3.0: a model archive of cryoCARE's default network, then its prediction.

    ``onednn`` sets ``TF_ENABLE_ONEDNN_OPTS`` for cryoCARE ("0": what TensorFlow
    runs by default on an AVX2-only CPU; "default": TensorFlow decides here).
    """
    try:
        import reference
    except ImportError:
        return None
    if not reference.available():
        return None
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn != "default":
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    # A model of the same network; one tiny epoch (the weights do not change the speed).
    patch = max(8, min(64, (min(shape) // 2 - 1) // 8 * 8))  # cryoCARE: < half the volume
    try:
        reference.extract([str(even)], [str(odd)], work / "ref_train_data",
                          patch_shape=patch, num_slices=40, n_normalization_samples=1,
                          env=env)  # the statistics do not change the speed
        trained = reference.train(work / "ref_train_data", work / "ref_model", epochs=1,
                                  steps_per_epoch=2, batch_size=4, unet_n_depth=3,
                                  unet_n_first=16, unet_kern_size=3, env=env)
        run = reference.predict(trained.output, [str(even)], [str(odd)], work / "ref_out",
                                n_tiles=n_tiles, env=env)
    except RuntimeError as error:
        return {"error": f"cryoCARE failed: {str(error).splitlines()[0]}"}
    return {"process_wall": run.wall_time, "peak_mb": run.peak_rss_mb, "onednn": onednn,
            "archive": str(trained.output), "output": str(run.output / even.name)}


def ref_read(shape, n_tiles, *, halo: int = 48, multiple_of: int = 8) -> float:
    """Voxels cryoCARE 0.3.0 reads per voxel written with ``n_tiles`` (CSBDeep's tiling:
    every tile is read with its overlap, CSBDeep's table value 46 for a depth-3 U-Net,
    rounded up to the pooling grid: 48)."""
    read = 1.0
    for n, k in zip(shape, n_tiles, strict=True):
        core = -(-n // k)
        read *= sum(min(n, (i + 1) * core + halo) - max(0, i * core - halo)
                    for i in range(k)) / n
    return read


def _plan_words(run: dict) -> str:
    if "tiles" not in run:
        return ""
    how = f"level by level, {run['chunk_mb']:.0f} MiB chunks" if run["streamed"] else "one graph"
    return (f"{run['tiles']} tile(s), {how}"
            + (", halves apart" if run.get("separate") else ""))


def speed_table(results: dict, ref_tiles) -> str:
    """The speed runs as a Markdown table, with ratios to cryoCARE when it ran."""
    voxels = int(np.prod(results["shape"]))
    ref = results["reference"]
    ran = ref is not None and "error" not in ref
    lines = [f"speed: {tuple(results['shape'])} even+odd, cryoCARE's default U-Net "
             "(depth 3, 16 filters)", "",
             "| run | voxels/s | wall [s] | peak RSS [MiB] | speed-up | memory ratio | "
             "read/written | plan |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    if ran:
        lines.append(f"| cryoCARE 0.3.0, n_tiles {tuple(ref_tiles)} | "
                     f"{voxels / ref['process_wall']:.3g} | {ref['process_wall']:.1f} | "
                     f"{ref['peak_mb']:.0f} | 1 | 1 | {ref_read(results['shape'], ref_tiles):.2f} "
                     f"| {int(np.prod(ref_tiles))} tiles per half |")
    for run in results["speed"]:
        ratios = (f"{ref['process_wall'] / run['process_wall']:.2f}x | "
                  f"{run['peak_mb'] / ref['peak_mb']:.2f}") if ran else " | "
        lines.append(f"| cryocare --memory {run['memory']} --precision {run['precision']} "
                     f"--engine {run['engine']} streaming {run.get('streaming', 'auto')} | "
                     f"{voxels / run['process_wall']:.3g} | {run['process_wall']:.1f} | "
                     f"{run['peak_mb']:.0f} | {ratios} | {run.get('read_per_written', 0):.2f} | "
                     f"{_plan_words(run)} |")
    agreement = [f"--memory {run['memory']} --precision {run['precision']} --engine "
                 f"{run['engine']} streaming {run.get('streaming', 'auto')}: r = {run['r']:.6f}"
                 for run in results["speed"] if "r" in run]
    if agreement:
        lines += ["", "agreement with cryoCARE's own prediction of the same archive: "
                  + "; ".join(agreement)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=_shape, default=(256, 512, 512))
    parser.add_argument("--memory", default="auto", help="budget(s) for the speed run, "
                        "comma-separated, e.g. auto,4G (auto: half the free memory)")
    parser.add_argument("--precision", default="float32,bfloat16",
                        help="arithmetic(s) of our forward pass, comma-separated; every "
                             "budget runs with every precision")
    parser.add_argument("--big-shape", type=_shape, default=(512, 1024, 1024))
    parser.add_argument("--big-memory", default="450M",
                        help="budget of the big run; TensorFlow itself adds about 800 MiB")
    parser.add_argument("--big-depth", type=int, default=2, help="U-Net depth of the big run")
    parser.add_argument("--big-n-first", type=int, default=16,
                        help="U-Net filters of the big run (default: our default network)")
    parser.add_argument("--big-precision", default="bfloat16",
                        help="arithmetic of the big run (bfloat16 fits 1.7x larger tiles)")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-speed", action="store_true", help="only the big run")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--ref-tiles", type=_shape, default=(1, 2, 2),
                        help="cryoCARE's n_tiles (it cannot choose them itself)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--engine", default="keras",
                        help="inference engine(s), comma-separated: keras, auto, openvino, "
                             "onnxruntime")
    parser.add_argument("--reference-onednn", default="default", choices=("default", "0", "1"),
                        help="TF_ENABLE_ONEDNN_OPTS for cryoCARE; 0 is what TensorFlow "
                             "runs on an AVX2-only CPU")
    parser.add_argument("--streaming", default="auto",
                        help="the Keras engine's U-Net run level by level (on), as one graph "
                             "(off) or as it chooses (auto); comma-separated")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "EVEN", "ODD", "OUT"))
    args = parser.parse_args(argv)
    if args.child:
        args.model, args.even, args.odd, args.output = args.child
        child(args)
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="cryocare-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"shape": args.shape, "speed": [], "reference": None, "big": None}
    try:
        even, odd = write_pair(work, args.shape, seed=0)
        skip = args.skip_reference or args.skip_speed
        ref = None if skip else run_reference(work, even, odd, args.shape, args.ref_tiles,
                                              args.reference_onednn)
        results["reference"] = ref
        # Same network and weights as cryoCARE: its archive, when it ran.
        model = Path(ref["archive"]) if ref and "archive" in ref else make_model(work)
        for budget in () if args.skip_speed else args.memory.split(","):
            for precision in args.precision.split(","):
                for engine, streaming in itertools.product(args.engine.split(","),
                                                           args.streaming.split(",")):
                    run = run_ours(model, even, odd, work / "ours.mrc", budget, precision,
                                   engine, streaming)
                    if ref and "output" in ref:
                        run["r"] = correlation(work / "ours.mrc", Path(ref["output"]))
                    results["speed"].append({"memory": budget, "precision": precision,
                                             "engine": engine, "streaming": streaming, **run})
        if results["speed"]:
            results["table"] = speed_table(results, args.ref_tiles)
            print(results["table"])
        if ref is None and not skip:
            print("cryoCARE 0.3.0: not installed (benchmarks/setup_reference.sh)")
        elif ref is not None and "error" in ref:
            print(f"cryoCARE 0.3.0: {ref['error']}")
        if not args.skip_big:
            for path in (even, odd):
                path.unlink()
            even, odd = write_pair(work, args.big_shape, seed=1)
            size = 4 * int(np.prod(args.big_shape)) / 2**30
            big_model = make_model(work, depth=args.big_depth, n_first=args.big_n_first,
                                   name="model_big")
            big = run_ours(big_model, even, odd, work / "big.mrc", args.big_memory,
                           args.big_precision, args.engine.split(",")[0])
            results["big"] = {"shape": args.big_shape, "memory": args.big_memory,
                              "depth": args.big_depth, "n_first": args.big_n_first,
                              "precision": args.big_precision, **big}
            print(f"\nmemory: {args.big_shape} float32 ({size:.2f} GiB per half), U-Net depth "
                  f"{args.big_depth} / {args.big_n_first} filters, --memory {args.big_memory} "
                  f"--precision {args.big_precision}: peak RSS {big['peak_mb']:.0f} MiB, "
                  f"wall {big['process_wall']:.1f} s")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
