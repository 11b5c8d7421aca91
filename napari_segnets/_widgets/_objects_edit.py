"""Proofreading for the Objects widget: edits as napari undo steps, rows re-measured one by one."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._runner import guarded


class Proofreading:
    """Merge, split, delete, filter, relabel and undo; mixed into :class:`ObjectsWidget`.

    Expects ``layer``, ``measurements``, ``table``, ``history``, ``seeds``, ``status`` and the
    widget's filter fields; the core (:mod:`napari_segnets.objects.edit`) computes each edit.
    """

    # ---- edits -------------------------------------------------------------------
    def _chosen(self, at_least: int = 1) -> list[int]:
        if self.layer is None or self.measurements is None:
            raise InputError("Measure an objects layer first (press Measure).")
        ids = self.table.selected_ids() or [int(self.layer.selected_label)]
        ids = [i for i in ids if i != 0]
        if len(ids) < at_least:
            raise InputError(f"Select {at_least} or more objects in the table (Ctrl+click for several).")
        return ids

    def apply(self, edit) -> None:
        """Apply a core edit as one napari undo step and update the rows it touched."""
        layer = self.layer
        with layer.block_history():
            for indices, value in edit.changes:
                layer.data_setitem(indices, value, refresh=False)
        layer.refresh()
        touched = sorted({*edit.measure, *edit.removed})
        self.history.append(touched)
        self.refresh_rows(touched)
        self.status.value = f"{edit.what} ({edit.voxels} voxels)"

    def refresh_rows(self, ids) -> None:
        """Re-measure only ``ids`` (gone ones leave the table)."""
        from ..objects import measure

        layer = self.layer
        voxel = self.measurements.voxel_size
        new = measure(np.asarray(layer.data), self._intensity(layer), voxel_size=voxel or (1.0,) * layer.ndim,
                      ids=ids)
        if voxel is None:  # a review queue of unknown voxel size: its columns are in voxels
            from ..review.queue import name_in_voxels

            name_in_voxels(new)
        gone = [i for i in ids if new.index_of(i) is None]
        self.measurements.update(new, remove=gone)
        self._syncing = True
        try:
            self.table.sync(self.measurements, new.ids.tolist(), gone)
        finally:
            self._syncing = False
        self.draw_plot()

    def merge(self):
        from ..objects import edit

        self.apply(edit.merge(self.layer.data, self._chosen(2)))

    def delete(self):
        from ..objects import edit

        self.apply(edit.delete(self.layer.data, self._chosen(1)))

    def split_auto(self):
        from ..objects import edit

        (object_id,) = self._chosen(1)[:1]
        self.apply(edit.split(self.layer.data, object_id, voxel_size=self.measurements.voxel_size))

    def start_seeds(self):
        """Split at two clicks: the next two clicks on the layer are the seeds."""
        self._chosen(0)
        self.seeds = []
        self.status.value = "click two points inside the object to split (one per part)"
        self._seeding = True

    def add_seed(self, point) -> None:
        """One split seed in data coordinates; the second one splits."""
        from ..objects import edit

        self.seeds.append(tuple(int(round(float(c))) for c in point))
        if len(self.seeds) < 2:
            self.status.value = "one more click inside the same object"
            return
        seeds, self.seeds, self._seeding = self.seeds, [], False
        object_id = int(self.layer.data[seeds[0]])
        if object_id == 0 or int(self.layer.data[seeds[1]]) != object_id:
            raise InputError("Both clicks must fall inside the same object; press 'Split: 2 clicks' again.")
        self.apply(edit.split(self.layer.data, object_id, seeds=seeds, voxel_size=self.measurements.voxel_size))

    def _clicked(self, layer, event):
        if not self._seeding or event.type != "mouse_press":
            return
        point = layer.world_to_data(event.position)
        guarded(lambda: self.add_seed(point), self.status)

    def undo(self):
        """Undo the last edit (napari's own undo history) and update the rows it touched."""
        if not self.history:
            raise InputError("Nothing to undo from this widget (paint strokes: use Ctrl+Z on the layer).")
        self.history.pop()
        self.layer.undo()
        self._history_moved()  # the rows follow napari's history (already done if set_data fired)

    def _painted(self, event) -> None:
        """Painting or filling with napari's tools: re-measure the objects it touched."""
        self._seen_history = _history_atoms(self.layer)
        ids = _atom_ids(getattr(event, "value", None) or [])
        if ids and self.measurements is not None:
            guarded(lambda: self.refresh_rows(ids), self.status)

    def _history_moved(self, *_event) -> None:
        """napari's undo/redo (Ctrl+Z, Shift+Ctrl+Z, ``layer.undo()``) moved history items: re-measure
        only the objects those items touched. Called on the layer's ``set_data`` (which undo and redo
        emit, and so do other refreshes: then nothing has moved and nothing is measured)."""
        layer = self.layer
        if layer is None:
            return
        undo, redo = _history_atoms(layer)
        before_undo, before_redo = self._seen_history
        self._seen_history = (undo, redo)
        was_undo, was_redo = {id(a) for a in before_undo}, {id(a) for a in before_redo}
        moved = [a for a in redo if id(a) in was_undo] + [a for a in undo if id(a) in was_redo]
        ids = _atom_ids(moved)
        if ids and self.measurements is not None:
            guarded(lambda: self.refresh_rows(ids), self.status)

    def filter(self):
        from ..objects import edit

        self._chosen(0)
        gone = edit.filter_ids(self.measurements, min_size=_number(self.filter_min.value, "minimum") or None,
                               max_size=_number(self.filter_max.value, "maximum"),
                               drop_border=self.filter_border.value)
        if not gone:
            self.status.value = "no object outside the filter"
            return
        self.apply(edit.delete(self.layer.data, gone))

    def relabel(self):
        from ..objects import edit

        self._chosen(0)
        if getattr(self, "queue_table", None) is not None and self.layer is self._queue.get("layer"):
            raise InputError("This layer is a review queue: its decisions name objects by their ids, so it is not "
                             "renumbered; relabel a copy once the review is done.")
        change, mapping = edit.relabel_sequential(self.layer.data)
        if not mapping:
            self.status.value = "already numbered 1..N"
            return
        self.apply(change)
        # ids moved: the rows are renamed, not re-measured (values are unchanged)
        self.table.show_table(self.measurements)


def _history_atoms(layer) -> tuple[list, list]:
    """The atoms (single changes) of a Labels layer's undo and redo history, oldest first.

    napari keeps them in ``_undo_history`` / ``_redo_history`` (deques of lists of atoms) and has no
    public accessor; without them (another napari) the table follows this widget's own edits only.
    """
    if layer is None:
        return [], []
    undo = getattr(layer, "_undo_history", None) or ()
    redo = getattr(layer, "_redo_history", None) or ()
    return [a for item in undo for a in item], [a for item in redo for a in item]


def _atom_ids(atoms) -> list[int]:
    """Object ids that history atoms changed (their values before and after), without 0."""
    ids = set()
    for atom in atoms:
        if isinstance(atom, tuple):  # data_setitem: (indices, values before, values after)
            ids.update(np.unique(atom[1]).tolist())
            ids.update(np.unique(atom[2]).tolist())
        else:  # a masked paint atom (brush, fill, polygon)
            ids.update(np.unique(getattr(atom, "old_values", [])).tolist())
            ids.update(np.unique(getattr(atom, "new_value", [])).tolist())
    ids.discard(0)
    return sorted(int(i) for i in ids)


def _number(text: str, what: str) -> float | None:
    text = str(text).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"The {what} {text!r} is not a number.") from None
