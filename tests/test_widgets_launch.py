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
        segment = viewer.window.dock_widgets["Segment / Autoencode"]
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
