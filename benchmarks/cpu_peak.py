"""Per-core float32 and bfloat16 matrix-multiply rate through TensorFlow's oneDNN: the ceiling.

A 3-D U-Net pass is convolutions, i.e. matrix products: no pass runs faster than the matrix
product itself. This measures that ceiling on one thread, so a prediction's rate can be read
as a fraction of it (``docs/predict.md``: cryoCARE's network needs 99.4 kFLOP per voxel per
pass, 2 x 49.7 k multiply-adds). Run it on one core of a quiet machine::

    taskset -c 1 python benchmarks/cpu_peak.py

Prints GFLOP/s per core, the best of five 2048 x 2048 products, as JSON.
"""

from __future__ import annotations

import json
import os
import time


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    n = 2048
    rates = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal((n, n), seed=0), dtype)
        b = tf.cast(tf.random.normal((n, n), seed=1), dtype)
        product = tf.function(lambda x, y: tf.linalg.matmul(x, y))
        product(a, b).numpy()  # trace and warm up
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            product(a, b).numpy()
            best = min(best, time.perf_counter() - start)
        rates[dtype.name] = round(2 * n**3 / best / 1e9, 1)
    print(json.dumps({"gflops_per_core": rates}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
