"""Train / Fine-tune: fit a model on layers or on the curated store, with a live plot."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Labels

from ..errors import InputError
from ..metrics import format_score
from ..training.masks import looks_sparse
from ._common import (
    CheckpointChoice,
    LayerChoice,
    current_index,
    default_store,
    geometry,
    scrolling,
)
from ._curves import CurvesCanvas
from ._runner import JobRunner, guarded
from ._session import REGISTRY

LAYERS, STORE = "image + labels layers", "curated store"
FULL, SPARSE = "full masks (0 = bg)", "strokes (0 = unpainted)"
PREVIEW = "training preview"


class MaskChoice(LayerChoice):
    """Mask layers: Labels layers first, then integer Image layers (a mask file opened as an
    image), never the layer chosen as the image."""

    def __init__(self, viewer, image_choice, **kw):
        self._image_choice = image_choice
        super().__init__(viewer, (Labels, Image), **kw)
        image_choice.changed.connect(self._refresh)
        self._pick_labels()

    def _refresh(self, _event=None) -> None:
        super()._refresh(_event)
        self._pick_labels()

    def _pick_labels(self) -> None:
        """Default to the first Labels layer (never left empty when there is one)."""
        try:
            if self.value is None:
                first = next((lay for _, lay in self._choices() if isinstance(lay, Labels)), None)
                if first is not None:
                    self.value = first
        except RuntimeError:  # the Qt widget is gone
            pass

    def _choices(self, _widget=None):
        image = getattr(self, "_image_choice", None)
        chosen = image.value if image is not None else None
        layers = [layer for layer in self._viewer.layers if layer is not chosen]
        labels = [(layer.name, layer) for layer in layers if isinstance(layer, Labels)]
        images = [(layer.name, layer) for layer in layers
                  if isinstance(layer, Image) and not layer.multiscale and not layer.rgb
                  and np.dtype(layer.dtype).kind in "uib"]
        return labels + images

    def require(self, what: str):
        layer = self.value
        if layer is None or layer not in self._viewer.layers:
            raise InputError(f"No {what} chosen: add or open a Labels layer (or press 'new stroke "
                             f"layer') and pick it in '{self.label}'.")
        return layer


def default_checkpoint_dir() -> Path:
    """Where new checkpoints go unless the user picks a file."""
    return Path.home() / "napari-segnets" / "checkpoints"


def train_job(*, build, data, val, parent, **kwargs):
    """Build the model (or fine-tune ``parent``), then train (a progress generator; worker thread).

    A PCA autoencoder is fitted in closed form instead (no steps, loss or optimizer).
    """
    from .. import models
    from ..training import train_iter

    if build["arch"] == "pca":  # fitted in closed form by the loop; "base" = its components
        build = {"arch": "pca", "task": "autoencode", "components": build.get("base", 16)}
        kwargs = {k: v for k, v in kwargs.items() if k in ("checkpoint", "seed")}

    # With a parent the loop loads its weights and normalisation and records it as parent.
    model = None if parent is not None else models.build(**build)
    result = yield from train_iter(model, data, val=val, parent=str(parent.path) if parent else None,
                                   **kwargs)
    return result


class TrainWidget(Container):
    """Train a new model or fine-tune a checkpoint; saves a checkpoint with its parent recorded.

    Sub-widgets: ``source``, ``image``, ``labels_layer`` (Labels layers first),
    ``annotation_mode`` (full masks or sparse strokes), ``new_strokes`` (button), ``store``, ``arch``,
    ``task``, ``base``, ``parent_checkpoint`` (``.model``/``.file``; empty = train from scratch),
    ``loss``, ``optimizer``, ``minutes`` (0 = by epochs), ``epochs`` (0 = no limit), ``steps``,
    ``batch_size``, ``crop``, ``lr``, ``val_slices``, ``device``, ``output``, ``train_button``,
    ``cancel_button``, ``eta``, ``status``, ``plot``. After a run: ``history`` (list of payload
    dicts), ``result`` (the core's TrainResult); after a cancel, ``saved`` (the best checkpoint
    written, offered in Segment, or None).
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        from .. import models
        from ..training import losses

        self.viewer = viewer
        self.source = RadioButtons(label="train on", choices=[LAYERS, STORE], value=LAYERS)
        self.image = LayerChoice(viewer, Image, label="image")
        self.labels_layer = MaskChoice(viewer, self.image, label="labels", nullable=True)
        self.annotation_mode = ComboBox(label="annotation", choices=[FULL, SPARSE], value=FULL)
        self.annotation_mode.tooltip = ("full masks: every pixel labelled, 0 = background, any other value = "
                                        "object; strokes (ilastik): 0 = not painted, 1 = background, 2 = object")
        self.new_strokes = PushButton(text="new stroke layer")
        self.store = FileEdit(label="store", mode="d", value=default_store())
        # "pca" is fitted in closed form (training.fit_pca_iter); "base channels" is then its components
        self.arch = ComboBox(label="architecture", value="unet", choices=list(models.available()))
        self.base = SpinBox(label="base channels", min=2, max=128, value=16,
                            tooltip="width of the net; for pca, the number of principal components")
        self.parent_checkpoint = CheckpointChoice(label="fine-tune from", nullable=True)
        self.parent_checkpoint.model.value = None
        self._losses = {"segment": list(losses.SEGMENT_LOSSES), "autoencode": list(losses.AUTOENCODE_LOSSES)}
        self.task = ComboBox(label="task", choices=["segment", "autoencode"], value="segment")
        # choices as a callable: napari resets docked widgets' choices whenever layers change
        self.loss = ComboBox(label="loss", choices=lambda _w=None: self._losses[self.task.value],
                             value="bce_dice")
        self.optimizer = ComboBox(label="optimizer", choices=["adam", "adamw", "sgd"], value="adam")
        self.minutes = FloatSpinBox(label="minutes (0 = by epochs)", min=0, max=10_000, step=1,
                                    value=5)
        self.epochs = SpinBox(label="epochs (0 = no limit)", min=0, max=10_000, value=0)
        self.steps = SpinBox(label="steps / epoch (0 = auto)", min=0, max=100_000, value=0)
        self.batch_size = SpinBox(label="batch size", min=1, max=256, value=4)
        self.crop = SpinBox(label="crop", min=16, max=2048, step=16, value=128)
        self.lr = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-4, value=1e-3)
        self.lr.native.setDecimals(6)
        self.val_slices = SpinBox(label="validation slices", min=0, max=1000, value=1)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.output = FileEdit(label="save as", mode="w", filter="*.safetensors")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel")
        self.eta = Label(value="")
        self.status = Label(value="")
        self.plot = CurvesCanvas(label="loss and validation")
        super().__init__(widgets=[
            self.source, self.image, self.labels_layer, self.annotation_mode, self.new_strokes,
            self.store, self.arch, self.task, self.base,
            self.parent_checkpoint, self.loss, self.optimizer, self.minutes, self.epochs, self.steps,
            self.batch_size, self.crop, self.lr, self.val_slices, self.device, self.output,
            Container(widgets=[self.train_button, self.cancel_button], layout="horizontal",
                      labels=False),
            self.eta, self.status, self.plot,
        ], scrollable=False)
        scrolling(self)  # fits a laptop screen: the panel scrolls instead of growing
        self.runner = JobRunner(viewer, label=self.status, run_buttons=[self.train_button],
                                cancel_button=self.cancel_button)
        self.train_button.changed.connect(self.run)
        self.task.changed.connect(self._task_changed)
        self.labels_layer.changed.connect(self._suggest_annotation)
        self.new_strokes.changed.connect(self.add_stroke_layer)
        self.history: list[dict] = []
        self.result = None
        self.saved = None
        self._suggest_annotation()
        self._draw([])

    def _suggest_annotation(self, *_args) -> None:
        """Offer sparse mode when the chosen Labels layer is mostly unpainted."""
        layer = self.labels_layer.value
        if isinstance(layer, Labels) and looks_sparse(layer.data):
            if self.annotation_mode.value != SPARSE:
                self.annotation_mode.value = SPARSE
                self.status.value = (f"'{layer.name}' is mostly unpainted: training on strokes "
                                     "(1 = background, 2 = object; unpainted pixels are ignored)")
        elif layer is not None:
            self.annotation_mode.value = FULL

    def add_stroke_layer(self, *_args):
        """A fresh, empty Labels layer to paint strokes in (1 = background, 2 = object)."""
        image = self.image.require("image layer")
        data = image.data[0] if image.multiscale else image.data
        layer = self.viewer.add_labels(np.zeros(data.shape, np.uint8), name="strokes",
                                       **geometry(image))
        self.labels_layer.reset_choices()
        self.labels_layer.value = layer
        self.annotation_mode.value = SPARSE
        self.status.value = "paint 1 = background, 2 = object (3, 4 ... = more classes), then Train"
        return layer

    def _task_changed(self, task) -> None:
        self.loss.reset_choices()
        self.loss.value = "bce_dice" if task == "segment" else "mse"

    # ---- inputs --------------------------------------------------------------
    def _datasets(self):
        from ..training.datasets import SliceDataset

        if self.source.value == STORE:
            from ..curation import Store

            root = self.store.value
            if not root or not Path(root).is_dir() or str(root) in (".", ""):
                raise InputError("No curated store chosen: pick the store folder (Curate widget) in 'store'.")
            store = Store(root)
            data = SliceDataset.from_store(store, split="train")
            val = None
            if store.samples(split="val"):
                val = SliceDataset.from_store(store, split="val")
            return data, val, self.image.value
        image = self.image.require("image layer")
        img = image.data[0] if image.multiscale else image.data
        mask = None
        if self.task.value == "segment":
            labels = self.labels_layer.require("labels layer")
            mask = labels.data
            if tuple(mask.shape) != tuple(img.shape):
                raise InputError(
                    f"The labels '{labels.name}' have shape {tuple(mask.shape)} but the image "
                    f"'{image.name}' has {tuple(img.shape)}; pick layers of the same stack."
                )
        sparse = self.task.value == "segment" and self.annotation_mode.value == SPARSE
        data = SliceDataset(img, mask, name=image.name, annotation="sparse" if sparse else "full")
        n = len(data)
        n_val = min(self.val_slices.value, n - 1)
        if sparse:  # strokes are too few to hold any out: the latest weights are kept
            return data, None, image
        if n == 1 and self.val_slices.value > 0:
            return data, "auto", image  # one slice: the core holds out a strip of it
        if n_val <= 0:
            return data, None, image
        # Validate on the slice in view (and the next ones): the preview then shows it.
        z = current_index(self.viewer, image) or 0
        val_idx = [(z + k) % n for k in range(n_val)]
        train_idx = [i for i in range(n) if i not in val_idx]
        return data.subset(train_idx), data.subset(val_idx), image

    def _checkpoint_path(self) -> Path:
        out = self.output.value
        if out and str(out) not in ("", ".") and not Path(out).is_dir():
            path = Path(out)
            return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return default_checkpoint_dir() / f"{self.arch.value}-{self.task.value}-{stamp}.safetensors"

    # ---- action --------------------------------------------------------------
    def run(self, *_args):
        """Start training; returns the worker (None if the inputs were refused)."""
        return guarded(self._start, self.status)

    def _start(self):
        data, val, image_layer = self._datasets()
        parent = self.parent_checkpoint.entry(required=False)
        classes = 1
        if self.task.value == "segment" and data.has_masks:
            data.check()  # no objects or no background: refused before any work
            classes = 1 if data.classes <= 2 else data.classes
        if self.arch.value == "pca":
            if self.task.value != "autoencode":
                raise InputError("PCA is an autoencoder: pick task 'autoencode' to fit it.")
            if parent is not None:
                raise InputError("A PCA autoencoder is refitted from the data, not fine-tuned: "
                                 "clear 'fine-tune from'.")
        build = {"arch": self.arch.value, "task": self.task.value, "classes": classes, "seed": 0}
        if self.arch.value != "linear":  # the linear autoencoder is sized by patch, not width
            build["base"] = self.base.value
        checkpoint = self._checkpoint_path()
        self._preview_geo = geometry(image_layer, 2) if image_layer is not None else None
        minutes = float(self.minutes.value) or None
        kwargs = {
            "task": self.task.value, "epochs": self.epochs.value or None, "minutes": minutes,
            "annotation": "sparse" if self.annotation_mode.value == SPARSE else "full",
            "seed": 0, "steps_per_epoch": self.steps.value or None,
            "batch_size": self.batch_size.value, "crop": self.crop.value, "lr": float(self.lr.value),
            "loss": self.loss.value, "optimizer": self.optimizer.value, "device": self.device.value,
            "checkpoint": str(checkpoint),
        }
        self.history = []
        self.result = None
        self.saved = None
        self._draw([])
        title = f"{'fine-tune' if parent else 'train'} {self.arch.value}"
        self._prepare_preview(data if isinstance(val, str) else val, classes)

        def job():
            return train_job(build=build, data=data, val=val, parent=parent, **kwargs)

        def on_event(event):
            payload = event.payload or {}
            if "eta_s" in payload:
                self.eta.value = f"about {_duration(payload['eta_s'])} left"
            if event.stage == "train" and "loss" in payload:
                self.history.append({"step": payload.get("step", event.done), "loss": payload["loss"],
                                     "eta": self.eta.value})
                self._draw(self.history)
            elif event.stage == "epoch":
                last = self.history[-1]["step"] if self.history else 0
                self.history.append({"step": last, "epoch": payload.get("epoch"),
                                     "epoch_loss": payload.get("loss"), "val": payload.get("val")})
                self._draw(self.history)
                if payload.get("preview") is not None:
                    self._show_preview(payload["preview"])
                if payload.get("improved"):
                    best["epoch"], best["val"] = payload.get("epoch"), payload.get("val")

        best = {"epoch": None, "val": None}

        def register(path):
            return REGISTRY.add(path, task=self.task.value, arch=self.arch.value,
                                parent=str(parent.path) if parent else None, trained_here=True)

        def done(result):
            self.result = result
            path = result.checkpoint or checkpoint
            entry = register(path)
            return f"saved {entry.name} ({path})"

        def finished():
            self._hide_preview()
            self.eta.value = ""
            if not self.runner.cancelled:
                return
            if best["epoch"] is None or not checkpoint.is_file():
                self.status.value = "cancelled before the first epoch ended: no checkpoint was saved"
                return
            entry = register(checkpoint)
            self.saved = checkpoint
            val = best["val"] or {}
            score = f", val IoU {format_score(val['score'])}" if "iou" in val else ""
            self.status.value = (f"cancelled; the best checkpoint (epoch {best['epoch']}{score}) is "
                                 f"saved at {checkpoint} and offered in Segment as '{entry.name}'")

        return self.runner.start(job, title=title, on_event=on_event, on_done=done,
                                 on_finish=finished)

    # ---- display -------------------------------------------------------------
    def _prepare_preview(self, val, classes: int) -> None:
        """Create (or reuse) the preview layer now, before the worker starts.

        Adding a layer costs ~70 ms of GUI-thread time on a quiet machine (layer
        controls, vispy visual). Done mid-run, while the worker competes for the CPU
        and the GIL, the same call stalled the event loop for 150-500 ms
        (benchmarks/gui_stall.py). Each epoch then only swaps the layer's data.
        """
        if val is None or isinstance(val, str) or len(val) == 0:
            return
        image, _ = val.slice(0)
        shape = tuple(np.shape(image))[-2:]
        labels = self.task.value == "segment" and classes > 1
        self._show_preview(np.zeros(shape, np.uint8 if labels else np.float32))

    def _hide_preview(self) -> None:
        """Hidden, not removed, when training ends: the next run reuses the layer (adding one
        mid-run stalls the GUI) and shows it again."""
        if PREVIEW in self.viewer.layers:
            self.viewer.layers[PREVIEW].visible = False

    def _show_preview(self, preview) -> None:
        """The validation slice's prediction, beside the image (never over it: no tint)."""
        preview = np.asarray(preview)
        while preview.ndim > 2:
            preview = preview[0]
        name = PREVIEW
        kind = "labels" if preview.dtype.kind in "iub" else "image"
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            same = layer.data.shape == preview.shape and isinstance(layer, Labels) == (kind == "labels")
            if same:
                layer.visible = True
                layer.data = preview
                if kind == "image" and self.task.value == "autoencode":
                    lo, hi = float(np.min(preview)), float(np.max(preview))
                    if hi > lo:
                        layer.contrast_limits = (lo, hi)
                return
            self.viewer.layers.remove(name)
        geo = dict(self._preview_geo or {})
        if geo:  # to the right of the image, a 5% gap: nothing is drawn over the image
            scale, translate = geo["scale"], list(geo["translate"])
            translate[-1] += preview.shape[-1] * 1.05 * scale[-1]
            geo["translate"] = tuple(translate)
        if kind == "labels":
            self.viewer.add_labels(preview, name=name, opacity=1.0, blending="opaque", **geo)
        else:
            # known limits spare napari a pass over the data: probabilities live in [0, 1]
            limits = (0.0, 1.0) if self.task.value == "segment" else None
            self.viewer.add_image(preview, name=name, colormap="gray", opacity=1.0,
                                  blending="opaque", contrast_limits=limits, **geo)

    def _draw(self, history) -> None:
        """Re-plot the history: loss per step, validation scores per epoch (cheap; GUI thread)."""
        self.plot.set_data(*history_curves(history))


def _duration(seconds: float) -> str:
    seconds = int(round(float(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def history_curves(history: list[dict]):
    """``(loss points, {"val iou": points, ...})`` from the widget's history entries (PSNR in dB)."""
    loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    curves: dict[str, list] = {}
    for h in history:
        val = h.get("val")
        if not isinstance(val, dict):
            continue
        for key, value in val.items():
            if key == "score" or (key == "mse" and "psnr" in val):  # the loss already shows MSE
                continue
            if isinstance(value, dict):  # per class: show the foreground mean
                fg = [v for c, v in value.items() if str(c) != "0" and v is not None]
                value = float(np.mean(fg)) if fg else None
            if value is not None and np.isscalar(value):
                name = {"iou": "val IoU", "dice": "val Dice", "psnr": "val PSNR (dB)"}.get(key, f"val {key}")
                curves.setdefault(name, []).append((h["step"], float(value)))
    return loss, curves
