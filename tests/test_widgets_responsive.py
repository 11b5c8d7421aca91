"""What keeps the event loop free during jobs: background imports and a preview layer made up front."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests._widget_helpers import synthetic_layers, wait_for

pytestmark = pytest.mark.gui


def test_warm_up_imports_the_torch_stack_once_in_the_background():
    from napari_segnets._widgets import _runner

    thread = _runner.warm_up()
    assert thread is _runner.warm_up(), "one warm-up per process"
    assert thread.name == "napari-segnets-warm-up" and not thread.daemon
    thread.join(timeout=120)
    assert not thread.is_alive()
    for name in ("torch", "torch._dynamo", "napari_segnets.training.loop", "napari_segnets.inference"):
        assert name in sys.modules, name


def test_warm_up_survives_a_module_that_cannot_be_imported():
    from napari_segnets._widgets import _warm

    _warm._import_all(["napari_segnets_no_such_module", "json"], collect=False)  # logs, does not raise


def test_creating_a_widget_starts_the_warm_up(make_napari_viewer):
    from napari_segnets._widgets import SegmentWidget, _warm

    SegmentWidget(make_napari_viewer())
    assert _warm._warm["thread"] is not None


def _setup(widget, img, truth, tmp_path, task):
    widget.image.value = img
    widget.labels_layer.value = truth
    widget.task.value = task
    widget.arch.value = "unet"
    widget.base.value, widget.epochs.value, widget.steps.value = 8, 2, 2
    widget.batch_size.value, widget.crop.value, widget.device.value = 2, 32, "cpu"
    widget.output.value = tmp_path / f"{task}.safetensors"


@pytest.mark.parametrize("task", ["segment", "autoencode"])
def test_preview_layer_exists_before_the_worker_runs(make_napari_viewer, qtbot, tmp_path, task):
    """Adding a layer mid-run stalled the GUI 150-500 ms; it is now added on the click, then only updated."""
    from napari_segnets._widgets import TrainWidget

    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    widget = TrainWidget(viewer)
    _setup(widget, img, truth, tmp_path, task)
    assert "training preview" not in viewer.layers
    worker = widget.run()
    assert worker is not None, widget.status.value
    # synchronously, before any event from the worker reached the GUI thread
    layer = viewer.layers["training preview"]
    assert layer.data.shape == img.data.shape[1:] and not np.any(layer.data)
    assert tuple(layer.scale) == tuple(img.scale[-2:])
    wait_for(qtbot, widget)
    assert widget.result is not None, widget.status.value
    assert viewer.layers["training preview"] is layer, "updated in place, not re-created"
    assert np.any(layer.data), "the last validation prediction is shown"
    if task == "autoencode":
        lo, hi = layer.contrast_limits
        assert lo == pytest.approx(float(layer.data.min())) and hi == pytest.approx(float(layer.data.max()))
    # a second run reuses the layer
    widget.run()
    assert viewer.layers["training preview"] is layer
    wait_for(qtbot, widget)


def test_no_validation_slice_no_preview(make_napari_viewer, qtbot, tmp_path):
    from napari_segnets._widgets import TrainWidget

    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    widget = TrainWidget(viewer)
    _setup(widget, img, truth, tmp_path, "segment")
    widget.val_slices.value = 0
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert widget.result is not None
    assert "training preview" not in viewer.layers


def test_device_label_is_resolved_off_the_gui_thread(make_napari_viewer, qtbot, monkeypatch):
    import torch

    from napari_segnets._widgets import SegmentWidget
    from tests._widget_helpers import Notes

    notes = Notes(monkeypatch)
    widget = SegmentWidget(make_napari_viewer())
    qtbot.waitUntil(lambda: widget.device_info.value.startswith("runs on: cpu")
                    or "cuda" in widget.device_info.value, timeout=30_000)
    if not torch.cuda.is_available():
        widget.device.value = "cuda"
        assert widget.device_info.value == "runs on: checking..."
        qtbot.waitUntil(lambda: widget.device_info.value == "runs on: unavailable", timeout=30_000)
        assert notes.errors and "no CUDA GPU" in notes.errors[-1]
    widget.device.value = "cpu"
    qtbot.waitUntil(lambda: widget.device_info.value.startswith("runs on: cpu"), timeout=30_000)


def test_nice_ticks_are_round_and_cover_the_range():
    from napari_segnets._widgets._curves import nice_ticks

    assert nice_ticks(0.0, 1.0) == [0.0, 0.5, 1.0]
    assert nice_ticks(0.13, 0.83) == [0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(7.95, 8.05, 3) == [7.95, 8.0, 8.05]
    assert nice_ticks(2.0, 2.0) == [2.0]
    assert nice_ticks(float("nan"), 1.0) == []


def test_live_curves_paint_loss_and_scores(qtbot):
    from napari_segnets._widgets._curves import LOSS_COLOR, CurvesCanvas
    from napari_segnets._widgets.train import history_curves

    canvas = CurvesCanvas(label="loss and validation")
    qtbot.addWidget(canvas.native)
    blank = canvas.image
    history = [{"step": s, "loss": 1.0 / s} for s in range(1, 21)]
    history += [{"step": 10, "epoch": 1, "val": {"iou": {"1": 0.4}, "dice": {"1": 0.55}, "score": 0.4}},
                {"step": 20, "epoch": 2, "val": {"iou": {"1": 0.6}, "dice": {"1": 0.7}, "score": 0.6}}]
    loss, curves = history_curves(history)
    assert len(loss) == 20 and set(curves) == {"val IoU", "val Dice"}
    canvas.set_data(loss, curves)
    assert canvas.points == 24
    drawn = canvas.image
    assert drawn.shape == blank.shape and not np.array_equal(drawn, blank)
    r, g, b = (int(LOSS_COLOR[i:i + 2], 16) for i in (1, 3, 5))
    near = np.abs(drawn[..., :3].astype(int) - [r, g, b]).sum(-1) < 60
    assert near.sum() > 50, "the loss curve is painted in its colour"
    # autoencoders: PSNR in dB on a fitted right axis, MSE left to the loss curve
    _, curves = history_curves([{"step": 5, "val": {"mse": 0.01, "psnr": 20.0, "score": -0.01}}])
    assert set(curves) == {"val PSNR (dB)"}
