"""The napari dock widget: zero-shot preview of the visible slab, fine-tuning, saving.

Qt through :mod:`qtpy` (napari's own), work in napari's worker threads
(:func:`napari.qt.threading.create_worker`), so that the viewer stays
responsive while a model loads, predicts or trains. The computing is done
by :mod:`cryocare.napari._slab` and :mod:`cryocare.napari._training`,
which know nothing of Qt.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import io
from ..errors import CryocareError, InputError
from ._slab import preview_slab
from ._training import FineTune, load_tensorflow

__all__ = ["CryocareWidget"]

log = logging.getLogger(__name__)

#: The odd-half choice that means "one volume, no halves".
NO_ODD = "(none: one volume)"
#: Progress-bar resolution and how often it is refreshed (milliseconds).
_STEPS, _REFRESH_MS = 1000, 200


class CryocareWidget(QWidget):
    """Denoise tomograms in napari: preview the pretrained model, fine-tune, save.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose image layers are offered (napari passes it).
    model : str or path-like
        The model of the preview and the start of fine-tuning: ``"pretrained"``
        (the shipped general model), a cryocare model folder or a cryoCARE
        0.3.0 archive (:func:`cryocare.load_model`); editable in the widget.
    recipe : Recipe, optional
        The fine-tuning recipe, default that of ``cryocare denoise``.
    fit : bool
        Fit the recipe to the machine's measured speed (as ``cryocare denoise``).
    seed : int
        Seed of fine-tuning.

    Attributes
    ----------
    worker : napari.qt.threading.WorkerBase or None
        The running (or last) preview or fine-tuning worker.
    job : FineTune or None
        The running (or last) fine-tuning run.
    result_layer : napari.layers.Image or None
        The last fine-tuned result, which *Save* writes.
    """

    def __init__(self, napari_viewer: Any, *, model: str | os.PathLike = "pretrained",
                 recipe: Any = None, fit: bool = True, seed: int = 0):
        super().__init__()
        self.viewer = napari_viewer
        self.recipe, self.fit, self.seed = recipe, fit, seed
        self.worker: Any = None
        self.job: FineTune | None = None
        self.result_layer: Image | None = None
        self._model: tuple[str, Any] | None = None
        self._statistics: dict[tuple[int, ...], Any] = {}

        self.even_box, self.odd_box = QComboBox(), QComboBox()
        self.model_edit = QLineEdit(str(model))
        self.half_width = QSpinBox()
        self.half_width.setRange(0, 64)
        self.half_width.setValue(4)
        self.half_width.setSuffix(" slices")
        self.preview_button = QPushButton("Preview slab (zero-shot)")
        self.budget_box = QSpinBox()
        self.budget_box.setRange(1, 7 * 24 * 3600)
        self.budget_box.setValue(600)
        self.budget_box.setSuffix(" s")
        self.tta_box = QCheckBox("average over flips (8x slower prediction)")
        self.tta_box.setChecked(True if recipe is None else bool(recipe.tta))
        self.train_button = QPushButton("Fine-tune and denoise")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, _STEPS)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("denoised.mrc (written after fine-tuning)")
        self.browse_button = QPushButton("...")
        self.overwrite_box = QCheckBox("overwrite an existing file")
        self.save_button = QPushButton("Save result")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("even half / volume", self.even_box)
        form.addRow("odd half", self.odd_box)
        form.addRow("model", self.model_edit)
        form.addRow("slab: current slice ±", self.half_width)
        form.addRow(self.preview_button)
        form.addRow("training budget", self.budget_box)
        form.addRow(self.tta_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.progress)
        output = QHBoxLayout()
        output.addWidget(self.output_edit)
        output.addWidget(self.browse_button)
        form.addRow("output", output)
        form.addRow(self.overwrite_box)
        form.addRow(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.preview_button.clicked.connect(self.preview)
        self.train_button.clicked.connect(self.fine_tune)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self.save)
        self.browse_button.clicked.connect(self._browse)
        self._timer = QTimer(self)
        self._timer.setInterval(_REFRESH_MS)
        self._timer.timeout.connect(self._show_progress)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        # In this (the main) thread, which lives as long as the viewer: TensorFlow loaded in
        # a worker's thread crashed later runs beside napari's OpenGL (docs/napari.md).
        load_tensorflow()

    # ------------------------------------------------------------------ layers
    def _images(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, event: Any = None) -> None:
        names = [layer.name for layer in self._images()]
        for box, extra in ((self.even_box, []), (self.odd_box, [NO_ODD])):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(extra + names)
            if current in extra + names:
                box.setCurrentText(current)
            box.blockSignals(False)
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._refresh_layers)
        if self.odd_box.currentText() == NO_ODD and len(names) == 2 and \
                self.even_box.currentText() == names[0]:
            self.odd_box.setCurrentText(names[1])  # two volumes: most likely the halves

    def _layer(self, name: str) -> Image:
        for layer in self._images():
            if layer.name == name:
                return layer
        raise InputError(f"no image layer named {name!r}: open a tomogram (MRC or TIFF) first")

    def _halves(self) -> tuple[Image, Image | None]:
        even = self._layer(self.even_box.currentText())
        odd_name = self.odd_box.currentText()
        odd = None if odd_name in ("", NO_ODD) else self._layer(odd_name)
        if odd is even:
            raise InputError(f"the even and odd halves are the same layer ({even.name!r}): "
                             f"choose the other half, or '{NO_ODD}'")
        if odd is not None and odd.data.shape != even.data.shape:
            raise InputError(f"the halves differ in shape: {even.name!r} is {even.data.shape}, "
                             f"{odd.name!r} is {odd.data.shape}")
        return even, odd

    def _current_slice(self, layer: Image) -> int:
        position = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(np.round(position[0]), 0, layer.data.shape[0] - 1))

    def _place(self, data: np.ndarray, source: Image, name: str, *, start: int = 0,
               kind: str) -> Image:
        """Add ``data`` (or replace that of the layer called ``name``) over ``source``."""
        translate = np.asarray(source.translate, dtype=float).copy()
        translate[0] += start * float(source.scale[0])
        metadata = {"cryocare": {**source.metadata.get("cryocare", {}), "kind": kind,
                                 "source_layer": source.name}}
        for layer in self._images():
            if layer.name == name:
                layer.data, layer.translate, layer.metadata = data, translate, metadata
                layer.reset_contrast_limits()
                return layer
        return self.viewer.add_image(data, name=name, scale=source.scale, translate=translate,
                                     metadata=metadata)

    # ----------------------------------------------------------------- preview
    def _load_model(self) -> Any:
        from ..modelfiles import load_model

        spec = self.model_edit.text().strip() or "pretrained"
        if self._model is None or self._model[0] != spec:
            self._model = (spec, load_model(spec))
        return self._model[1]

    def _normalization(self, model: Any, halves: list[np.ndarray]) -> Any:
        if model.normalization is not None:
            return model.normalization
        from ..normalize import compute_normalization

        key = tuple(id(h) for h in halves)
        if key not in self._statistics:
            self._statistics = {key: compute_normalization(halves)}  # one volume at a time
        return self._statistics[key]

    def preview(self) -> Any:
        """Restore the slices around the one in view with the model, in a worker.

        The result appears as the layer ``"<even> zero-shot"``, placed over
        the slices it restores (replaced by the next preview).

        Returns
        -------
        worker or None
            None when the input is refused or a job runs (the status says why).
        """
        if self._busy():
            return None
        try:
            even, odd = self._halves()
            z = self._current_slice(even)
        except CryocareError as error:
            return self._fail(error)
        half_width = self.half_width.value()
        even_data, odd_data = even.data, None if odd is None else odd.data

        def run():
            model = self._load_model()
            halves = [even_data] if odd_data is None else [even_data, odd_data]
            return preview_slab(model, even_data, odd_data, z=z, half_width=half_width,
                                normalization=self._normalization(model, halves))

        def show(result):
            slab, restored = result
            self._place(restored, even, f"{even.name} zero-shot", start=slab.start,
                        kind="zero-shot slab")
            self._say(f"zero-shot: slices {slab.start}-{slab.stop - 1} of {even.name!r}")

        self._say(f"restoring slices {max(z - half_width, 0)}-{z + half_width} ...")
        return self._start(run, show)

    # -------------------------------------------------------------- fine-tuning
    def fine_tune(self) -> Any:
        """Fine-tune the model on the halves within the budget, in a worker, then restore them.

        The result appears as the layer ``"<even> cryocare"``, and is written
        to the output file when one is given.

        Returns
        -------
        worker or None
            None when the input is refused or a job runs (the status says why).
        """
        if self._busy():
            return None
        try:
            even, odd = self._halves()
            if odd is None:
                raise InputError("fine-tuning needs the two halves (even and odd): choose "
                                 "the odd half's layer")
            if even.data.ndim != 3:
                raise InputError(f"fine-tuning needs 3-D halves, got shape {even.data.shape}")
            self.job = FineTune(even.data, odd.data, budget=float(self.budget_box.value()),
                                recipe=self.recipe, init=self.model_edit.text().strip()
                                or "pretrained", seed=self.seed, fit=self.fit,
                                tta=self.tta_box.isChecked())
        except CryocareError as error:
            return self._fail(error)
        job = self.job

        def show(result):
            if result is None:
                self._say(f"cancelled after {job.steps} training steps; nothing added")
                return
            self.result_layer = self._place(result, even, f"{even.name} cryocare",
                                            kind="fine-tuned")
            self._say(f"fine-tuned for {job.steps} steps; added {self.result_layer.name!r}")
            if self.output_edit.text().strip():
                self.save()

        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, _STEPS)
        self.progress.setValue(0)
        self._timer.start()
        self._say("fine-tuning: measuring this machine and sampling patches ...")
        return self._start(job.run, show)

    def cancel(self) -> None:
        """Stop the fine-tuning at its next step; nothing is added."""
        if self.job is not None and self.job.phase in ("waiting", "training", "predicting"):
            self.job.cancel()
            self._say("cancelling ...")

    def _show_progress(self) -> None:
        job = self.job
        if job is None:
            return
        if job.phase == "training":
            self.progress.setRange(0, _STEPS)
            self.progress.setValue(round(_STEPS * job.fraction()))
            loss = "" if np.isnan(job.loss) else f", loss {job.loss:.4g}"
            if job.steps:
                self._say(f"fine-tuning: {job.steps} steps{loss}")
        elif job.phase == "predicting":
            self.progress.setRange(0, 0)  # busy: the prediction's share is not known
            self._say(f"fine-tuned for {job.steps} steps; restoring the halves ...")

    # -------------------------------------------------------------------- save
    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the last fine-tuned result to ``path`` (default: the output field).

        An existing file is replaced only with *overwrite* checked; the voxel
        size, origin and labels come from the source file when the layer was
        read from one.

        Returns
        -------
        Path or None
            The file written; None when refused (the status says why).
        """
        layer = self.result_layer
        target = str(path) if path is not None else self.output_edit.text().strip()
        try:
            if layer is None or layer not in self.viewer.layers:
                raise InputError("nothing to save: fine-tune first")
            if not target:
                raise InputError("output: expected a file name (.mrc)")
            info = layer.metadata.get("cryocare", {})
            source = info.get("path")
            like = source if source and Path(source).is_file() else None
            voxel_size = None if like else tuple(info.get("voxel_size", (0.0, 0.0, 0.0)))
            written = io.write(target, np.asarray(layer.data), like=like, voxel_size=voxel_size,
                               overwrite=self.overwrite_box.isChecked(),
                               label="napari: fine-tuned")
        except CryocareError as error:
            self._fail(error)
            return None
        self._say(f"saved {layer.name!r} to {written}")
        return written

    def _browse(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save the denoised tomogram", "",
                                              "MRC files (*.mrc *.rec *.map)")
        if name:
            self.output_edit.setText(name)

    # ---------------------------------------------------------------- plumbing
    def _busy(self) -> bool:
        if self.worker is not None and self.worker.is_running:
            self._say("busy: wait for the running job (or cancel it)")
            return True
        return False

    def _start(self, function: Any, on_result: Any) -> Any:
        for button in (self.preview_button, self.train_button):
            button.setEnabled(False)
        # Errors go to the status line (_fail); napari would re-raise them in Qt's event loop,
        # which PyQt6 ends with an abort.
        worker = create_worker(function, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(on_result)
        worker.errored.connect(self._fail)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _finished(self) -> None:
        self._timer.stop()
        self._show_progress()
        if self.job is not None and self.job.phase == "done":
            self.progress.setRange(0, _STEPS)
            self.progress.setValue(_STEPS)
        elif self.progress.maximum() == 0:
            self.progress.setRange(0, _STEPS)
        for button in (self.preview_button, self.train_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _fail(self, error: BaseException) -> None:
        message = str(error) if isinstance(error, CryocareError) else \
            f"{type(error).__name__}: {error}"
        log.warning("%s", message)
        self._say(f"error: {message}")

    def _say(self, text: str) -> None:
        self.status.setText(text)
