"""Learned diffusion vs the default U-Net: prediction speed, and quality at equal budgets.

1. Speed: Mvoxel/s of ``CAREModel.predict`` on a random volume of ``--shape``
   (default 64×256×256) for the default U-Net (``CareConfig()``) and the
   default diffusion network (``CareConfig(network="diffusion")``); untrained
   weights (speed does not depend on them). Each is run once to compile, then
   timed ``--repeats`` times (best time kept).
2. Quality (only with ``--budget SECONDS``): a simulated tomogram of
   ``--sim-shape`` (default 96×256×256); U-Net and diffusion (both with
   ``cryocare.training.train``) each trained for at most ``--budget``
   seconds of wall time (epochs are cut when the budget is spent), then PSNR
   against the noiseless tomogram for raw, median, NAD, diffusion and U-Net.

Run on a quiet machine::

    python benchmarks/diffusion_speed.py                     # speed, full size
    python benchmarks/diffusion_speed.py --budget 180        # + quality at 3 minutes each
    python benchmarks/diffusion_speed.py --shape 16,64,64 --budget 20 --sim-shape 32,64,64
                                                            # smoke test
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np

from cryocare.config import CareConfig
from cryocare.model import CAREModel
from cryocare.normalize import Normalization


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def speed(config: CareConfig, volume: np.ndarray, *, repeats: int) -> float:
    """Mvoxel/s of tiled prediction (best of ``repeats`` after one warm-up run)."""
    model = CAREModel(config, Normalization(mean=0.0, std=1.0))
    model.predict(volume)
    best = min(_timed(model.predict, volume) for _ in range(repeats))
    return volume.size / best / 1e6


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


class Budget(keras.callbacks.Callback):
    """Stop training once ``seconds`` of wall time have passed since ``start``."""

    def __init__(self, seconds: float, start: float):
        super().__init__()
        self.seconds, self.start = seconds, start

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def quality(shape: tuple[int, ...], budget: float, *, seed: int = 0) -> dict[str, float]:
    from cryocare.filters import median, nad
    from cryocare.metrics import psnr
    from cryocare.pairs import sample_pairs
    from cryocare.simulate import simulate_tomogram
    from cryocare.training import train, train_stagewise

    data = simulate_tomogram(shape, seed=seed)
    pairs = sample_pairs([data.even], [data.odd], patch_shape=32, n_patches=1200, seed=seed)
    raw = (data.even + data.odd) / 2
    scores = {"raw": psnr(data.clean, raw), "median": psnr(data.clean, median(raw)),
              "nad": psnr(data.clean, nad(raw))}
    many = {"train_epochs": 1000, "train_steps_per_epoch": 20}
    start = time.perf_counter()
    unet = train(pairs, CareConfig(**many), callbacks=[Budget(budget, start)])
    scores["unet"] = psnr(data.clean, unet.denoise(data.even, data.odd))
    scores["unet_train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    config = CareConfig(network="diffusion", train_learning_rate=1e-2, **many)
    diffusion = train_stagewise(pairs, config, stage_epochs=1,
                                callbacks=[Budget(budget, start)])
    scores["diffusion"] = psnr(data.clean, diffusion.denoise(data.even, data.odd))
    scores["diffusion_train_s"] = time.perf_counter() - start
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=_shape, default=(64, 256, 256))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget", type=float, help="training seconds per network")
    parser.add_argument("--sim-shape", type=_shape, default=(96, 256, 256))
    args = parser.parse_args()
    volume = np.random.default_rng(0).normal(size=args.shape).astype(np.float32)
    result = {"shape": args.shape, "backend": keras.backend.backend()}
    result["unet_mvox_s"] = speed(CareConfig(), volume, repeats=args.repeats)
    result["diffusion_mvox_s"] = speed(CareConfig(network="diffusion"), volume,
                                       repeats=args.repeats)
    result["speed_ratio"] = result["diffusion_mvox_s"] / result["unet_mvox_s"]
    if args.budget:
        result["quality"] = quality(args.sim_shape, args.budget)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
