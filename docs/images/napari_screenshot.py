"""Make docs/images/napari.png: the cryocare widget in napari on the simulated demo tomogram.

From the repository root, with the napari extra installed, on a desktop::

    .venv/bin/python docs/images/napari_screenshot.py

or headless, on a virtual display (Debian: apt-get install xvfb xauth libxcb-icccm4
libxcb-keysyms1, the libraries of Qt's xcb platform; the offscreen platform does not
draw napari's canvas)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/images/napari_screenshot.py

It simulates the demo's 64x192x192 tomogram (``cryocare simulate``), opens its halves
with the plugin's reader, restores the slab around the middle slice with the pretrained
model, fine-tunes for ``--budget`` seconds and shows raw, zero-shot and fine-tuned side by
side (napari's grid). Prints the seconds each step took.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import napari
from qtpy.QtWidgets import QApplication

OUTPUT = Path(__file__).resolve().parent / "napari.png"


def wait(worker) -> float:
    done, start = [], time.monotonic()
    worker.finished.connect(lambda: done.append(True))
    while not done:
        QApplication.processEvents()
        time.sleep(0.02)
    return time.monotonic() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=60, help="fine-tuning seconds")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the PNG file")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp())
    cryocare = Path(sys.executable).parent / "cryocare"
    subprocess.run([str(cryocare), "simulate", str(folder), "--shape", "64,192,192",
                    "--seed", "1", "-q"], check=True)
    viewer = napari.Viewer(title="cryocare in napari")
    viewer.window.resize(1500, 900)
    for name in ("even", "odd"):
        viewer.open(folder / f"{name}.mrc", plugin="cryocare-ng")
    _, widget = viewer.window.add_plugin_dock_widget("cryocare-ng", "Denoise (cryocare)")
    even = viewer.layers["even"]
    viewer.dims.set_point(0, 32 * even.scale[0])
    widget.half_width.setValue(4)
    print(f"preview: {wait(widget.preview()):.1f} s")
    widget.budget_box.setValue(args.budget)
    widget.tta_box.setChecked(False)
    widget.output_edit.setText(str(folder / "denoised.mrc"))
    print(f"fine-tune and denoise: {wait(widget.fine_tune()):.1f} s; {widget.status.text()}")
    viewer.layers["odd"].visible = False
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9
    grid.enabled = True
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    iio.imwrite(args.output, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {args.output}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
