"""Segment / Autoencode: run a checkpoint on the current slice or the whole stack."""

from __future__ import annotations

import os
import time

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    LineEdit,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image

from ..errors import InputError
from ._common import (
    CheckpointChoice,
    LayerChoice,
    Section,
    add_or_update,
    current_index,
    geometry,
    is_lazy,
    scrolling,
    unique_name,
    wrapping,
)
from ._runner import JobRunner, guarded, notify_info, report_exception
from ._temp import temporary_store, watch_viewer

CURRENT, STACK = "current slice", "whole stack"
TASKS = {"segment": "labels", "autoencode": "reconstruction"}


def predict_job(entry, image, *, output, tile, device, threshold, lazy_out=False, out=None):
    """Load the checkpoint and predict (a progress generator; runs in the worker thread).

    With ``lazy_out`` the result goes into a Zarr array on disk, so a stack larger
    than memory stays lazy end to end; with ``out`` it goes into that array (the
    widget's layer already shows it, so slices appear as they are finished).
    """
    from .. import checkpoints, inference

    model, meta = checkpoints.load(entry.path, device="cpu")
    if lazy_out:
        out = inference.create_output(temporary_store(), image.shape, model.out_channels, output)
    result = yield from inference.predict_iter(
        model, image, tile=tile, device=device, output=output, threshold=threshold,
        normalization=meta.get("normalization"), out=out,
    )
    return result, meta


def _describe_device(choice: str) -> str:
    """``"runs on: ..."`` for the device menu's choice (worker thread)."""
    from ..devices import describe_device, resolve_device

    device = resolve_device(choice)
    text = f"runs on: {describe_device(device)}"
    if device.type == "cpu" and (os.cpu_count() or 1) > 1:
        text += ", one core left to the viewer"  # see _runner._leave_a_core_for_the_gui
    return text


def edited_slices(layer) -> list[int]:
    """Slices of a predicted Labels layer that differ from the prediction as made: the user's corrections.

    Compares with the copy kept in ``metadata["segnets"]["original"]``; a layer without one
    (not predicted here, or a lazy result kept on disk) reports none.
    """
    original = layer.metadata.get("segnets", {}).get("original")
    data = layer.data
    if original is None or is_lazy(data) or np.shape(original) != np.shape(data):
        return []
    diff = np.asarray(data) != np.asarray(original)
    if diff.ndim == 2:
        return [0] if diff.any() else []
    return [int(i) for i in np.flatnonzero(diff.reshape(diff.shape[0], -1).any(axis=1))]


def _span(indices: list[int]) -> str:
    return ", ".join(map(str, indices[:8])) + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")


class SegmentWidget(Container):
    """Segment (Labels layer) or autoencode (Image layer) an image layer with a checkpoint.

    Sub-widgets: ``image``, ``checkpoint`` (``.model``/``.file``), ``task``,
    ``device``, ``device_info``, ``tile``, ``threshold``, ``scope``,
    ``run_button``, ``cancel_button``, ``status``; ``advanced`` folds ``tile`` and
    ``threshold`` away.
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        self.viewer = viewer
        self.image = LayerChoice(viewer, Image, label="image")
        self.checkpoint = CheckpointChoice(label="model")
        self.task = ComboBox(label="task", choices=list(TASKS), value="segment")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.device_info = wrapping(Label(value=""))
        self.tile = SpinBox(label="tile (0 = auto)", min=0, max=4096, step=32, value=0)
        self.threshold = FloatSlider(label="threshold", min=0.0, max=1.0, step=0.01, value=0.5)
        self.scope = RadioButtons(label="run on", choices=[CURRENT, STACK], value=CURRENT)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel")
        self.status = Label(value="")
        self.advanced = Section("advanced: tile size, threshold", [self.tile, self.threshold])
        # Share the chosen model as a BioImage Model Zoo package (napari_segnets.bioimageio).
        self.export_license = LineEdit(label="licence", value="CC-BY-4.0")
        self.export_path = FileEdit(label="zoo package", mode="w", filter="*.zip")
        self.export_button = PushButton(text="Export model to BioImage Model Zoo (.zip)")
        self.sharing = Section("share: BioImage Model Zoo package",
                               [self.export_license, self.export_path, self.export_button])
        super().__init__(widgets=[
            self.image, self.checkpoint, self.task, self.device, self.device_info, self.scope,
            self.advanced, Container(widgets=[self.run_button, self.cancel_button],
                                     layout="horizontal", labels=False), self.status,
            self.sharing,
        ])
        scrolling(self)  # fits a laptop screen: the panel scrolls instead of growing
        self.runner = JobRunner(viewer, label=self.status, run_buttons=[self.run_button],
                                cancel_button=self.cancel_button)
        self.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self.export)
        self.device.changed.connect(self._show_device)
        self.checkpoint.model.changed.connect(self._checkpoint_chosen)
        self._show_device()
        self.last_layer = None
        watch_viewer(viewer)  # results of lazy stacks live in scratch Zarr stores: drop them with their layer

    # ---- reactions ---------------------------------------------------------
    def _show_device(self, *_args) -> None:
        """Show what the device choice resolves to, worked out off the GUI thread.

        Resolving imports torch (about a second, longer while the warm-up thread holds
        the import) and, for CUDA, initialises the driver: measured 1.1 s of frozen
        GUI when this ran inline at widget creation.
        """
        from napari.qt.threading import create_worker

        choice = self.device.value
        self.device_info.value = "runs on: checking..."
        worker = create_worker(_describe_device, choice, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda text: self._device_shown(choice, text))
        worker.errored.connect(lambda exc: self._device_shown(choice, None, exc))
        self._device_worker = worker  # keep a reference until it reports
        worker.start()

    def _device_shown(self, choice, text, exc=None) -> None:
        try:
            if choice != self.device.value:
                return  # the user changed the choice meanwhile; its own worker reports
            self.device_info.value = "runs on: unavailable" if exc is not None else text
        except RuntimeError:  # the widget was closed before the answer came
            return
        if exc is not None:
            report_exception(exc)

    def _checkpoint_chosen(self, *_args) -> None:
        entry = self.checkpoint.entry(required=False)
        if entry is not None and entry.task in TASKS:
            self.task.value = entry.task

    # ---- action -------------------------------------------------------------
    def export(self, *_args):
        """Export the chosen model as a zoo package in a worker; returns the worker (None if refused)."""
        return guarded(self._export, self.status)

    def _export(self):
        from pathlib import Path

        from ..bioimageio import export_package_iter

        entry = self.checkpoint.entry()
        out = Path(str(self.export_path.value or ""))
        if not str(self.export_path.value or "").strip() or out.is_dir() or out.suffix.lower() != ".zip":
            raise InputError("Choose where to save the zoo package: a file name ending in .zip.")
        licence = self.export_license.value.strip()
        return self.runner.start(
            lambda: export_package_iter(entry.path, out, license=licence), title="export",
            on_done=lambda path: notify_info(f"Exported the model as a BioImage Model Zoo package: {path}"),
        )  # fmt: skip

    def run(self, *_args):
        """Start the prediction; returns the worker (None if the inputs were refused)."""
        return guarded(self._start, self.status)

    def _start(self):
        layer = self.image.require("image layer")
        entry = self.checkpoint.entry()
        task = self.task.value
        if entry.task is not None and entry.task != task:
            raise InputError(
                f"Checkpoint '{entry.name}' was trained to {entry.task}, not to {task}; "
                f"pick task '{entry.task}' or another checkpoint."
            )
        data = layer.data[0] if layer.multiscale else layer.data
        if data.ndim not in (2, 3) or layer.rgb:
            raise InputError(
                f"Layer '{layer.name}' has shape {data.shape}; give a single-channel 2D image or 3D stack."
            )
        z = current_index(self.viewer, layer) if self.scope.value == CURRENT else None
        lazy = is_lazy(data)
        if z is not None:
            source = np.asarray(data[z])
        else:
            source = data
        output = TASKS[task]
        kind = "labels" if task == "segment" else "image"
        name = f"{entry.name} {'labels' if kind == 'labels' else 'reconstruction'}"
        job_kwargs = {"output": output, "tile": self.tile.value or None, "device": self.device.value,
                      "threshold": float(self.threshold.value)}
        job_kwargs["lazy_out"] = z is None and data.ndim == 3 and lazy
        live = None
        if z is None and data.ndim == 3 and not lazy:
            # an in-memory stack: show the result layer now and fill it as slices finish
            name, live = self._live_output(layer, entry, kind, name, data.shape)
            job_kwargs["out"] = live.data
        shown = {"at": 0.0}

        def on_event(event):
            if live is None or event.stage != "predict":
                return
            now = time.monotonic()
            if now - shown["at"] > 0.3:  # a refresh re-slices only the slice in view
                shown["at"] = now
                live.refresh()

        def done(result):
            from .. import checkpoints

            array, meta = result
            self.last_layer = self._show(layer, entry, kind, name, array, z)
            if kind == "labels" and (note := checkpoints.strokes_note(meta)):
                notify_info(note)  # a model trained on strokes: its boundaries were never shown to it
            from ._temp import temporary_root

            if temporary_root(self.last_layer.data) is not None:
                return (f"'{name}' is kept in a scratch Zarr store, deleted when the layer is removed or "
                        "napari closes: File > Save Selected Layers keeps it.")
            return None

        def finish():
            record = self.runner.record
            if live is not None and not record.returned:
                # the job's last "slice": the slice it was working on, all before it written
                self._keep_partial(live, layer, entry, kind, int(record.facts.get("slice", 0)))

        return self.runner.start(lambda: predict_job(entry, source, **job_kwargs),
                                 title=f"{task} with {entry.name}", on_event=on_event, on_done=done,
                                 on_finish=finish)

    def _live_output(self, layer, entry, kind, name, shape):
        """The layer a whole-stack result is written into while it runs; returns ``(name, layer)``.

        Made (or emptied) on the click, so its cost is paid before the worker starts and
        the user sees slices appear. Corrected layers are left alone (see :meth:`_show`).
        """
        name = self._spare_corrections(kind, name)
        out = np.zeros(shape, np.uint8 if kind == "labels" else np.float32)
        extra = {} if kind == "labels" else {"contrast_limits": tuple(layer.contrast_limits)}
        target = add_or_update(self.viewer, kind, out, name, **geometry(layer), **extra)
        if kind == "image":
            target.contrast_limits = tuple(layer.contrast_limits)  # reconstructions share the input's range
        for key in ("original", "predicted", "probabilities"):  # its data was just replaced
            target.metadata.get("segnets", {}).pop(key, None)
        self.last_layer = target
        return name, target

    def _keep_partial(self, live, layer, entry, kind, finished: int) -> None:
        """After a cancel or an error: keep the slices that were finished, and say so."""
        try:
            live.refresh()
        except RuntimeError:  # the layer's widgets are gone
            return
        if kind == "labels" and finished:
            info = live.metadata.setdefault("segnets", {})
            info.update(original=np.array(live.data, copy=True), checkpoint=str(entry.path),
                        model=entry.name, source=layer.name, predicted=list(range(finished)))
        if self.runner.cancelled:  # after an error the status keeps the error's sentence
            kept = f"slices 0-{finished - 1} are" if finished > 1 else ("slice 0 is" if finished else "no slice is")
            self.status.value = f"cancelled: {kept} complete in '{live.name}'"

    def _spare_corrections(self, kind: str, name: str, z=None) -> str:
        """The layer to write a result to: ``name``, unless that Labels layer holds corrections on
        the slices the result covers (any slice for a whole stack); then a new name, and a note."""
        if kind != "labels" or name not in self.viewer.layers:
            return name
        edited = edited_slices(self.viewer.layers[name])
        touched = edited if z is None else [e for e in edited if e == z]
        if not touched:
            return name
        new = unique_name(self.viewer, name)
        notify_info(f"'{name}' holds your corrections on slice(s) {_span(touched)}; they are kept and the new "
                    f"prediction goes to '{new}'.")
        return new

    def _show(self, layer, entry, kind, name, array, z):
        """Put the result in a layer: the slice into a full-size layer, or the whole stack.

        A Labels layer whose slices the user corrected is never overwritten: the new
        prediction then goes to a new layer and a notification says where.
        """
        name = self._spare_corrections(kind, name, z)
        geo = geometry(layer)
        data = layer.data[0] if layer.multiscale else layer.data
        dtype = np.uint8 if kind == "labels" else np.float32
        if z is not None:
            existing = self.viewer.layers[name] if name in self.viewer.layers else None
            if existing is not None and existing.data.shape == data.shape:
                target = existing.data
            elif is_lazy(data):
                import zarr

                # a full-size output on disk: slices predicted one at a time fill it
                target = zarr.open_array(temporary_store(), mode="w", shape=data.shape, dtype=dtype,
                                         chunks=(1, *data.shape[1:]), fill_value=0)
            else:
                target = np.zeros(data.shape, dtype)
            target[z] = np.asarray(array, dtype=dtype)
            full = target
        else:
            full = array if is_lazy(array) else np.asarray(array, dtype=dtype)
        out = add_or_update(self.viewer, kind, full, name, **geo)
        out.refresh()
        if kind == "labels":
            self._remember(out, layer, entry, full, z)
        self.viewer.layers.selection.active = out
        return out

    def _remember(self, out, layer, entry, full, z):
        # The prediction as made, so Curate can find what the user changed.
        info = out.metadata.setdefault("segnets", {})
        original = info.get("original")
        if original is None or getattr(original, "shape", None) != full.shape or z is None:
            original = full.copy() if not is_lazy(full) else None
        if original is not None and z is not None:
            original[z] = np.asarray(full[z])
        info.update(original=original, checkpoint=str(entry.path), model=entry.name,
                    source=layer.name)
        predicted = set(info.get("predicted", ())) if z is not None else set()
        if z is not None:
            predicted.add(z)
        elif full.ndim == 3:
            predicted = set(range(full.shape[0]))
        info["predicted"] = sorted(predicted)
