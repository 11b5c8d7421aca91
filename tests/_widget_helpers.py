"""Helpers for the widget tests: a small synthetic viewer, waiting on workers, a stall probe."""

from __future__ import annotations

import time

import numpy as np

SCALE = (40.0, 4.0, 4.0)  # nm per voxel, z-y-x: layers must keep it


def synthetic_layers(viewer, shape=(3, 64, 64)):
    """Add the synthetic EM stack and its membrane truth to ``viewer``."""
    from napari_segnets.sample_data import synthetic_stack

    image, labels = synthetic_stack(shape=shape, seed=0)
    img = viewer.add_image(image, name="em", scale=SCALE)
    truth = viewer.add_labels(labels["membranes"], name="membranes", scale=SCALE)
    return img, truth


def wait_for(qtbot, widget, timeout=60_000):
    """Wait until ``widget.runner`` has no job in flight."""
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)


def set_slice(viewer, layer, z):
    """Show data slice ``z`` of ``layer``."""
    world = layer.data_to_world([z] + [0] * (layer.ndim - 1))[0]
    viewer.dims.set_point(0, world)


def train_tiny(qtbot, widget, *, image, labels=None, out, task="segment", epochs=1, steps=2,
               parent=None, source=None, store=None):
    """Drive the Train widget: a base-8 net, a few steps; returns the registry entry name."""
    if source is not None:
        widget.source.value = source
    if store is not None:
        widget.store.value = store
    widget.image.value = image
    if labels is not None:
        widget.labels_layer.value = labels
    widget.task.value = task
    widget.arch.value = "unet"
    widget.base.value = 8
    widget.epochs.value = epochs
    widget.steps.value = steps
    widget.batch_size.value = 2
    widget.crop.value = 32
    widget.lr.value = 0.01
    widget.device.value = "cpu"
    widget.output.value = out
    widget.parent_checkpoint.model.value = parent
    worker = widget.run()
    assert worker is not None, widget.status.value
    wait_for(qtbot, widget)
    assert widget.result is not None, widget.status.value
    return widget.result


class StallProbe:
    """A 10 ms QTimer on the GUI thread; records the largest gap between its ticks."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.gaps: list[float] = []
        self.when: list[float] = []  # seconds since start at the end of each gap
        self._last = None
        self._t0 = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
            self.when.append(now - self._t0)
        self._last = now

    def __enter__(self):
        self._last = None
        self._t0 = time.perf_counter()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    @property
    def worst_ms(self) -> float:
        """Longest gap between ticks in ms (the worst event-loop stall plus one interval)."""
        return 1000 * max(self.gaps, default=0.0)

    def summary(self) -> dict:
        g = np.array(self.gaps or [0.0]) * 1000
        return {"ticks": len(self.gaps), "worst_ms": float(g.max()), "p99_ms": float(np.percentile(g, 99)),
                "median_ms": float(np.median(g)), "over_100ms": int((g > 100).sum())}


class Notes:
    """Collect the napari-segnets notifications instead of showing them."""

    def __init__(self, monkeypatch):
        from napari_segnets._widgets import _runner

        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []
        monkeypatch.setattr(_runner, "show_error", self.errors.append)
        monkeypatch.setattr(_runner, "show_warning", self.warnings.append)
        monkeypatch.setattr(_runner, "show_info", self.infos.append)


class ReentrantBar:
    """Stands in for napari's progress bar, which runs Qt's event loop inside its updates.

    Each update first waits until the worker threads are idle, so the job has ended and
    all of its signals (events, result, ``finished``) are queued; the ``processEvents``
    that follows then delivers them inside the handler of an earlier event: the worst
    case of napari's re-entrance, every time.
    """

    made: list[ReentrantBar] = []

    def __init__(self, total=0, desc=""):
        self.total, self.desc, self.n, self.closed = total, desc, 0, False
        ReentrantBar.made.append(self)
        self._spin()

    def refresh(self):
        self._spin()

    def close(self):
        self.closed = True

    @staticmethod
    def _spin():
        from qtpy.QtCore import QThreadPool
        from qtpy.QtWidgets import QApplication

        QThreadPool.globalInstance().waitForDone(30_000)
        QApplication.processEvents()


def reentrant_bars(monkeypatch) -> list[ReentrantBar]:
    """Make the job runner use :class:`ReentrantBar`; returns the list of bars it makes."""
    from napari_segnets._widgets import _runner

    ReentrantBar.made = []
    monkeypatch.setattr(_runner, "napari_progress", ReentrantBar)
    return ReentrantBar.made
