"""Wavelets: per-level mosaics side by side (grid mode, following the slice) and power plots."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    PushButton,
    Select,
    SpinBox,
    Table,
)
from napari.layers import Image

from ..errors import InputError
from ._common import LayerChoice, Section, current_index, geometry, read_slice, scrolling
from ._plot import PlotCanvas
from ._runner import JobRunner, guarded
from ._session import REGISTRY

COPY = "segnets_grid_copy"  # metadata key of the layers made for the grid; "Grid off" removes them
WAVELETS = ["haar", "db2", "db4", "sym4", "coif1", "bior2.2"]


def mosaic_job(slices: dict, wavelet: str, level: int):
    """Mosaics and level power of 2D slices (a progress generator; worker thread)."""
    from .. import wavelets
    from ..progress import Progress

    levels = min(wavelets.max_levels(s.shape, wavelet) for s in slices.values())
    if levels < 1:
        raise InputError("The images are too small for a wavelet decomposition; use slices of 4x4 or more.")
    level = min(level, levels)
    out = {}
    for i, (name, image) in enumerate(slices.items()):
        dec = wavelets.decompose(image, wavelet, levels)
        out[name] = (wavelets.mosaic(dec, level=level), wavelets.level_power(dec))
        yield Progress("mosaic", i + 1, len(slices), f"{name}: level {level} mosaic")
    return out, wavelets.level_labels(levels), level


def reconstruct_job(entries, image, wavelet: str):
    """Reconstruct one slice with several autoencoders and compare them with wavelets."""
    from .. import checkpoints, inference, wavelets
    from ..progress import Progress

    recons = {}
    for i, entry in enumerate(entries):
        model, meta = checkpoints.load(entry.path, device="cpu")
        if model.task != "autoencode":
            raise InputError(f"Checkpoint '{entry.name}' is a {model.task} model; pick autoencoders only.")
        recon = yield from inference.predict_iter(model, image, output="reconstruction",
                                                  normalization=meta.get("normalization"))
        recons[entry.name] = np.asarray(recon, dtype=np.float32)
        yield Progress("models", i + 1, len(entries), f"reconstructed with {entry.name}")
    # reconstructions come back in the input's intensity range: compare them with the raw slice
    original = np.asarray(image, dtype=np.float32)
    table = wavelets.compare(original, recons, wavelet=wavelet)
    return original, recons, table


class WaveletWidget(Container):
    """Compare images by their wavelet decompositions, side by side.

    Sub-widgets: ``layers`` (pick 2 or more image layers), ``wavelet``, ``level``,
    ``follow`` (refresh when the slice changes), ``show_button``, ``grid_off_button``,
    ``plot`` (normalised power per level); for the autoencoder comparison: ``image``,
    ``models`` (autoencoder checkpoints of this session), ``compare_button``,
    ``cancel_button``, ``table``; ``status``. After a run: ``mosaic_layers`` and
    ``power`` (name -> power per level), ``comparison`` (the core's Comparison).
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        self.viewer = viewer
        self.layers = Select(label="layers", choices=self._image_layers)
        self.wavelet = ComboBox(label="wavelet", choices=WAVELETS, value="haar")
        self.level = SpinBox(label="mosaic level", min=1, max=12, value=1)
        self.follow = CheckBox(text="follow the current slice", value=True)
        self.show_button = PushButton(text="Show side by side")
        self.grid_off_button = PushButton(text="Grid off")
        self.plot = PlotCanvas(label="normalised power per level")
        self.image = LayerChoice(viewer, Image, label="original")
        self.models = Select(label="autoencoders", choices=lambda _w=None: REGISTRY.names("autoencode"))
        self.compare_button = PushButton(text="Reconstruct current slice and compare")
        self.cancel_button = PushButton(text="Cancel")
        self.table = Table(value={"data": [], "index": [], "columns": ["model", "mse", "psnr", "ssim"]})
        self.status = Label(value="")
        self.comparing = Section("compare autoencoders on the current slice", [
            self.image, self.models, self.compare_button, self.table,
        ])
        super().__init__(widgets=[
            self.layers, self.wavelet, self.level, self.follow,
            Container(widgets=[self.show_button, self.grid_off_button, self.cancel_button],
                      layout="horizontal", labels=False),
            self.plot, self.comparing, self.status,
        ])
        scrolling(self)  # fits a laptop screen: the panel scrolls instead of growing
        self.runner = JobRunner(viewer, label=self.status,
                                run_buttons=[self.show_button, self.compare_button],
                                cancel_button=self.cancel_button)
        self.show_button.changed.connect(self.show_mosaics)
        self.grid_off_button.changed.connect(self.grid_off)
        self.compare_button.changed.connect(self.compare)
        for w in (self.wavelet, self.level):
            w.changed.connect(self._settings_changed)
        viewer.dims.events.current_step.connect(self._step_changed)
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(self._layers_changed)
        REGISTRY.changed.connect(self._models_changed)
        self._models_changed()
        self.native.destroyed.connect(self._disconnect)
        self.mosaic_layers: list = []
        self.power: dict[str, np.ndarray] = {}
        self.comparison = None
        self._shown: list[str] = []
        self._hidden: list = []
        self._order: list[str] = []
        self._pending = self._pending_slice = False
        self._comparing = False  # the grid shows slice copies: following re-runs the comparison

    # ---- bookkeeping -----------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Image) and not layer.metadata.get("segnets_mosaic")]

    def _layers_changed(self, _event=None) -> None:
        try:
            self.layers.reset_choices()
        except RuntimeError:
            self._disconnect()

    def _models_changed(self) -> None:
        try:
            self.models.reset_choices()
            if self.models.choices and not self.comparing.opened:
                self.comparing.toggle()  # autoencoders to compare: show the comparison
        except RuntimeError:
            pass

    def _disconnect(self, *_args) -> None:
        for emitter, slot in ((self.viewer.dims.events.current_step, self._step_changed),
                              (self.viewer.layers.events.inserted, self._layers_changed),
                              (self.viewer.layers.events.removed, self._layers_changed),
                              (REGISTRY.changed, self._models_changed)):
            try:
                emitter.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                pass

    def _grid(self):
        canvas = getattr(self.viewer, "canvas", None)
        return canvas.grid if canvas is not None and hasattr(canvas, "grid") else self.viewer.grid

    # ---- mosaics ---------------------------------------------------------------
    def show_mosaics(self, *_args):
        """Compute the mosaics of the chosen layers' current slices and lay them out."""
        return guarded(self._show, self.status)

    def _show(self):
        chosen = [layer for layer in self.layers.value if layer in self.viewer.layers]
        if len(chosen) < 2:
            raise InputError("Pick two or more image layers (the original and its reconstructions).")
        slices, geos = {}, {}
        for layer in chosen:
            slices[layer.name] = read_slice(layer, current_index(self.viewer, layer)).astype(np.float32)
            geos[layer.name] = geometry(layer, 2)
        shapes = {s.shape for s in slices.values()}
        if len(shapes) > 1:
            raise InputError(f"The layers' slices differ in size {sorted(shapes)}; pick layers of one stack.")
        self._shown = [layer.name for layer in chosen]
        wavelet, level = self.wavelet.value, self.level.value

        def done(result):
            out, labels, used = result
            self._lay_out(chosen, out, geos, used)
            self._plot_power({n: p for n, (_m, p) in out.items()}, labels)

        self._comparing = all(layer.metadata.get(COPY) for layer in chosen)
        return self.runner.start(lambda: mosaic_job(slices, wavelet, level), title="wavelet mosaics",
                                 on_done=done, on_finish=self._run_pending, torch_job=False)

    def _lay_out(self, chosen, out, geos, level) -> None:
        self.mosaic_layers = []
        for layer in chosen:
            name = f"{layer.name} mosaic L{level}"
            for old in [lyr for lyr in self.viewer.layers
                        if lyr.metadata.get("segnets_mosaic") == layer.name and lyr.name != name]:
                self.viewer.layers.remove(old)
            mos = out[layer.name][0]
            if name in self.viewer.layers:
                self.viewer.layers[name].data = mos
                mlayer = self.viewer.layers[name]
            else:
                mlayer = self.viewer.add_image(mos, name=name, colormap="gray", contrast_limits=(0, 1),
                                               metadata={"segnets_mosaic": layer.name, COPY: True},
                                               **geos[layer.name])
            self.mosaic_layers.append(mlayer)
        self._grid_on(list(chosen) + self.mosaic_layers, columns=len(chosen))

    def _grid_on(self, keep, columns: int) -> None:
        if not self._grid().enabled:
            self._order = [layer.name for layer in self.viewer.layers]  # "Grid off" puts it back
        # Only visible layers take a grid cell: hide the others while comparing.
        for layer in self.viewer.layers:
            if layer not in keep and layer.visible:
                layer.visible = False
                self._hidden.append(layer)
        for layer in keep:
            layer.visible = True
            layer.name_overlay.visible = True  # each grid cell says which layer (and level) it shows
        # grid cells are filled from the end of the layer list: images on top, mosaics below
        for layer in keep:
            self.viewer.layers.move(self.viewer.layers.index(layer), len(self.viewer.layers))
        grid = self._grid()
        grid.shape = (-(-len(keep) // columns), columns)
        grid.enabled = True
        self.viewer.reset_view()

    def grid_off(self, *_args) -> None:
        """Leave grid mode: remove the mosaics and slice copies, show the hidden layers again."""
        self._grid().enabled = False
        self._comparing = False
        for layer in [lyr for lyr in self.viewer.layers if lyr.metadata.get(COPY)]:
            self.viewer.layers.remove(layer)
        for layer in self.viewer.layers:
            layer.name_overlay.visible = False
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        self.mosaic_layers = []
        self._shown = []
        order = [name for name in self._order if name in self.viewer.layers]
        for i, name in enumerate(order):
            self.viewer.layers.move(self.viewer.layers.index(name), i)
        self._order = []
        self.viewer.reset_view()

    def _settings_changed(self, *_args) -> None:
        if self.mosaic_layers:
            self._refresh()

    def _step_changed(self, _event=None) -> None:
        if self.follow.value and self.mosaic_layers and self._shown:
            self._refresh(slice_changed=True)

    def _refresh(self, slice_changed: bool = False) -> None:
        if self.runner.running:
            self._pending = True  # coalesce: one refresh after the running one
            self._pending_slice = self._pending_slice or slice_changed
            return
        if self._comparing and slice_changed:
            if self.image.value is None or self.image.value not in self.viewer.layers:
                self._comparing = False  # the original is gone (or napari is closing): stop following
                return
            self.compare()  # the copies are of one slice: reconstruct the new one
            return
        names = [n for n in self._shown if n in self.viewer.layers]
        if len(names) >= 2:
            self.layers.value = [self.viewer.layers[n] for n in names]
            self.show_mosaics()

    def _run_pending(self) -> None:
        if self._pending:
            slice_changed = self._pending_slice
            self._pending = self._pending_slice = False
            self._refresh(slice_changed)

    def _plot_power(self, power: dict, labels) -> None:
        self.power = dict(power)
        power, labels = dict(power), list(labels)

        def draw(fig) -> None:
            ax = fig.add_subplot(111)
            x = np.arange(len(labels))
            for name, p in power.items():
                ax.plot(x, p, "o-", ms=3, lw=1, label=name)
            ax.set_xticks(x, labels, fontsize=7)
            ax.set_yscale("log")
            ax.set_xlabel("level (1 = finest, A = approximation)", fontsize=8)
            ax.set_ylabel("share of energy", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)

        self.plot.render(draw)

    # ---- autoencoder comparison -------------------------------------------------------
    def compare(self, *_args):
        """Reconstruct the current slice with each chosen autoencoder and lay them out."""
        return guarded(self._compare, self.status)

    def _compare(self):
        layer = self.image.require("original image layer")
        names = list(self.models.value)
        if not names:
            raise InputError("Pick one or more autoencoder checkpoints in 'autoencoders' (train one first).")
        entries = [REGISTRY.get(n) for n in names]
        z = current_index(self.viewer, layer)
        image = read_slice(layer, z)
        geo = geometry(layer, 2)
        wavelet = self.wavelet.value
        suffix = f" z{z}" if z is not None else ""

        def done(result):
            original, recons, table = result
            for old in [lyr for lyr in self.viewer.layers if lyr.metadata.get(COPY)]:
                self.viewer.layers.remove(old)  # the previous slice's copies and mosaics
            added = [self._put(f"{layer.name}{suffix}", original, geo)]
            for name, recon in recons.items():
                added.append(self._put(f"{name} reconstruction{suffix}", recon, geo))
            self.comparison = table
            self._table(table)
            self.layers.value = added

        def finish():
            if self.comparison is not None and len(self.layers.value) >= 2:
                self.show_mosaics()  # the mosaics of the original and each reconstruction
            else:
                self._run_pending()

        self.comparison = None
        return self.runner.start(lambda: reconstruct_job(entries, image, wavelet),
                                 title="compare autoencoders", on_done=done, on_finish=finish)

    def _put(self, name, data, geo):
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return self.viewer.add_image(data, name=name, colormap="gray", metadata={COPY: True}, **geo)

    def _table(self, table) -> None:
        rows = []
        for name in table.models:
            m = table.metrics.get(name, {})
            rows.append([name, *(f"{m[k][0]:.4g}" if k in m else "" for k in ("mse", "psnr", "ssim"))])
        self.table.value = {"data": rows, "index": [str(i) for i in range(len(rows))], "columns": ["model", "mse", "psnr", "ssim"]}
