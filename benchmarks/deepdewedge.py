"""DeepDeWedge (Wiedemann & Heckel, Nat. Commun. 2024) on a held-out tomogram, on CPU.

Runs the public DeepDeWedge source (``MLI-lab/DeepDeWedge``) through its own
three-step command line — ``ddw prepare-data``, ``ddw fit-model``,
``ddw refine-tomogram``, one YAML config — on the held-out dataset
``pm60-small`` of ``benchmarks/wedge_quality.py`` (64 × 192 × 192, seed 10 010,
±60°, tilt axis Y), and scores its output with ``wedge_quality.score`` next to
the even/odd average:

* the even and odd halves are written as MRC files unchanged: DeepDeWedge's
  missing-wedge mask (``ddw/utils/missing_wedge.py``) lies in the plane of the
  first and last array axes, i.e. beam along the first axis (Z) and tilt axis
  along the second (Y) — our (Z, Y, X) layout with tilt axis Y, so nothing is
  transposed (checked: the noiseless wedged volume keeps 2.7 % of its power in
  DeepDeWedge's missing wedge for this layout, 24-51 % for the transposed ones);
  ``mw_angle`` = 180° − 120° = 60°;
* ``standardize_full_tomos`` (its FAQ's advice for tomograms of small voxel
  values: ours have a standard deviation of 0.006) in both prepare and refine;
* ``fit-model`` hard-codes ``accelerator="gpu"`` in its ``pl.Trainer``; the
  only change made here is a wrapper (:data:`WRAPPER`) that swaps
  ``pytorch_lightning.Trainer`` for a subclass forcing ``accelerator="cpu"``,
  ``devices=1`` and no progress bar, then calls DeepDeWedge's own CLI
  (``ddw.app.main``); ``refine-tomogram`` runs on CPU as shipped (no ``gpu``);
* every step runs pinned to one core (``taskset -c CORE``,
  ``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``; the data-loader worker
  DeepDeWedge requires shares that core) for a fixed number of epochs;
* the model refined with is the checkpoint of the last epoch.

Writes ``deepdewedge.json`` and ``deepdewedge.md`` (settings, epochs, wall time
of every step, CPU, fitting and validation losses, scores),
``deepdewedge.png`` (central XY and XZ slices of the average, DeepDeWedge's
output and the isotropic truth) and one ``ddw_<step>.log`` per step into
``--out`` (never over an earlier result unless ``--overwrite``). The MRC files,
sub-tomograms and checkpoints stay in ``--work``.

Needs the DeepDeWedge source and its own virtual environment (its pins:
pytorch-lightning 1.8.0.post1 wants ``pip<24.1``)::

    git clone https://github.com/MLI-lab/DeepDeWedge /tmp/ddw_src
    python3.11 -m venv .venv-ddw && .venv-ddw/bin/pip install "pip<24.1"
    .venv-ddw/bin/pip install torch==2.2.0 "numpy<2" -r /tmp/ddw_src/requirements.txt
    .venv-ddw/bin/pip install --no-deps /tmp/ddw_src

Usage::

    python benchmarks/deepdewedge.py --ddw-src /tmp/ddw_src --venv .venv-ddw --epochs 120
    python benchmarks/deepdewedge.py --ddw-src /tmp/ddw_src --venv .venv-ddw --epochs 1 \\
        --work /tmp/ddw_probe --out /tmp/ddw_probe/out              # time one epoch
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pretrain import machine  # noqa: E402
from wedge_quality import (  # noqa: E402
    COLUMNS,
    DATASETS,
    _finite_or_none,
    _write,
    figure,
    score,
)

from cryocare.simulate import simulate_tomogram  # noqa: E402
from cryocare.wedge import Wedge  # noqa: E402

log = logging.getLogger("deepdewedge")

DATASET = "pm60-small"

#: Run in DeepDeWedge's venv: one thread, its fit-model's Trainer on CPU, then its own CLI.
WRAPPER = """\
import sys
import torch
torch.set_num_threads(1)
import pytorch_lightning as pl
class CPUTrainer(pl.Trainer):
    def __init__(self, *args, **kwargs):
        kwargs.update(accelerator="cpu", devices=1, strategy=None, enable_progress_bar=False)
        super().__init__(*args, **kwargs)
pl.Trainer = CPUTrainer
from ddw.app import main
sys.argv = ["ddw", *sys.argv[1:]]
main()
"""


NOTES = """\
Notes:

* Far below DeepDeWedge's own setting (GPU, 96³ sub-tomograms, U-Net chans 64, ~150
  sub-tomograms, up to 1000 epochs): a small CPU run, not its best result.
* Sub-tomograms 40³ because Z is 64: DeepDeWedge extracts ceil(√2·size) for rotating (58 for
  40, 68 for 48); prepare-data could pad, but refine-tomogram's recomputed normalisation
  extracts without padding and fails for 48 or more on a 64-voxel Z.
* DeepDeWedge's output is on its standardised scale; every score here is invariant to an
  affine change of scale.
* refine-tomogram's recomputed normalisation draws unseeded random rotations: refining the
  same checkpoint twice differs in the second decimal of the PSNR.
* The cryocare rows are copied from the result files named in them (same data, same
  scorer, run on the other core or earlier), not rerun here; their times are their own.
"""


def config_text(args, work: Path, mw_angle: float) -> str:
    """DeepDeWedge's YAML config (the layout of its ``tutorial/config.yaml``)."""
    strides = ", ".join(str(s) for s in args.strides)
    return f"""\
shared:
  project_dir: "{work / 'project'}"
  tomo0_files:
    - "{work / 'even.mrc'}"
  tomo1_files:
    - "{work / 'odd.mrc'}"
  subtomo_size: {args.subtomo_size}
  mw_angle: {mw_angle:g}
  standardize_full_tomos: true
  num_workers: 1
  seed: {args.seed}

prepare_data:
  subtomo_extraction_strides: [{strides}]
  val_fraction: {args.val_fraction}
  overwrite: true

fit_model:
  gpu: 0   # ignored: the wrapper's Trainer runs on CPU
  unet_params_dict:
    chans: {args.chans}
    num_downsample_layers: {args.downsample}
    drop_prob: 0.0
  adam_params_dict:
    lr: {args.lr}
  num_epochs: {args.epochs}
  batch_size: {args.batch_size}
  update_subtomo_missing_wedges_every_n_epochs: 10
  check_val_every_n_epochs: 10
  save_n_models_with_lowest_val_loss: 1
  save_n_models_with_lowest_fitting_loss: 1
  save_model_every_n_epochs: {10 if args.epochs % 10 == 0 else args.epochs}
  logger: "csv"

refine_tomogram:
  subtomo_overlap: {args.overlap}
  batch_size: 1
  num_workers: 0
  output_dir: "{work / 'refined'}"
"""


def run_step(step: str, extra: list[str], args, config: Path, log_path: Path) -> float:
    """One ``ddw`` command in DeepDeWedge's venv on one core; its output to ``log_path``."""
    python = str(Path(args.venv).resolve() / "bin" / "python")
    command = ["taskset", "-c", str(args.core), python, "-c", WRAPPER, step,
               "--config", str(config), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    log.info("%s: %s", step, " ".join(command[:4] + ["WRAPPER"] + command[6:]))
    start = time.perf_counter()
    with open(log_path, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                               cwd=args.work)
    seconds = time.perf_counter() - start
    log.info("%s: exit %d after %.1f s", step, code, seconds)
    if code != 0:
        raise SystemExit(f"ddw {step} failed (exit {code}); see {log_path}")
    return seconds


def losses(logdir: Path) -> dict[str, list]:
    """Fitting and validation loss per epoch from DeepDeWedge's CSV logger."""
    rows = list(csv.DictReader(open(logdir / "metrics.csv")))
    out: dict[str, list] = {"fitting_loss": [], "val_loss": []}
    for row in rows:
        for key in out:
            if row.get(key):
                out[key].append([int(row["epoch"]), float(row[key])])
    return out


#: cryocare's results on the same data and scorer: (file, its top-level key, which methods).
REFERENCES = (
    ("benchmarks/results/wedge/wedge_quality.json", "results", lambda m: m not in ("clean", "raw")),
    ("benchmarks/results/wedge/proxy12/wedge_restore.json", "datasets",
     lambda m: "fine-tuned" in m),
)


def reference_rows() -> list[str]:
    """Table rows of cryocare's methods on DATASET, from the files on disk or as committed."""
    rows = []
    for path, key, wanted in REFERENCES:
        try:
            text = (ROOT / path).read_text() if (ROOT / path).exists() else (
                subprocess.check_output(["git", "-C", str(ROOT), "show", f"HEAD:{path}"],
                                        text=True, stderr=subprocess.DEVNULL))
            scores = json.loads(text)[key][DATASET]["scores"]
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError):
            continue
        for method, values in scores.items():
            if not wanted(method) or any(values.get(k) is None for k, _, _ in COLUMNS):
                continue
            cells = [fmt.format(values[k]) for k, _, fmt in COLUMNS if k != "seconds"]
            minutes = values["seconds"] / 60
            rows.append(f"| cryocare {method} ({path.split('/', 2)[2]}, {minutes:.1f} min) | "
                        + " | ".join(cells) + " |")
    return rows


def ddw_commit(src: Path) -> str | None:
    for git_dir in (src / ".git", src):
        try:
            return subprocess.check_output(["git", "--git-dir", str(git_dir), "rev-parse",
                                            "HEAD"], stderr=subprocess.DEVNULL,
                                           text=True).strip()
        except (subprocess.CalledProcessError, OSError):
            continue
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddw-src", type=Path, required=True,
                        help="DeepDeWedge source folder (installed into --venv)")
    parser.add_argument("--ddw-git", type=Path, default=None,
                        help="its git directory, for the commit (default: --ddw-src/.git)")
    parser.add_argument("--venv", type=Path, required=True, help="DeepDeWedge's virtual env")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ddw_work"))
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "deepdewedge")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--subtomo-size", type=int, default=40,
                        help="fits the 64-voxel Z: DeepDeWedge extracts ceil(sqrt(2)*size) "
                             "= 58 for rotating, without padding when recomputing the "
                             "normalisation in refine-tomogram")
    parser.add_argument("--strides", type=int, nargs=3, default=[64, 24, 24])
    parser.add_argument("--chans", type=int, default=32,
                        help="first-layer channels (DeepDeWedge's default 64; its FAQ: 32 "
                             "gives similar results, faster)")
    parser.add_argument("--downsample", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--core", type=int, default=1, help="the one CPU core to pin to")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="skip prepare-data and fit-model: refine this checkpoint of an "
                             "earlier fit in --work (one stopped before --epochs)")
    parser.add_argument("--fit-seconds", type=float, default=None,
                        help="with --checkpoint: the stopped fit's wall time, for the report")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    paths = {kind: args.out / f"deepdewedge.{kind}" for kind in ("json", "md", "png")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.overwrite:
        parser.error(f"{', '.join(existing)} exist (use --overwrite to replace them)")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)

    import mrcfile

    shape, seed, tilt_range = DATASETS[DATASET]
    data = simulate_tomogram(shape, seed=seed, tilt_range=tilt_range)
    wedge = Wedge(*tilt_range, tilt_axis=data.tilt_axis)
    if data.tilt_axis != "Y":
        raise SystemExit("expected tilt axis Y (DeepDeWedge's second array axis)")
    for name, volume in (("even", data.even), ("odd", data.odd)):
        with mrcfile.new(args.work / f"{name}.mrc", overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
    mw_angle = wedge.missing
    config = args.work / "config.yaml"
    config.write_text(config_text(args, args.work, mw_angle))

    seconds = {}
    if args.checkpoint is None:
        seconds["prepare-data"] = run_step("prepare-data", [], args, config,
                                           args.out / "ddw_prepare-data.log")
        logs = args.work / "project" / "logs"
        before = set(glob.glob(str(logs / "version_*")))
        seconds["fit-model"] = run_step("fit-model", [], args, config,
                                        args.out / "ddw_fit-model.log")
        logdir = Path(sorted(set(glob.glob(str(logs / "version_*"))) - before)[-1])
        checkpoints = glob.glob(str(logdir / "checkpoints" / "epoch" / "epoch=*.ckpt"))
        checkpoint = max(checkpoints,
                         key=lambda p: int(re.search(r"epoch=(\d+)", p).group(1)))
    else:  # a fit stopped early: refine one of its checkpoints (same --work and settings)
        checkpoint = str(args.checkpoint.resolve())
        logdir = args.checkpoint.resolve().parents[2]
        seconds["fit-model (stopped)"] = args.fit_seconds
    fitted = int(re.search(r"epoch=(\d+)", Path(checkpoint).name).group(1)) + 1
    fit_seconds = seconds.get("fit-model", args.fit_seconds)
    seconds["refine-tomogram"] = run_step(
        "refine-tomogram", ["--model-checkpoint-file", checkpoint], args, config,
        args.out / "ddw_refine-tomogram.log")
    refined = args.work / "refined" / "even+odd_refined.mrc"
    with mrcfile.open(refined, permissive=True) as mrc:
        ddw = np.array(mrc.data, dtype=np.float32)
    if ddw.shape != data.even.shape:
        raise SystemExit(f"refined volume {ddw.shape} != input {data.even.shape}")

    average = (data.even + data.odd) * np.float32(0.5)
    rows = {"clean": score(data.clean, data, wedge), "raw": score(average, data, wedge),
            "deepdewedge": score(ddw, data, wedge)}
    for method, scores in rows.items():
        log.info("%s: %s", method, ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    figure(DATASET, {"raw (even/odd average)": average, "DeepDeWedge": ddw,
                     "isotropic truth": data.isotropic}, paths["png"],
           title=f"{DATASET} (±60°, tilt axis Y): DeepDeWedge, {fitted} epochs on one CPU core")

    fit_losses = losses(logdir)
    n_fit = len(os.listdir(args.work / "project" / "subtomos" / "fitting_subtomos" / "subtomo0"))
    n_val = len(os.listdir(args.work / "project" / "subtomos" / "val_subtomos" / "subtomo0"))
    settings = {"dataset": DATASET, "shape": list(shape), "seed": seed,
                "tilt_range": list(tilt_range), "tilt_axis": data.tilt_axis,
                "mw_angle": mw_angle, "epochs": args.epochs, "epochs_fitted": fitted,
                "subtomo_size": args.subtomo_size,
                "strides": args.strides, "fitting_subtomos": n_fit, "val_subtomos": n_val,
                "chans": args.chans, "num_downsample_layers": args.downsample,
                "batch_size": args.batch_size, "lr": args.lr, "subtomo_overlap": args.overlap,
                "standardize_full_tomos": True, "checkpoint": Path(checkpoint).name,
                "core": args.core, "threads": 1, "fit_seed": args.seed}
    commit = ddw_commit(args.ddw_git or args.ddw_src)
    versions = subprocess.check_output(
        [str(Path(args.venv) / "bin" / "python"), "-c",
         "import torch, pytorch_lightning as pl; print(torch.__version__, pl.__version__)"],
        text=True).split()
    result = {"machine": machine(), "ddw_commit": commit, "torch": versions[0],
              "pytorch_lightning": versions[1], "settings": settings, "seconds": seconds,
              "seconds_per_epoch": (fit_seconds or np.nan) / fitted,
              "losses": fit_losses, "config": config.read_text(), "scores": rows}
    _write(paths["json"], json.dumps(_finite_or_none(result), indent=2, allow_nan=False))

    lines = ["| method | " + " | ".join(title for key, title, _ in COLUMNS
                                        if key != "seconds") + " |",
             "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for method, scores in rows.items():
        cells = [fmt.format(scores[key]) for key, _, fmt in COLUMNS if key != "seconds"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += reference_rows()
    last_fit = fit_losses["fitting_loss"][-1] if fit_losses["fitting_loss"] else None
    last_val = fit_losses["val_loss"][-1] if fit_losses["val_loss"] else None
    text = "\n".join([
        "# DeepDeWedge on CPU: held-out pm60-small",
        "",
        f"Command: `python benchmarks/deepdewedge.py {' '.join(sys.argv[1:])}`",
        "",
        f"DeepDeWedge commit `{commit}`, torch {versions[0]}, pytorch-lightning "
        f"{versions[1]}; CPU {result['machine']['cpu']}, pinned to core {args.core}, one "
        "thread, **on a machine shared with another training job: times are indicative**.",
        "",
        f"Settings: sub-tomograms {args.subtomo_size}³ (strides {args.strides}: {n_fit} fitting,"
        f" {n_val} validation), U-Net chans {args.chans}, {args.downsample} downsampling "
        f"layers, batch {args.batch_size}, Adam lr {args.lr:g}, **{fitted} epochs fitted** "
        f"(of {args.epochs} asked), "
        f"mw_angle {mw_angle:g}°, standardize_full_tomos, refined with "
        f"`{Path(checkpoint).name}`, overlap {args.overlap}.",
        "",
        "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()
                                  if v is not None)
        + f" ({(fit_seconds or np.nan) / fitted:.1f} s per epoch, with "
        "DeepDeWedge's missing-wedge updates and validation every 10 epochs).",
        "",
        f"Last losses: fitting {last_fit}, validation {last_val} (epoch, loss).",
        "",
        "\n".join(lines),
        "",
        NOTES,
    ])
    _write(paths["md"], text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
