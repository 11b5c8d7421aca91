"""A matplotlib plot rendered off the GUI thread and shown as a picture.

Drawing a figure with Agg takes tens of milliseconds (hundreds on a busy
2-core machine); done on the GUI thread at every training step it was the
largest source of event-loop stalls (benchmarks/gui_stall.py). Here a figure
is built and rendered in a background thread with matplotlib's object API (no
pyplot, so no global state is shared) and only the finished pixels cross to
the GUI thread, where showing them is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from magicgui.widgets import Container, Label
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel

__all__ = ["PlotCanvas"]

_RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segnets-plot")


class _Bridge(QObject):
    # Emitted from the render thread; Qt queues it to the GUI thread that owns the bridge.
    rendered = Signal(object)


def _render(draw: Callable, size: tuple[float, float], dpi: int) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    draw(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


class PlotCanvas(Container):
    """A titled plot; call :meth:`render` with a function that draws on a fresh Figure.

    Renders are coalesced: while one is running only the latest request waits.
    ``image`` holds the last rendered RGBA array (None before the first).
    """

    def __init__(self, *, height: float = 2.4, width: float = 3.8, dpi: int = 80, label: str = ""):
        super().__init__(labels=False)
        self.title = Label(value=label)
        self.append(self.title)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumHeight(int(height * dpi))
        self.native.layout().addWidget(self.picture)
        self._size, self._dpi = (width, height), dpi
        self._bridge = _Bridge()
        self._bridge.rendered.connect(self._show)
        self._busy = False
        self._next: Callable | None = None
        self.image: np.ndarray | None = None
        self.renders = 0
        self.min_interval_ms = 500

    def render(self, draw: Callable) -> None:
        """Draw ``draw(figure)`` in the background and show the result."""
        if self._busy:
            self._next = draw
            return
        self._busy = True
        future = _RENDERER.submit(_render, draw, self._size, self._dpi)
        future.add_done_callback(self._done)

    def _done(self, future) -> None:  # render thread
        try:
            result = future.result()
        except Exception as exc:  # a plotting bug must not take the job down
            result = exc
        try:
            self._bridge.rendered.emit(result)
        except RuntimeError:  # the widget was closed meanwhile
            pass

    def _show(self, result) -> None:  # GUI thread
        self._busy = False
        if isinstance(result, np.ndarray):
            self.image = result
            self.renders += 1
            h, w = result.shape[:2]
            qimage = QImage(result.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
            try:
                self.picture.setPixmap(QPixmap.fromImage(qimage.copy()))
            except RuntimeError:  # the widget was closed while this was rendering
                self._next = None
                return
        if self._next is not None:
            # at most two renders a second: the render thread also needs the GIL and a core
            from qtpy.QtCore import QTimer

            self._busy = True
            QTimer.singleShot(self.min_interval_ms, self._render_next)

    def _render_next(self) -> None:
        self._busy = False
        if self._next is not None:
            draw, self._next = self._next, None
            self.render(draw)

    def wait(self, timeout_ms: int = 10_000) -> None:
        """Process events until no render is pending (tests, screenshots)."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer, QThread

        timer = QElapsedTimer()
        timer.start()
        while (self._busy or self._next is not None) and timer.elapsed() < timeout_ms:
            QCoreApplication.processEvents()
            QThread.msleep(5)
