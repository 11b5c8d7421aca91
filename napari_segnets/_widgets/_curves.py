"""The live training plot: loss per step and validation scores per epoch, painted with QPainter.

The first version rendered a matplotlib figure in a background thread. That
kept the drawing off the GUI thread, but every figure is tens of thousands of
Python objects in reference cycles: during a 16 s training run the garbage
collector ran full collections of 220-380 ms in the render thread, holding the
GIL, and the event loop stalled that long (benchmarks/gui_stall.py). Painting a
few hundred points with QPainter on the GUI thread costs well under a
millisecond and makes no garbage, so there is nothing left to collect.
"""

from __future__ import annotations

import math

import numpy as np
from magicgui.widgets import Container, Label
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["CurvesCanvas", "nice_ticks"]

LOSS_COLOR = "#1f77b4"
SCORE_COLORS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:g}"


class _Painter(QWidget):
    """Paints a left-axis series (loss) and right-axis series (validation scores; 0-1 when they fit)."""

    def __init__(self, height: int) -> None:
        super().__init__()
        self.setMinimumHeight(height)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(height)
        self.left: list[tuple[float, float]] = []
        self.right: dict[str, list[tuple[float, float]]] = {}
        self.left_name = "loss"
        self.x_name = "step"

    # geometry ----------------------------------------------------------------
    @staticmethod
    def _frame(width: int, height: int) -> QRectF:
        return QRectF(44, 8, max(10, width - 44 - 36), max(10, height - 8 - 30))

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            self.paint_on(painter, self.width(), self.height())
        finally:
            painter.end()

    def paint_on(self, p: QPainter, width: int, height: int) -> None:
        p.fillRect(QRectF(0, 0, width, height), QColor("white"))
        frame = self._frame(width, height)
        font = QFont(self.font())
        font.setPointSizeF(7)
        p.setFont(font)
        xs = [x for x, _ in self.left] + [x for s in self.right.values() for x, _ in s]
        x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x_hi <= x_lo:
            x_hi = x_lo + 1.0
        ys = [y for _, y in self.left if math.isfinite(y)]
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y_hi <= y_lo:
            y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
        pad = 0.05 * (y_hi - y_lo)
        y_lo, y_hi = y_lo - pad, y_hi + pad

        def px(x):
            return frame.left() + (x - x_lo) / (x_hi - x_lo) * frame.width()

        def py(y, lo=y_lo, hi=y_hi):
            return frame.bottom() - (y - lo) / (hi - lo) * frame.height()

        grey, black = QColor("#bbbbbb"), QColor("#333333")
        p.setPen(QPen(grey, 0.5))
        for y in nice_ticks(y_lo, y_hi):
            p.drawLine(QPointF(frame.left(), py(y)), QPointF(frame.right(), py(y)))
        p.setPen(QPen(black, 1))
        p.drawRect(frame)
        metrics = p.fontMetrics()
        for x in nice_ticks(x_lo, x_hi, 5):
            text = _label(x)
            p.drawLine(QPointF(px(x), frame.bottom()), QPointF(px(x), frame.bottom() + 3))
            p.drawText(QPointF(px(x) - metrics.horizontalAdvance(text) / 2, frame.bottom() + 13), text)
        p.drawText(QPointF(frame.center().x() - metrics.horizontalAdvance(self.x_name) / 2,
                           frame.bottom() + 25), self.x_name)
        for y in nice_ticks(y_lo, y_hi):
            text = _label(y)
            p.drawText(QPointF(frame.left() - 4 - metrics.horizontalAdvance(text), py(y) + 3), text)
        # right axis: scores in [0, 1] (IoU, Dice) on a fixed 0-1 scale, anything else (PSNR) fitted
        rs = [y for v in self.right.values() for _, y in v if math.isfinite(y)]
        if not rs or (min(rs) >= 0 and max(rs) <= 1):
            r_lo, r_hi, r_ticks = -0.05, 1.05, [0.0, 0.5, 1.0]
        else:
            r_lo, r_hi = min(rs), max(rs)
            if r_hi <= r_lo:
                r_lo, r_hi = r_lo - 0.5, r_hi + 0.5
            r_pad = 0.05 * (r_hi - r_lo)
            r_lo, r_hi = r_lo - r_pad, r_hi + r_pad
            r_ticks = nice_ticks(r_lo, r_hi, 4)
        for y in r_ticks:
            p.drawText(QPointF(frame.right() + 4, py(y, r_lo, r_hi) + 3), _label(y))

        p.save()
        p.setClipRect(frame.adjusted(-1, -1, 1, 1))
        if self.left:
            p.setPen(QPen(QColor(LOSS_COLOR), 1.2))
            p.drawPolyline(QPolygonF([QPointF(px(x), py(y)) for x, y in self.left if math.isfinite(y)]))
        for (_name, series), color in zip(self.right.items(), SCORE_COLORS):
            pts = [QPointF(px(x), py(y, r_lo, r_hi)) for x, y in series if math.isfinite(y)]
            p.setPen(QPen(QColor(color), 1.2))
            if len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
            p.setBrush(QColor(color))
            for pt in pts:
                p.drawEllipse(pt, 2.5, 2.5)
            p.setBrush(Qt.BrushStyle.NoBrush)
        p.restore()

        # legend, top right inside the frame
        entries = ([(self.left_name, LOSS_COLOR)] if self.left else []) + [
            (name, color) for name, color in zip(self.right, SCORE_COLORS)]
        if entries:
            box_w = max(metrics.horizontalAdvance(n) for n, _ in entries) + 24
            p.fillRect(QRectF(frame.right() - box_w - 4, frame.top() + 1, box_w + 2, 11 * len(entries) + 3),
                       QColor(255, 255, 255, 210))
        y = frame.top() + 11
        for name, color in entries:
            width = metrics.horizontalAdvance(name)
            x = frame.right() - width - 22
            p.setPen(QPen(QColor(color), 2))
            p.drawLine(QPointF(x, y - 3), QPointF(x + 12, y - 3))
            p.setPen(QPen(black, 1))
            p.drawText(QPointF(x + 16, y), name)
            y += 11


class CurvesCanvas(Container):
    """A titled live plot. ``set_data(left, right)`` replaces the curves and repaints.

    ``left``: ``[(x, y), ...]`` on the left axis (auto range); ``right``:
    ``{"name": [(x, y), ...]}`` on the right axis (0-1 when all values fit, else fitted). ``image`` is what
    is on screen now as an RGBA array; ``points`` counts the points drawn.
    """

    def __init__(self, *, label: str = "", height: int = 190) -> None:
        super().__init__(labels=False)
        self.title = Label(value=label)
        self.append(self.title)
        self.canvas = _Painter(height)
        self.native.layout().addWidget(self.canvas)
        self.updates = 0

    def set_data(self, left, right=None) -> None:
        self.canvas.left = [(float(x), float(y)) for x, y in left]
        self.canvas.right = {k: [(float(x), float(y)) for x, y in v] for k, v in (right or {}).items()}
        self.updates += 1
        self.canvas.update()  # a paint request, coalesced by Qt; never blocks

    @property
    def points(self) -> int:
        return len(self.canvas.left) + sum(len(v) for v in self.canvas.right.values())

    def wait(self, timeout_ms: int = 0) -> None:
        """Kept for symmetry with PlotCanvas: painting is synchronous, nothing to wait for."""

    @property
    def image(self) -> np.ndarray:
        """The plot as RGBA, painted off-screen at the widget's size (for tests and screenshots)."""
        size = self.canvas.size()
        w, h = max(size.width(), 320), max(size.height(), 120)
        qimage = QImage(w, h, QImage.Format.Format_RGBA8888)
        qimage.fill(QColor("white"))
        painter = QPainter(qimage)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setFont(self.canvas.font())
            self.canvas.paint_on(painter, w, h)
        finally:
            painter.end()
        ptr = qimage.constBits()
        if hasattr(ptr, "setsize"):  # PyQt's sip.voidptr; PySide gives a memoryview
            ptr.setsize(qimage.sizeInBytes())
        arr = np.frombuffer(ptr, np.uint8, count=qimage.sizeInBytes())
        return arr.reshape(h, qimage.bytesPerLine() // 4, 4)[:, :w].copy()
