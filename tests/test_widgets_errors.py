"""A bad input per widget: a notification with a sentence, no exception, nothing changed."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import Notes, synthetic_layers, wait_for

pytestmark = pytest.mark.gui


@pytest.fixture
def setup(make_napari_viewer, monkeypatch):

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    yield viewer, img, truth, notes


def test_segment_without_checkpoint_and_with_a_corrupt_file(setup, tmp_path):
    from napari_segnets._widgets import SegmentWidget

    viewer, img, _truth, notes = setup
    widget = SegmentWidget(viewer)
    widget.image.value = img
    n_layers = len(viewer.layers)
    assert widget.run() is None
    assert "No checkpoint chosen" in notes.errors[-1]
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    widget.checkpoint.file.value = bad
    assert len(notes.errors) == 2, "a corrupt checkpoint is refused with a notification"
    assert widget.checkpoint.model.value is None
    assert len(viewer.layers) == n_layers and bad.read_bytes().startswith(b"not a")


def test_segment_rgb_image_is_refused(setup, tmp_path):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY

    viewer, _img, _truth, notes = setup
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True)
    path = checkpoints.save(tmp_path / "m.safetensors", models.build("unet", base=8))
    REGISTRY.add(path, task="segment")
    widget = SegmentWidget(viewer)
    widget.image.value = rgb
    widget.checkpoint.model.value = "m"
    assert widget.run() is None
    assert "single-channel" in notes.errors[-1]
    widget.task.value = "autoencode"
    assert widget.run() is None
    assert "trained to segment" in notes.errors[-1]


def test_train_with_labels_of_another_shape(setup):
    from napari_segnets._widgets import TrainWidget

    viewer, img, _truth, notes = setup
    other = viewer.add_labels(np.zeros((2, 32, 32), np.uint8), name="other")
    widget = TrainWidget(viewer)
    widget.image.value, widget.labels_layer.value = img, other
    assert widget.run() is None
    assert "same stack" in notes.errors[-1]
    assert widget.train_button.enabled and not widget.runner.running


def test_wavelets_need_two_layers(setup):
    from napari_segnets._widgets import WaveletWidget

    viewer, img, _truth, notes = setup
    widget = WaveletWidget(viewer)
    widget.layers.value = [img]
    assert widget.show_mosaics() is None
    assert "two or more" in notes.errors[-1]
    assert widget.compare() is None
    assert "autoencoder" in notes.errors[-1]


def test_curate_region_without_changes(setup, tmp_path):
    from napari_segnets._widgets import CurateWidget

    viewer, img, truth, notes = setup
    pred = viewer.add_labels(truth.data.copy(), name="pred", scale=truth.scale,
                             metadata={"segnets": {"original": truth.data.copy(), "source": "em"}})
    widget = CurateWidget(viewer)
    widget.labels_layer.value, widget.image.value = pred, img
    widget.store.value = tmp_path / "store"
    widget.scope.value = "edited region"
    assert widget.add_to_store() is None
    assert "Nothing was changed" in notes.errors[-1]
    widget.labels_layer.value = truth  # no record of a prediction
    assert widget.add_to_store() is None
    assert "original prediction" in notes.errors[-1]
    assert widget.next_uncertain() is None
    assert "Segment widget" in notes.errors[-1]
    assert not (tmp_path / "store").exists() or "0 samples" in widget.counts.value


def test_score_refuses_mismatched_and_non_binary_layers(setup, qtbot):
    from napari_segnets._widgets import ScoreWidget

    viewer, _img, truth, notes = setup
    small = viewer.add_labels(np.zeros((3, 32, 32), np.uint8), name="small")
    widget = ScoreWidget(viewer)
    widget.prediction.value, widget.truth.value = small, truth
    assert widget.run() is None
    assert "same stack" in notes.errors[-1]
    many = viewer.add_image((np.arange(3 * 64 * 64).reshape(3, 64, 64) % 5).astype(np.uint8), name="many")
    widget.prediction.value, widget.mode.value = many, "binary"
    assert widget.run() is not None  # refused in the worker: an image of five values is no mask
    wait_for(qtbot, widget)
    assert notes.errors[-1].startswith("Image layer 'many' has 5 different values, so it is not a mask")
    assert widget.scores is None
