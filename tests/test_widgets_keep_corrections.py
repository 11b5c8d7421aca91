"""Re-running Segment never overwrites slices the user corrected."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import Notes, set_slice, synthetic_layers, wait_for

pytestmark = pytest.mark.gui


def _run(qtbot, widget, scope):
    widget.scope.value = scope
    assert widget.run() is not None, widget.status.value
    wait_for(qtbot, widget)
    return widget.last_layer


def test_corrected_slices_are_kept_and_the_new_prediction_goes_to_a_new_layer(
        make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY
    from napari_segnets._widgets.segment import edited_slices

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, _truth = synthetic_layers(viewer)
    path = checkpoints.save(tmp_path / "m.safetensors", models.build("unet", base=4, depth=2))
    REGISTRY.add(path, task="segment")
    seg = SegmentWidget(viewer)
    seg.image.value, seg.checkpoint.model.value, seg.device.value = img, "m", "cpu"

    set_slice(viewer, img, 1)
    first = _run(qtbot, seg, "current slice")
    assert first.name == "m labels" and edited_slices(first) == []
    again = _run(qtbot, seg, "current slice")  # nothing corrected: the same layer is reused
    assert again is first and len(viewer.layers) == 3

    # the user corrects slice 1
    corrected = first.data.copy()
    corrected[1, 10:20, 10:20] = 1 - corrected[1, 10:20, 10:20]
    first.data = corrected
    assert edited_slices(first) == [1]

    # predicting slice 1 again must not overwrite the correction
    second = _run(qtbot, seg, "current slice")
    assert second is not first and second.name == "m labels [1]"
    np.testing.assert_array_equal(first.data, corrected)
    assert notes.infos and "kept" in notes.infos[-1] and "m labels [1]" in notes.infos[-1]

    # another slice of the first layer is fine to fill in
    set_slice(viewer, img, 0)
    seg.image.value = img
    before = len(viewer.layers)
    filled = _run(qtbot, seg, "current slice")
    assert filled is first and len(viewer.layers) == before  # its slice 0 holds no correction
    assert first.metadata["segnets"]["predicted"] == [0, 1]
    np.testing.assert_array_equal(first.data[1], corrected[1])

    # the whole stack over a corrected layer: a new layer again, the correction intact
    whole = _run(qtbot, seg, "whole stack")
    assert whole is not first
    np.testing.assert_array_equal(first.data, corrected)
    assert not notes.errors, notes.errors
