"""The napari plugin: reader, slab preview, fine-tuning in a worker, cancel, save.

Headless: Qt's offscreen platform. napari draws with OpenGL, which offscreen
Qt provides only through an X display, so a virtual one (Xvfb, installed by
``make test``) is started for this module when none is set.
The widget tests need the ``napari`` extra (``pip install -e ".[napari]"``).
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

import cryocare
from cryocare import io
from cryocare.errors import InputError
from cryocare.napari import napari_get_reader, plan_slab, preview_slab, read_layers
from cryocare.recipe import DEFAULT_RECIPE


# ----------------------------------------------------------------- without napari
def test_the_reader_returns_data_and_the_voxel_size_as_scale(tmp_path):
    volume = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    mrc = io.write(tmp_path / "tomo.mrc", volume, voxel_size=(20.0, 10.0, 5.0))
    tifffile.imwrite(tmp_path / "plain.tif", volume, photometric="minisblack")
    assert napari_get_reader(str(mrc)) is read_layers
    assert napari_get_reader([str(mrc), str(tmp_path / "plain.TIF")]) is read_layers
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader([str(mrc), "notes.txt"]) is None

    (data, attributes, kind), (plain, plain_attributes, _) = read_layers(
        [mrc, tmp_path / "plain.tif"])
    assert kind == "image" and attributes["name"] == "tomo"
    np.testing.assert_array_equal(data, volume)
    assert attributes["scale"] == (20.0, 10.0, 5.0)  # (Z, Y, X), as napari orders axes
    assert attributes["metadata"]["cryocare"]["path"] == str(mrc)
    np.testing.assert_array_equal(plain, volume)
    assert "scale" not in plain_attributes  # no voxel size in the file: napari's default


def test_the_reader_names_a_bad_file(tmp_path):
    (tmp_path / "broken.mrc").write_bytes(b"not an MRC file")
    with pytest.raises(InputError, match="broken.mrc"):
        read_layers(tmp_path / "broken.mrc")


def _bounds(slab):
    return slab.start, slab.stop, slab.read_start, slab.read_stop


def test_the_slab_reads_the_halo_around_the_slices_shown_on_the_pooling_grid():
    assert _bounds(plan_slab(100, 50, half_width=3, halo=10)) == (47, 54, 37, 64)
    # Reads start on multiples of 4 (a 2-level U-Net's pooling), at least the halo away.
    assert _bounds(plan_slab(100, 50, half_width=3, halo=10, multiple_of=4)) == (47, 54, 36, 66)
    end = plan_slab(100, 200, half_width=3, halo=10)  # beyond the end: the last slice
    assert _bounds(end) == (96, 100, 86, 100)
    assert _bounds(plan_slab(5, 2, half_width=0, halo=10)) == (2, 3, 0, 5)
    with pytest.raises(InputError, match="half_width"):
        plan_slab(10, 2, half_width=-1, halo=3)


# ------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def halves():
    """A smooth volume, deeper than a slab and its halo, with two noisy halves."""
    rng = np.random.default_rng(29)
    clean = (6 * gaussian_filter(rng.normal(size=(80, 32, 32)), 2)).astype(np.float32)
    even = clean + rng.normal(size=clean.shape).astype(np.float32)
    odd = clean + rng.normal(size=clean.shape).astype(np.float32)
    return clean, even, odd


@pytest.fixture(scope="module")
def pretrained():
    return cryocare.load_model("pretrained")


def test_the_preview_of_a_slab_equals_those_slices_of_the_whole_volume(halves, pretrained):
    _, even, odd = halves
    whole = pretrained.denoise(even, odd, tile_shape=None)
    slab, restored = preview_slab(pretrained, even, odd, z=40, half_width=3)
    assert (slab.start, slab.stop) == (37, 44) and slab.read_start > 0 and slab.read_stop < 80
    # Same network, same statistics, the halo as context: equal to float32 rounding
    # (the tolerance of tiled == untiled in test_model.py).
    assert np.abs(restored - whole[37:44]).max() <= 1e-5 * np.ptp(whole)
    one, alone = preview_slab(pretrained, even, z=40, half_width=0)
    assert one.depth == 1 and alone.shape == (1, 32, 32)
    np.testing.assert_allclose(alone, pretrained.predict(even, tile_shape=None)[40:41],
                               atol=1e-5 * np.ptp(whole))


# ------------------------------------------------------------------ napari, Qt
@pytest.fixture(scope="module")
def qt_app():
    """A Qt application on the offscreen platform (the widget's buttons, timers, workers)."""
    pytest.importorskip("napari", reason="needs the napari extra")
    saved = os.environ.get("QT_QPA_PLATFORM")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from qtpy.QtWidgets import QApplication

    yield QApplication.instance() or QApplication([])
    if saved is None:
        os.environ.pop("QT_QPA_PLATFORM", None)
    else:
        os.environ["QT_QPA_PLATFORM"] = saved


@pytest.fixture
def viewer(qt_app):
    """napari's viewer model: layers, dims and readers as in the viewer, without its canvas.

    (The canvas draws with OpenGL; ``test_the_widget_runs_beside_naparis_opengl_canvas``
    runs a whole viewer in a process of its own.)
    """
    from napari.components import ViewerModel
    from npe2 import PluginManager

    PluginManager.instance().discover()  # as napari.Viewer does: finds cryocare-ng's manifest
    return ViewerModel()


def run_until(condition, timeout: float) -> float:
    """Run Qt's event loop until ``condition()``; the seconds it took."""
    from qtpy.QtWidgets import QApplication

    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not done within {timeout} s")
        QApplication.processEvents()
        time.sleep(0.01)
    return time.monotonic() - start


def finished(worker):
    done = []
    worker.finished.connect(lambda: done.append(True))
    return lambda: bool(done)


SMALL = DEFAULT_RECIPE.override(
    config=DEFAULT_RECIPE.config.replace(train_batch_size=4, train_steps_per_epoch=20),
    patch_shape=16, n_patches=64, tta=False)


@pytest.fixture
def widget(viewer, halves, tmp_path):
    from cryocare.napari._widget import CryocareWidget

    _, even, odd = halves
    for name, data in (("even", even), ("odd", odd)):
        path = io.write(tmp_path / f"{name}.mrc", data, voxel_size=(15.0, 10.0, 10.0))
        viewer.open(path, plugin="cryocare-ng")  # through the manifest's reader
    widget = CryocareWidget(viewer, recipe=SMALL, fit=False)
    yield widget
    if widget.worker is not None and widget.worker.is_running:
        widget.cancel()
        run_until(lambda: not widget.worker.is_running, timeout=30)
    widget.deleteLater()


def test_napari_opens_files_with_the_plugin_and_the_widget_pairs_the_halves(widget):
    even, odd = widget.viewer.layers
    assert tuple(even.scale) == (15.0, 10.0, 10.0) and even.data.shape == (80, 32, 32)
    assert (widget.even_box.currentText(), widget.odd_box.currentText()) == ("even", "odd")
    from npe2 import PluginManager

    from cryocare.napari._widget import CryocareWidget

    # The manifest (found through the napari.manifest entry point) names this widget.
    manifest = PluginManager.instance().get_manifest("cryocare-ng")
    [contribution] = manifest.contributions.widgets
    assert contribution.display_name == "Denoise (cryocare)"
    assert contribution.get_callable() is CryocareWidget


def test_the_slab_preview_adds_the_models_prediction_on_that_slab(widget, halves, pretrained):
    _, even, odd = halves
    viewer = widget.viewer
    viewer.dims.set_point(0, 20 * 15.0)  # world coordinates: slice 20
    widget.half_width.setValue(2)
    worker = widget.preview()
    run_until(finished(worker), timeout=60)
    layer = viewer.layers["even zero-shot"]
    expected = pretrained.denoise(even, odd, tile_shape=None)[18:23]
    assert layer.data.shape == (5, 32, 32)
    assert np.abs(layer.data - expected).max() <= 1e-5 * np.ptp(expected)
    assert tuple(layer.translate) == (18 * 15.0, 0.0, 0.0)  # over the slices it restores
    assert tuple(layer.scale) == (15.0, 10.0, 10.0)


def test_fine_tuning_runs_in_a_worker_adds_a_layer_and_saves_it_once(widget, halves, tmp_path):
    from qtpy.QtCore import QTimer

    clean, even, odd = halves
    output = tmp_path / "denoised.mrc"
    widget.output_edit.setText(str(output))
    widget.budget_box.setValue(4)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(50)
    worker = widget.fine_tune()
    assert widget.cancel_button.isEnabled() and not widget.train_button.isEnabled()
    seconds = run_until(finished(worker), timeout=60)
    timer.stop()
    # The viewer's event loop kept running while the model trained (no freeze): the
    # 50 ms timer fired with no gap of more than two seconds (a frozen viewer would not fire
    # at all until training ends; 2 s, not 1: a loaded 2-core machine stretched one gap
    # to 1.05 s while TensorFlow held both cores).
    assert len(ticks) > seconds / 0.05 / 4 and max(np.diff(ticks)) < 2.0
    assert widget.job.phase == "done" and widget.job.steps > 0
    assert widget.progress.value() == widget.progress.maximum()
    layer = widget.viewer.layers["even cryocare"]
    assert layer is widget.result_layer and layer.data.shape == even.shape
    assert tuple(layer.scale) == (15.0, 10.0, 10.0)
    # A few seconds of fine-tuning from the pretrained model still denoise.
    raw_error = np.mean(((even + odd) / 2 - clean) ** 2)
    assert np.mean((layer.data - clean) ** 2) < 0.5 * raw_error
    # Saved after fine-tuning, with the source's voxel size ...
    np.testing.assert_array_equal(io.read(output), layer.data)
    assert io.read_info(output).voxel_size == (15.0, 10.0, 10.0)
    # ... never over an existing file unless asked.
    before = output.read_bytes()
    layer.data = layer.data + 1
    assert widget.save() is None and "exists" in widget.status.text()
    assert output.read_bytes() == before
    widget.overwrite_box.setChecked(True)
    assert widget.save() == output
    np.testing.assert_array_equal(io.read(output), layer.data)


def test_cancel_stops_the_fine_tuning_and_adds_nothing(widget):
    widget.budget_box.setValue(600)
    worker = widget.fine_tune()
    done = finished(worker)
    run_until(lambda: widget.job.steps > 0 or done(), timeout=60)
    assert widget.job.phase == "training"
    widget.cancel_button.click()
    seconds = run_until(done, timeout=30)
    assert seconds < 30 and widget.job.phase == "cancelled"
    assert "cancelled" in widget.status.text()
    assert [layer.name for layer in widget.viewer.layers] == ["even", "odd"]
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_the_widget_refuses_to_fine_tune_one_volume(widget):
    widget.odd_box.setCurrentText("(none: one volume)")
    assert widget.fine_tune() is None
    assert "needs the two halves" in widget.status.text()
    widget.odd_box.setCurrentText("even")
    assert widget.preview() is None and "same layer" in widget.status.text()


# A whole napari viewer, whose canvas draws with OpenGL (Mesa in software here): the widget
# must load TensorFlow beside it (cryocare.napari._training.load_tensorflow). Imported the
# plain way after Mesa, TensorFlow crashes the process (a segfault, or at exit).
WHOLE_VIEWER = """
import sys, time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=False)
halves = np.random.default_rng(0).normal(size=(2, 24, 32, 32)).astype(np.float32)
viewer.add_image(halves[0], name="even")
viewer.add_image(halves[1], name="odd")
assert "tensorflow" not in sys.modules  # the canvas (Mesa) first, as in a user's session
_, widget = viewer.window.add_plugin_dock_widget("cryocare-ng", "Denoise (cryocare)")
assert "tensorflow" in sys.modules  # loaded by the widget, beside Mesa


def wait(worker):
    done, start = [], time.monotonic()
    worker.finished.connect(lambda: done.append(True))
    while not done and time.monotonic() - start < 120:
        QApplication.processEvents()
        time.sleep(0.02)


wait(widget.preview())
# Training builds TensorFlow graphs beside Mesa too (it crashed when TensorFlow had been
# loaded in a worker's thread): a few seconds of it, with the tests' small recipe.
from cryocare.recipe import DEFAULT_RECIPE
widget.recipe, widget.fit = DEFAULT_RECIPE.override(
    config=DEFAULT_RECIPE.config.replace(train_batch_size=4, train_steps_per_epoch=20),
    patch_shape=16, n_patches=64, tta=False), False
widget.budget_box.setValue(4)
wait(widget.fine_tune())
print(sorted(layer.name for layer in viewer.layers), widget.status.text(), flush=True)
viewer.close()
"""


def test_the_widget_runs_beside_naparis_opengl_canvas(qt_app):
    command = [sys.executable, "-c", WHOLE_VIEWER]
    if not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            pytest.fail("napari's canvas needs an X display for OpenGL here: install Xvfb "
                        "(Debian: apt-get install xvfb xauth; `make test` does)")
        command = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24 -nolisten tcp", *command]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['even', 'even cryocare', 'even zero-shot', 'odd']" in result.stdout, result.stdout
    assert "fine-tuned for" in result.stdout, result.stdout


def test_an_error_in_the_worker_goes_to_the_status_line(widget):
    widget.model_edit.setText("no-such-model-folder")
    worker = widget.preview()
    run_until(finished(worker), timeout=60)
    assert "no-such-model-folder" in widget.status.text()
    assert widget.preview_button.isEnabled()
