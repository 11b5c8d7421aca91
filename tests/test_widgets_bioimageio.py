"""A BioImage Model Zoo package picked in the Segment widget runs like a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import Notes, synthetic_layers, wait_for
from tests.test_bioimageio import _nuclei

pytestmark = pytest.mark.gui


def test_segment_widget_runs_a_foreign_zoo_package(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_segnets import checkpoints
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets.inference import predict

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, _truth = synthetic_layers(viewer, shape=(2, 64, 64))
    rdf = _nuclei(tmp_path) / "bioimageio.yaml"
    widget = SegmentWidget(viewer)
    widget.checkpoint.file.value = rdf  # the file picker registers and selects it
    assert not notes.errors, notes.errors
    assert widget.checkpoint.model.value is not None
    widget.image.value, widget.device.value = img, "cpu"
    widget.scope.value = "whole stack"
    assert widget.run() is not None
    wait_for(qtbot, widget, timeout=120_000)
    assert not notes.errors, notes.errors
    layer = widget.last_layer
    model, meta = checkpoints.load(rdf)
    expected = predict(model, img.data, output="labels", normalization=meta["normalization"])
    np.testing.assert_array_equal(layer.data, expected)


def test_segment_widget_exports_the_chosen_model(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    path = checkpoints.save(tmp_path / "mito.safetensors", models.build("unet", base=4, depth=2))
    REGISTRY.add(path, task="segment")
    widget = SegmentWidget(viewer)
    widget.checkpoint.model.value = "mito"
    assert widget.export() is None and "ending in .zip" in notes.errors[-1]  # no file chosen yet
    out = tmp_path / "mito.zip"
    widget.export_path.value = out
    assert widget.export() is not None
    wait_for(qtbot, widget, timeout=240_000)
    assert len(notes.errors) == 1, notes.errors
    _, meta = checkpoints.load(out)
    assert meta["content_hash"] == checkpoints.read_metadata(path)["content_hash"]
    assert any("BioImage Model Zoo" in m for m in notes.infos)
