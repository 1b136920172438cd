"""Does the zero-shot model overshoot next to strong edges, and does Topaz-Denoise?

Issue 29: on a real tomogram of virus-like particles the shipped pretrained model
(``cryocare.load_model("pretrained").predict(volume)``) left patches darker than
anything else next to the strongest edges. This benchmark measures that error on
simulated tomograms whose truth is known, with more dense material than the
simulator's defaults:

* ``default``: the simulator's defaults (reference);
* ``crowded``: ``crowding=2``, ``macromolecules=4`` (many ribosome-like clusters);
* ``vlp``: the default lamella filling ``Z`` (``slab_fraction=1``) plus virus-like
  particles: spherical capsids of radius 14-22 nm, a Gaussian shell of peak
  density 2.0 (twice a ribosome's) and a genome of density 0.6 inside;
* ``gold``: the defaults plus gold-like beads, 10 nm spheres of density 6.

The extra objects are drawn into the :func:`cryocare.simulate.phantom` (patched in
this process only; the noise draws are unchanged) and imaged as the simulator
images everything. The input is a tomogram without halves, ``(even + odd) / 2``;
the truth is ``clean`` (noise-free, same CTF and missing wedge).

Strong edges: voxels within 3 voxels (Euclidean) of where the truth's gradient
magnitude (Gaussian derivative, sigma 1 voxel) is in its top 1 %. This marks both
sides of the sharpest transitions (capsids, membranes, beads) wherever they are,
rather than the interior of the darkest objects; the alternative definition
(within 3 voxels of where the truth is darker than its 1st percentile) is reported
too (``near_dark``). "Away" is every other voxel.

Every output is fitted to the truth by least squares over the whole volume
(``a * output + b``, as :func:`cryocare.metrics.psnr_affine` does) and the
residual ``fit - truth`` is divided by the truth's standard deviation. Reported,
per method: the 1st and 99th percentiles of the residual near strong edges and
away from them (a more negative 1st percentile near edges = darker overshoot),
the fraction of voxels near edges whose fit is darker than the darkest voxel of
the truth (``below_min``), and PSNR after the affine fit.

Methods: the even/odd average (``raw``), a Gaussian filter (sigma 1), the shipped
zero-shot model (``ours``), any ``--model`` folder, Topaz-Denoise's pretrained 3-D
models (``topaz denoise3d -m unet-3d-10a`` / ``unet-3d-20a`` on the CPU, run from
its own virtual environment with ``--topaz``), and variants of ``ours`` that need no
retraining (``--variants``, see ``VARIANTS``).

Usage::

    python benchmarks/edge_overshoot.py --shape 64,128,128 --seeds 1 \\
        --topaz .venv-topaz/bin/topaz --model OTHER_MODEL_FOLDER \\
        --variants robust,clipnorm,std2,clipout,blur05 --save-outputs \\
        --output benchmarks/results/overshoot

Probes (``case:probe``, see :func:`make_case`) and ``--figure`` are described
in ``docs/overshoot.md``.

Topaz outputs are cached as MRC files under ``<output>/work`` (ignored by git),
so a second run only re-scores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

import cryocare
import cryocare.simulate as simulate
from cryocare import io
from cryocare.filters import gaussian
from cryocare.metrics import psnr_affine
from cryocare.normalize import Normalization

log = logging.getLogger("edge_overshoot")

CASES = {
    "default": {"settings": {}, "extra": None},
    "crowded": {"settings": {"crowding": 2.0, "macromolecules": 4.0}, "extra": None},
    "vlp": {"settings": {"slab_fraction": 1.0}, "extra": "vlp"},
    "gold": {"settings": {}, "extra": "gold"},
}


# ---------------------------------------------------------------- dense objects
def _sphere_box(shape, centre, half):
    lo = [max(0, int(np.floor(c - half))) for c in centre]
    hi = [min(n, int(np.ceil(c + half)) + 1) for c, n in zip(centre, shape, strict=True)]
    if any(b <= a for a, b in zip(lo, hi, strict=True)):
        return None
    grids = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)))
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), r.astype(np.float32)


def _place(rng, shape, radii, low, high, gap):
    """Non-overlapping centres for ``radii`` (largest first), by rejection."""
    centres, kept = [], []
    for radius in sorted(radii, reverse=True):
        for _ in range(200):
            c = rng.uniform(low, high)
            pairs = zip(centres, kept, strict=True)
            if all(np.linalg.norm(c - o) > radius + r + gap for o, r in pairs):
                centres.append(c)
                kept.append(radius)
                break
    return centres, kept


def add_vlps(density, labels, rng, nm):
    """Virus-like particles: capsid shells of peak 2.0 (sigma 1.2 nm), genome 0.6 inside."""
    nz, ny, nx = density.shape
    n = max(2, int(round(ny * nx / (nm * nm) / 3500)))
    radii = rng.uniform(14 * nm, 22 * nm, n)
    low = np.array([0.0, 0, 0])
    high = np.array([nz - 1.0, ny - 1, nx - 1])
    centres, radii = _place(rng, density.shape, radii, low, high, 3 * nm)
    sigma = 1.2 * nm
    for centre, radius in zip(centres, radii, strict=True):
        box = _sphere_box(density.shape, centre, radius + 4 * sigma)
        if box is None:
            continue
        sl, r = box
        shell = 2.0 * np.exp(-0.5 * ((r - radius) / sigma) ** 2)
        genome = np.where(r < radius - 3 * sigma, np.float32(0.6), np.float32(0.0))
        region = density[sl]
        inside = r < radius
        region[inside] = 0.0  # the capsid replaces what was there
        np.maximum(region, np.maximum(shell, genome), out=region)
        labels[sl][shell > 0.6] = 3
    return len(centres)


def add_gold(density, labels, rng, nm, slab):
    """Gold-like beads: 10 nm spheres of density 6 with a soft (0.5 nm) edge."""
    nz, ny, nx = density.shape
    n = max(2, int(round(ny * nx / (nm * nm) / 4000)))
    radius = 5.0 * nm
    low = np.array([slab[0] + radius, radius, radius])
    high = np.array([slab[1] - 1 - radius, ny - 1 - radius, nx - 1 - radius])
    centres, radii = _place(rng, density.shape, [radius] * n, low, high, 4 * nm)
    for centre in centres:
        sl, r = _sphere_box(density.shape, centre, radius + 3)
        value = 6.0 / (1 + np.exp((r - radius) / (0.5 * nm)))
        np.maximum(density[sl], value.astype(np.float32), out=density[sl])
        labels[sl][value > 3.0] = 3
    return len(centres)


def simulate_case(name: str, shape, seed: int):
    """The case's tomogram; its extra objects come from their own seeded generator."""
    case = CASES[name]
    original = simulate.phantom
    extra = case["extra"]

    def patched(*args, **kwargs):
        ph = original(*args, **kwargs)
        if extra is None:
            return ph
        rng = np.random.default_rng([seed, 29])
        density, labels = ph.density.copy(), ph.labels.copy()
        nm = 10.0 / ph.voxel_size
        if extra == "vlp":
            count = add_vlps(density, labels, rng, nm)
        else:
            count = add_gold(density, labels, rng, nm, ph.slab)
        log.info("%s: %d extra objects", name, count)
        return dataclasses.replace(ph, density=density, labels=labels, mask=labels > 0)

    simulate.phantom = patched
    try:
        return simulate.simulate_tomogram(shape, seed=seed, isotropic=False, **case["settings"])
    finally:
        simulate.phantom = original


def _lowpass(volume: np.ndarray, sigma_k: float) -> np.ndarray:
    """Gaussian low-pass in Fourier space, ``exp(-k^2 / (2 sigma_k^2))``, k in 1/voxel."""
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in volume.shape[:2]],
                        np.fft.rfftfreq(volume.shape[2]), indexing="ij", sparse=True)
    k2 = sum(f * f for f in freqs)
    spectrum = np.fft.rfftn(volume.astype(np.float64)) * np.exp(-k2 / (2 * sigma_k**2))
    return np.fft.irfftn(spectrum, s=volume.shape).astype(np.float32)


def make_case(spec: str, shape, seed: int):
    """``(input, truth, voxel size)`` of a case, ``base[:probe...]``.

    Probes change what the network sees without retraining anything; the noise
    ``volume - clean`` of the base tomogram is kept as it is except where said:

    * ``gainK``: the signal K times stronger (``K * clean + noise``, truth ``clean``),
      as with denser material or a higher dose per voxel;
    * ``envK``: a CTF envelope on the signal only: ``clean`` low-passed (Gaussian in
      Fourier space, sigma K/100 per voxel) in both input and truth, noise unchanged
      (the simulator has no envelope, real microscopes do);
    * ``lpK``: the whole input and the truth low-passed the same way (a binned or
      filtered reconstruction: the noise becomes correlated over a few voxels);
    * ``satQ``: the input clipped below its (Q/10)th percentile, as a tomogram saved
      in 8 bits with the darkest voxels saturated.
    """
    base, *probes = spec.split(":")
    tomo = simulate_case(base, shape, seed)
    clean = tomo.clean.astype(np.float32)
    noise = ((tomo.even + tomo.odd) / 2).astype(np.float32) - clean
    signal = clean
    for probe in probes:
        if probe.startswith("gain"):
            signal = signal * np.float32(float(probe[4:]))
        elif probe.startswith("env"):
            sigma = float(probe[3:]) / 100
            signal, clean = _lowpass(signal, sigma), _lowpass(clean, sigma)
        elif probe.startswith("lp"):
            sigma = float(probe[2:]) / 100
            signal, clean, noise = (_lowpass(v, sigma) for v in (signal, clean, noise))
        elif probe.startswith("sat"):
            continue  # applied to the finished input below
        else:
            raise ValueError(f"unknown probe {probe!r} in {spec!r}")
    volume = (signal + noise).astype(np.float32)
    for probe in probes:
        if probe.startswith("sat"):
            low = np.percentile(volume, float(probe[3:]) / 10)
            volume = np.maximum(volume, np.float32(low))
    return volume, clean, tomo.voxel_size


# ---------------------------------------------------------------- scoring
def edge_masks(truth: np.ndarray, *, top: float = 1.0, radius: float = 3.0):
    """(near strong edges, near the darkest voxels) as boolean volumes."""
    grad = ndi.gaussian_gradient_magnitude(truth.astype(np.float32), 1.0)
    edges = grad >= np.percentile(grad, 100 - top)
    near = ndi.distance_transform_edt(~edges) <= radius
    dark = truth <= np.percentile(truth, top)
    near_dark = ndi.distance_transform_edt(~dark) <= radius
    return near, near_dark


def affine_fit(output: np.ndarray, truth: np.ndarray) -> np.ndarray:
    x = output.astype(np.float64).ravel()
    t = truth.astype(np.float64).ravel()
    xc = x - x.mean()
    a = float(xc @ (t - t.mean()) / (xc @ xc))
    b = t.mean() - a * x.mean()
    return (a * output.astype(np.float64) + b).reshape(truth.shape)


def score(output: np.ndarray, truth: np.ndarray, near: np.ndarray, near_dark: np.ndarray):
    fit = affine_fit(output, truth)
    scale = float(truth.std())
    res = (fit - truth) / scale
    out = {"psnr": round(float(psnr_affine(truth, output)), 3)}
    for key, mask in (("near", near), ("away", ~near), ("near_dark", near_dark)):
        values = res[mask]
        out[f"{key}_p1"] = round(float(np.percentile(values, 1)), 3)
        out[f"{key}_p99"] = round(float(np.percentile(values, 99)), 3)
        out[f"{key}_rms"] = round(float(np.sqrt(np.mean(values**2))), 3)
    out["below_min"] = round(float(np.mean(fit[near] < truth.min())), 5)
    out["fit_min"] = round(float((fit.min() - truth.mean()) / scale), 3)
    out["truth_min"] = round(float((truth.min() - truth.mean()) / scale), 3)
    return out


# ---------------------------------------------------------------- methods
def robust_normalization(volume: np.ndarray) -> Normalization:
    """Median and 1.4826 x median absolute deviation: the strong densities barely move them."""
    median = float(np.median(volume))
    mad = float(np.median(np.abs(volume - median))) * 1.4826
    return Normalization(mean=median, std=mad)


def clipped_normalization(volume: np.ndarray, q: float = 0.5) -> Normalization:
    """Mean and s.d. of the volume clipped to its [q, 100 - q] percentiles."""
    lo, hi = np.percentile(volume, [q, 100 - q])
    clipped = np.clip(volume, lo, hi)
    return Normalization(mean=float(clipped.mean()), std=float(clipped.std()))


def predict_variant(model, volume: np.ndarray, variant: str) -> np.ndarray:
    if variant == "plain":
        return model.predict(volume)
    if variant == "robust":
        return model.predict(volume, normalize=robust_normalization(volume))
    if variant == "clipnorm":
        return model.predict(volume, normalize=clipped_normalization(volume))
    if variant == "std2":  # the image's s.d. doubled: inputs half as strong
        norm = Normalization(mean=float(volume.mean()), std=2 * float(volume.std()))
        return model.predict(volume, normalize=norm)
    if variant == "clipout":  # clip the output to the range of a smoothed input
        out = model.predict(volume)
        smooth = gaussian(volume, sigma=2.0)
        return np.clip(out, smooth.min(), smooth.max())
    if variant == "blur05":  # a Gaussian of sigma 0.5 voxel after the model
        return gaussian(model.predict(volume), sigma=0.5)
    if variant == "tta":
        return model.predict(volume, tta=True)
    if variant == "tiles":  # small tiles: are tile borders a cause?
        return model.predict(volume, tile_shape=(24, 48, 48))
    raise ValueError(f"unknown variant {variant!r}")


VARIANTS = ("robust", "clipnorm", "std2", "clipout", "blur05", "tta", "tiles")


def run_topaz(topaz: str, model: str, path: Path, outdir: Path, threads: int) -> np.ndarray:
    outdir.mkdir(parents=True, exist_ok=True)
    result = outdir / path.name
    if not result.exists() or result.stat().st_mtime < path.stat().st_mtime:
        cmd = ["nice", "-n", "5", topaz, "denoise3d", "-m", model, "-d", "-1",
               "-j", str(threads), "-o", str(outdir), str(path)]
        log.info("running %s", " ".join(cmd))
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        log.info("topaz %s on %s: %.0f s", model, path.name, time.perf_counter() - start)
    return io.read(result).astype(np.float32)


# ---------------------------------------------------------------- main
def markdown(rows, shape) -> str:
    lines = [
        "# Edge overshoot (issue 29)",
        "",
        f"`benchmarks/edge_overshoot.py`, {shape[0]}x{shape[1]}x{shape[2]} voxels, input "
        "(even+odd)/2, truth `clean`. Residual = (affine fit of the output to the truth - "
        "truth) / s.d.(truth). *near* = within 3 voxels of the top 1 % of the truth's "
        "gradient magnitude; *away* = the rest; *near dark* = within 3 voxels of the "
        "truth's darkest 1 %. `below min` = fraction of near-edge voxels whose fit is darker "
        "than the darkest voxel of the truth.",
        "",
        "| case | seed | method | p1 near | p1 away | p99 near | rms near | p1 near dark | "
        "below min | PSNR |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["scores"]
        lines.append(
            f"| {r['case']} | {r['seed']} | {r['method']} | {s['near_p1']:.2f} | "
            f"{s['away_p1']:.2f} | {s['near_p99']:.2f} | {s['near_rms']:.3f} | "
            f"{s['near_dark_p1']:.2f} | {s['below_min']:.4f} | {s['psnr']:.2f} |")
    return "\n".join(lines) + "\n"


def figure(npz: Path, methods, png: Path, *, z: int | None = None) -> None:
    """Slices of the truth and each method's affine fit, with the near-edge residual."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = np.load(npz)
    truth, near = saved["truth"], saved["near"]
    if z is None:  # the slice with the most strong-edge voxels
        z = int(np.argmax(near.sum(axis=(1, 2))))
    lo, hi = np.percentile(truth[z], [0.5, 99.5])
    scale = float(truth.std())
    fig, axes = plt.subplots(2, len(methods) + 1, figsize=(2.6 * (len(methods) + 1), 5.6))
    axes[0, 0].imshow(truth[z], cmap="gray", vmin=lo, vmax=hi)
    axes[0, 0].set_title("truth (clean)", fontsize=9)
    axes[1, 0].imshow(near[z], cmap="gray")
    axes[1, 0].set_title("near strong edges", fontsize=9)
    for i, method in enumerate(methods, start=1):
        fit = affine_fit(saved[method.replace(" ", "_")], truth)
        axes[0, i].imshow(fit[z], cmap="gray", vmin=lo, vmax=hi)
        axes[0, i].set_title(method, fontsize=9)
        res = (fit[z] - truth[z]) / scale
        axes[1, i].imshow(res, cmap="RdBu_r", vmin=-3, vmax=3)
        p1 = np.percentile(((fit - truth) / scale)[near], 1)
        axes[1, i].set_title(f"residual, p1 near {p1:.2f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{npz.name.replace('_outputs.npz', '')}, Z = {z} (same grey scale; "
                 "residual red = too bright, blue = too dark, +-3 s.d.)", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=72)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64,128,128")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--model", action="append", default=[],
                        help="another model folder to score (repeatable); missing ones are skipped")
    parser.add_argument("--topaz", default="", help="the topaz executable (its own venv)")
    parser.add_argument("--topaz-models", default="unet-3d-10a,unet-3d-20a")
    parser.add_argument("--topaz-cases", default="",
                        help="run Topaz only on these cases (comma-separated; default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="",
                        help=f"variants of the zero-shot model, some of {', '.join(VARIANTS)}")
    parser.add_argument("--output", default="benchmarks/results/overshoot")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--save-outputs", action="store_true",
                        help="keep every output as <output>/work/*.npz (for figures)")
    parser.add_argument("--figure", nargs=3, metavar=("NPZ", "METHODS", "PNG"),
                        help="only draw slices of saved outputs (comma-separated methods)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.figure:
        npz, methods, png = args.figure
        figure(Path(npz), methods.split(","), Path(png))
        return

    shape = tuple(int(s) for s in args.shape.split(","))
    cases = [c for c in args.cases.split(",") if c]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    out = Path(args.output)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    tag = "x".join(map(str, shape))

    # 1. simulate everything and write the inputs Topaz reads
    data = {}
    for name in cases:
        for seed in seeds:
            start = time.perf_counter()
            volume, truth, voxel = make_case(name, shape, seed)
            path = work / f"{name.replace(':', '-')}_s{seed}_{tag}.mrc"
            if not path.exists() or not np.array_equal(io.read(path), volume):
                io.write(path, volume, voxel_size=voxel, overwrite=True)  # new input: Topaz reruns
            data[name, seed] = (volume, truth, path)
            log.info("simulated %s seed %d in %.1f s", name, seed, time.perf_counter() - start)

    # 2. Topaz first, in its own process, before this one loads Keras
    outputs = {key: {} for key in data}
    for tmodel in [m for m in args.topaz_models.split(",") if m] if args.topaz else []:
        for key, (_, _, path) in data.items():
            if args.topaz_cases and key[0] not in args.topaz_cases.split(","):
                continue
            outputs[key][f"topaz {tmodel}"] = run_topaz(
                args.topaz, tmodel, path, work / tmodel, args.threads)

    # 3. filters and our models
    models = [("ours", "pretrained")] + [
        (f"model {Path(p).name}", p) for p in args.model if Path(p).exists()]
    for missing in [p for p in args.model if not Path(p).exists()]:
        log.warning("model %s does not exist; skipped", missing)
    for key, (volume, _, _) in data.items():
        outputs[key]["raw"] = volume
        outputs[key]["gaussian 1"] = gaussian(volume, sigma=1.0)
    for label, spec in models:
        model = cryocare.load_model(spec)
        for key, (volume, _, _) in data.items():
            start = time.perf_counter()
            outputs[key][label] = model.predict(volume)
            log.info("%s on %s: %.1f s", label, key, time.perf_counter() - start)
            if label == "ours":
                for v in variants:
                    outputs[key][f"ours {v}"] = predict_variant(model, volume, v)
            elif "blur05" in variants:
                outputs[key][f"{label} blur05"] = gaussian(outputs[key][label], sigma=0.5)

    # 4. score
    rows = []
    for (name, seed), (_, truth, _) in data.items():
        near, near_dark = edge_masks(truth)
        for method, output in outputs[name, seed].items():
            rows.append({"case": name, "seed": seed, "method": method,
                         "scores": score(output, truth, near, near_dark)})
            s = rows[-1]["scores"]
            log.info("%-8s s%d %-22s p1 near %6.2f away %6.2f  below_min %.4f  PSNR %.2f",
                     name, seed, method, s["near_p1"], s["away_p1"], s["below_min"], s["psnr"])
        if args.save_outputs:
            stem = f"{name.replace(':', '-')}_s{seed}_{tag}"
            np.savez_compressed(work / f"{stem}_outputs.npz", truth=truth, near=near,
                                **{m.replace(" ", "_"): o for m, o in outputs[name, seed].items()})
    stem = f"overshoot_{tag}{args.tag}"
    (out / f"{stem}.json").write_text(json.dumps(
        {"shape": shape, "cases": {c: CASES[c.split(":")[0]] for c in cases}, "seeds": seeds,
         "definition": {"edges": "top 1% of gaussian_gradient_magnitude(truth, 1)",
                        "near": "distance <= 3 voxels", "residual":
                        "(affine fit of output to truth - truth) / std(truth)"},
         "rows": rows}, indent=1))
    (out / f"{stem}.md").write_text(markdown(rows, shape))
    log.info("wrote %s", out / f"{stem}.md")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
