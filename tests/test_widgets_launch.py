"""`launch()`: napari with the synthetic sample and all five widgets docked."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_launch_docks_every_widget_over_the_sample(qtbot):
    from napari_segnets._widgets import launch
    from napari_segnets._widgets._launch import DOCKED

    viewer = launch(show=False)
    try:
        images = [layer for layer in viewer.layers if layer._type_string == "image"]
        labels = [layer for layer in viewer.layers if layer._type_string == "labels"]
        assert images and images[0].ndim == 3, "the synthetic stack is open"
        assert labels, "its ground truth is open"
        docked = viewer.window.dock_widgets
        for title, _cls in DOCKED:
            assert title in docked
        segment = viewer.window.dock_widgets["Segment"]
        assert segment.image.value is images[0]
    finally:
        viewer.close()


def test_manifest_names_the_exported_widgets():
    import yaml

    import napari_segnets._widgets as widgets
    from tests.conftest import REPO

    manifest = yaml.safe_load((REPO / "napari_segnets" / "napari.yaml").read_text())
    for command in manifest["contributions"]["commands"]:
        module, _, name = command["python_name"].partition(":")
        if module == "napari_segnets._widgets":
            assert callable(getattr(widgets, name)), name


# A 1920x1080 laptop: minus the desktop's task bar and the window's title bar (~70 px),
# the napari window has about 1010 px; its menu, status bar and dock tab bar take ~90.
LAPTOP_WINDOW = (1920, 1010)


def test_every_widget_fits_a_laptop_screen(qtbot, capsys):
    """Each docked panel can shrink to the height a laptop leaves; printed: the heights measured."""
    from napari_segnets._widgets import launch
    from napari_segnets._widgets._launch import DOCKED

    viewer = launch(show=False)
    try:
        window = viewer.window._qt_window
        window.resize(*LAPTOP_WINDOW)
        heights = {}
        for title, _cls in DOCKED:
            widget = viewer.window.dock_widgets[title]
            heights[title] = (widget.native.minimumSizeHint().height(),
                              widget.native._segnets_scroll.widget().sizeHint().height())
        with capsys.disabled():
            print("\nminimum height (px) / height of all contents, per panel:",
                  ", ".join(f"{t} {m}/{c}" for t, (m, c) in heights.items()))
        for title, (minimum, _content) in heights.items():
            assert minimum <= 300, f"'{title}' cannot shrink below {minimum} px"
        widths = {}
        for title, _cls in DOCKED:  # a long message (or path) wraps instead of widening the panel
            widget = viewer.window.dock_widgets[title]
            widget.status.value = "saved m (" + "/a/long/path/without/spaces" * 20 + ") " * 20
            widths[title] = widget.native._segnets_scroll.widget().minimumSizeHint().width()
        with capsys.disabled():
            print("minimum width (px) with a long status line:", widths)
        assert max(widths.values()) <= 450, widths
        assert window.minimumSizeHint().height() <= LAPTOP_WINDOW[1], "the docks force a taller window"
    finally:
        viewer.close()
