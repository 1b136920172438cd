"""Cost of the wedge objective's batch transform against a training step, on this machine.

Times ``WedgeRestoration.batch`` (16 pairs of 56³ cubes -> 32³ patches: two
rotations, the wedge imposed, the rotated mask) and a training step of the
recipe's network on such a batch with the Fourier-masked loss, in the
recipe's precision, one after the other under the same load.

Usage::

    python benchmarks/wedge_batch_cost.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    from cryocare import nets
    from cryocare.recipe import DEFAULT_RECIPE
    from cryocare.training.objectives import get
    from cryocare.training.precision import resolve

    config = DEFAULT_RECIPE.config.replace(train_objective="wedge", train_tilt_range=(-60, 60))
    config = config.replace(train_precision=resolve(config.train_precision))
    objective = get(config)
    patch = (32, 32, 32)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(config.train_batch_size, *objective.sample_shape(patch)))
    x = x.astype(np.float32)
    inputs, targets = objective.batch(x, x, rng=rng, patch_shape=patch)
    batch = []
    for _ in range(5):
        start = time.perf_counter()
        objective.batch(x, x, rng=rng, patch_shape=patch)
        batch.append(time.perf_counter() - start)
    import keras

    network = nets.build(config)
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss=objective.loss(patch))
    network.train_on_batch(inputs, targets)
    step = []
    for _ in range(5):
        start = time.perf_counter()
        network.train_on_batch(inputs, targets)
        step.append(time.perf_counter() - start)
    print(f"batch {config.train_batch_size}, {config.train_precision}: transform "
          f"{np.median(batch):.3f} s, training step {np.median(step):.3f} s (medians of 5; "
          f"ratio {np.median(batch) / np.median(step):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
