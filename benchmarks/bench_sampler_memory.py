"""Peak memory of cryocare.pairs.sample_pairs on several large memory-mapped tomograms.

Usage: ``python benchmarks/bench_sampler_memory.py [--count 4] [--shape 256,512,512]
[--patch 64] [--n-patches 1200] [--folder /tmp/cryocare_bench]``. Writes ``count`` even/odd
pairs of random float32 MRC tomograms (once; reused), then samples pairs from memory maps
with the global normalisation and automatic masks, twice: lazily (``plan_pairs`` and
``batches`` batches of ``batch-size`` pairs cut from the maps) and eagerly (all pairs cut
into a ``PairSet``). Prints the peak of Python/NumPy allocations of each (tracemalloc) and
the peak resident memory of the process.
"""

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cryocare import io
from cryocare.pairs import plan_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--shape", default="256,512,512")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--n-patches", type=int, default=1200)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/cryocare_bench"))
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    args.folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(args.count):
        paths = [args.folder / f"tomo{i}_{shape[0]}x{shape[1]}x{shape[2]}_{h}.mrc"
                 for h in ("EVN", "ODD")]
        for path in paths:
            if not path.exists():
                data = np.empty(shape, np.float32)
                for z in range(shape[0]):
                    data[z] = rng.normal(size=shape[1:])
                io.write(path, data, voxel_size=10.0)
                del data
        pairs.append(io.read_pair(*paths, mmap=True)[:2])
    on_disk = 2 * args.count * np.prod(shape) * 4 / 2**30
    evens, odds = [e for e, _ in pairs], [o for _, o in pairs]

    # Lazy: plan (statistics slab by slab, mask at candidate centres), then batches.
    tracemalloc.start()
    start = time.perf_counter()
    plan = plan_pairs(evens, odds, patch_shape=args.patch, n_patches=args.n_patches,
                      masks="auto", seed=0)
    rng = np.random.default_rng(0)
    for _ in range(args.batches):
        plan.patches(evens, odds, "train", rng.integers(plan.n_train, size=args.batch_size))
    lazy_seconds = time.perf_counter() - start
    _, lazy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Eager: every patch cut into one in-memory PairSet.
    tracemalloc.start()
    start = time.perf_counter()
    result = plan.to_pairs(evens, odds)
    eager_seconds = time.perf_counter() - start
    _, eager_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    patches = sum(a.nbytes for a in (result.x_train, result.y_train, result.x_val,
                                     result.y_val)) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.count} even/odd pairs of {shape} ({on_disk:.2f} GiB on disk), "
          f"{args.n_patches} patch pairs of {args.patch}^3, automatic masks:")
    print(f"  lazy  plan_pairs + {args.batches} batches of {args.batch_size}: "
          f"{lazy_seconds:.1f} s, peak allocations {lazy_peak / 2**20:.1f} MiB")
    print(f"  eager PairPlan.to_pairs ({patches:.3f} GiB of patches): {eager_seconds:.1f} s, "
          f"peak allocations {eager_peak / 2**30:.3f} GiB")
    print(f"  peak RSS of the process {rss:.2f} GiB (page cache of the memory maps included)")

if __name__ == "__main__":
    main()
