"""Objects: make 3D objects from a mask or probabilities, measure them, proofread them.

The core (:mod:`napari_segnets.objects`) labels, measures and computes each edit; this
widget runs the long parts in a worker, applies edits through napari's ``data_setitem``
(so napari's undo history holds them) and re-measures only the objects an edit touched.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
)
from napari.layers import Image, Labels

from ..errors import InputError
from ..objects.instances import FRAGMENT_FRACTION
from ._common import (
    LayerChoice,
    current_index,
    default_store,
    file_voxel_size,
    geometry,
    is_lazy,
    row,
    scrolling,
    typed_path,
)
from ._objects_edit import Proofreading, _history_atoms, _number
from ._objects_review import Reviewing
from ._objects_table import ObjectsTable
from ._plot import PlotCanvas
from ._runner import JobRunner, guarded

PLOTTED = ("volume_nm3", "surface_nm2", "equivalent_diameter_nm", "sphericity", "extent_z_nm", "area_nm2",
           "perimeter_nm", "circularity", "intensity_mean")


class ObjectsWidget(Reviewing, Proofreading, Container):
    """Objects and their measurements.

    Sub-widgets tests can set: ``source`` (Labels or probability Image layer), ``image``
    (intensities), ``voxel`` ("z,y,x" nm), ``min_size``, ``fragments`` (share of the typical
    object under which objects are dropped), ``split``, ``drop_border``,
    ``per_slice``, ``make_button``, ``objects_layer``, ``compare``, ``measure_button``,
    ``table`` (a QTableWidget), edit buttons, ``csv_path``, ``store``, ``plot_measure``, ``plot``,
    ``status``; the folding ``review`` section (see :class:`Reviewing`). State: ``measurements``
    (the core's ObjectTable of ``layer``), ``other`` (of
    ``compare``), ``history`` (ids touched by each edit, for Undo).
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        self.viewer = viewer
        self.source = LayerChoice(viewer, (Labels, Image), label="from")
        self.image = LayerChoice(viewer, Image, label="intensity", nullable=True)
        self.voxel = LineEdit(label="voxel nm z,y,x")
        self.min_size = LineEdit(label="min size nm³", value="0")
        # fragments: objects under this share of the typical object are dropped (0 keeps them)
        self.fragments = LineEdit(label="drop < typical ×", value=f"{FRAGMENT_FRACTION:g}")
        self.split = ComboBox(label="split", choices=["none", "distance", "probability"], value="none")
        self.drop_border = CheckBox(text="drop border objects")
        self.per_slice = CheckBox(text="per slice")
        self.make_button = PushButton(text="Make objects")
        self.cancel_button = PushButton(text="Cancel")
        self.objects_layer = LayerChoice(viewer, Labels, label="objects")
        self.compare = LayerChoice(viewer, Labels, label="compare with", nullable=True)
        self.compare.value = None
        self.measure_button = PushButton(text="Measure")
        self.table = ObjectsTable()
        self.merge_button = PushButton(text="Merge")
        self.split_button = PushButton(text="Split auto")
        self.seed_button = PushButton(text="Split: 2 clicks")
        self.delete_button = PushButton(text="Delete")
        self.undo_button = PushButton(text="Undo")
        self.filter_min = LineEdit(label="keep nm³ ≥", value="0")
        self.filter_max = LineEdit(label="≤", value="")
        self.filter_border = CheckBox(text="drop border")
        self.filter_button = PushButton(text="Filter")
        self.relabel_button = PushButton(text="Relabel 1..N")
        self.csv_path = FileEdit(label="CSV", mode="w", filter="*.csv")
        self.export_button = PushButton(text="Export CSV")
        self.store = FileEdit(label="store", mode="d", value=default_store())
        self.store_button = PushButton(text="Add slice to training set")
        self.plot_measure = ComboBox(label="plot", choices=[], nullable=True)
        self.plot = PlotCanvas(label="", height=1.6, width=3.8)
        self.status = Label(value="")
        self.review = self._review_section(viewer)
        table_box = Container(labels=False)
        table_box.native.layout().addWidget(self.table)
        super().__init__(widgets=[
            self.source, self.image, self.voxel, row(self.min_size, self.fragments, labels=True),
            self.split, row(self.drop_border, self.per_slice, labels=True),
            row(self.make_button, self.cancel_button),
            self.review,
            self.objects_layer, row(self.compare, self.measure_button, labels=True), table_box,
            row(self.merge_button, self.split_button, self.seed_button),
            row(self.delete_button, self.undo_button, self.relabel_button),
            row(self.filter_min, self.filter_max, self.filter_border, self.filter_button, labels=True),
            self.store, self.store_button,
            row(self.csv_path, self.export_button, labels=True),
            self.plot_measure, self.plot, self.status,
        ])
        scrolling(self, pack=False)  # fits a laptop screen; the table takes the spare height
        self.runner = JobRunner(viewer, label=self.status,
                                run_buttons=[self.make_button, self.measure_button, self.rank_button],
                                cancel_button=self.cancel_button)
        self.measurements = None
        self.other = None
        self.layer = None
        self.history: list[list[int]] = []
        self._seen_history: tuple[list, list] = ([], [])  # the layer's undo/redo atoms when last looked at
        self._size_note: tuple = (None, "")  # (objects layer just made, its note on small objects)
        self.seeds: list[tuple] = []
        self._seeding = False
        self._syncing = False
        self.source.changed.connect(self._source_chosen)
        self.make_button.changed.connect(self.make_objects)
        self.measure_button.changed.connect(self.measure)
        self.merge_button.changed.connect(lambda *_: guarded(self.merge, self.status))
        self.split_button.changed.connect(lambda *_: guarded(self.split_auto, self.status))
        self.seed_button.changed.connect(lambda *_: guarded(self.start_seeds, self.status))
        self.delete_button.changed.connect(lambda *_: guarded(self.delete, self.status))
        self.undo_button.changed.connect(lambda *_: guarded(self.undo, self.status))
        self.filter_button.changed.connect(lambda *_: guarded(self.filter, self.status))
        self.relabel_button.changed.connect(lambda *_: guarded(self.relabel, self.status))
        self.export_button.changed.connect(lambda *_: guarded(self.export_csv, self.status))
        self.store_button.changed.connect(lambda *_: guarded(self.add_to_store, self.status))
        self.plot_measure.changed.connect(lambda *_: self.draw_plot())
        self.table.itemSelectionChanged.connect(self._row_selected)
        self._source_chosen()

    # ---- making and measuring ------------------------------------------------
    def _source_chosen(self, *_args) -> None:
        layer = self.source.value
        if layer is None or self.voxel.value.strip():
            return
        voxel = file_voxel_size(layer)  # a scale other than 1 came from the file: nm
        if voxel is not None:
            self.voxel.value = ",".join(f"{s:g}" for s in voxel)

    def voxel_size(self, ndim: int):
        from ..objects import parse_voxel_size

        text = self.voxel.value.strip()
        return parse_voxel_size(text, ndim) if text else None

    def make_objects(self, *_args):
        """Label the chosen layer into a new Labels layer of objects; returns the worker."""
        return guarded(self._make, self.status)

    def _make(self):
        from ..objects import foreground, fragments_note, label_objects_iter

        src = self.source.require("mask or probability layer")
        data = src.data[0] if getattr(src, "multiscale", False) else src.data
        if is_lazy(data):
            raise InputError(f"'{src.name}' is larger than memory; label it with `napari-segnets objects "
                             "--out labels.zarr` (block by block) and open the result.")
        spatial = data.ndim - 1 if data.ndim == 4 else data.ndim
        voxel = self.voxel_size(min(spatial, 3))
        options = dict(voxel_size=voxel, min_size=_number(self.min_size.value, "min size") or None,
                       split=None if self.split.value == "none" else self.split.value,
                       drop_border=self.drop_border.value, per_slice=self.per_slice.value,
                       min_fraction=_number(self.fragments.value, "drop < typical ×") or None, report={})
        array = np.asarray(data)
        foreground(array, what=f"'{src.name}'")  # a grey image is refused here, before any work

        def done(labels):
            name = f"{src.name} objects"
            layer = self.viewer.add_labels(labels, name=name, **geometry(src, labels.ndim),
                                           metadata={"segnets": {"voxel_size": voxel, "source": src.name}})
            self.objects_layer.value = layer
            made.append(layer)
            note = fragments_note(options["report"], voxel, how="'drop < typical ×' = 0",
                                  remedy="'min size nm³' drops small objects, 'split' separates touching ones")
            self._size_note = (layer, note)  # shown again when the new layer is measured
            return f"{int(labels.max())} objects in '{name}'" + (f"; {note}" if note else "")

        def finish():
            if made:  # measure once the runner is free again
                self.measure()

        made: list = []
        return self.runner.start(lambda: label_objects_iter(array, **options), title="objects",
                                 on_done=done, on_finish=finish, torch_job=False)

    def measure(self, *_args):
        """Measure the objects layer (and the comparison layer); returns the worker."""
        return guarded(self._measure, self.status)

    def _measure(self):
        from ..objects import measure_iter

        layer = self.objects_layer.require("objects layer")
        other = self.compare.value
        voxel = self.voxel_size(layer.ndim) or _stored_voxel(layer)
        if voxel is None:
            raise InputError("The voxel size is unknown; type it in 'voxel nm z,y,x' (e.g. 40,5,5).")
        labels = np.asarray(layer.data)
        image = self._intensity(layer)
        other_data = None if other is None or other is layer else np.asarray(other.data)

        def job():
            table = yield from measure_iter(labels, image, voxel_size=voxel)
            second = None
            if other_data is not None:
                second = yield from measure_iter(other_data, None, voxel_size=voxel)
            return table, second

        def done(result):
            self._show(layer, *result)
            (made, note), self._size_note = self._size_note, (None, "")  # once, right after making
            return f"{len(self.measurements)} objects measured" + (f"; {note}" if note and made is layer else "")

        return self.runner.start(job, title="measure", on_done=done, torch_job=False)

    def _intensity(self, layer):
        img = self.image.value
        if img is None or tuple(img.data.shape) != tuple(layer.data.shape):
            return None
        return np.asarray(img.data)

    def _show(self, layer, table, other=None) -> None:
        if self.layer is not None and self.layer is not layer:
            self._disconnect(self.layer)
        if self.layer is not layer:
            layer.events.selected_label.connect(self._label_selected)
            layer.events.paint.connect(self._painted)
            layer.events.set_data.connect(self._history_moved)  # napari's undo/redo (Ctrl+Z) end here
            layer.mouse_drag_callbacks.append(self._clicked)
        self.layer, self.measurements, self.other = layer, table, other
        self.history.clear()
        self._seen_history = _history_atoms(layer)
        self.table.show_table(table)
        names = [c for c in PLOTTED if c in table.columns]
        self.plot_measure.choices = names
        if names and self.plot_measure.value not in names:
            self.plot_measure.value = names[0]
        self.draw_plot()

    def _disconnect(self, layer) -> None:
        for event, slot in ((layer.events.selected_label, self._label_selected), (layer.events.paint, self._painted),
                            (layer.events.set_data, self._history_moved)):
            try:
                event.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                pass
        if self._clicked in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._clicked)

    # ---- table <-> layer -----------------------------------------------------
    def _row_selected(self) -> None:
        if self._syncing:
            return
        ids = self.table.selected_ids()
        if len(ids) != 1:
            return
        queue = self.queue_table
        if queue is not None and self.layer is self._queue.get("layer") and queue.index_of(ids[0]) is not None:
            self.show_object(ids[0])  # a row of the queue: the object to decide on
        else:
            self.go_to(ids[0])

    def go_to(self, object_id: int, center=None) -> None:
        """Centre the view on an object (at ``center``, voxels, if given) and select its label."""
        layer = self.layer
        axes = "zyx"[-layer.ndim:]
        if center is None:
            row = self.measurements.row(object_id)
            center = [row[f"centroid_{a}_vox"] for a in axes]
        world = layer.data_to_world(list(center))
        if layer.ndim == 3:
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[0])
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari 0.9+
        camera.center = tuple(world[-2:])
        self._syncing = True
        try:
            layer.selected_label = int(object_id)
        finally:
            self._syncing = False

    def _label_selected(self, *_args) -> None:
        if self._syncing or self.layer is None:
            return
        self._syncing = True
        try:
            self.table.select_id(int(self.layer.selected_label))
        finally:
            self._syncing = False

    # ---- output --------------------------------------------------------------------
    def export_csv(self) -> str:
        self._chosen(0)
        path = typed_path(self.csv_path)
        if path is None:
            raise InputError("Choose where to save the CSV in 'CSV'.")
        path = str(path)
        if not path.endswith(".csv"):
            path += ".csv"
        self.measurements.to_csv(path)
        self.status.value = f"{len(self.measurements)} objects -> {path}"
        return path

    def add_to_store(self):
        """Add the current slice of the objects layer to the curated store (semantic mask derived)."""
        from ..curation import Store
        from ..objects import edit
        from ._common import source_name

        layer = self.objects_layer.require("objects layer")
        img = self.image.require("intensity (image) layer")
        root = typed_path(self.store)
        if root is None:
            raise InputError("Pick a store folder in 'store' for the training set.")
        z = current_index(self.viewer, layer)
        mask = np.asarray(layer.data[z] if z is not None else layer.data)
        image = np.asarray(img.data[z] if z is not None else img.data)
        record = edit.add_to_store(Store(root), image, mask, source=source_name(img), index=z or 0)
        self.status.value = f"slice {z or 0} added to the training set ({record['id']})"
        return record

    def draw_plot(self) -> None:
        name = self.plot_measure.value
        if self.measurements is None or not name:
            return
        first = np.asarray(self.measurements[name], float)
        series = [(self.layer.name, first)]
        if self.other is not None and name in self.other.columns:
            series.append((self.compare.value.name if self.compare.value else "other",
                           np.asarray(self.other[name], float)))

        def draw(fig):
            values = [v[np.isfinite(v)] for _n, v in series]
            both = np.concatenate(values) if values else np.zeros(0)
            bins = np.histogram_bin_edges(both, bins=20) if both.size else 10
            axes = fig.subplots(1, len(series), sharex=True, sharey=True, squeeze=False)[0]
            for ax, (title, v) in zip(axes, [(n, x) for (n, _), x in zip(series, values)]):
                ax.hist(v, bins=bins, color="#4c72b0")
                mean = f", mean {v.mean():.3g}" if v.size else ""
                ax.set_title(f"{title}: n={v.size}{mean}", fontsize=8)
                ax.set_xlabel(name, fontsize=8)
                ax.tick_params(labelsize=7)

        self.plot.render(draw)


def _stored_voxel(layer):
    return (layer.metadata.get("segnets") or {}).get("voxel_size")


__all__ = ["ObjectsWidget"]
