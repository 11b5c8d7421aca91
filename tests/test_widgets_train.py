"""The Train widget (issue 13): mask choice, sparse strokes, minutes and ETA, a preview that never
tints the image, and a cancel that keeps (and offers) the best checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from _widget_helpers import synthetic_layers, wait_for

pytestmark = pytest.mark.gui


@pytest.fixture
def widget_and_layers(make_napari_viewer):
    from napari_segnets._widgets import TrainWidget

    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    return viewer, TrainWidget(viewer), img, truth


def _tiny(widget, tmp_path, **values):
    widget.base.value, widget.crop.value, widget.batch_size.value = 8, 32, 2
    widget.device.value, widget.output.value = "cpu", tmp_path / "m.safetensors"
    for key, value in values.items():
        getattr(widget, key).value = value


def test_labels_layers_come_first_and_never_the_image_itself(widget_and_layers):
    viewer, widget, img, truth = widget_and_layers
    as_image = viewer.add_image((truth.data > 0).astype(np.uint8) * 255, name="mask as image")
    choices = [layer for _, layer in widget.labels_layer._choices()]
    assert choices[0] is truth and as_image in choices  # a mask file opened as an Image layer
    assert widget.labels_layer.value is truth
    widget.image.value = as_image
    assert as_image not in [layer for _, layer in widget.labels_layer._choices()]
    assert widget.labels_layer.value is not widget.image.value


def test_sparse_mode_is_offered_for_a_mostly_unpainted_layer_and_a_stroke_layer_is_made(
        widget_and_layers):
    viewer, widget, img, truth = widget_and_layers
    from napari_segnets._widgets.train import FULL, SPARSE

    assert widget.annotation_mode.value == FULL  # a full membrane mask
    layer = widget.add_stroke_layer()
    assert layer.data.shape == img.data.shape and not layer.data.any()
    assert tuple(layer.scale) == tuple(img.scale)
    assert widget.labels_layer.value is layer and widget.annotation_mode.value == SPARSE
    strokes = np.zeros(img.data.shape, np.uint8)
    strokes[:, 5, 5:30] = 1
    strokes[:, 40, 10:20] = 2
    painted = viewer.add_labels(strokes, name="painted")
    widget.labels_layer.value = truth
    assert widget.annotation_mode.value == FULL
    widget.labels_layer.value = painted
    assert widget.annotation_mode.value == SPARSE and "unpainted" in widget.status.value


def test_minutes_give_an_eta_and_the_preview_never_covers_the_image(widget_and_layers, qtbot,
                                                                   tmp_path):
    viewer, widget, img, truth = widget_and_layers
    _tiny(widget, tmp_path, epochs=2, steps=2, minutes=5)
    previews = []

    def look(_event=None):
        if "training preview" in viewer.layers:
            layer = viewer.layers["training preview"]
            previews.append((layer.opacity, layer.blending, tuple(layer.translate)))

    viewer.layers.events.inserted.connect(look)
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert widget.result is not None and widget.result.stopped == "epochs"
    etas = [h["eta"] for h in widget.history if "eta" in h]
    assert etas and all(e.startswith("about ") and e.endswith(" left") for e in etas)
    assert widget.eta.value == ""  # cleared when training ends
    assert not viewer.layers["training preview"].visible  # hidden when training ends
    assert previews
    for opacity, blending, translate in previews:  # beside the image, drawn opaque: no tint
        assert opacity == 1.0 and blending == "opaque"
        assert translate[-1] >= img.data.shape[-1] * img.scale[-1]


def test_sparse_strokes_train_from_the_widget(widget_and_layers, qtbot, tmp_path, monkeypatch):
    """Strokes train from the widget; the checkpoint records them, and Segment says what that means."""
    from _widget_helpers import Notes

    from napari_segnets import checkpoints

    viewer, widget, img, truth = widget_and_layers
    layer = widget.add_stroke_layer()
    painted = layer.data.copy()
    painted[:, 2:4, :] = 1
    painted[truth.data.astype(bool) & (np.arange(64)[None, :, None] % 4 == 0)] = 2
    layer.data = painted
    _tiny(widget, tmp_path, epochs=1, steps=2, minutes=0)
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert widget.result is not None, widget.status.value
    assert np.isfinite(widget.result.history[0]["loss"])
    training = checkpoints.read_metadata(tmp_path / "m.safetensors")["training"]
    assert training["annotation"] == "sparse"
    assert training["painted"] == pytest.approx(np.count_nonzero(painted) / painted.size, rel=1e-4)  # every slice
    # segmenting with it says that strokes do not show where boundaries lie
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY

    notes = Notes(monkeypatch)
    seg = SegmentWidget(viewer)
    seg.image.value = img
    seg.checkpoint.model.value = REGISTRY.names()[-1]
    seg.scope.value = "current slice"
    seg.device.value = "cpu"
    assert seg.run() is not None, seg.status.value
    wait_for(qtbot, seg)
    assert any("learnt from strokes" in n and "boundar" in n for n in notes.infos), notes.infos


def test_a_cancelled_training_says_where_its_best_checkpoint_is_and_offers_it(
        widget_and_layers, qtbot, tmp_path):
    from napari_segnets._widgets._session import REGISTRY

    viewer, widget, img, truth = widget_and_layers
    _tiny(widget, tmp_path, epochs=1000, steps=1, minutes=0)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: any("epoch" in h for h in widget.history), timeout=60_000)
    widget.cancel_button.native.click()
    wait_for(qtbot, widget)
    assert widget.runner.cancelled and widget.result is None
    path = tmp_path / "m.safetensors"
    assert widget.saved == path and path.is_file()
    assert str(path) in widget.status.value and "Segment" in widget.status.value
    assert [str(REGISTRY.get(n).path) for n in REGISTRY.names()] == [str(path)]


def test_a_grey_image_picked_as_the_mask_is_refused(widget_and_layers, monkeypatch, tmp_path):
    """Issue 13: an EM image chosen as the mask is a sentence, not a model trained on noise."""
    from _blobs import grey_image
    from _widget_helpers import Notes

    viewer, widget, img, truth = widget_and_layers
    notes = Notes(monkeypatch)
    grey = viewer.add_image(grey_image(tuple(img.data.shape)), name="em copy")
    _tiny(widget, tmp_path, epochs=1)
    widget.image.value = img
    widget.labels_layer.value = grey
    assert widget.run() is None
    assert "looks like a grey image" in widget.status.value and notes.errors
    assert not (tmp_path / "m.safetensors").exists()
