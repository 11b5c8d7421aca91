"""Layer menus: Labels layers first, a mask opened as an image still usable, pairs never start equal."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import Notes, synthetic_layers, wait_for

pytestmark = pytest.mark.gui


def _predicted(viewer, truth):
    """A Labels layer as the Segment widget leaves it: half the truth, with its metadata."""
    data = truth.data.copy()
    data[:, :, :32] = 0
    layer = viewer.add_labels(data, name="m labels", scale=truth.scale)
    layer.metadata["segnets"] = {"checkpoint": "m.safetensors", "original": data.copy(), "source": "em"}
    return layer


def _iou(pred, truth):
    p, t = pred != 0, truth != 0
    return np.count_nonzero(p & t) / np.count_nonzero(p | t)


def test_score_starts_on_the_prediction_and_a_different_truth(make_napari_viewer):
    from napari_segnets._widgets import ScoreWidget

    viewer = make_napari_viewer()
    _img, truth = synthetic_layers(viewer)
    widget = ScoreWidget(viewer)
    assert widget.prediction.value is truth and widget.truth.value is not truth, "never the same layer"
    pred = _predicted(viewer, truth)  # added later, as after a Segment run
    assert widget.prediction.value is truth, "a choice already made stays"
    fresh = ScoreWidget(viewer)
    assert fresh.prediction.value is pred and fresh.truth.value is truth
    names = list(fresh.truth.choices)
    assert names[:2] == [truth, pred] and names[2].name == "em", "Labels layers first, images after"


def test_a_ground_truth_opened_as_an_image_is_offered_and_scored(make_napari_viewer, qtbot, monkeypatch):
    from napari_segnets._widgets import ScoreWidget

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    pred = _predicted(viewer, truth)
    gt = viewer.add_image((truth.data != 0).astype(np.uint8) * 255, name="gt 0-255", scale=truth.scale)
    viewer.layers.remove(truth)
    widget = ScoreWidget(viewer)
    assert widget.prediction.value is pred
    assert widget.truth.value is gt, "the mask image, not the EM image"
    assert widget.mode.value == "binary", "the default, as evaluate --mode: nonzero = object"
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert not notes.errors, notes.errors
    rows = widget.scores["per_slice"]
    for z, row in enumerate(rows):
        assert row["iou"] == pytest.approx(_iou(pred.data[z], gt.data[z]))

    widget.truth.value = img  # the EM image is no mask: one sentence, no scores
    widget.scores = None
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert len(notes.errors) == 1 and notes.errors[0].startswith("Image layer 'em' has ")
    assert "not a mask" in notes.errors[0] and widget.scores is None


def test_curate_prefers_the_predicted_labels_and_their_image(make_napari_viewer):
    from napari_segnets._widgets import CurateWidget

    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    viewer.add_image(img.data.copy(), name="another image", scale=img.scale)
    pred = _predicted(viewer, truth)
    widget = CurateWidget(viewer)
    assert widget.labels_layer.value is pred and widget.image.value is img


def test_widget_modules_do_not_import_each_other():
    import ast
    from pathlib import Path

    import napari_segnets._widgets as pkg

    folder = Path(pkg.__file__).parent
    widgets = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    assert {"segment", "curate", "score", "wavelet", "train"} <= widgets
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                wrong = [n for n in names if n.split(".")[0] in widgets]
                assert not wrong, f"{path.name} imports widget module(s) {wrong}: share through _common.py"


def test_advanced_options_fold_away(make_napari_viewer, tmp_path):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget, WaveletWidget
    from napari_segnets._widgets._session import REGISTRY

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget.native.show()
    assert not widget.advanced.opened and not widget.tile.native.isVisible()
    widget.advanced.button.native.click()
    assert widget.advanced.opened and widget.tile.native.isVisible()
    assert widget.advanced.button.text.startswith("▾")
    wavelets = WaveletWidget(viewer)
    assert not wavelets.comparing.opened, "nothing to compare yet"
    REGISTRY.add(checkpoints.save(tmp_path / "ae.safetensors", models.build("linear", task="autoencode")),
                 task="autoencode")
    assert wavelets.comparing.opened, "an autoencoder to compare opens the comparison"
