"""Restoration quality per CPU-minute: cryocare against cryoCARE 0.3.0 and the filters.

On simulated tomograms with a known noiseless volume (seeds no test uses; one
of them a thin lamella) this trains cryocare's recipes and cryoCARE 0.3.0 for
the same wall-clock budget and scores them next to raw, Gaussian, median and
NAD: PSNR and SSIM after the best affine fit, Pearson r against the
noiseless volume, and the Dice of an Otsu segmentation against that of the
noiseless volume (and, for information, against the simulator's object
mask; see :func:`score`). It prints a table, writes ``quality.json`` and one
orthoslice figure per dataset into ``--out``.

Budgets are fair: cryocare's budget covers sampling the pairs, building the
network and training; cryoCARE's covers its whole ``cryoCARE_train.py``
process (start-up included), with the number of steps calibrated from a
short run of the same process (its extraction is not counted; neither is
prediction, for either). cryoCARE runs in its own venv
(``benchmarks/setup_reference.sh``), only when installed.

Run the two engines one after the other on a quiet machine: the comparison
is in wall-clock time.

``default`` is what ``cryocare denoise`` does: the shipped pretrained model
fine-tuned on the halves (when its network is the recipe's), the recipe
fitted to the machine's speed. ``scratch`` is the same from random weights,
``zero-shot`` the pretrained model without training (per-image
normalisation); the other recipes measure single levers from scratch, with
their settings fixed (no fitting). The slow-machine proxy of issue 17 is
``ONEDNN_MAX_CPU_ISA=AVX2 taskset -c 0 python benchmarks/quality.py ...``.

Usage::

    python benchmarks/quality.py                       # 12 minutes per model, both datasets
    python benchmarks/quality.py --budget 3m --datasets slab --recipes lr1e-3,default
    python benchmarks/quality.py --recipes zero-shot,scratch,default --no-reference
    python benchmarks/quality.py --recipes default,diffusion --no-reference
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import reference  # noqa: E402

from cryocare import io  # noqa: E402
from cryocare.backends import precision_runs  # noqa: E402
from cryocare.errors import InputError  # noqa: E402
from cryocare.evaluate import BASELINES  # noqa: E402
from cryocare.filters import apply_filter  # noqa: E402
from cryocare.metrics import dice, pearson, psnr_affine, ssim_affine  # noqa: E402
from cryocare.recipe import DEFAULT_RECIPE, Recipe, parse_duration, train_on_pair  # noqa: E402
from cryocare.segment import segment_otsu  # noqa: E402
from cryocare.simulate import simulate_tomogram  # noqa: E402

log = logging.getLogger("quality")

#: name -> (shape Z,Y,X, seed). Seeds no test uses; "tune" chose the recipe, the others
#: only score it.
DATASETS = {
    "tune": ((96, 256, 256), 9100),
    "slab": ((96, 256, 256), 9101),
    "lamella": ((40, 256, 256), 9102),
    "smoke": ((40, 96, 96), 9199),  # seconds-long check of the harness, not a benchmark
}

_CSBDEEP = DEFAULT_RECIPE.replace(
    config=DEFAULT_RECIPE.config.replace(train_learning_rate=4e-4, train_schedule="plateau",
                                         train_steps_per_epoch=50, train_reduce_lr_patience=5,
                                         train_precision="float32"),
    tta=False)

#: Recipes measured lever by lever, from CSBDeep's settings to the default.
RECIPES: dict[str, Recipe] = {
    "csbdeep": _CSBDEEP,  # lr 4e-4, halve on plateau, no TTA
    "lr1e-3": _CSBDEEP.replace(config=_CSBDEEP.config.replace(train_learning_rate=1e-3)),
    "cosine+fsc": DEFAULT_RECIPE.replace(
        tta=False, config=DEFAULT_RECIPE.config.replace(train_loss="fsc")),
    "patch16x128": DEFAULT_RECIPE.replace(
        tta=False, patch_shape=(16, 16, 16), n_patches=12000,
        config=DEFAULT_RECIPE.config.replace(train_batch_size=128)),
    "lr1e-3+tta": _CSBDEEP.replace(config=_CSBDEEP.config.replace(train_learning_rate=1e-3),
                                   tta=True),
    "bf16": _CSBDEEP.replace(tta=True, config=_CSBDEEP.config.replace(
        train_learning_rate=1e-3, train_precision="mixed_bfloat16")),
    "bf16+cosine2e-3": _CSBDEEP.replace(tta=True, config=_CSBDEEP.config.replace(
        train_learning_rate=2e-3, train_precision="mixed_bfloat16", train_schedule="cosine")),
    "bf16+32f": _CSBDEEP.replace(tta=True, config=_CSBDEEP.config.replace(
        train_learning_rate=1e-3, train_precision="mixed_bfloat16", unet_n_first=32)),
    "default": DEFAULT_RECIPE,
    "scratch": DEFAULT_RECIPE,
    # Fine-tuning the pretrained model at a higher peak rate than the default's 5e-4.
    "finetune-lr1e-3": DEFAULT_RECIPE.replace(finetune_learning_rate=1e-3),
    "finetune-lr2e-3": DEFAULT_RECIPE.replace(finetune_learning_rate=2e-3),
    # Shrink and perturb (Ash & Adams 2020, warm starts): halfway between the pretrained
    # weights and a fresh initialisation, trained at the scratch rate.
    "shrink-perturb": DEFAULT_RECIPE.replace(finetune_learning_rate=2e-3),
    "zero-shot": DEFAULT_RECIPE,
    "diffusion": DEFAULT_RECIPE.replace(
        tta=False, config=DEFAULT_RECIPE.config.replace(network="diffusion")),
}
#: How each recipe starts and whether it is fitted to the machine: the shipped path
#: (default) fine-tunes the pretrained model and fits; the levers were measured fixed.
STARTS = {name: ("none", False) for name in RECIPES}
STARTS.update({"default": ("pretrained", True), "scratch": ("none", True),
               "finetune-lr1e-3": ("pretrained", True), "finetune-lr2e-3": ("pretrained", True),
               "shrink-perturb": ("shrink-perturb", True),
               "diffusion": ("none", True)})

#: cryoCARE 0.3.0's setting for short budgets (16^3 patches, batch 128: better than its
#: default 72^3 extraction / batch 16 at minutes of CPU training), and its default network.
REFERENCE_SETTING = {"patch_shape": 16, "num_slices": 12000, "batch_size": 128,
                     "unet_n_depth": 3, "unet_n_first": 16, "learning_rate": 4e-4}


def _shrink_perturb(shrink: float = 0.5, seed: int = 0):
    """The pretrained model with weights ``shrink * pretrained + (1 - shrink) * fresh``."""
    from cryocare.model import CAREModel
    from cryocare.modelfiles import load_model

    model = load_model("pretrained")
    fresh = CAREModel(model.config.replace(seed=seed), model.normalization).keras_model
    model.keras_model.set_weights([shrink * a + (1 - shrink) * b for a, b in
                                   zip(model.keras_model.get_weights(), fresh.get_weights(),
                                       strict=True)])
    return model


def score(restored: np.ndarray, data, clean_mask: np.ndarray) -> dict[str, float]:
    """PSNR/SSIM (affine fit) and Pearson r against the noiseless volume; Otsu Dice.

    ``dice`` compares the Otsu segmentation (Gaussian pre-smoothing, sigma 1
    voxel) of the restored volume with the same segmentation of the noiseless
    volume: how close segmenting restored data comes to segmenting noise-free
    data. ``dice_mask`` compares it with the simulator's object mask; that
    score rewards smoothing as such (the noiseless volume itself scores below
    NAD on it), so it is reported, not used to rank.
    """
    segmentation = segment_otsu(restored, sigma=1.0)
    return {
        "psnr": psnr_affine(data.clean, restored),
        "ssim": ssim_affine(data.clean, restored),
        "pearson": pearson(data.clean, restored),
        "dice": dice(segmentation, clean_mask),
        "dice_mask": dice(segmentation, data.mask),
    }


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_reference(even: Path, odd: Path, work: Path, budget: float) -> tuple[np.ndarray, dict]:
    """cryoCARE 0.3.0: extract, calibrate, train for ``budget`` seconds, predict."""
    env = {"CUDA_VISIBLE_DEVICES": ""}
    s = REFERENCE_SETTING
    data = reference.extract([even], [odd], work / "train_data", patch_shape=s["patch_shape"],
                             num_slices=s["num_slices"], env=env)
    net = {k: s[k] for k in ("batch_size", "unet_n_depth", "unet_n_first", "learning_rate")}
    calibration_steps = 40
    calib = reference.train(work / "train_data", work / "calibration", epochs=1,
                            steps_per_epoch=calibration_steps, env=env, **net)
    step = _step_seconds(calib.log, calibration_steps, calib.wall_time)
    overhead = max(calib.wall_time - calibration_steps * step, 0.0)
    epochs = 10
    steps = max(1, int((budget - overhead) / step / epochs))
    log.info("cryoCARE: %.3f s/step, %.0f s start-up: %d epochs x %d steps", step, overhead,
             epochs, steps)
    trained = reference.train(work / "train_data", work / "model", epochs=epochs,
                              steps_per_epoch=steps, env=env, **net)
    predicted = reference.predict(trained.output, [even], [odd], work / "out", env=env)
    restored = io.read(predicted.output / even.name, mmap=False)
    return restored, {"train_seconds": trained.wall_time, "extract_seconds": data.wall_time,
                      "predict_seconds": predicted.wall_time, "steps": epochs * steps,
                      "seconds_per_step": step, "predict_peak_rss_mb": predicted.peak_rss_mb,
                      **{f"setting_{k}": v for k, v in s.items()}}


def _step_seconds(text: str, steps: int, wall: float) -> float:
    """Seconds per training step from Keras' progress log, else a crude estimate."""
    found = re.findall(r"(\d+(?:\.\d+)?)(ms|s)/step", text)
    if found:
        value, unit = found[-1]
        return float(value) / (1000.0 if unit == "ms" else 1.0)
    return wall / (steps + 20)


def run_dataset(name: str, args, recipes: list[str]) -> dict:
    shape, seed = DATASETS[name]
    work = args.out / name
    work.mkdir(parents=True, exist_ok=True)
    data = simulate_tomogram(shape, seed=seed)
    even_path = io.write(work / "even.mrc", data.even, voxel_size=data.voxel_size,
                         overwrite=True)
    odd_path = io.write(work / "odd.mrc", data.odd, voxel_size=data.voxel_size, overwrite=True)
    clean_mask = segment_otsu(data.clean, sigma=1.0)
    rows: dict[str, dict] = {"noiseless": score(data.clean, data, clean_mask)}
    volumes: dict[str, np.ndarray] = {}
    raw = (data.even + data.odd) / np.float32(2)
    volumes["raw"] = raw
    rows["raw"] = score(raw, data, clean_mask)
    for method in ("gaussian", "median", "nad"):
        start = time.perf_counter()
        volumes[method] = apply_filter(raw, method, **BASELINES[method])
        rows[method] = {**score(volumes[method], data, clean_mask),
                        "seconds": time.perf_counter() - start}
        log.info("%s %s: %s", name, method, rows[method])
    for recipe_name in recipes:
        recipe = RECIPES[recipe_name]
        budget = args.diffusion_budget if recipe.config.network == "diffusion" else args.budget
        start = time.perf_counter()
        if recipe_name == "zero-shot":
            from cryocare.modelfiles import load_model

            model = load_model("pretrained")
        else:
            init, fit = STARTS[recipe_name]
            if init == "shrink-perturb":
                init = _shrink_perturb(seed=args.seed)
            model = train_on_pair(data.even, data.odd, recipe=recipe, budget=budget, init=init,
                                  fit=fit, seed=args.seed)
        trained = time.perf_counter() - start
        restored = model.denoise(data.even, data.odd, tta=recipe.tta)
        predicted = time.perf_counter() - start - trained
        # What bfloat16 prediction costs, where it runs (without bfloat16 kernels, e.g. under
        # ONEDNN_MAX_CPU_ISA=AVX2, prediction falls back to float32: no row then).
        if recipe.config.network != "diffusion" and precision_runs("mixed_bfloat16"):
            half = model.denoise(data.even, data.odd, tta=recipe.tta, precision="bfloat16")
            rows[f"{recipe_name} (bf16 prediction)"] = score(half, data, clean_mask)
        if recipe.tta:  # what test-time augmentation adds, for free
            plain = model.denoise(data.even, data.odd)
            rows[f"{recipe_name} (no TTA)"] = score(plain, data, clean_mask)
            log.info("%s %s (no TTA): %s", name, recipe_name, rows[f"{recipe_name} (no TTA)"])
        volumes[recipe_name] = restored
        if recipe.config.network == "diffusion":  # what it learned, as PNGs
            from cryocare.nets.diffusion import write_inspection

            write_inspection(model.keras_model, work.parent / f"diffusion_{name}",
                             overwrite=True)
        history = model.history
        rows[recipe_name] = {**score(restored, data, clean_mask), "train_seconds": trained,
                             "predict_seconds": predicted, "budget": budget,
                             "epochs": len(history.get("loss", [])),
                             "best_val_loss": min(history.get("val_loss", [math.nan])),
                             "recipe": recipe.describe(), "trained": model.config.to_dict()}
        log.info("%s %s: %s", name, recipe_name, rows[recipe_name])
    if not args.no_reference and reference.available():
        restored, info = run_reference(even_path, odd_path, work / "cryocare-0.3.0", args.budget)
        volumes["cryoCARE 0.3.0"] = restored
        rows["cryoCARE 0.3.0"] = {**score(restored, data, clean_mask), **info}
        log.info("%s cryoCARE: %s", name, rows["cryoCARE 0.3.0"])
    elif not args.no_reference:
        log.warning("cryoCARE 0.3.0 is not installed (benchmarks/setup_reference.sh): skipped")
    if args.save_volumes:
        np.savez_compressed(work / "volumes.npz", clean=data.clean, mask=data.mask,
                            **{k.replace(" ", "_"): v for k, v in volumes.items()})
    _figure(volumes, data, work.parent / f"quality_{name}.png",
            title=f"{name} {'x'.join(map(str, shape))}, seed {seed}")
    return {"shape": list(shape), "seed": seed, "methods": rows}


def _figure(volumes: dict, data, path: Path, title: str) -> None:
    from cryocare.demo import orthoslice_figure

    panels = {**volumes, "noiseless": data.clean}
    orthoslice_figure(panels, path, title=title)


def table(results: dict) -> str:
    lines = []
    for name, result in results.items():
        lines.append(f"\n{name} {result['shape']} seed {result['seed']}")
        lines.append(f"{'method':<22}{'PSNR':>8}{'SSIM':>8}{'r':>8}{'Dice':>8}{'Dice/mask':>10}"
                     f"{'train s':>9}")
        for method, row in result["methods"].items():
            seconds = row.get("train_seconds", row.get("seconds", 0.0))
            lines.append(f"{method:<22}{row['psnr']:>8.2f}{row['ssim']:>8.3f}"
                         f"{row['pearson']:>8.3f}{row['dice']:>8.3f}"
                         f"{row.get('dice_mask', math.nan):>10.3f}{seconds:>9.0f}")
    return "\n".join(lines)


def markdown(results: dict, budget: float) -> str:
    """The results as Markdown tables, one per dataset."""
    lines = [f"# Restoration quality at a {budget / 60:g}-minute training budget", "",
             "Written by `benchmarks/quality.py`. PSNR and SSIM after the best affine fit to "
             "the noiseless volume; Dice of the Otsu segmentation (sigma 1) against that of "
             "the noiseless volume, and against the simulator's object mask (Dice/mask).", ""]
    for name, result in results.items():
        shape = "×".join(map(str, result["shape"]))
        lines += [f"## {name}: {shape}, seed {result['seed']}", "",
                  "| method | PSNR [dB] | SSIM | Pearson r | Dice | Dice/mask | train [s] |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for method, row in result["methods"].items():
            if method == "noiseless":
                continue
            seconds = row.get("train_seconds")
            lines.append(f"| {method} | {row['psnr']:.2f} | {row['ssim']:.3f} | "
                         f"{row['pearson']:.3f} | {row['dice']:.3f} | "
                         f"{row.get('dice_mask', math.nan):.3f} | "
                         f"{'' if seconds is None else f'{seconds:.0f}'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=_duration, default=12 * 60.0,
                        help="training budget per model (default 12m)")
    parser.add_argument("--diffusion-budget", type=_duration, default=3 * 60.0,
                        help="training budget of the diffusion recipe (default 3m)")
    parser.add_argument("--datasets", default="slab,lamella",
                        help=f"comma-separated, of {', '.join(DATASETS)}")
    parser.add_argument("--recipes", default="default",
                        help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--no-reference", action="store_true", help="skip cryoCARE 0.3.0")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and training")
    parser.add_argument("--save-volumes", action="store_true",
                        help="keep every restored volume in <out>/<dataset>/volumes.npz")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    for name, known in ((datasets, DATASETS), (recipes, RECIPES)):
        unknown = [n for n in name if n not in known]
        if unknown:
            parser.error(f"unknown: {', '.join(unknown)} (known: {', '.join(known)})")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in datasets:
        results[name] = run_dataset(name, args, recipes)
        path = args.out / "quality.json"
        previous = json.loads(path.read_text()) if path.exists() else {}
        if name in previous:  # keep the methods of earlier runs that this one did not redo
            results[name]["methods"] = {**previous[name]["methods"],
                                        **results[name]["methods"]}
        previous[name] = results[name]
        path.write_text(json.dumps(previous, indent=2) + "\n")
    everything = json.loads((args.out / "quality.json").read_text())
    (args.out / "quality.md").write_text(markdown(everything, args.budget))
    print(table(results))
    print(f"\nwritten: {args.out / 'quality.json'}, {args.out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
