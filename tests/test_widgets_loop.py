"""The whole loop through the widgets: train -> segment -> correct -> store -> fine-tune -> score."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import (
    Notes,
    StallProbe,
    set_slice,
    synthetic_layers,
    train_tiny,
    wait_for,
)

pytestmark = pytest.mark.gui


def _segment(qtbot, widget, image, name, scope):
    widget.image.value = image
    widget.checkpoint.model.value = name
    widget.scope.value = scope
    widget.device.value = "cpu"
    assert widget.run() is not None, widget.status.value
    wait_for(qtbot, widget)
    return widget.last_layer


@pytest.mark.slow
def test_segment_correct_store_finetune_score(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                             record_property):
    from napari_segnets import checkpoints
    from napari_segnets._widgets import CurateWidget, ScoreWidget, SegmentWidget, TrainWidget
    from napari_segnets._widgets._session import REGISTRY
    from napari_segnets._widgets.train import STORE
    from napari_segnets.curation import Store

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    train, seg, cur, score = (W(viewer) for W in (TrainWidget, SegmentWidget, CurateWidget, ScoreWidget))

    # 1. a tiny first model, validated on the slice in view
    set_slice(viewer, img, 1)
    with StallProbe() as train_probe:
        result = train_tiny(qtbot, train, image=img, labels=truth, out=tmp_path / "base.safetensors",
                            epochs=2)
    assert (tmp_path / "base.safetensors").is_file()
    assert result.checkpoint is not None
    assert [h["loss"] for h in train.history if "loss" in h], "no loss reached the plot"
    assert any(isinstance(h.get("val"), dict) for h in train.history), "no validation reached the plot"
    assert not viewer.layers["training preview"].visible  # hidden when training ends
    train.plot.wait()
    assert train.plot.image is not None and train.plot.image.std() > 0, "the live plot was drawn"
    base = REGISTRY.names()[0]
    assert REGISTRY.get(base).trained_here

    # 2. segment the current slice, then the whole stack
    seg.checkpoint.model.value = base
    qtbot.waitUntil(lambda: "cpu" in seg.device_info.value, timeout=30_000)
    pred = _segment(qtbot, seg, img, base, "current slice")
    assert pred.name == f"{base} labels"
    assert pred.data.shape == img.data.shape and pred.data.dtype == np.uint8
    assert tuple(pred.scale) == tuple(img.scale)
    assert pred.metadata["segnets"]["predicted"] == [1]
    assert not pred.data[0].any() and not pred.data[2].any()
    with StallProbe() as predict_probe:
        pred = _segment(qtbot, seg, img, base, "whole stack")
    assert pred.metadata["segnets"]["predicted"] == [0, 1, 2]
    # The event loop kept ticking while the worker ran (numbers go to RESULTS.md, no time limit here).
    for name, probe in (("train", train_probe), ("predict", predict_probe)):
        assert probe.gaps, f"the GUI timer never fired during {name}"
        record_property(f"worst_stall_{name}_ms", round(probe.worst_ms, 1))
        print(f"worst event-loop stall during {name}: {probe.summary()}")
    original = pred.metadata["segnets"]["original"].copy()

    # 3. correct: paint on slice 1 with the opposite of what was predicted there
    value = int(pred.data[1, 30, 30])
    pred.brush_size = 6
    pred.paint((1, 30, 30), 1 - value, refresh=True)
    changed = int(np.count_nonzero(pred.data[1] != original[1]))
    assert changed > 0
    assert np.array_equal(pred.metadata["segnets"]["original"], original), "the original must be kept"

    # 4. curate: the edited region (unreviewed pixels ignored), a whole slice, a validation slice
    cur.labels_layer.value = pred
    assert cur.image.value is img, "the image the labels were predicted on is picked"
    cur.store.value = tmp_path / "store"
    cur.scope.value = "edited region"
    rec = cur.add_to_store()
    assert rec is not None, notes.errors
    assert rec["changed_pixels"] == changed and rec["region"] is not None
    assert rec["checkpoint"] is not None and rec["index"] == 1
    store = Store(tmp_path / "store")
    _image, mask = store.load(rec["id"])
    assert (mask == 255).any() and (mask != 255).any()
    # the ranking suggests a slice not yet in the store and shows it
    cur.next_uncertain()
    wait_for(qtbot, cur)
    assert cur.suggested in {0, 2}, (cur.suggested, notes.errors)
    assert round(viewer.dims.point[0] / img.scale[0]) == cur.suggested
    cur.scope.value = "current slice"
    set_slice(viewer, img, 0)
    assert cur.add_to_store()["region"] is None
    set_slice(viewer, img, 2)
    cur.split.value = "val"
    assert cur.add_to_store()["split"] == "val"
    assert "3 samples" in cur.counts.value and "val 1" in cur.counts.value
    # every slice is covered now: the ranking says so instead of jumping
    cur.next_uncertain()
    wait_for(qtbot, cur)
    assert cur.suggested is None and notes.infos

    # 5. fine-tune the first model on the store; the parent is recorded
    result = train_tiny(qtbot, train, image=img, out=tmp_path / "tuned.safetensors", source=STORE,
                        store=tmp_path / "store", parent=base)
    tuned = [n for n in REGISTRY.names() if n != base][0]
    assert REGISTRY.get(tuned).parent == str(tmp_path / "base.safetensors")
    _model, meta = checkpoints.load(tmp_path / "tuned.safetensors")
    assert "base.safetensors" in str(meta["parent"])

    # 6. segment with the tuned model and score both against the truth
    tuned_pred = _segment(qtbot, seg, img, tuned, "whole stack")
    score.prediction.value = tuned_pred
    score.truth.value = truth
    score.baseline.value = viewer.layers[f"{base} labels"]
    score.mode.value = "membrane"
    assert score.run() is not None
    wait_for(qtbot, score)
    table = score.table.value
    assert len(table["data"]) == 3
    assert {"iou", "dice", "rand_error"} <= set(table["columns"])
    assert "iou" in score.overall.value
    # the slices whose membrane IoU dropped, worked out here without the metrics module
    def iou(p, t):
        p, t = p != 0, t != 0
        union = np.count_nonzero(p | t)
        return np.count_nonzero(p & t) / union if union else 1.0

    base_layer = viewer.layers[f"{base} labels"]
    expected = [z for z in range(3) if iou(tuned_pred.data[z], truth.data[z])
                < iou(base_layer.data[z], truth.data[z]) - 1e-6]
    assert score.worse == expected
    for row in table["data"]:
        assert ("WORSE" in row[-1]) == (row[0] in score.worse)
    assert not notes.errors, notes.errors
