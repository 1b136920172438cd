"""Figure of a real tomogram: raw, the zero-shot model, Topaz-Denoise (issue 29).

No real cryo-ET tomogram could be installed from the registries this project reaches
(PyPI, Debian, npm; see ``docs/overshoot.md`` for what was searched), so this script
takes the tomogram as a file: any MRC/TIFF volume that ``cryocare.io.read`` reads,
dense material dark (IMOD convention), no halves needed. It crops it (Topaz on a CPU
needs about 4 CPU-minutes and 8.8 GB per 64x128x128 block), runs

* ``cryocare.load_model("pretrained").predict(volume)`` (and any ``--model``),
* ``topaz denoise3d -m unet-3d-10a -d -1`` from Topaz's own environment (``--topaz``),

and draws the central XY slice and a central XZ slice of each, every panel scaled to
its own 0.5-99.5 percentiles, with the percentage of voxels of each output darker than
the darkest 0.1 % of a Gaussian-smoothed (sigma 2) input in the title (dark blotches).

Usage::

    python benchmarks/real_tomogram.py tomo.mrc --crop 64,256,256 \\
        --topaz .venv-topaz/bin/topaz --output docs/images/real_tomogram.png
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import cryocare
from cryocare import io
from cryocare.filters import gaussian


def centre_crop(volume: np.ndarray, shape) -> np.ndarray:
    starts = [max(0, (n - s) // 2) for n, s in zip(volume.shape, shape, strict=True)]
    return np.ascontiguousarray(volume[tuple(slice(a, a + s) for a, s in
                                             zip(starts, shape, strict=True))], dtype=np.float32)


def topaz(executable: str, model: str, volume: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.mrc"
        io.write(path, volume)
        subprocess.run(["nice", "-n", "5", executable, "denoise3d", "-m", model, "-d", "-1",
                        "-j", "2", "-o", str(Path(tmp) / "out"), str(path)],
                       check=True, stdout=subprocess.DEVNULL)
        return io.read(Path(tmp) / "out" / "input.mrc").astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="a tomogram (MRC or TIFF), dense material dark")
    parser.add_argument("--crop", default="64,256,256", help="Z,Y,X of the central crop")
    parser.add_argument("--model", action="append", default=[], help="another model folder")
    parser.add_argument("--topaz", default="", help="the topaz executable (its own venv)")
    parser.add_argument("--topaz-model", default="unet-3d-10a")
    parser.add_argument("--output", default="docs/images/real_tomogram.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = centre_crop(io.read(args.input), [int(s) for s in args.crop.split(",")])
    panels = [("raw", volume)]
    for spec in ["pretrained", *args.model]:
        name = "ours zero-shot" if spec == "pretrained" else f"model {Path(spec).name}"
        panels.append((name, cryocare.load_model(spec).predict(volume)))
    if args.topaz:
        panels.append((f"Topaz {args.topaz_model}", topaz(args.topaz, args.topaz_model, volume)))

    smooth = gaussian(volume, sigma=2.0)
    z, y = volume.shape[0] // 2, volume.shape[1] // 2
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 3.2 + 1.6),
                             gridspec_kw={"height_ratios": [volume.shape[1], volume.shape[0]]},
                             squeeze=False)
    for i, (name, out) in enumerate(panels):
        # darker than anything: below the darkest 0.1 % of the smoothed input, after
        # matching the output's mean and s.d. to the smoothed input's
        matched = (out - out.mean()) / out.std() * smooth.std() + smooth.mean()
        dark = 100 * float(np.mean(matched < np.percentile(smooth, 0.1)))
        for row, image in enumerate((out[z], out[:, y, :])):
            lo, hi = np.percentile(image, [0.5, 99.5])
            axes[row, i].imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect="equal")
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
        axes[0, i].set_title(f"{name}\n{dark:.2f} % below input's 0.1 %", fontsize=9)
    axes[0, 0].set_ylabel(f"XY, Z = {z}")
    axes[1, 0].set_ylabel(f"XZ, Y = {y}")
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
