"""Training speed: steps/s and Mvoxel/s per Keras backend and network, and cryoCARE 0.3.0's.

Measures the real training path (``cryocare.training.train``: batch sampling,
random direction, forward, backward, Adam) at cryoCARE's default network
(U-Net depth 3, kernel 3, 16 first filters, 64³ patches, batch 16) and the
same for RED-Net (10 + 10 layers; ``--rednet-filters``, default 16, since the
paper's 64 filters are ~16x the work). Each backend runs in its own process
(Keras picks its backend at import). The first ``--warmup`` steps (tracing,
compilation) are not timed, nor is validation.

When cryoCARE 0.3.0 is installed in the reference environment
(``benchmarks/setup_reference.sh``, same TensorFlow), its CSBDeep CARE
model is timed in the same run, in its fastest setup: in-memory patches
through ``tf.data`` with prefetching, inside the ``MirroredStrategy`` scope
its ``cryoCARE_train.py`` uses.

Usage::

    python benchmarks/train_speed.py                          # full size: slow on a CPU
    python benchmarks/train_speed.py --patch 32 --batch 4 --steps 3   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _worker(args) -> dict:
    """Time cryocare.training.train in this process (KERAS_BACKEND already set)."""
    import keras
    import numpy as np

    from cryocare.config import CareConfig
    from cryocare.normalize import Normalization
    from cryocare.pairs import PairSet
    from cryocare.training import train

    rng = np.random.default_rng(0)
    shape = (args.patch,) * 3
    n = max(2 * args.batch, 8)
    x, y = rng.normal(size=(2, n, *shape)).astype(np.float32)
    pairs = PairSet(x_train=x, y_train=y, x_val=x[:1], y_val=y[:1],
                    normalization=Normalization(mean=0.0, std=1.0), patch_shape=shape,
                    tilt_axis="Y")
    config = CareConfig(network=args.network, unet_n_depth=3, unet_kern_size=3, unet_n_first=16,
                        rednet_n_layers=10, rednet_n_filters=args.rednet_filters,
                        train_batch_size=args.batch, train_epochs=1,
                        train_steps_per_epoch=args.warmup + args.steps)
    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    train(pairs, config, callbacks=[Clock()])
    seconds = times[-1] - times[args.warmup - 1]
    return {"steps_per_s": args.steps / seconds, "backend": keras.backend.backend()}


REFERENCE = """
import json, sys, time
import numpy as np
import tensorflow as tf
from csbdeep.models import Config
from cryocare.internals.CryoCARE import CryoCARE
patch, batch, steps, warmup = {patch}, {batch}, {steps}, {warmup}
rng = np.random.default_rng(0)
n = max(2 * batch, 8)
x, y = rng.normal(size=(2, n, patch, patch, patch, 1)).astype(np.float32)
times = []
class Clock(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, b, logs=None):
        times.append(time.perf_counter())
config = Config(axes="ZYXC", train_loss="mse", train_epochs=1,
                train_steps_per_epoch=warmup + steps, train_batch_size=batch, unet_kern_size=3,
                unet_n_depth=3, unet_n_first=16, train_tensorboard=False,
                train_learning_rate=4e-4)
with tf.distribute.MirroredStrategy().scope():
    model = CryoCARE(config, "bench", basedir=None)
    model.prepare_for_training()
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch).prefetch(2)
    model.keras_model.fit(data, epochs=1, steps_per_epoch=warmup + steps,
                          callbacks=[Clock()], verbose=0)
print(json.dumps({{"steps_per_s": steps / (times[-1] - times[warmup - 1])}}))
"""


def _run(command: list[str], env: dict) -> dict:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1][:120] if lines else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patch", type=int, default=64, help="patch edge (cryoCARE: 64)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (cryoCARE: 16)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--backends", default="tensorflow,torch,jax")
    parser.add_argument("--networks", default="unet,rednet")
    parser.add_argument("--rednet-filters", type=int, default=16)
    parser.add_argument("--no-reference", action="store_true", help="skip cryoCARE 0.3.0")
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "NETWORK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.network = args.worker[1]
        print(json.dumps(_worker(args)))
        return 0

    base = [f"--{k}={getattr(args, k.replace('-', '_'))}"
            for k in ("patch", "batch", "steps", "warmup", "rednet-filters")]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = []
    for backend in args.backends.split(","):
        for network in args.networks.split(","):
            result = _run([sys.executable, __file__, *base, "--worker", backend, network],
                          {**env, "KERAS_BACKEND": backend})
            rows.append((f"cryocare-ng {backend}", network, result))
            print(f"... {rows[-1][0]} {network}: {result}", file=sys.stderr)
    if not args.no_reference:
        import reference

        if reference.available():
            code = textwrap.dedent(REFERENCE).format(patch=args.patch, batch=args.batch,
                                                     steps=args.steps, warmup=args.warmup)
            python = str(reference.venv() / "bin" / "python")
            result = _run([python, "-c", code], {**env, "CUDA_VISIBLE_DEVICES": ""})
        else:
            result = {"error": "cryoCARE not installed (benchmarks/setup_reference.sh)"}
        rows.append(("cryoCARE 0.3.0 tensorflow", "unet", result))

    voxels = args.batch * args.patch**3
    print(f"\ntraining speed: {args.patch}^3 patches, batch {args.batch}, {args.steps} timed "
          f"steps after {args.warmup}; U-Net depth 3, kernel 3, 16 first filters; RED-Net "
          f"10+10 layers, {args.rednet_filters} filters")
    print(f"{'implementation':<28}{'network':<9}{'steps/s':>10}{'s/step':>10}{'Mvoxel/s':>10}")
    for name, network, result in rows:
        if "error" in result:
            print(f"{name:<28}{network:<9}  {result['error']}")
            continue
        rate = result["steps_per_s"]
        print(f"{name:<28}{network:<9}{rate:>10.3f}{1 / rate:>10.2f}{rate * voxels / 1e6:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
