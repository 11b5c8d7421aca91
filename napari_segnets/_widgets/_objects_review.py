"""Review for the Objects widget: rank the objects, go to the likely errors, decide, see the error bars.

The core (:mod:`napari_segnets.review`) ranks, picks, describes, records and estimates; this
mixin turns its answers into the layer, the table and two lines of text, as the CLI's
``review`` does for files. Decisions go to a JSON-lines log (``<store>-review.jsonl`` beside the
store unless the user picks one; each names its queue by :func:`~napari_segnets.review.queue_fingerprint`,
so ranking again resumes or, after a fine-tune, skips objects already reviewed) and the reviewed
regions to the curated store, with the image file, the checkpoint and the reviewer as provenance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, Label, LineEdit, PushButton, SpinBox
from napari.layers import Image

from ..errors import InputError
from ._common import (
    CheckpointChoice,
    LayerChoice,
    Section,
    file_voxel_size,
    geometry,
    is_lazy,
    row,
    source_name,
    typed_path,
    unique_name,
    wrapping,
)
from ._runner import guarded

NO_QUEUE = "Rank the objects first: pick the image and the model under 'review' and press 'Rank objects'."


class Reviewing:
    """Rank objects, "next likely error", accept / fixed / delete; mixed into :class:`ObjectsWidget`.

    Sub-widgets: ``review_image``, ``review_checkpoint`` (``.model``/``.file``), ``review_device``,
    ``rank_button``, ``review_cancel``, ``next_button``, ``accept_button``, ``fixed_button``,
    ``reject_button``, ``audit_every``, ``reviewer``, ``log_path``, ``store_note`` (where samples go: the
    widget's ``store``), ``review_info``, ``signals_label`` (every signal of the selected object, as in the
    CLI's CSV; its tooltip says what each measures), ``error_bars_label``.
    State: ``queue_table`` (the ranked queue as ranked, never edited), ``queue_id``, ``current``
    (the object being decided), ``decisions`` (id -> latest record of this queue), ``carried``
    (ids already reviewed in an earlier queue: new id -> (old id, IoU)).
    """

    def _review_section(self, viewer) -> Section:
        self.review_image = LayerChoice(viewer, Image, label="image")
        self.review_checkpoint = CheckpointChoice(label="model", task="segment")
        self.review_device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.rank_button = PushButton(text="Rank objects")
        self.review_cancel = PushButton(text="Cancel")
        self.next_button = PushButton(text="Next likely error")
        self.accept_button = PushButton(text="Accept")
        self.fixed_button = PushButton(text="Fixed")
        self.reject_button = PushButton(text="Delete")
        self.audit_every = SpinBox(label="random audit every", min=0, max=100, value=3,
                                   tooltip="Every n-th pick is a random object: the error bars need some "
                                           "ordinary objects reviewed too (0 = never)")
        self.reviewer = LineEdit(label="reviewer", value=os.environ.get("USER", ""))
        self.log_path = FileEdit(label="decision log", mode="w", filter="*.jsonl",
                                 tooltip="JSON lines, one decision a line; empty: beside the store folder")
        self.review_info = wrapping(Label(value="rank the objects, then press 'Next likely error'"))
        self.error_bars_label = wrapping(Label(value=""))
        self.signals_label = wrapping(Label(value=""))  # every signal of the object being decided
        self.store_note = wrapping(Label(value=""))
        self.store.changed.connect(self._show_store)
        self._show_store()
        self.queue_table = None
        self.queue_id = None
        self.current = None
        self.current_audit = False  # the current object was shown as a random audit
        self.decisions: dict[int, dict] = {}
        self.carried: dict[int, tuple] = {}
        self._queue = {}
        self._reviewed_after: dict[int, np.ndarray] = {}  # id -> flat voxels as accepted/fixed (re-rank matching)
        self.rank_button.changed.connect(self.rank_objects)
        self.review_cancel.changed.connect(lambda *_: self.runner.cancel())
        self.next_button.changed.connect(lambda *_: guarded(self.next_error, self.status))
        self.accept_button.changed.connect(lambda *_: guarded(lambda: self.decide("accept"), self.status))
        self.fixed_button.changed.connect(lambda *_: guarded(lambda: self.decide("fix"), self.status))
        self.reject_button.changed.connect(lambda *_: guarded(lambda: self.decide("delete"), self.status))
        return Section("review: next likely error", [
            self.review_image, self.review_checkpoint, self.review_device,
            row(self.rank_button, self.review_cancel), self.audit_every, self.reviewer,
            self.log_path, self.store_note, self.next_button, self.review_info, self.signals_label,
            row(self.accept_button, self.fixed_button, self.reject_button), self.error_bars_label,
        ])

    # ---- ranking ---------------------------------------------------------------------
    def rank_objects(self, *_args):
        """Rank the image's objects with the chosen model in a worker; returns the worker (None if refused)."""
        return guarded(self._rank, self.status)

    def _rank(self):
        from .. import review

        img = self.review_image.require("image layer to review")
        entry = self.review_checkpoint.entry()
        if entry.task not in (None, "segment"):
            raise InputError(f"'{entry.name}' is an autoencoder; ranking objects needs a segmentation model.")
        data = img.data[0] if getattr(img, "multiscale", False) else img.data
        if getattr(img, "rgb", False) or data.ndim not in (2, 3):
            raise InputError(f"Layer '{img.name}' has shape {tuple(data.shape)}; review a single-channel 2D "
                             "image or 3D stack.")
        if is_lazy(data):
            raise InputError(f"'{img.name}' was opened lazily (over a quarter of memory) and ranking holds the "
                             "stack and several predictions of it in memory: save a crop of it (fewer slices "
                             "or a smaller area) and rank that.")
        image = np.asarray(data)
        voxel = self.voxel_size(image.ndim) or file_voxel_size(img)
        log = self._log_file(required=False)
        device = self.review_device.value
        path = Path(entry.path)
        fitted = []

        def job():
            from .. import checkpoints

            if log is not None and log.exists():  # decisions so far (any queue) can rank the objects
                fitted.append(review.fit_score_from_records(review.DecisionLog(log).records()))
            rule = fitted[0] if fitted else None
            model, meta = checkpoints.load(path, device="cpu")
            if getattr(model, "task", "segment") != "segment":
                raise InputError(f"{path.name} is an autoencoder; ranking objects needs a segmentation model.")
            result = yield from review.review_iter(
                model, image, voxel_size=voxel, normalization=meta.get("normalization"), device=device,
                score=None if rule is None else rule.score)
            return result

        def done(result):
            return self._queue_ready(result, img, image, path, entry.name, voxel, fitted[0] if fitted else None)

        return self.runner.start(job, title="rank objects", on_done=done)

    def _queue_ready(self, result, img, image, checkpoint, model_name, voxel, fitted) -> str:
        from .. import review
        from ..review.score import MIN_PER_CLASS

        labels = result.labels
        queue_id = review.queue_fingerprint(labels)
        if queue_id == self.queue_id:  # the same objects again (e.g. ranked by a fitted rule)
            carried = self.carried
        elif self._reviewed_after:  # re-ranked after a fine-tune: new objects, new ids
            carried = review.match_reviewed(self._reviewed_after, labels)
        else:
            carried = {}
        log = self._log_file(required=False)
        decisions = review.DecisionLog(log).latest(queue_id) if log is not None else {}
        name = unique_name(self.viewer, f"{img.name} review ({model_name})")
        layer = self.viewer.add_labels(labels, name=name, **geometry(img, labels.ndim),
                                       metadata={"segnets": {"voxel_size": voxel, "source": img.name,
                                                             "review_checkpoint": str(checkpoint)}})
        previous_id = self.queue_id
        self.queue_table, self.queue_id, self.current = result.table, queue_id, None
        self._show_signals(None)
        self.decisions, self.carried = dict(decisions), carried
        self._queue = {"labels": labels.copy(), "image": image, "layer": layer, "source": source_name(img),
                       "checkpoint": checkpoint}
        # what was accepted or fixed, as voxels, for matching after the next re-rank: kept when this is
        # the same queue again; accepted objects read back from the log (a fix's voxels are not in it)
        after = self._reviewed_after if queue_id == previous_id else {}
        accepted = [i for i, r in decisions.items() if r.get("decision") == "accept" and i not in after]
        after.update(review.voxels_of(labels, accepted))
        self._reviewed_after = after
        self.image.value = img  # edited objects are re-measured against it
        self.objects_layer.value = layer
        self._show(layer, result.table.copy())
        if "rank" in self.table.columns:
            from qtpy.QtCore import Qt

            self.table.sortItems(self.table.columns.index("rank"), Qt.SortOrder.AscendingOrder)
        self._update_error_bars()
        rule = (f"a rule fitted on the decisions so far ({fitted.describe()})" if fitted is not None
                else f"the default rule (a fitted one needs {MIN_PER_CLASS} fixed or deleted and {MIN_PER_CLASS} "
                     "accepted objects in the log)")
        parts = [f"{len(result.table)} objects ranked by {rule}"]
        if decisions:
            parts.append(f"{len(decisions)} already decided in this queue's log")
        if carried:
            parts.append(f"{len(carried)} match objects reviewed before the re-rank and are skipped")
        parts += result.notes
        self.review_info.value = "; ".join(parts) + ". Press 'Next likely error'."
        return f"{len(result.table)} objects ranked in '{name}'"

    # ---- going through the queue --------------------------------------------------------
    def _require_queue(self):
        if self.queue_table is None:
            raise InputError(NO_QUEUE)
        layer = self._queue["layer"]
        if layer not in self.viewer.layers:
            raise InputError(f"The queue's layer '{layer.name}' was closed; press 'Rank objects' again.")
        if self.layer is not layer:
            raise InputError(f"The table shows another layer; pick '{layer.name}' in 'objects' and press "
                             "Measure, or press 'Rank objects' again.")
        return self.queue_table

    def reviewed(self) -> set:
        """Ids of this queue decided (in its log) or matched to objects reviewed before a re-rank."""
        return set(self.decisions) | set(self.carried)

    def next_error(self):
        """Go to the next object of the queue and show its signals; returns its id (None when all are done)."""
        from .. import review

        table = self._require_queue()
        done = self.reviewed()
        every = int(self.audit_every.value)
        object_id = review.next_object(table, done, audit_every=every, seed=0)
        if object_id is None:
            self.current = None
            self.review_info.value = f"all {len(table)} objects of the queue are reviewed"
            self._show_signals(None)
            return None
        self.show_object(object_id, audit=review.audit_due(len(done), every))
        return object_id

    def show_object(self, object_id: int, *, audit: bool = False) -> None:
        """Make ``object_id`` the one to decide on: centre it, select it, describe it."""
        from .. import review

        info = review.describe_object(self.queue_table, object_id)
        self.current = int(object_id)
        self.current_audit = bool(audit)  # recorded with the decision: the error bars' random sample
        self.go_to(object_id, center=info["center"])
        self._syncing = True
        try:
            self.table.select_id(int(object_id))
        finally:
            self._syncing = False
        prefix = "random audit (for the error bars): " if audit else ""
        before = self.decisions.get(int(object_id))
        again = f" (decided before: {before['decision']})" if before else ""
        self.review_info.value = f"{prefix}{info['text']}{again}. Accept, fix it and press Fixed, or Delete."
        self._show_signals(info)

    def _show_signals(self, info: dict | None) -> None:
        """Every signal of the object (the strongest first) under the "next likely error" line."""
        from ..review.signals import SIGNALS

        if not info or not info["signals"]:
            self.signals_label.value, self.signals_label.tooltip = "", ""
            return
        self.signals_label.value = (f"all signals of object {info['id']} (0 = nothing suspicious; % = share of "
                                    f"the other objects lower): {info['all_signals']}")
        self.signals_label.tooltip = "\n".join(f"{n}: {SIGNALS[n]}" for n in info["signals"])

    # ---- decisions -----------------------------------------------------------------------
    def decide(self, decision: str) -> dict:
        """Record accept / fix / delete of the current object (store + log); returns the record."""
        from .. import review
        from ..curation import Store
        from ..objects import edit

        table = self._require_queue()
        object_id = self.current
        if object_id is None:
            raise InputError("No object to decide on: press 'Next likely error' (or click a row of the queue).")
        root = self._store_root()
        log = review.DecisionLog(self._log_file())
        queue, layer = self._queue, self._queue["layer"]
        before = queue["labels"] == object_id
        fixed = None
        if decision == "fix":
            fixed = review.fixed_mask(queue["labels"], np.asarray(layer.data), object_id)
            if np.array_equal(fixed, before):
                raise InputError(f"Object {object_id} is unchanged: paint it or use Merge / Split / Delete, then "
                                 "press Fixed (or press Accept if it is right).")
        record = review.record_decision(
            log, object_id=object_id, decision=decision, labels=queue["labels"], fixed=fixed,
            image=queue["image"], store=Store(root), source=queue["source"], checkpoint=queue["checkpoint"],
            row=table.row(object_id), reviewer=self.reviewer.value.strip(), queue_id=self.queue_id,
            replaces=self.decisions.get(object_id), audit=self.current_audit)
        if decision == "delete" and (np.asarray(layer.data) == object_id).any():
            self.apply(edit.delete(layer.data, [object_id]))  # the proofreading delete: Undo brings it back
        self.decisions[object_id] = record
        if decision != "delete":
            self._reviewed_after[object_id] = np.flatnonzero(before if fixed is None else fixed)
        self._update_error_bars()
        word = {"accept": "accepted", "fix": "fixed", "delete": "deleted"}[decision]
        undo = " (Undo brings its voxels back; the latest decision on an object counts)" if decision == "delete" else ""
        self.status.value = (f"object {object_id} {word}{undo}: {len(record['samples'])} slices to the store {root}; "
                             f"decision in {log.path}. Press 'Next likely error'.")
        self.review_info.value = (f"object {object_id} {word}{undo}; {len(record['samples'])} slices to the store. "
                                  "Press 'Next likely error'.")
        return record

    def _update_error_bars(self) -> None:
        from .. import review

        if self.queue_table is None:
            return
        bars = review.error_bars(self.queue_table, review.decisions_for_error_bars(self.decisions))
        self.error_bars_label.value = f"error bars: {bars['text']}"

    def _show_store(self, *_args) -> None:
        root = typed_path(self.store)
        self.store_note.value = (f"accepted, fixed and deleted objects go to the store {root} ('store' below)"
                                 if root is not None else "pick a store folder in 'store' below")

    def _store_root(self) -> Path:
        root = typed_path(self.store)
        if root is None:
            raise InputError("Pick a store folder in 'store': accepted and fixed objects go there as training "
                             "samples for fine-tuning.")
        return root

    def _log_file(self, required: bool = True) -> Path | None:
        """The decision log: the path chosen in 'decision log', else ``<store>-review.jsonl`` beside the store."""
        path = typed_path(self.log_path)
        if path is not None:
            if path.is_dir():
                raise InputError(f"'decision log' is a folder ({path}); give a file name ending in .jsonl.")
            return path
        try:
            root = self._store_root()
        except InputError:
            if required:
                raise InputError("Pick a store folder in 'store' (the decision log goes beside it) or a "
                                 "file in 'decision log'.") from None
            return None
        root = root.expanduser()
        return root.with_name(root.name + "-review.jsonl")
