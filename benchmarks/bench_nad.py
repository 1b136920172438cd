"""Time NAD (cryocare.filters.nad) on a tomogram-sized volume.

Usage: ``python benchmarks/bench_nad.py [--shape 256,512,512] [--iterations 20]``.
Goal: a 256x512x512 tomogram in minutes on 2 CPU cores. Prints wall seconds,
CPU seconds and peak resident memory
(wall time means little on a shared machine; CPU time less so).
"""

import argparse
import resource
import time

import numpy as np

from cryocare.filters import nad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="256,512,512")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    start, cpu = time.perf_counter(), time.process_time()
    nad(volume, iterations=args.iterations)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"nad {args.iterations} iterations on {shape}: {seconds:.1f} s wall, "
          f"{cpu:.1f} s CPU, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
