"""Curate: add corrected slices or regions to the training-set store, jump to uncertain slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    RadioButtons,
)
from napari.layers import Image, Labels

from ..errors import InputError
from ._common import (
    LayerChoice,
    current_index,
    default_store,
    is_lazy,
    predicted_here,
    scrolling,
    source_name,
    typed_path,
    wrapping,
)
from ._runner import JobRunner, guarded, notify_info

SLICE, REGION = "current slice", "edited region"


def uncertainty_job(checkpoint, image):
    """Probabilities of the whole stack for ranking (a progress generator; worker thread)."""
    from .. import checkpoints, inference
    from ._temp import temporary_store

    model, meta = checkpoints.load(checkpoint, device="cpu")
    out = None
    if is_lazy(image):
        # float32 on disk: the ranking wants probabilities in [0, 1], not the x255 uint8 default
        out = inference.create_output(temporary_store(), image.shape, model.out_channels, "probabilities",
                                      dtype=np.float32)
    prob = yield from inference.predict_iter(
        model, image, output="probabilities", normalization=meta.get("normalization"), out=out,
    )
    return prob


class CurateWidget(Container):
    """Save corrections to the curated store and suggest the next slice to correct.

    Sub-widgets: ``labels_layer`` (the predicted, corrected layer), ``image``, ``store``,
    ``scope`` (current slice / edited region), ``split``, ``note``, ``add_button``,
    ``counts``, ``next_button``, ``cancel_button``, ``status``. ``last_record`` holds
    the store's record of the latest addition, ``suggested`` the latest suggestion.
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        self.viewer = viewer
        self.labels_layer = LayerChoice(viewer, Labels, label="corrected labels", prefer=predicted_here)
        self.image = LayerChoice(viewer, Image, label="image")
        self.store = FileEdit(label="store", mode="d", value=default_store())
        self.scope = RadioButtons(label="add", choices=[SLICE, REGION], value=SLICE)
        self.split = ComboBox(label="split", choices=["train", "val"], value="train")
        self.note = LineEdit(label="note")
        self.add_button = PushButton(text="Add to training set")
        self.counts = wrapping(Label(value=""))
        self.next_button = PushButton(text="Next uncertain slice")
        self.cancel_button = PushButton(text="Cancel")
        self.status = Label(value="")
        super().__init__(widgets=[
            self.labels_layer, self.image, self.store, self.scope, self.split, self.note, self.add_button,
            self.counts,
            Container(widgets=[self.next_button, self.cancel_button], layout="horizontal", labels=False),
            self.status,
        ])
        scrolling(self)  # fits a laptop screen: the panel scrolls instead of growing
        self.runner = JobRunner(viewer, label=self.status, run_buttons=[self.next_button],
                                cancel_button=self.cancel_button)
        self.add_button.changed.connect(self.add_to_store)
        self.next_button.changed.connect(self.next_uncertain)
        self.labels_layer.changed.connect(self._labels_chosen)
        self.store.changed.connect(self.refresh_counts)
        self.last_record = None
        self.suggested = None
        self._labels_chosen()
        self.refresh_counts()

    # ---- helpers -------------------------------------------------------------
    def _labels_chosen(self, *_args) -> None:
        layer = self.labels_layer.value
        src = (layer.metadata.get("segnets", {}) if layer is not None else {}).get("source")
        if src and src in self.viewer.layers and isinstance(self.viewer.layers[src], Image):
            self.image.value = self.viewer.layers[src]

    def _open_store(self, create: bool = True):
        from ..curation import Store

        root = typed_path(self.store)
        if root is None:
            raise InputError("No store folder chosen: pick a folder in 'store' for the training set.")
        return Store(root, create=create)

    def refresh_counts(self, *_args) -> None:
        """Show the store's live samples per split and its version/removal counts."""
        root = self.store.value
        if not root or not (Path(root) / "manifest.jsonl").exists() and not Path(root).is_dir():
            self.counts.value = "store: (new, empty)"
            return
        try:
            c = self._open_store(create=False).counts()
        except Exception:  # not a store yet: it is created on the first addition
            self.counts.value = "store: (new, empty)"
            return
        self.counts.value = (f"store: {c['live']} samples (train {c['train']}, val {c['val']}), "
                             f"{c['versions']} versions, {c['removed']} removed")

    # ---- actions -------------------------------------------------------------
    def add_to_store(self, *_args):
        """Add the current slice or the edited region; returns the record (None if refused)."""
        return guarded(self._add, self.status)

    def _add(self):
        from ..curation import edited_sample

        labels = self.labels_layer.require("corrected labels layer")
        image = self.image.require("image layer")
        if tuple(labels.data.shape) != tuple(image.data.shape):
            raise InputError(
                f"The labels '{labels.name}' {tuple(labels.data.shape)} and image '{image.name}' "
                f"{tuple(image.data.shape)} differ in shape; pick the image the labels were predicted on."
            )
        z = current_index(self.viewer, labels)
        img = np.asarray(image.data[z] if z is not None else image.data)
        mask = np.asarray(labels.data[z] if z is not None else labels.data)
        info = labels.metadata.get("segnets", {})
        original = info.get("original")
        orig = None if original is None else np.asarray(original[z] if z is not None else original)
        region, changed = None, None
        if orig is not None:
            changed = int(np.count_nonzero(orig != mask))
        if self.scope.value == REGION:
            if orig is None:
                raise InputError(
                    f"'{labels.name}' has no record of the original prediction; predict it with the "
                    "Segment widget first, or add the whole slice."
                )
            cut = edited_sample(img, orig, mask)
            if cut is None:
                raise InputError("Nothing was changed on this slice; paint corrections first, or add the whole slice.")
            img, mask, region, changed = cut
        store = self._open_store()
        # an edited region marks its unreviewed pixels 255 (edited_sample); a whole slice has none
        record = store.add(img, mask, source=source_name(image), index=z or 0, region=region,
                           checkpoint=info.get("checkpoint"), changed_pixels=changed,
                           split=self.split.value, note=self.note.value,
                           ignore_index=255 if region is not None else None)
        self.last_record = record
        where = f"slice {z}" if z is not None else "image"
        if region is not None:
            where += f" region y{region[0]}:{region[2]} x{region[1]}:{region[3]}"
        self.status.value = f"added {where} ({changed if changed is not None else '?'} pixels changed)"
        self.refresh_counts()
        return record

    def next_uncertain(self, *_args):
        """Rank slices by uncertainty and move the viewer to the best one not yet in the store."""
        return guarded(self._next, self.status)

    def _next(self):
        labels = self.labels_layer.require("predicted labels layer")
        image = self.image.require("image layer")
        info = labels.metadata.setdefault("segnets", {})
        if image.ndim < 3:
            raise InputError("The image is a single slice; there is no other slice to jump to.")
        checkpoint = info.get("checkpoint")
        if not checkpoint:
            raise InputError(f"'{labels.name}' was not predicted by the Segment widget; predict it first.")
        cached = info.get("probabilities")
        if cached is not None and cached[0] == checkpoint:
            self._jump(cached[1])
            return None

        def done(prob):
            info["probabilities"] = (checkpoint, prob)
            return self._jump(prob)

        data = image.data[0] if image.multiscale else image.data
        return self.runner.start(lambda: uncertainty_job(checkpoint, data), title="rank uncertainty",
                                 on_done=done)

    def _jump(self, prob) -> str:
        from ..curation import rank_uncertainty

        labels, image = self.labels_layer.value, self.image.value
        self.suggested = None
        try:
            covered = self._open_store(create=False).covered(source=source_name(image))
        except Exception:
            covered = []
        done = {c if isinstance(c, int) else c[0] for c in covered}
        # inference puts classes first (C, Z, Y, X); read slice by slice, a lazy result stays lazy
        ranking = rank_uncertainty(prob, method="entropy", exclude=sorted(done))
        for item in ranking:
            z = _slice_of(item)
            if z not in done:
                self.suggested = z
                axis = self.viewer.dims.ndim - labels.ndim
                world = labels.data_to_world([z] + [0] * (labels.ndim - 1))[0]
                self.viewer.dims.set_point(axis, world)
                self.status.value = f"most uncertain unreviewed slice: {z}"
                return self.status.value
        notify_info("Every ranked slice is already in the store.")
        self.status.value = "every ranked slice is already in the store"
        return self.status.value


def _slice_of(item) -> int:
    if isinstance(item, dict):
        return int(item.get("index", item.get("slice")))
    if isinstance(item, tuple | list):
        return int(item[0])
    return int(item)


__all__ = ["CurateWidget"]
