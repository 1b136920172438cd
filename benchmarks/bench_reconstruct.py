"""Reconstruction speed of cryocare.reconstruct.reconstruct (weighted back-projection).

Usage: ``python benchmarks/bench_reconstruct.py [--tilts 41] [--size 512] [--thickness 256]
[--binning 1] [--repeat 3]``. Reconstructs a random tilt series of ``tilts`` projections of
``size`` x ``size`` pixels into ``thickness/binning`` x ``size/binning``² voxels and prints
the best time, output voxels per second and peak resident memory. The default size is a
typical 4x-binned K3 tilt series.
"""

import argparse
import resource
import time

import numpy as np

from cryocare.reconstruct import reconstruct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tilts", type=int, default=41)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--thickness", type=int, default=256)
    parser.add_argument("--binning", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    angles = np.linspace(-60.0, 60.0, args.tilts)
    series = np.random.default_rng(0).normal(size=(args.tilts, args.size, args.size))
    series = series.astype(np.float32)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        rec = reconstruct(series, angles, thickness=args.thickness, binning=args.binning)
        times.append(time.perf_counter() - start)
    best = min(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"reconstruct {args.tilts} x {args.size} x {args.size} (bin {args.binning}) -> "
          f"{rec.volume.shape}: best {best:.2f} s of {args.repeat}, "
          f"{rec.volume.size / best / 1e6:.1f} Mvoxel/s, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
