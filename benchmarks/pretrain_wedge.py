"""Pretrain the shipped wedge restorer (``pretrained:wedge``) on simulated tomograms.

Regenerates ``src/cryocare/pretrained/wedge`` from seeds:

1. draws ``--n-tomograms`` settings with :func:`cryocare.simulate.random_settings`
   (seeded by ``--seed``; the general model's family — tilt ranges from
   ±40° to ±70°, asymmetric, tilt about Y or X, 4-20 Å voxels, ... — in
   tomograms of 64-128 × 128-256 × 128-256 voxels) and simulates each
   (seed ``--tomogram-seed + i``) with its wedge-free truth ``isotropic``
   (the same phantom imaged noise-free over ±90°);
2. bins the noisy halves and the truth by ``--binning`` (2: the restorer
   sees what :class:`cryocare.isotropic.WedgeRestorer` gives it, and a 32³
   patch spans 64³ voxels of the tomogram) and samples 32³ patches at the
   same places from a noisy half (the even one for half of the patches,
   the odd one for the other half) and from the truth, both normalised by
   the statistics of that tomogram's two binned noisy halves, validation
   pairs from the last 5 % of its tilt axis;
3. trains the recipe's network (the general model's architecture)
   *supervised* (``train_objective="supervised"``: noisy wedged half in,
   wedge-free truth out, mean squared error), starting from the shipped
   general model's weights, for ``--budget`` with the one training entry;
   every batch flipped along random axes and its Y and X axes swapped at
   random (flips keep a wedge where it is; the swap turns a tilt about Y
   into one about X);
4. saves the model with float32 weights, per-image normalisation,
   ``wedge_binning`` in its config and a ``provenance.json`` (settings,
   seeds, steps, time, machine).

With ``--refine`` it regenerates ``src/cryocare/pretrained/wedge-refiner``
instead: the **refiner**, which restores the cone above the binned grid's
Nyquist frequency. For each simulated tomogram (seeds 300 000 + i, settings
seed 5) the shipped restorer restores the mean of the halves binned by 2
(one pass); its cone goes into the full-resolution mean
(:func:`cryocare.wedge.merge_cone`), and the network learns, supervised on
32³ patches at full resolution, the wedge-free truth from that (input and
truth normalised by the input's statistics, as prediction with per-image
normalisation does).

Its scores on held-out seeds are written by ``benchmarks/wedge_restore.py``.

Usage::

    python benchmarks/pretrain_wedge.py                       # the shipped model
    python benchmarks/pretrain_wedge.py --tiny --output /tmp/m  # seconds: the CI check
    python benchmarks/pretrain_wedge.py --refine                # the shipped refiner
    python benchmarks/pretrain_wedge.py --refine --tiny --output /tmp/r
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pretrain import _duration, _StepCounter, augment, machine, save  # noqa: E402

from cryocare.normalize import Normalization, compute_normalization  # noqa: E402
from cryocare.pairs import PairSet, sample_pairs  # noqa: E402
from cryocare.recipe import DEFAULT_RECIPE  # noqa: E402
from cryocare.simulate import random_settings, simulate_tomogram  # noqa: E402
from cryocare.wedge import Wedge, bin_volume, merge_cone  # noqa: E402

log = logging.getLogger("pretrain_wedge")

SHIPPED = ROOT / "src" / "cryocare" / "pretrained" / "wedge"
SHIPPED_REFINER = ROOT / "src" / "cryocare" / "pretrained" / "wedge-refiner"
#: Tomogram ``i`` of the training set is simulated with seed ``TOMOGRAM_SEED + i``
#: (the general model used 100 000 + i with settings seed 0).
TOMOGRAM_SEED = 200_000
#: The refiner's tomograms (apart from the restorer's, whose outputs it learns from).
REFINER_TOMOGRAM_SEED = 300_000
PATCH = 32


def simulate_pairs(n_tomograms: int, *, seed: int, patches: int, settings_options: dict,
                   val_fraction: float = 0.05, binning: int = 1,
                   first_seed: int = TOMOGRAM_SEED, patch: int = PATCH, restorer=None
                   ) -> tuple[PairSet, list[dict]]:
    """Simulate the tomograms one by one; pairs (input, wedge-free truth) from each.

    The restorer's pairs (``restorer`` None): a noisy half and the truth, both
    binned by ``binning`` first (:func:`cryocare.wedge.bin_volume`) as the
    two-scale restoration bins before its restorer sees the data, normalised
    by the binned halves' statistics. The refiner's (``restorer`` given): at
    full resolution, :func:`refiner_input` and the truth, normalised by the
    input's statistics.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"x_train": [], "y_train": [], "x_val": [], "y_val": []}
    drawn = []
    start = time.perf_counter()

    def sample(sources, truth, norm, n, sample_seed, tilt_axis):
        pairs = sample_pairs(sources, [truth], patch_shape=patch, n_patches=n,
                             val_fraction=val_fraction, tilt_axis=tilt_axis,
                             normalization=norm, seed=sample_seed)
        for key, values in parts.items():
            values.append(getattr(pairs, key))

    for i in range(n_tomograms):
        settings = random_settings(rng, **settings_options)
        tomo = simulate_tomogram(**settings, seed=first_seed + i)
        axis = settings["tilt_axis"]
        if restorer is None:
            even, odd, truth = (bin_volume(v, binning)
                                for v in (tomo.even, tomo.odd, tomo.isotropic))
            norm = compute_normalization([even, odd])  # what prediction sees: the noisy data
            for j, half in enumerate((even, odd)):
                sample([half], truth, norm, max(2, patches // 2), seed + 2 * i + j, axis)
        else:
            wedge = Wedge(*settings["tilt_range"], tilt_axis=axis)
            source = refiner_input(tomo.even, tomo.odd, wedge, restorer,
                                   int(restorer.config.wedge_binning))
            sample([source], tomo.isotropic, compute_normalization([source]), patches, seed + i,
                   axis)
        drawn.append({"seed": first_seed + i, **settings})
        log.info("tomogram %d/%d %s, %.1f Å, tilts %s about %s (%.0f s)", i + 1, n_tomograms,
                 "x".join(map(str, settings["shape"])), settings["voxel_size"],
                 settings["tilt_range"], axis, time.perf_counter() - start)
    pairs = PairSet(**{k: np.concatenate(v) for k, v in parts.items()},
                    normalization=Normalization(0.0, 1.0), patch_shape=(patch,) * 3,
                    tilt_axis="Y", normalize="per_dataset")
    return pairs, drawn


def refiner_input(even: np.ndarray, odd: np.ndarray, wedge: Wedge, restorer,
                  binning: int) -> np.ndarray:
    """What the refiner sees: the halves' mean with its missing wedge, below the binned
    Nyquist frequency, restored by ``restorer`` (one pass, no flips)."""
    mean = (even + odd) / np.float32(2)
    coarse = restorer.predict(bin_volume(mean, binning), progress=False)
    return merge_cone(mean, coarse, wedge, binning)


def train(pairs: PairSet, *, budget: float, seed: int, steps_per_epoch: int, tiny: bool,
          learning_rate: float, init: str, binning: int = 1):
    """Fine-tune the general model supervised on ``pairs`` for ``budget`` seconds."""
    config = DEFAULT_RECIPE.config.replace(
        seed=seed, train_epochs=100_000, train_steps_per_epoch=steps_per_epoch,
        train_objective="supervised", train_learning_rate=learning_rate, wedge_binning=binning)
    if tiny:
        config = config.replace(train_batch_size=4)
    from cryocare.training import train as train_entry

    steps = _StepCounter()
    model = train_entry(pairs, config, budget=budget, init=init, progress=not tiny,
                        augment=augment, callbacks=[steps.callback()])
    return model, config, {"entry": "cryocare.training.train", "steps": steps.count}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=_duration, default=None,
                        help="training time (default 40m; --tiny: 5s)")
    parser.add_argument("--output", type=Path, default=SHIPPED, help="model folder to write")
    parser.add_argument("--n-tomograms", type=int, default=None,
                        help="simulated tomograms (default 160; --tiny: 3)")
    parser.add_argument("--patches", type=int, default=None,
                        help="patch pairs per tomogram (default 48; --tiny: 12)")
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="peak learning rate of the cosine schedule")
    parser.add_argument("--init", default="pretrained",
                        help="starting weights: 'pretrained' (the general model) or 'none'")
    parser.add_argument("--seed", type=int, default=1, help="seed of settings, sampling, training")
    parser.add_argument("--tiny", action="store_true",
                        help="a seconds-long run on a few small tomograms (CI)")
    parser.add_argument("--binning", type=int, default=2,
                        help="bin the simulated halves and truth by this factor first (the "
                             "two-scale restoration's wedge network sees binned data)")
    parser.add_argument("--depth", default=None,
                        help="Z range of the simulated tomograms, LOW,HIGH voxels (before "
                             "binning; default 64,128)")
    parser.add_argument("--lateral", default=None,
                        help="Y and X range, LOW,HIGH voxels (default 128,256)")
    parser.add_argument("--tomogram-seed", type=int, default=None,
                        help=f"seed of the first simulated tomogram (default {TOMOGRAM_SEED}; "
                             f"--refine: {REFINER_TOMOGRAM_SEED})")
    parser.add_argument("--refine", action="store_true",
                        help="train the refiner (the cone above the binned Nyquist frequency) "
                             "on what the shipped restorer gives, at full resolution")
    parser.add_argument("--restorer", default=str(SHIPPED),
                        help="with --refine: the restorer whose output the refiner learns from")
    args = parser.parse_args(argv)
    if args.refine:
        return main_refiner(args)
    if args.tomogram_seed is None:
        args.tomogram_seed = TOMOGRAM_SEED
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    n_tomograms = args.n_tomograms or (3 if args.tiny else 160)
    patches = args.patches or (12 if args.tiny else 48)
    budget = args.budget or (5.0 if args.tiny else 40 * 60.0)
    options = ({"depth": (32, 32), "lateral": (64, 64)} if args.tiny else
               {"depth": (64, 128), "lateral": (128, 256)})
    for key in ("depth", "lateral"):
        if getattr(args, key):
            low, high = (int(v) for v in getattr(args, key).split(","))
            options[key] = (low, high)
    steps_per_epoch = 5 if args.tiny else args.steps_per_epoch
    started = time.perf_counter()
    pairs, drawn = simulate_pairs(n_tomograms, seed=args.seed, patches=patches,
                                  settings_options=options, binning=args.binning,
                                  first_seed=args.tomogram_seed,
                                  patch=16 if args.tiny else PATCH)
    simulated = time.perf_counter() - started
    log.info("%d training and %d validation pairs from %d tomograms in %.0f s",
             len(pairs.x_train), len(pairs.x_val), n_tomograms, simulated)
    started = time.perf_counter()
    model, config, info = train(pairs, budget=budget, seed=args.seed,
                                steps_per_epoch=steps_per_epoch, tiny=args.tiny,
                                learning_rate=args.learning_rate, init=args.init,
                                binning=args.binning)
    trained = time.perf_counter() - started
    provenance = _provenance(
        model, config, info, pairs, drawn,
        objective="supervised: noisy wedged half -> wedge-free truth (isotropic), MSE",
        normalize="each tomogram by the statistics of its two noisy halves",
        details={"init": args.init, "binning": args.binning}, tomograms=n_tomograms,
        first_seed=args.tomogram_seed, seed=args.seed, options=options, budget=budget,
        trained=trained, simulated=simulated, argv=argv)
    output = save(model, args.output, provenance)
    log.info("trained %d steps in %.0f s; saved %s", info["steps"], trained, output)
    return 0


def main_refiner(args) -> int:
    """``--refine``: the refiner, from the general weights, for ``--budget`` (default 15 min)."""

    from cryocare.modelfiles import load_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seed = 5 if args.seed == 1 else args.seed  # the refiner's settings seed
    first = REFINER_TOMOGRAM_SEED if args.tomogram_seed is None else args.tomogram_seed
    n_tomograms = args.n_tomograms or (3 if args.tiny else 80)
    patches = args.patches or (12 if args.tiny else 48)
    budget = args.budget or (5.0 if args.tiny else 15 * 60.0)
    options = ({"depth": (32, 32), "lateral": (64, 64)} if args.tiny else
               {"depth": (64, 128), "lateral": (128, 256)})
    output = SHIPPED_REFINER if args.output == SHIPPED else args.output
    restorer = load_model(args.restorer)
    started = time.perf_counter()
    pairs, drawn = simulate_pairs(n_tomograms, seed=seed, patches=patches,
                                  settings_options=options, restorer=restorer,
                                  first_seed=first, patch=16 if args.tiny else PATCH)
    simulated = time.perf_counter() - started
    started = time.perf_counter()
    model, config, info = train(pairs, budget=budget, seed=seed,
                                steps_per_epoch=5 if args.tiny else args.steps_per_epoch,
                                tiny=args.tiny, learning_rate=args.learning_rate, init=args.init)
    trained = time.perf_counter() - started
    provenance = _provenance(
        model, config, info, pairs, drawn,
        objective="supervised: the halves' mean with its cone restored below 0.25 "
                  "cycles/voxel by the restorer (binned by 2, one pass) -> wedge-free truth, "
                  "full resolution, MSE",
        normalize="each tomogram by the statistics of the refiner's input",
        details={"restorer": str(args.restorer), "init": args.init}, tomograms=n_tomograms,
        first_seed=first, seed=seed, options=options, budget=budget, trained=trained,
        simulated=simulated)
    saved = save(model, output, provenance)
    log.info("trained %d steps in %.0f s; saved %s", info["steps"], trained, saved)
    return 0


def _provenance(model, config, info, pairs, drawn, *, objective: str, normalize: str,
                details: dict, tomograms: int, first_seed: int, seed: int, options: dict,
                budget: float, trained: float, simulated: float, argv=None) -> dict:
    """``provenance.json`` of a pretraining run: command, data, training, machine."""
    import keras

    history = model.history
    return {
        "format": "cryocare-pretraining", "format_version": 1,
        "command": "python benchmarks/pretrain_wedge.py " + " ".join(argv or sys.argv[1:]),
        "training": {
            "objective": objective, **details, "tomograms": tomograms,
            "tomogram_seeds": [first_seed, first_seed + tomograms - 1],
            "settings_seed": seed, "settings_options": options,
            "pairs_train": int(len(pairs.x_train)), "pairs_val": int(len(pairs.x_val)),
            "patch_shape": list(pairs.patch_shape), "normalize": normalize,
            "augmentation": "random flips of each axis, random Y/X swap",
            "budget_seconds": budget, "train_seconds": round(trained, 1),
            "simulate_seconds": round(simulated, 1), "steps": info["steps"],
            "epochs": len(history.get("loss", [])), "entry": info["entry"],
            "precision": model.config.train_precision,
            "best_val_loss": min(history.get("val_loss", [float("nan")])),
            "batch_size": config.train_batch_size,
            "learning_rate": config.train_learning_rate, "schedule": config.train_schedule,
        },
        "machine": machine(),
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(),
                     "numpy": np.__version__},
        "settings": drawn,
    }


if __name__ == "__main__":
    sys.exit(main())
