"""Open napari with a sample stack and every napari-segnets widget docked."""

from __future__ import annotations

# Short titles: five tabs side by side must stay readable in a 440-pixel-wide dock.
DOCKED = (
    ("Segment", "SegmentWidget"),
    ("Train", "TrainWidget"),
    ("Wavelets", "WaveletWidget"),
    ("Curate", "CurateWidget"),
    ("Score", "ScoreWidget"),
    ("Objects", "ObjectsWidget"),
)


def dock_all(viewer) -> dict:
    """Dock the widgets (tabbed, right side, each scrolling); returns name -> widget."""
    from . import (
        CurateWidget,
        ObjectsWidget,
        ScoreWidget,
        SegmentWidget,
        TrainWidget,
        WaveletWidget,
    )
    from ._common import scrolling

    classes = {c.__name__: c for c in (SegmentWidget, TrainWidget, WaveletWidget, CurateWidget, ScoreWidget,
                                       ObjectsWidget)}
    widgets = {}
    for title, cls_name in DOCKED:
        widget = scrolling(classes[cls_name](viewer))
        viewer.window.add_dock_widget(widget, name=title, area="right", tabify=True)
        widgets[title] = widget
    return widgets


def launch(sample: str | None = "synthetic", show: bool = True):
    """Open napari with ``sample`` (a key of the plugin's sample data) and all widgets docked.

    Parameters
    ----------
    sample : str or None
        ``"synthetic"`` (default), ``"isbi2012"``, ``"lucchi"``, or None for no data.
    show : bool
        Show the window (False for tests and screenshots off-screen).

    Returns
    -------
    napari.Viewer
        Call ``napari.run()`` afterwards to hand control to the user.
    """
    import napari

    viewer = napari.Viewer(title="napari-segnets", show=show)
    if sample:
        viewer.open_sample("napari-segnets", sample)
    widgets = dock_all(viewer)
    dock = _dock_of(widgets["Segment"])
    if dock is not None:
        from qtpy.QtCore import QTimer

        # after Qt has laid out the tabs: Segment in front, the panel wide enough to read
        QTimer.singleShot(0, lambda: _front_and_wide(viewer, dock))
    return viewer


def run_viewer(sample: str | None = "synthetic") -> None:
    """Open the viewer with :func:`launch` and hand control to the user until it closes.

    The command line's no-argument path (``napari-segnets``) calls this, lazily.
    """
    import napari

    launch(sample)
    napari.run()


def _front_and_wide(viewer, dock, width: int = 440) -> None:
    try:
        from qtpy.QtCore import Qt

        dock.raise_()
        viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    except (AttributeError, RuntimeError, TypeError):  # private API moved or window closed
        pass


def _dock_of(widget):
    """The QDockWidget holding a magicgui widget (None if it is not docked)."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.native.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent
