"""Small GUI helpers shared by the widgets: layer lookup, slices, geometry, plots."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels

from ..errors import InputError

__all__ = [
    "LayerChoice",
    "Section",
    "scrolling",
    "wrapping",
    "default_store",
    "looks_like_mask",
    "predicted_here",
    "add_or_update",
    "current_index",
    "geometry",
    "is_lazy",
    "read_slice",
]


class LayerChoice(ComboBox):
    """A combo box of the viewer's layers of some types, kept in sync with the layer list.

    ``value`` is the layer object (or None). Tests can set it to a layer.

    Parameters
    ----------
    layer_type : layer class or tuple of them
        The layers offered; with a tuple, those of the first type are listed first.
    prefer : callable, optional
        ``prefer(layer) -> bool``: within a type, preferred layers are listed (and chosen) first.
    differ_from : LayerChoice, optional
        Never default to that choice's layer: a pair like prediction / ground truth starts
        on two different layers (the user may still pick the same one).
    """

    def __init__(self, viewer, layer_type=Image, *, label: str, nullable: bool = False,
                 prefer=None, differ_from: LayerChoice | None = None, **kw):
        self._viewer = viewer
        self._types = tuple(layer_type) if isinstance(layer_type, tuple | list) else (layer_type,)
        self._prefer = prefer
        self._differ_from = differ_from
        self._nullable = nullable
        super().__init__(label=label, choices=self._choices, nullable=nullable, **kw)
        self._avoid_twin()
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh)
        self.native.destroyed.connect(self._disconnect)

    def _choices(self, _widget=None):
        ranked = []
        for layer in self._viewer.layers:
            kind = next((i for i, t in enumerate(self._types) if isinstance(layer, t)), None)
            if kind is not None:
                ranked.append((kind, not (self._prefer is None or self._prefer(layer)), layer))
        ranked.sort(key=lambda item: item[:2])  # stable: layer-list order within a rank
        return [(layer.name, layer) for _k, _p, layer in ranked]

    def _avoid_twin(self) -> None:
        other = self._differ_from
        if other is None or self.value is None or self.value is not other.value:
            return
        for _name, layer in self._choices():
            if layer is not other.value:
                self.value = layer
                return

    def _refresh(self, _event=None) -> None:
        try:
            before = self.value
            self.reset_choices()
            if self.value is not before:  # a new default, not a choice the user made
                self._avoid_twin()
        except RuntimeError:  # the Qt widget is gone
            self._disconnect()

    def _disconnect(self, *_args) -> None:
        events = self._viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            try:
                ev.disconnect(self._refresh)
            except (TypeError, ValueError, RuntimeError):
                pass

    def require(self, what: str):
        """The chosen layer, or an InputError that says which layer to add or pick."""
        layer = self.value
        if layer is None or layer not in self._viewer.layers:
            kind = "Labels" if self._types[0] is Labels else "image"
            raise InputError(f"No {what} chosen: add or open a {kind} layer and pick it in '{self.label}'.")
        return layer


def predicted_here(layer) -> bool:
    """Whether a layer holds a prediction made by the Segment widget."""
    return bool(layer.metadata.get("segnets", {}).get("checkpoint"))


def looks_like_mask(layer) -> bool:
    """A Labels layer, or an in-memory image layer that is a binary mask (a 0/255 mask opened as
    an image: :func:`napari_segnets.io.is_binary_mask`, on a strided sample for the GUI thread)."""
    from ..io import is_binary_mask

    if isinstance(layer, Labels):
        return True
    data = layer.data
    if getattr(layer, "rgb", False) or getattr(layer, "multiscale", False) or is_lazy(data):
        return False
    return is_binary_mask(data, strided=True)


def is_lazy(data) -> bool:
    """True for arrays that are not in memory (dask, zarr)."""
    return not isinstance(data, np.ndarray)


def current_index(viewer, layer) -> int | None:
    """The data index of the slice shown for a 3D layer (None for 2D layers)."""
    if layer.ndim < 3:
        return None
    point = viewer.dims.point[-layer.ndim:]
    z = layer.world_to_data(point)[0]
    return int(np.clip(round(float(z)), 0, layer.data.shape[0] - 1))


def read_slice(layer, index: int | None) -> np.ndarray:
    """One 2D slice of a 2D/3D layer as numpy (computes only that slice of a lazy stack)."""
    data = layer.data
    if isinstance(data, list):  # multiscale: full-resolution level
        data = data[0]
    if data.ndim == 2 or index is None:
        if data.ndim != 2:
            raise InputError(f"Layer '{layer.name}' has {data.ndim} dimensions; use a 2D image or a 3D stack.")
        return np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"Layer '{layer.name}' has {data.ndim} dimensions; use a 2D image or a 3D stack.")
    return np.asarray(data[index])


def geometry(layer, ndim: int | None = None) -> dict:
    """scale/translate of ``layer`` for a new layer with ``ndim`` dims (the trailing ones)."""
    ndim = layer.ndim if ndim is None else ndim
    return {"scale": tuple(layer.scale[-ndim:]), "translate": tuple(layer.translate[-ndim:])}


def add_or_update(viewer, kind: str, data, name: str, **kwargs):
    """Replace the data of layer ``name`` if it exists with the same kind and shape, else add it."""
    cls = {"image": Image, "labels": Labels}[kind]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if isinstance(layer, cls) and getattr(layer.data, "shape", None) == data.shape:
            old = layer.data
            layer.data = data
            if old is not data:
                from ._temp import release

                release(old)  # a scratch store the layer no longer shows (no-op for anything else)
            return layer
        viewer.layers.remove(layer)
    adder = viewer.add_image if kind == "image" else viewer.add_labels
    return adder(data, name=name, **kwargs)


def source_name(layer) -> str:
    """The file a layer came from, else its name (provenance for the store)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path else layer.name


def typed_path(file_edit):
    """The path typed or picked in a FileEdit, None when its field is empty (its ``value`` is then ``.``)."""
    from pathlib import Path

    text = str(file_edit.line_edit.value or "").strip()
    return Path(text).expanduser() if text and text != "." else None


def file_voxel_size(layer):
    """A layer's voxel size (z, y, x or y, x) when its scale came from the file (not all 1), else None."""
    scale = [float(s) for s in layer.scale][-3:]
    return tuple(scale) if any(abs(s - 1.0) > 1e-9 for s in scale) else None


def row(*widgets, labels: bool = False):
    """Widgets side by side (a horizontal Container)."""
    from magicgui.widgets import Container

    return Container(widgets=list(widgets), layout="horizontal", labels=labels)


def unique_name(viewer, name: str) -> str:
    """``name`` if no layer has it, else ``name [k]`` with the first free k."""
    k = 1
    candidate = name
    while candidate in viewer.layers:
        candidate = f"{name} [{k}]"
        k += 1
    return candidate


def default_store():
    """Where the training set goes unless the user picks a folder (Curate and Train)."""
    from pathlib import Path

    return Path.home() / "napari-segnets" / "training-set"


def checkpoint_metadata(path) -> dict:
    """A checkpoint's metadata from its header (no weights read: fast enough for the GUI thread)."""
    from .. import checkpoints

    return checkpoints.read_metadata(path)


class CheckpointChoice(Container):
    """Pick a checkpoint trained in this session or opened from a file.

    Attributes: ``model`` (combo of session checkpoints) and ``file`` (a file
    picker; choosing a file registers it and selects it in ``model``).
    """

    def __init__(self, *, label: str = "checkpoint", task: str | None = None, nullable: bool = False):
        from magicgui.widgets import FileEdit

        from ._session import REGISTRY

        self._task = task
        self.model = ComboBox(label=label, choices=self._choices, nullable=nullable)
        self.file = FileEdit(label="…or file", mode="r", filter="*.safetensors *.zip *.yaml")
        super().__init__(widgets=[self.model, self.file], labels=True)
        self.file.changed.connect(self._file_chosen)
        REGISTRY.changed.connect(self._refresh)
        self.native.destroyed.connect(lambda *_: REGISTRY.changed.disconnect(self._refresh))

    def _choices(self, _widget=None):
        from ._session import REGISTRY

        return REGISTRY.names(self._task)

    def _refresh(self) -> None:
        try:
            self.model.reset_choices()
        except RuntimeError:
            pass

    def _file_chosen(self, path) -> None:
        from pathlib import Path

        from ._runner import report_exception
        from ._session import REGISTRY

        if not path or not Path(path).is_file():
            return
        try:
            meta = checkpoint_metadata(path)
        except Exception as exc:
            report_exception(exc)
            return
        entry = REGISTRY.add(path, task=meta.get("task"), arch=meta.get("arch"), metadata=meta)
        self._refresh()
        if entry.name in self.model.choices:
            self.model.value = entry.name

    def entry(self, required: bool = True):
        """The chosen session entry (InputError when none and ``required``)."""
        from ._session import REGISTRY

        name = self.model.value
        item = REGISTRY.get(name) if name else None
        if item is None and required:
            raise InputError(
                "No checkpoint chosen: train one in the Train widget or pick a .safetensors file."
            )
        return item


def wrapping(label):
    """Let a magicgui Label wrap its text onto more lines; returns the label.

    Its width follows the panel: text that cannot wrap (a long file path) is cut at the
    panel's edge instead of widening the panel past its dock.
    """
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def scrolling(widget, *, pack: bool = True):
    """Put a widget's contents in a vertical scroll area, in place; returns the widget.

    A docked panel taller than the screen otherwise forces the napari window taller
    than a 1920x1080 laptop screen. napari docks ``widget.native``, so magicgui's own
    ``scrollable=True`` (which wraps around ``native``) is lost on docking: here the
    layout moves into a scrolled page inside ``native`` instead, and magicgui keeps
    adding to the same layout. Calling it twice changes nothing. ``pack``: widgets sit
    at the top and spare height stays empty (False: a table or list below takes it).
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

    native = widget.native
    if getattr(native, "_segnets_scroll", None) is not None:
        return widget
    status = getattr(widget, "status", None)
    if status is not None:
        wrapping(status)  # a long message must not widen the panel past its dock
    layout = native.layout()
    if pack:
        layout.addStretch(1)  # widgets packed at the top (magicgui inserts before this)
    page = QWidget()
    page.setLayout(layout)  # moves the layout, and the widgets in it, to the page
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(page)
    # as wide as the contents need (no horizontal scrolling), as short as the user likes
    scroll.setMinimumWidth(page.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    outer = QVBoxLayout(native)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    native._segnets_scroll = scroll
    return widget


class Section(Container):
    """A titled group of widgets that folds away behind a ▸/▾ button (closed by default).

    ``body`` holds the widgets; ``opened`` tells whether they are shown; ``toggle()`` flips it.
    """

    def __init__(self, title: str, widgets, *, opened: bool = False):
        from magicgui.widgets import PushButton

        self._title = title
        self.button = PushButton(text="")
        self.body = Container(widgets=list(widgets))
        super().__init__(widgets=[self.button, self.body], labels=False)
        self.margins = (0, 0, 0, 0)
        self.button.changed.connect(self.toggle)
        self._show(opened)

    @property
    def opened(self) -> bool:
        return self._opened

    def toggle(self, *_args) -> None:
        self._show(not self._opened)

    def _show(self, opened: bool) -> None:
        self._opened = opened
        self.button.text = f"{'▾' if opened else '▸'} {self._title}"
        self.body.visible = opened
