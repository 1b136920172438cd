"""Pretrain the shipped general 3-D model on simulated tomograms, and score it zero-shot.

Regenerates ``src/cryocare/pretrained/general`` from seeds:

1. draws ``--n-tomograms`` settings with :func:`cryocare.simulate.random_settings`
   (seeded by ``--seed``: voxel sizes 4-20 Å, 40-96 slices, thin lamellae
   to crops of thick cells, defocus, dose, crowding, the mix of membranes,
   filaments and macromolecules, tilt ranges ±40-70°, steps 1-4°, tilt
   about Y or X) and simulates each tomogram (seed ``100000 + i``);
2. samples 32³ patch pairs from each, normalised by that tomogram's own
   mean and standard deviation (``normalize="per_dataset"``), validation
   pairs from the last 5 % of its tilt axis;
3. trains the recipe's network (``DEFAULT_RECIPE.config``: 2-level U-Net,
   16 first filters, batch 16, cosine schedule peaking at 2e-3) for
   ``--budget`` with the one training entry, every batch flipped along
   random axes and its Y and X axes swapped at random (which turns a tilt
   about Y into one about X, so both axes are seen in every orientation);
4. saves the model with float32 weights, per-image normalisation and a
   ``provenance.json`` (settings, seeds, steps, time, machine);
5. scores it zero-shot (``--evaluate``): PSNR/SSIM after the best affine fit
   against the noiseless volume, next to raw, Gaussian (σ 1) and NAD
   (10 iterations), on the quality benchmark's ``slab`` and ``lamella`` and
   on simulator settings pretraining never saw (:data:`HELD_OUT`). Tables go
   to ``--results`` (``zero_shot.md``, ``zero_shot.json``).

Usage::

    python benchmarks/pretrain.py --evaluate                 # the shipped model, then scores
    python benchmarks/pretrain.py --evaluate-only            # score the shipped model
    python benchmarks/pretrain.py --tiny --output /tmp/m     # seconds: the CI check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cryocare.errors import InputError  # noqa: E402
from cryocare.normalize import Normalization  # noqa: E402
from cryocare.pairs import PairSet, sample_pairs  # noqa: E402
from cryocare.recipe import DEFAULT_RECIPE, parse_duration  # noqa: E402
from cryocare.simulate import random_settings, simulate_tomogram  # noqa: E402

log = logging.getLogger("pretrain")

SHIPPED = ROOT / "src" / "cryocare" / "pretrained" / "general"
RESULTS = ROOT / "benchmarks" / "results" / "pretrained"
#: Tomogram ``i`` of the training set is simulated with seed ``TOMOGRAM_SEED + i``.
TOMOGRAM_SEED = 100_000
PATCH = 32

#: The quality benchmark's datasets (``benchmarks/quality.py``): simulator defaults.
DATASETS = {"slab": ((96, 256, 256), 9101), "lamella": ((40, 256, 256), 9102)}

#: Total dose of the simulator's default series (2.5 e/Å² × 41 tilts); held-out
#: tilt schemes keep it.
_DEFAULT_DOSE = 2.5 * 41
_HELD_OUT_SHAPE = (64, 192, 192)

#: Settings outside the pretraining family, each one step outside it from the
#: simulator's defaults (10 Å, ±60° by 3°, 3 µm, 102.5 e/Å², crowding 1,
#: lamella 0.75 of Z, tilt about Y): name -> (keyword arguments, seed).
HELD_OUT = {
    "voxel 3 Å": ({"voxel_size": 3.0}, 9301),
    "voxel 28 Å": ({"voxel_size": 28.0}, 9302),
    "dose 35 e/Å²": ({"dose_per_tilt": 35.0 / 41}, 9303),
    "dose 300 e/Å²": ({"dose_per_tilt": 300.0 / 41}, 9304),
    "tilt ±30°": ({"tilt_range": (-30.0, 30.0), "dose_per_tilt": _DEFAULT_DOSE / 21}, 9305),
    "step 6°": ({"tilt_step": 6.0, "dose_per_tilt": _DEFAULT_DOSE / 21}, 9306),
    "defocus 8 µm": ({"defocus_um": 8.0}, 9307),
    "crowding 2.5": ({"crowding": 2.5}, 9308),
}
#: In the family, for the record: the default settings tilted about X.
IN_FAMILY = {"default, X axis": ({"tilt_axis": "X"}, 9309)}


def machine() -> dict:
    """CPU model, cores and bfloat16 support of this machine."""
    model = platform.processor() or ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "bfloat16": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
            "python": platform.python_version()}


def simulate_pairs(n_tomograms: int, *, seed: int, patches: int, settings_options: dict,
                   val_fraction: float = 0.05,
                   first_seed: int = TOMOGRAM_SEED) -> tuple[PairSet, list[dict]]:
    """Simulate the training tomograms one by one and sample normalised pairs from each."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"x_train": [], "y_train": [], "x_val": [], "y_val": []}
    drawn = []
    start = time.perf_counter()
    for i in range(n_tomograms):
        settings = random_settings(rng, **settings_options)
        tomo = simulate_tomogram(**settings, seed=first_seed + i)
        pairs = sample_pairs([tomo.even], [tomo.odd], patch_shape=PATCH, n_patches=patches,
                             val_fraction=val_fraction, tilt_axis=settings["tilt_axis"],
                             normalize="per_dataset", seed=seed + i)
        for key, values in parts.items():
            values.append(getattr(pairs, key))
        r_eo = float(np.corrcoef(tomo.even[::2].ravel(), tomo.odd[::2].ravel())[0, 1])
        drawn.append({"seed": first_seed + i, **settings, "even_odd_r": round(r_eo, 4)})
        log.info("tomogram %d/%d %s, %.1f Å, axis %s, r(even, odd) %.3f (%.0f s)", i + 1,
                 n_tomograms, "x".join(map(str, settings["shape"])), settings["voxel_size"],
                 settings["tilt_axis"], r_eo, time.perf_counter() - start)
    pairs = PairSet(**{k: np.concatenate(v) for k, v in parts.items()},
                    normalization=Normalization(0.0, 1.0), patch_shape=(PATCH,) * 3,
                    tilt_axis="Y", normalize="per_dataset")
    return pairs, drawn


def augment(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
            tilt_axis: str = "Y") -> tuple[np.ndarray, np.ndarray]:
    """Flip each pair along random axes and swap its Y and X axes at random.

    Flips keep the missing wedge where it is (it is symmetric); swapping Y
    and X turns a tilt about Y into a tilt about X, which the model should
    handle as well. ``tilt_axis`` is ignored: both are in the training set.
    """
    x, y = x.copy(), y.copy()
    for i in range(len(x)):
        axes = tuple(int(a) for a in np.flatnonzero(rng.random(3) < 0.5))
        a, b = (np.flip(v, axis=axes) if axes else v for v in (x[i], y[i]))
        if rng.random() < 0.5:
            a, b = a.transpose(0, 2, 1), b.transpose(0, 2, 1)
        x[i], y[i] = a, b
    return x, y


def train(pairs: PairSet, *, budget: float, seed: int, steps_per_epoch: int, tiny: bool,
          init: Path | None = None):
    """Train the recipe's network on ``pairs`` for ``budget`` seconds with the training entry.

    From random weights, or, with ``init``, from that model at the recipe's fine-tuning rate
    (a second stage on a wider family keeps what the first learned).
    """
    recipe = DEFAULT_RECIPE if init is None else DEFAULT_RECIPE.finetuning()
    config = recipe.config.replace(
        seed=seed, train_epochs=100_000, train_steps_per_epoch=steps_per_epoch)
    if tiny:
        config = config.replace(train_batch_size=4)
    from cryocare.training import train as train_entry

    steps = _StepCounter()
    # random weights unless a start is named; "auto" precision, resolved and recorded by
    # the training entry (the weights are saved float32 either way)
    model = train_entry(pairs, config, budget=budget,
                        init=None if init is None else str(init), progress=not tiny,
                        augment=augment, callbacks=[steps.callback()])
    return model, config, {"entry": "cryocare.training.train", "steps": steps.count}


class _StepCounter:
    """Counts training steps through a Keras callback made on demand (Keras imported late)."""

    def __init__(self):
        self.count = 0

    def callback(self):
        import keras

        counter = self

        class Count(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                counter.count += 1

        return Count()


def save(model, output: Path, provenance: dict) -> Path:
    """Save with float32 weights and per-image normalisation, plus ``provenance.json``."""
    from cryocare.model import CAREModel

    # Float32 in the config: the network builds and predicts in float32 on every
    # machine (the weights of a mixed-precision run are float32 anyway).
    shipped = CAREModel(model.config.replace(train_precision="float32"),
                        _per_image_normalization())
    shipped.keras_model.set_weights(model.keras_model.get_weights())
    shipped.history = model.history
    output.parent.mkdir(parents=True, exist_ok=True)
    shipped.save(output, overwrite=True)
    (output / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return output


def _per_image_normalization():
    """None (each image by its own statistics) where CAREModel supports it, else (0, 1).

    Patches were normalised tomogram by tomogram, so the network expects
    data of mean 0 and standard deviation 1: at prediction normalise each
    image by itself (``normalize="image"``).
    """
    import inspect

    from cryocare.model import CAREModel

    annotation = str(inspect.signature(CAREModel.__init__).parameters["normalization"].annotation)
    return None if "None" in annotation else Normalization(0.0, 1.0)


# ------------------------------------------------------------------------ evaluation
def evaluate(model_dir: Path, results: Path, *, tta: bool = True, names=None) -> dict:
    """Zero-shot scores of the model in ``model_dir`` against the filters; writes the tables."""
    from cryocare.filters import gaussian, nad
    from cryocare.metrics import psnr_affine, ssim_affine
    from cryocare.model import CAREModel

    model = CAREModel.load(model_dir)
    cases = {name: ({}, shape, seed) for name, (shape, seed) in DATASETS.items()}
    cases.update({name: (kw, _HELD_OUT_SHAPE, seed) for name, (kw, seed) in HELD_OUT.items()})
    cases.update({name: (kw, _HELD_OUT_SHAPE, seed) for name, (kw, seed) in IN_FAMILY.items()})
    if names:
        cases = {k: v for k, v in cases.items() if k in names}
    rows: dict[str, dict] = {}
    for name, (options, shape, seed) in cases.items():
        data = simulate_tomogram(shape, seed=seed, **options)
        raw = (data.even + data.odd) / np.float32(2)
        start = time.perf_counter()
        methods = {"raw": raw, "gaussian": gaussian(raw, sigma=1.0),
                   "nad": nad(raw, iterations=10)}
        seconds = {"nad": time.perf_counter() - start}
        start = time.perf_counter()
        methods["zero-shot"] = model.denoise(data.even, data.odd, normalize="image")
        seconds["zero-shot"] = time.perf_counter() - start
        if tta:
            start = time.perf_counter()
            methods["zero-shot + TTA"] = model.denoise(data.even, data.odd, normalize="image",
                                                       tta=True)
            seconds["zero-shot + TTA"] = time.perf_counter() - start
        r_eo = float(np.corrcoef(data.even.ravel(), data.odd.ravel())[0, 1])
        scores = {m: {"psnr": psnr_affine(data.clean, v), "ssim": ssim_affine(data.clean, v),
                      **({"seconds": seconds[m]} if m in seconds else {})}
                  for m, v in methods.items()}
        rows[name] = {"shape": list(shape), "seed": seed,
                      "settings": {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in options.items()},
                      "held_out": name in HELD_OUT, "even_odd_r": r_eo, "methods": scores}
        log.info("%s: %s", name, {m: round(s["psnr"], 2) for m, s in scores.items()})
    results.mkdir(parents=True, exist_ok=True)
    path = results / "zero_shot.json"
    previous = json.loads(path.read_text()) if path.exists() and names else {}
    everything = {**previous.get("datasets", {}), **rows}
    provenance = model_dir / "provenance.json"
    meta = json.loads(provenance.read_text()) if provenance.is_file() else {}
    report = {"model": str(model_dir.relative_to(ROOT) if model_dir.is_relative_to(ROOT)
                           else model_dir),
              "training": meta.get("training", {}), "machine": machine(),
              "datasets": everything}
    path.write_text(json.dumps(report, indent=2) + "\n")
    (results / "zero_shot.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The zero-shot table in Markdown."""
    datasets = report["datasets"]
    methods = ["raw", "gaussian", "nad", "zero-shot", "zero-shot + TTA"]
    lines = ["# Zero-shot quality of the pretrained general model", "",
             "Written by `benchmarks/pretrain.py --evaluate`. PSNR [dB] / SSIM after the best "
             "affine fit to the noiseless volume. `nad` is NAD with 10 iterations, `gaussian` "
             "σ = 1 voxel, `raw` the even/odd average; the model predicts with per-image "
             "normalisation (`normalize=\"image\"`), with and without the 8-flip TTA. "
             "Δ is zero-shot (no TTA) minus NAD in PSNR. Held-out settings are outside the "
             "pretraining family; `slab` and `lamella` are the quality benchmark's datasets "
             "(simulator defaults, seeds pretraining never used).", "",
             "| dataset | held out | r(even, odd) | " + " | ".join(methods) + " | Δ PSNR |",
             "|---|:-:|---:|" + "---:|" * len(methods) + "---:|"]
    for name, row in datasets.items():
        scores = row["methods"]
        cells = [f"{scores[m]['psnr']:.2f} / {scores[m]['ssim']:.3f}" if m in scores else "–"
                 for m in methods]
        delta = scores["zero-shot"]["psnr"] - scores["nad"]["psnr"]
        lines.append(f"| {name} ({'×'.join(map(str, row['shape']))}, seed {row['seed']}) | "
                     f"{'yes' if row['held_out'] else ''} | {row['even_odd_r']:.3f} | "
                     + " | ".join(cells) + f" | {delta:+.2f} |")
    return "\n".join(lines) + "\n"


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=_duration, default=None,
                        help="training time (default 45m; --tiny: 5s)")
    parser.add_argument("--output", type=Path, default=SHIPPED, help="model folder to write")
    parser.add_argument("--n-tomograms", type=int, default=None,
                        help="simulated tomograms (default 256; --tiny: 3)")
    parser.add_argument("--patches", type=int, default=None,
                        help="patch pairs per tomogram (default 40; --tiny: 24)")
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="seed of settings, sampling, training")
    parser.add_argument("--tiny", action="store_true",
                        help="a seconds-long run on a few small tomograms (CI)")
    parser.add_argument("--evaluate", action="store_true", help="score the model after training")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="only score the model in --output")
    parser.add_argument("--datasets", default=None,
                        help="comma-separated datasets to score (default all)")
    parser.add_argument("--no-tta", action="store_true", help="score without the 8-flip TTA too")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this model folder at the recipe's fine-tuning rate "
                             "(a second stage) instead of random weights")
    parser.add_argument("--total-dose", default=None,
                        help="total dose range LOW,HIGH in e/A^2 of the drawn series "
                             "(default the family's, 60,180)")
    parser.add_argument("--first-seed", type=int, default=TOMOGRAM_SEED,
                        help="seed of the first simulated tomogram (the i-th gets this + i)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    names = None if args.datasets is None else [d.strip() for d in args.datasets.split(",")]
    if args.evaluate_only:
        report = evaluate(args.output, args.results, tta=not args.no_tta, names=names)
        print(markdown(report))
        return 0

    n_tomograms = args.n_tomograms or (3 if args.tiny else 256)
    patches = args.patches or (24 if args.tiny else 40)
    budget = args.budget or (5.0 if args.tiny else 45 * 60.0)
    options = {"depth": (32, 32), "lateral": (64, 64)} if args.tiny else {}
    if args.total_dose:
        options["total_dose"] = tuple(float(v) for v in args.total_dose.split(","))
    start_from = None
    if args.init is not None:  # read before the output (perhaps the same folder) is replaced
        start_from = json.loads((args.init / "provenance.json").read_text()) \
            if (args.init / "provenance.json").is_file() else {"model": str(args.init)}
    steps_per_epoch = 5 if args.tiny else args.steps_per_epoch
    started = time.perf_counter()
    pairs, drawn = simulate_pairs(n_tomograms, seed=args.seed, patches=patches,
                                  settings_options=options, first_seed=args.first_seed)
    simulated = time.perf_counter() - started
    log.info("%d training and %d validation pairs from %d tomograms in %.0f s",
             len(pairs.x_train), len(pairs.x_val), n_tomograms, simulated)
    started = time.perf_counter()
    model, config, info = train(pairs, budget=budget, seed=args.seed,
                                steps_per_epoch=steps_per_epoch, tiny=args.tiny,
                                init=args.init)
    trained = time.perf_counter() - started
    history = model.history
    import keras

    provenance = {
        "format": "cryocare-pretraining", "format_version": 1,
        "command": "python benchmarks/pretrain.py " + " ".join(argv or sys.argv[1:]),
        "training": {
            "tomograms": n_tomograms, "tomogram_seeds": [args.first_seed, args.first_seed +
                                                         n_tomograms - 1],
            "settings_seed": args.seed, "settings_options": options,
            "pairs_train": int(len(pairs.x_train)), "pairs_val": int(len(pairs.x_val)),
            "patch_shape": list(pairs.patch_shape), "normalize": "per_dataset",
            "augmentation": "random flips of each axis, random Y/X swap",
            "budget_seconds": budget, "train_seconds": round(trained, 1),
            "simulate_seconds": round(simulated, 1), "steps": info["steps"],
            "epochs": len(history.get("loss", [])), "entry": info["entry"],
            "precision": model.config.train_precision,  # "auto" resolved
            "best_val_loss": min(history.get("val_loss", [float("nan")])),
            "batch_size": config.train_batch_size,
            "learning_rate": config.train_learning_rate, "schedule": config.train_schedule,
        },
        "machine": machine(),
        # the earlier stage this one continued (its own provenance, settings left out)
        "init": None if start_from is None else {
            **{k: v for k, v in start_from.items() if k != "settings"},
            "settings": f"{len(start_from.get('settings', []))} tomograms, see that stage"},
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(),
                     "numpy": np.__version__},
        "settings": drawn,
    }
    output = save(model, args.output, provenance)
    log.info("trained %d steps in %.0f s; saved %s", info["steps"], trained, output)
    if args.evaluate:
        report = evaluate(output, args.results, tta=not args.no_tta, names=names)
        print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
