"""Self-tuned baselines against fixed settings, on seeded simulated tomograms.

Usage: ``python benchmarks/filter_tuning.py [--shapes 48x128x128,96x256x256]
[--doses 2.5,1.0] [--seed 0] [--json out.json]``.

For each tomogram (``cryocare.simulate.simulate_tomogram``), the average of the
halves is filtered and scored by PSNR against the noiseless volume after an
affine fit (``cryocare.metrics.psnr_affine``): raw; NAD at every iteration count
from 1 to 30 (one diffusion path), so that the best of 5-30 and the fixed 10
and 20 are known; NAD, Gaussian and median tuned by ``cryocare.filters.tune``
for the average (the default) and, for NAD, for one half; the Gaussian and
median grids. Prints one Markdown table row per tomogram and method.
"""

import argparse
import json
import time

import numpy as np

from cryocare.filters import CANDIDATES, _nad_steps, gaussian, median, nad, tune
from cryocare.metrics import psnr_affine
from cryocare.simulate import simulate_tomogram


def _row(name, chosen, db, raw, best, seconds=None):
    gap = f"{db - best:+.2f}" if best is not None else ""
    time_text = f"{seconds:.0f}" if seconds is not None else ""
    return f"| {name} | {chosen} | {db:.2f} | {db - raw:+.2f} | {gap} | {time_text} |"


def run(shape, dose, seed):
    sim = simulate_tomogram(shape, seed=seed, dose_per_tilt=dose)
    even, odd, clean = sim.even, sim.odd, sim.clean
    average = (even + odd) / np.float32(2)
    raw = psnr_affine(clean, average)
    result = {"shape": list(shape), "dose": dose, "seed": seed, "raw": raw, "nad": {}}
    for step, u in _nad_steps(average, k=None, time_step=0.1, sigma=1.0):
        if step:
            result["nad"][step] = psnr_affine(clean, u)
        if step == 30:
            break
    best_iterations = max(range(5, 31), key=lambda n: result["nad"][n])
    best = result["nad"][best_iterations]
    rows = [f"| raw average | | {raw:.2f} | +0.00 | | |"]
    for n in (5, 10, 20):
        rows.append(_row(f"NAD, {n} iterations", n, result["nad"][n], raw, best))
    rows.append(_row("NAD, best of 5-30", best_iterations, best, raw, best))
    for target in ("average", "half"):
        start = time.perf_counter()
        params, _ = tune("nad", even, odd, target=target)
        seconds = time.perf_counter() - start
        n = params["iterations"]
        db = result["nad"].get(n) or psnr_affine(clean, nad(average, iterations=n))
        result[f"nad_tuned_{target}"] = {"iterations": n, "psnr": db, "seconds": seconds}
        rows.append(_row(f"NAD, tuned for the {target}", n, db, raw, best, seconds))
    for method, function, option in (("gaussian", gaussian, "sigma"),
                                     ("median", median, "size")):
        grid = {v: psnr_affine(clean, function(average, **{option: v}))
                for v in CANDIDATES[method]}
        top = max(grid, key=grid.get)
        start = time.perf_counter()
        params, _ = tune(method, even, odd)
        seconds = time.perf_counter() - start
        chosen = params[option]
        result[method] = {"grid": grid, "tuned": chosen, "seconds": seconds}
        rows.append(_row(f"{method}, best of {list(grid)}", top, grid[top], raw, grid[top]))
        rows.append(_row(f"{method}, tuned", chosen, grid[chosen], raw, grid[top], seconds))
    return result, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", default="48x128x128,96x256x256")
    parser.add_argument("--doses", default="2.5,1.0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = []
    for text in args.shapes.split(","):
        shape = tuple(int(v) for v in text.split("x"))
        for dose in (float(v) for v in args.doses.split(",")):
            result, rows = run(shape, dose, args.seed)
            results.append(result)
            print(f"\n{text}, dose {dose:g} e/Å² per tilt, seed {args.seed}\n")
            print("| method | setting | PSNR (dB) | vs raw | vs best | tuning (s) |")
            print("|---|---|---|---|---|---|")
            print("\n".join(rows), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
