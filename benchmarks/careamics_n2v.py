r"""Tomograms without halves: CAREamics Noise2Void against cryocare's zero-shot model.

Each seeded simulated tomogram (``cryocare.simulate.simulate_tomogram``) is
denoised as ONE volume, the average of its even and odd halves, and scored
against the simulator's noiseless volume with
``cryocare.metrics.psnr_affine`` (PSNR after the least-squares affine fit).
The methods:

``raw``
    the input volume itself.
``gaussian``
    ``cryocare.filters.gaussian(volume, sigma=1.0)``.
``ours``
    ``cryocare.load_model("pretrained").predict(volume)`` (model loading
    included in the time).
``n2v`` (CAREamics)
    CAREamics Noise2Void trained on the volume itself, then predicting it.
    The settings are CAREamics' own for 3-D: ``create_advanced_n2v_config``
    with axes ``ZYX``, patches 16x64x64 (those of CAREamics' 3-D N2V
    examples, Flywing and SUPPORT), batch 8 (those examples use 2, but
    CAREamics' configuration warns that batch normalisation wants a batch
    of at least 8; ``--n2v-batch`` changes it), every other parameter at its
    default (UNet depth 2 with 32 filters, about 1.0 M parameters; N2V
    uniform pixel manipulation with ``roi_size`` 11 and 0.2 % of the voxels
    masked; Adam with ReduceLROnPlateau; flips and 90-degree XY rotations;
    8 validation patches taken from the volume; ``num_workers=-1``); only
    ``num_epochs`` (high enough never to be reached) and ``seed=1`` are set.
    Training stops at a budget of CPU time: ``--budgets 180,720`` means 3
    and 12 minutes of all the machine's cores, i.e. 360 and 1440 CPU
    seconds (user + system, of the training process and its data-loader
    worker, counted from the start of training) on 2 cores, so that other
    work on a shared machine does not shrink the budget. One training run
    per volume passes every budget; a Lightning callback saves a checkpoint
    at each and stops at the last (or at ``--max-wall`` wall seconds, which
    the report then says). Each checkpoint predicts the volume with the
    tiling of the same examples: tiles 32x128x128 overlapping 8x48x48,
    batch 1.

Every method runs in a process of its own, one at a time, so that its wall
time, CPU time (user + system, of the process and the children it waited
for, from ``wait4``) and peak resident memory (``ru_maxrss``: the largest
single process; also the peak sum of PSS over the process tree, sampled
every 2 s) are its own and include start-up (imports, model loading).
cryocare's methods run in this interpreter's environment; CAREamics runs in
its own virtual environment (``--careamics-python``), because it needs
torchvision <= 0.26 and so torch 2.11 while cryocare pins torch 2.13.
Scoring happens in this process, outside every timed run.

Set up CAREamics once (``pip install careamics`` replaces the CPU torch
2.13.0 wheel with PyPI's torch 2.11.0, a CUDA build that runs on the CPU)::

    python3.11 -m venv .venv-careamics
    .venv-careamics/bin/pip install torch==2.13.0
    .venv-careamics/bin/pip install careamics==0.3.5   # resolves torch 2.11.0, torchvision 0.26.0

Usage (from the repository root, with cryocare's environment)::

    # both volumes, budgets of 3 and 12 minutes:
    nice -n 5 .venv/bin/python benchmarks/careamics_n2v.py
    nice -n 5 .venv/bin/python benchmarks/careamics_n2v.py --volumes small --budgets 180
    # a variant against structured noise (N2V2, or structN2V masking along X):
    nice -n 5 .venv/bin/python benchmarks/careamics_n2v.py --volumes small --methods n2v \
        --budgets 180 --n2v-variant structn2v-x
    # re-render results.md from results.json:
    .venv/bin/python benchmarks/careamics_n2v.py --report-only

Outputs: ``--out`` (default ``benchmarks/results/careamics``) gets
``results.json`` (every run: PSNR, times, memory, load average before and
after, CAREamics' epochs and steps, versions, machine) and ``results.md``
(the tables); ``careamics_env.txt`` lists the CAREamics environment. The
volumes, outputs and CAREamics checkpoints go to ``--work`` (default a
folder under the system's temporary directory), not into the repository.
``--volumes`` picks among ``small`` (64x128x128, seed 3) and ``large``
(96x256x256, seed 7); results of earlier runs in ``results.json`` are kept
and replaced run by run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "careamics"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "cryocare-careamics-bench"
DEFAULT_CAREAMICS_PYTHON = ROOT / ".venv-careamics" / "bin" / "python"

VOLUMES = {
    "small": {"shape": (64, 128, 128), "seed": 3},
    "large": {"shape": (96, 256, 256), "seed": 7},
}

# CAREamics' 3-D Noise2Void examples (Flywing, SUPPORT in careamics-examples).
N2V_PATCH = (16, 64, 64)
N2V_BATCH = 8  # --n2v-batch; CAREamics' 3-D examples use 2
N2V_TILE = (32, 128, 128)
# --n2v-variant: plain N2V (the default) and two of CAREamics' options against
# structured noise; structN2V's mask is 2-D (YX), "horizontal" masks along X,
# across the simulator's tilt axis (Y), and disables the augmentations as
# CAREamics' create_structn2v_config does.
N2V_VARIANTS = {
    "n2v": {},
    "n2v2": {"use_n2v2": True},
    "structn2v-x": {"struct_n2v_axes": "horizontal", "augmentations": []},
}
N2V_TILE_OVERLAP = (8, 48, 48)

# Earlier measurements already in docs/cli.md (same volume, another session).
TOPAZ_ROWS = {
    "small": [
        ("Topaz `unet-3d-10a` (docs, earlier run)", 26.34, "10 min 1 s", "174 s", "8.8 GB"),
        ("Topaz `unet-3d-20a` (docs, earlier run)", 30.33, "9 min 33 s", "171 s", "8.8 GB"),
    ],
}


# --------------------------------------------------------------------------
# Children: each runs one method on one volume and writes OUT (.npy) and
# OUT.info.json. They import only what their method needs.
# --------------------------------------------------------------------------

def _child_gaussian(inp: str, out: str) -> dict:
    import numpy as np

    from cryocare import filters

    x = np.load(inp)
    t = time.perf_counter()
    y = filters.gaussian(x, sigma=1.0)
    info = {"filter_s": time.perf_counter() - t}
    np.save(out, np.asarray(y, dtype=np.float32))
    return info


def _child_ours(inp: str, out: str) -> dict:
    import numpy as np

    import cryocare

    x = np.load(inp)
    t0 = time.perf_counter()
    model = cryocare.load_model("pretrained")
    t1 = time.perf_counter()
    y = model.predict(x)
    t2 = time.perf_counter()
    np.save(out, np.asarray(y, dtype=np.float32))
    info = {"load_s": t1 - t0, "predict_s": t2 - t1, "cryocare": cryocare.__version__}
    try:  # which pretrained weights ran (the shipped model changes between releases)
        import hashlib

        from cryocare.pretrained import DEFAULT, model_path

        weights = sorted(Path(model_path(DEFAULT)).glob("*.h5"))
        info["pretrained_weights_sha256"] = {
            w.name: hashlib.sha256(w.read_bytes()).hexdigest()[:16] for w in weights}
    except Exception as exc:  # pragma: no cover - informational only
        info["pretrained_weights_sha256"] = f"unavailable: {exc}"
    try:
        import keras

        info["keras"] = keras.__version__
        info["keras_backend"] = keras.backend.backend()
    except Exception:  # pragma: no cover - informational only
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover
        pass
    return info


def _cpu_now() -> float:
    """CPU seconds (user + system) of this process, its reaped and its live children."""
    import psutil

    proc = psutil.Process()
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            pass
    return total


def _child_n2v(inp: str, out: str, budgets: str, workdir: str, batch: int,
               variant: str, max_wall: float) -> dict:
    t_start = time.perf_counter()
    import careamics
    import lightning
    import numpy as np
    import torch
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config
    from lightning.pytorch import Callback

    t_import = time.perf_counter() - t_start
    ncpu = os.cpu_count() or 1
    # A budget of S seconds is S seconds of all the machine's cores: CPU time,
    # so that other work on a shared machine does not shrink it.
    pending = sorted(float(b) * ncpu for b in budgets.split(","))
    ckpt_dir = Path(workdir) / "budget_checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    snapshots: list[dict] = []

    class Budget(Callback):
        def on_train_start(self, trainer, pl_module):
            self.cpu0, self.wall0 = _cpu_now(), time.perf_counter()
            self.setup_cpu, self.setup_wall = self.cpu0, self.wall0 - t_start

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            cpu, wall = _cpu_now() - self.cpu0, time.perf_counter() - self.wall0
            capped = wall >= max_wall
            while pending and (cpu >= pending[0] or capped):
                b = pending.pop(0)
                path = ckpt_dir / f"cpu{int(b)}.ckpt"
                trainer.save_checkpoint(path)
                snapshots.append({
                    "budget_cpu_s": b, "train_cpu_s": cpu, "train_wall_s": wall,
                    "epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
                    "stopped_by": "wall cap" if cpu < b else "CPU budget",
                    "ckpt": str(path)})
                if capped:
                    pending.clear()
            if not pending:
                trainer.should_stop = True

    x = np.load(inp).astype(np.float32)
    config = create_advanced_n2v_config(
        experiment_name="n2v3d",
        data_type="array",
        axes="ZYX",
        patch_size=list(N2V_PATCH),
        batch_size=batch,
        num_epochs=100_000,  # the CPU budget governs
        seed=1,
        **N2V_VARIANTS[variant],
    )
    budget_cb = Budget()
    careamist = CAREamist(config, work_dir=workdir, enable_progress_bar=False,
                          callbacks=[budget_cb])
    careamist.train(train_data=x)
    for snap in snapshots:
        c0, t0 = _cpu_now(), time.perf_counter()
        preds, _ = careamist.predict(
            x, tile_size=N2V_TILE, tile_overlap=N2V_TILE_OVERLAP, batch_size=1,
            checkpoint=snap["ckpt"])
        snap["predict_wall_s"] = time.perf_counter() - t0
        snap["predict_cpu_s"] = _cpu_now() - c0
        y = np.asarray(preds[0], dtype=np.float32).squeeze()
        if y.shape != x.shape:
            raise RuntimeError(f"CAREamics returned {y.shape} for a volume of {x.shape}")
        snap["output"] = f"{out}.cpu{int(snap['budget_cpu_s'])}.npy"
        np.save(snap["output"], y)
    model_cfg = config.algorithm_config.model
    return {
        "import_s": t_import,
        "setup_wall_s": budget_cb.setup_wall,
        "setup_cpu_s": budget_cb.setup_cpu,
        "snapshots": snapshots,
        "max_wall_s": max_wall,
        "patch_size": list(N2V_PATCH),
        "batch_size": batch,
        "variant": variant,
        "tile_size": list(N2V_TILE),
        "tile_overlap": list(N2V_TILE_OVERLAP),
        "unet_depth": model_cfg.depth,
        "unet_filters": model_cfg.num_channels_init,
        "n2v": config.algorithm_config.n2v_config.model_dump(mode="json"),
        "num_workers_config": config.data_config.train_dataloader_params.get("num_workers"),
        "careamics": careamics.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _child_main(argv: list[str]) -> None:
    method, inp, out = argv[:3]
    if method == "gaussian":
        info = _child_gaussian(inp, out)
    elif method == "ours":
        info = _child_ours(inp, out)
    elif method == "n2v":
        info = _child_n2v(inp, out, argv[3], argv[4], int(argv[5]), argv[6],
                          float(argv[7]))
    else:
        raise SystemExit(f"unknown method {method}")
    Path(out + ".info.json").write_text(json.dumps(info, indent=1))


# --------------------------------------------------------------------------
# Parent: prepares the volumes, runs the children one at a time, scores.
# --------------------------------------------------------------------------

def _tree_memory(pid: int) -> tuple[int, int]:
    """(sum of PSS, largest RSS) in bytes over a process and its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    pss = rss = 0
    for p in procs:
        try:
            m = p.memory_full_info()
            pss += m.pss
            rss = max(rss, m.rss)
        except psutil.Error:
            pass
    return pss, rss


def _run_measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; wall, CPU (wait4 rusage) and memory of it and its children."""
    load_before = os.getloadavg()
    peak = {"pss": 0}
    done = threading.Event()
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)

        def sample():
            while not done.wait(2.0):
                pss, _ = _tree_memory(proc.pid)
                peak["pss"] = max(peak["pss"], pss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return {
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "peak_rss_bytes": ru.ru_maxrss * 1024,
        "peak_tree_pss_bytes": peak["pss"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def _machine() -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next(ln for ln in text.splitlines() if ln.startswith("flags")).split()
        info["avx512_bf16"] = "avx512_bf16" in flags
        info["amx"] = any(f.startswith("amx") for f in flags)
        info["memory_gib"] = round(
            int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def _prepare(name: str, work: Path) -> tuple[Path, Path]:
    import numpy as np

    from cryocare.simulate import simulate_tomogram

    spec = VOLUMES[name]
    stem = f"{'x'.join(map(str, spec['shape']))}_seed{spec['seed']}"
    vol = work / f"{stem}_volume.npy"
    truth = work / f"{stem}_truth.npy"
    if not (vol.exists() and truth.exists()):
        t = simulate_tomogram(spec["shape"], seed=spec["seed"])
        np.save(vol, ((t.even + t.odd) / 2).astype(np.float32))
        np.save(truth, np.asarray(t.clean, dtype=np.float32))
    return vol, truth


def _score(truth: Path, output: Path) -> float:
    import numpy as np

    from cryocare.metrics import psnr_affine

    return float(psnr_affine(np.load(truth), np.load(output)))


def _fmt_time(s: float | None) -> str:
    if s is None:
        return ""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec} s"


def _fmt_gb(b: float | None) -> str:
    return "" if not b else f"{b / 1e9:.2f} GB"


def _label(run: dict) -> str:
    if run["method"] == "raw":
        return "raw"
    if run["method"] == "gaussian":
        return "Gaussian σ = 1"
    if run["method"] == "ours":
        return "cryocare `pretrained`, zero-shot"
    snap = run["snapshot"]
    name = {"n2v": "N2V", "n2v2": "N2V2", "structn2v-x": "structN2V (X)"}[run["variant"]]
    trained = snap["train_cpu_s"] / (run["budget_s"] and snap["budget_cpu_s"] / run["budget_s"])
    capped = " (wall cap: budget not reached)" if snap["stopped_by"] == "wall cap" else ""
    return (f"CAREamics {name}, {run['budget_s'] / 60:.0f} min budget{capped}, batch "
            f"{run['batch']}: {snap['train_cpu_s']:.0f} CPU-s ≈ {trained / 60:.1f} min of "
            f"the machine, {snap['epochs']} epochs, {snap['steps']} steps")


def render(results: dict) -> str:
    m = results.get("machine", {})
    lines = [
        "# CAREamics Noise2Void against cryocare's zero-shot model",
        "",
        "Written by `benchmarks/careamics_n2v.py` (see its docstring for settings).",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, "
        f"AVX-512 BF16 {'yes' if m.get('avx512_bf16') else 'no'}, "
        f"AMX {'yes' if m.get('amx') else 'no'}. "
        "CPU = user + system seconds of the process and its waited-for children; "
        "peak RSS = the largest single process (`ru_maxrss`); "
        "peak PSS = the largest sampled sum over the process tree. "
        "Times include start-up (imports, model loading). CAREamics' budgets are CPU "
        "time of its training (N minutes = N × 60 s × the number of cores), so that "
        "other work on a shared machine does not shrink them; each CAREamics row is "
        "start-up + training up to that budget + predicting from the checkpoint "
        "saved there, all budgets of a volume coming from one training run.",
        "",
    ]
    for name, spec in VOLUMES.items():
        runs = [r for r in results.get("runs", []) if r["volume"] == name]
        if not runs:
            continue
        shape = "×".join(map(str, spec["shape"]))
        lines += [f"## {shape} (seed {spec['seed']}), the average of its halves", "",
                  "| method | PSNR [dB] | wall | CPU | peak RSS | peak PSS "
                  "| load avg (1 min) before → after |",
                  "|---|---|---|---|---|---|---|"]
        for r in runs:
            la = ""
            if "loadavg_before" in r:
                la = f"{r['loadavg_before'][0]:.1f} → {r['loadavg_after'][0]:.1f}"
            lines.append(
                f"| {_label(r)} | {r['psnr']:.2f} | {_fmt_time(r.get('wall_s'))} | "
                f"{_fmt_time(r.get('cpu_s'))} | {_fmt_gb(r.get('peak_rss_bytes'))} | "
                f"{_fmt_gb(r.get('peak_tree_pss_bytes'))} | {la} |")
        for row in TOPAZ_ROWS.get(name, []):
            lines.append(
                f"| {row[0]} | {row[1]:.2f} | {row[2]} | {row[3]} | {row[4]} | | |")
        n2v = [r for r in runs if r["method"] == "n2v"]
        if n2v:
            lines += ["", "CAREamics split (wall / CPU): " + "; ".join(
                f"{r['budget_s'] / 60:.0f} min: start-up "
                f"{r['info']['setup_wall_s']:.0f} s / {r['info']['setup_cpu_s']:.0f} s "
                f"(imports {r['info']['import_s']:.0f} s), training "
                f"{r['snapshot']['train_wall_s']:.0f} s / {r['snapshot']['train_cpu_s']:.0f} s, "
                f"prediction {r['snapshot']['predict_wall_s']:.0f} s / "
                f"{r['snapshot']['predict_cpu_s']:.0f} s"
                for r in n2v)]
        lines.append("")
    v = results.get("versions", {})
    if v:
        lines += ["Versions: " + ", ".join(f"{k} {val}" for k, val in sorted(v.items())), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        _child_main(argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", default="small,large",
                    help="comma-separated among: " + ", ".join(VOLUMES))
    ap.add_argument("--budgets", default="180,720",
                    help="CAREamics training budgets in seconds, comma-separated")
    ap.add_argument("--methods", default="gaussian,ours,n2v",
                    help="comma-separated among gaussian, ours, n2v (raw is always scored)")
    ap.add_argument("--n2v-batch", type=int, default=N2V_BATCH,
                    help="CAREamics batch size (default %(default)s)")
    ap.add_argument("--n2v-variant", default="n2v", choices=sorted(N2V_VARIANTS))
    ap.add_argument("--max-wall", type=float, default=3600.0,
                    help="stop CAREamics' training after this many wall seconds even "
                         "if a budget is not reached (its row says so)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--careamics-python", type=Path, default=DEFAULT_CAREAMICS_PYTHON)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.report_only:
        (args.out / "results.md").write_text(render(results))
        print(render(results))
        return
    results["machine"] = _machine()
    results.setdefault("runs", [])
    results.setdefault("versions", {})
    args.work.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",")
    budgets = [float(b) for b in args.budgets.split(",")] if "n2v" in methods else []

    if "n2v" in methods:
        freeze = subprocess.run([str(args.careamics_python), "-m", "pip", "freeze"],
                                capture_output=True, text=True, check=True).stdout
        (args.out / "careamics_env.txt").write_text(freeze)

    def store(run: dict) -> None:
        def key(r):
            return (r["volume"], r["method"], r.get("budget_s"), r.get("batch"),
                    r.get("variant"))
        results["runs"] = [r for r in results["runs"] if key(r) != key(run)]
        results["runs"].append(run)
        order = {n: i for i, n in enumerate(VOLUMES)}
        morder = {"raw": 0, "gaussian": 1, "ours": 2, "n2v": 3}
        results["runs"].sort(key=lambda r: (order[r["volume"]], morder[r["method"]],
                                            r.get("variant") or "", r.get("budget_s") or 0,
                                            r.get("batch") or 0))
        results_path.write_text(json.dumps(results, indent=1))
        (args.out / "results.md").write_text(render(results))

    for name in args.volumes.split(","):
        vol, truth = _prepare(name, args.work)
        store({"volume": name, "method": "raw", "psnr": _score(truth, vol)})
        jobs = []
        if "gaussian" in methods:
            jobs.append(("gaussian", sys.executable, []))
        if "ours" in methods:
            jobs.append(("ours", sys.executable, []))
        if budgets:
            wd = args.work / f"careamics_{name}_{args.n2v_variant}_b{args.n2v_batch}"
            jobs.append(("n2v", str(args.careamics_python),
                         [",".join(map(str, budgets)), str(wd), str(args.n2v_batch),
                          args.n2v_variant, str(args.max_wall)]))
        for method, python, extra in jobs:
            tag = f"{name}_{method}" + (
                f"_{args.n2v_variant}_b{args.n2v_batch}" if method == "n2v" else "")
            out = args.work / f"{tag}_out.npy"
            cmd = [python, str(Path(__file__).resolve()), "_child", method, str(vol),
                   str(out), *extra]
            print(f"[{time.strftime('%H:%M:%S')}] {tag} ...", flush=True)
            meas = _run_measured(cmd, args.work / f"{tag}.log")
            info = json.loads(Path(str(out) + ".info.json").read_text())
            if method != "n2v":
                run = {"volume": name, "method": method, "psnr": _score(truth, out),
                       **meas, "info": info}
                if method == "ours":
                    results["versions"]["cryocare"] = info.get("cryocare")
                    if "torch" in info:
                        results["versions"]["cryocare env torch"] = info["torch"]
                    sha = info.get("pretrained_weights_sha256")
                    if isinstance(sha, dict):
                        results["versions"]["cryocare pretrained weights sha256"] = ", ".join(
                            f"{k} {v}" for k, v in sha.items())
                    if "keras_backend" in info:
                        results["versions"]["cryocare keras backend"] = (
                            f"{info['keras_backend']} (keras {info.get('keras')})")
                store(run)
                print(f"    PSNR {run['psnr']:.2f} dB, wall {meas['wall_s']:.1f} s, "
                      f"CPU {meas['cpu_s']:.1f} s, "
                      f"peak RSS {meas['peak_rss_bytes'] / 1e9:.2f} GB", flush=True)
                continue
            for k in ("careamics", "torch", "lightning"):
                prefix = "careamics env " if k != "careamics" else ""
                results["versions"][prefix + k] = info[k]
            ncpu = os.cpu_count() or 1
            for snap in info["snapshots"]:
                # One row per budget: start-up, training up to that budget and
                # predicting from its checkpoint (the whole process is in "process").
                run = {
                    "volume": name, "method": "n2v", "variant": args.n2v_variant,
                    "batch": args.n2v_batch, "budget_s": snap["budget_cpu_s"] / ncpu,
                    "psnr": _score(truth, Path(snap["output"])),
                    "wall_s": info["setup_wall_s"] + snap["train_wall_s"]
                    + snap["predict_wall_s"],
                    "cpu_s": info["setup_cpu_s"] + snap["train_cpu_s"] + snap["predict_cpu_s"],
                    "peak_rss_bytes": meas["peak_rss_bytes"],
                    "peak_tree_pss_bytes": meas["peak_tree_pss_bytes"],
                    "loadavg_before": meas["loadavg_before"],
                    "loadavg_after": meas["loadavg_after"],
                    "snapshot": snap, "process": meas,
                    "info": {k: v for k, v in info.items() if k != "snapshots"},
                }
                store(run)
                print(f"    budget {snap['budget_cpu_s']:.0f} CPU-s ({snap['stopped_by']}): "
                      f"PSNR {run['psnr']:.2f} dB, {snap['steps']} steps, "
                      f"train {snap['train_wall_s']:.0f} s wall / {snap['train_cpu_s']:.0f} "
                      f"CPU-s, predict {snap['predict_wall_s']:.0f} s", flush=True)
    print(render(results))


if __name__ == "__main__":
    main()
