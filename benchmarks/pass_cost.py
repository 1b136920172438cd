"""Cost per voxel of one forward pass, level by level and as one graph, on a cut and a whole tile.

The planner's measured constants (``cryocare.predict.PASS_COST``) come from this: the
level-by-level pass costs the same per voxel at any size, one graph less on small passes
and more on large ones. Run it on one core for per-core figures::

    taskset -c 1 python benchmarks/pass_cost.py [MODEL]    # default: cryoCARE's network (fixture)

Prints nanoseconds per input voxel for each pass and size, as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT.parent / "shared" / "fixtures" / "cryocare-0.3.0" / "model.tar.gz"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from cryocare.cli.app import load_backend

    load_backend()
    from cryocare.modelfiles import load_model
    from cryocare.predict import PredictionPlan
    from cryocare.tiling import plan_tiles

    model = load_model(argv[0] if argv else FIXTURE)
    spec = model.spec()
    full = np.random.default_rng(0).normal(size=(2, 128, 384, 384)).astype(np.float32)
    result = {}
    for streamed in (True, False):
        tiles = plan_tiles(full.shape[1:], halo=spec.halo, multiple_of=spec.multiple_of)
        plan = PredictionPlan(tiles=tiles, batch_size=1, separate=False, streamed=streamed,
                              chunk_bytes=2**30 if streamed else 0, precision="float32",
                              memory=0, cost=0.0)
        forward = model._forward(plan)
        for name, batch in (("2x128^3", full[:, :, :128, :128]), ("2x128x384x384", full)):
            batch = np.ascontiguousarray(batch)
            forward(np.ascontiguousarray(batch[:, :64, :64, :64]))  # warm-up: tracing
            start = time.perf_counter()
            forward(batch)
            seconds = time.perf_counter() - start
            key = f"{'level by level' if streamed else 'one graph'}, {name}"
            result[key] = round(seconds / batch.size * 1e9, 1)
    print(json.dumps({"ns_per_voxel": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
