"""Missing-wedge restoration on held-out data: N2N vs the two-scale wedge restoration.

On the held-out datasets of ``benchmarks/wedge_quality.py`` (seeds 10 010 and
up, never used for training; ±60° and ±45°), one run each of:

* ``clean`` — the noiseless wedged reconstruction (the ceiling of a denoiser);
* ``n2n zero-shot`` — ``load_model("pretrained").denoise(even, odd)``;
* ``wedge zero-shot`` — ``load_model("pretrained", wedge=...).denoise(even, odd)``:
  the general model denoises, the shipped restorer fills the cone
  (:class:`cryocare.isotropic.WedgeRestorer`);
* with ``--budget B`` > 0, one training run ``train_on_pair(even, odd,
  budget=B, wedge=...)`` (what ``cryocare denoise --wedge`` does) scored
  twice: ``n2n fine-tuned`` — its denoiser alone, which is exactly what
  ``cryocare denoise`` without ``--wedge`` trains (same seed, same
  budget); ``wedge fine-tuned`` — the restoration it writes; both with the
  recipe's test-time augmentation, the time column counting training and
  prediction;
* with ``--wedge-share S``, the same with the restorer fine-tuned on the
  binned halves for a share S of the budget (``wedge + restorer tuned``);

and zero-shot on two tilt ranges outside the restorer's training family
(±30°, ±80°), scored by ``wedge_quality.score`` against the wedged and the
wedge-free truth. Writes ``wedge_restore.json`` and ``wedge_restore.md``
into ``--out`` (never over an earlier result unless ``--overwrite``).

Usage::

    python benchmarks/wedge_restore.py --budget 180                 # 3-minute fine-tuning
    python benchmarks/wedge_restore.py --datasets smoke --budget 20 --out /tmp/w
    ONEDNN_MAX_CPU_ISA=AVX2 taskset -c 0 python benchmarks/wedge_restore.py --budget 720 \
        --precision float32 --out /tmp/proxy                        # the slow-machine proxy
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pretrain import machine  # noqa: E402
from wedge_quality import COLUMNS, DATASETS, _finite_or_none, _write, score  # noqa: E402

from cryocare.simulate import simulate_tomogram  # noqa: E402
from cryocare.wedge import Wedge  # noqa: E402

log = logging.getLogger("wedge_restore")

#: Outside the restorer's training family (tilt ranges ±40° to ±70°): zero-shot only.
#: Seeds apart from wedge_quality's (10 010-10 019) and from every training seed.
OUTSIDE = {"pm30-small": ((64, 192, 192), 10_030, (-30.0, 30.0)),
           "pm80-small": ((64, 192, 192), 10_031, (-80.0, 80.0))}


def run_dataset(name: str, *, budget: float, seed: int, wedge_share: float = 0.0,
                precision: str | None = None) -> dict:
    import cryocare
    from cryocare.recipe import DEFAULT_RECIPE, train_on_pair

    shape, data_seed, tilt_range = {**DATASETS, **OUTSIDE}[name]
    data = simulate_tomogram(shape, seed=data_seed, tilt_range=tilt_range)
    wedge = Wedge(*tilt_range, tilt_axis=data.tilt_axis)
    spec = f"{tilt_range[0]:g},{tilt_range[1]:g}"
    even, odd = data.even, data.odd
    recipe = DEFAULT_RECIPE if precision is None else DEFAULT_RECIPE.replace(
        config=DEFAULT_RECIPE.config.replace(train_precision=precision))
    rows = {}

    def record(method, seconds, restored):
        rows[method] = {**score(np.asarray(restored, np.float32), data, wedge),
                        "seconds": seconds}
        log.info("%s %s: %s", name, method,
                 ", ".join(f"{k} {v:.4g}" for k, v in rows[method].items()))

    for method, run in {
        "clean": lambda: data.clean,
        "n2n zero-shot": lambda: cryocare.load_model("pretrained").denoise(even, odd),
        "wedge zero-shot": lambda: cryocare.load_model("pretrained", wedge=spec).denoise(
            even, odd),
    }.items():
        start = time.perf_counter()
        restored = run()
        record(method, time.perf_counter() - start, restored)
    runs = [] if name in OUTSIDE or budget <= 0 else [("", 0.0)]
    if runs and wedge_share > 0:
        runs.append((" (restorer tuned)", wedge_share))
    for suffix, share in runs:
        start = time.perf_counter()
        model = train_on_pair(even, odd, recipe=recipe.replace(wedge_share=share), budget=budget,
                              seed=seed, wedge=spec)
        trained = time.perf_counter() - start
        if not suffix:
            start = time.perf_counter()
            denoised = model.denoiser.denoise(even, odd, tta=recipe.tta)
            record("n2n fine-tuned", trained + time.perf_counter() - start, denoised)
        start = time.perf_counter()
        restored = model.denoise(even, odd, tta=recipe.tta)
        record("wedge fine-tuned" + suffix, trained + time.perf_counter() - start, restored)
    return {"shape": list(shape), "seed": data_seed, "tilt_range": list(tilt_range),
            "tilt_axis": data.tilt_axis, "budget_seconds": budget, "wedge_share": wedge_share,
            "scores": rows}


def table(results: dict) -> str:
    lines = ["| data | method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for name, result in results.items():
        for method, scores in result["scores"].items():
            cells = [fmt.format(scores[key]) for key, _, fmt in COLUMNS]
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="pm60-small,pm45-small",
                        help=f"comma-separated, of {', '.join({**DATASETS, **OUTSIDE})} "
                             f"(the last two: zero-shot only)")
    parser.add_argument("--budget", type=float, default=180.0,
                        help="fine-tuning seconds (default 180)")
    parser.add_argument("--wedge-share", type=float, default=0.0,
                        help="also a run with the restorer fine-tuned for this share of the "
                             "budget")
    parser.add_argument("--precision", default=None,
                        help="training precision (e.g. float32 on the proxy; default the "
                             "recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "wedge")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    known = {**DATASETS, **OUTSIDE}
    unknown = [d for d in names if d not in known]
    if unknown:
        parser.error(f"--datasets: expected some of {', '.join(known)}, found {unknown}")
    paths = [args.out / "wedge_restore.json", args.out / "wedge_restore.md"]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.overwrite:
        parser.error(f"{', '.join(existing)} exist (use --overwrite to replace them)")
    results = {name: run_dataset(name, budget=args.budget, seed=args.seed,
                                 wedge_share=args.wedge_share, precision=args.precision)
               for name in names}
    import keras

    report = {"command": "python benchmarks/wedge_restore.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine(), "keras_backend": keras.backend.backend(),
              "datasets": results}
    args.out.mkdir(parents=True, exist_ok=True)
    _write(paths[0], json.dumps(_finite_or_none(report), indent=2) + "\n")
    _write(paths[1], table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
